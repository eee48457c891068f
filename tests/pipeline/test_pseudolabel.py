import shutil
from pathlib import Path

import numpy as np

from diffuse_uda.data.io import read_nifti
from diffuse_uda.data.validation import validate_dataset
from diffuse_uda.evaluation.evaluate import evaluate_predictions
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.pipeline.pseudolabel import CONFIDENCE_DIR, confident_fraction, write_pseudolabels
from diffuse_uda.pipeline.train import train_method


def test_pseudolabels_form_a_valid_dataset_without_reading_target_labels(tiny_task, smoke_config, tmp_path: Path):
    run = train_method(tiny_task, "ascplus", smoke_config, tmp_path / "run", cache_dir=tmp_path / "c", progress=False)
    stash = tmp_path / "stash"
    shutil.move(tiny_task.target_dir / "labelsTr", stash)  # pseudo-labelling must not need them
    out = write_pseudolabels(run, tmp_path / "pseudo", device="cpu", progress=False)
    report = validate_dataset(out, splits=("Tr",), check_labels=True)
    assert report is not None
    cases = sorted(p.name for p in (out / "labelsTr").iterdir())
    assert len(cases) == 2
    conf, _ = read_nifti(out / CONFIDENCE_DIR / cases[0])
    lab, _ = read_nifti(out / "labelsTr" / cases[0])
    assert conf.shape == lab.shape and conf.min() >= 0.0 and conf.max() <= 1.0 + 1e-6
    assert set(np.unique(lab)) <= {0, 1, 2, 3}
    assert set(confident_fraction(out)) == {c.replace(".nii.gz", "") for c in cases}
    # Quality is measured afterwards, by the evaluation module, against the training labels.
    shutil.move(stash, tiny_task.target_dir / "labelsTr")
    summary = evaluate_predictions(out / "labelsTr", ReferenceLabels(tiny_task.target_dir, "Tr",
                                                                     purpose="pseudo-label-quality"),
                                   tmp_path / "quality", progress=False)
    assert summary.metadata["n_cases"] == 2

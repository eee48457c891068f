"""predict on a reoriented import: on the dataset's grid by default, in the scans' original orientation
with --original-orientation; evaluation gives the same scores either way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diffuse_uda.cli import app
from diffuse_uda.data.importers import import_folder
from diffuse_uda.data.io import read_nifti
from diffuse_uda.data.orientation import orientation_codes
from diffuse_uda.errors import DataError
from diffuse_uda.inference.predict import predict_dataset
from scan_folders import write_centre

LABELS = {"Myo": 1, "LV": 2, "RV": 3}


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def test_predictions_go_back_to_the_original_orientation_on_request(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    write_centre(tmp_path / "A", ["p1", "p2"], "bright", seed=0, shape=(12, 12, 2))
    write_centre(tmp_path / "B", ["p3", "p4"], "dark", seed=1, shape=(12, 10, 2), stored="LPS")
    (tmp_path / "test.txt").write_text("p4\n")
    data = tmp_path / "data"
    import_folder(tmp_path / "A" / "images", data / "Dataset920_A", tmp_path / "A" / "masks", labels=LABELS)
    target = import_folder(tmp_path / "B" / "images", data / "Dataset921_B", tmp_path / "B" / "masks",
                           labels=LABELS, group=r"^(p\d)_", test_cases=tmp_path / "test.txt")
    task = tmp_path / "task.yaml"
    task.write_text("name: ab\nsource: Dataset920_A\ntarget: Dataset921_B\n"
                    "labels: {background: 0, Myo: 1, LV: 2, RV: 3}\npreprocessing: {spatial_dims: 2, size: [16, 16]}\n")
    run = tmp_path / "run"
    _invoke("train", "-m", "source-only", "-t", str(task), "-o", str(run), "--profile", "smoke", "--data-root",
            str(data), "--set", "training.iterations=2", "--set", "training.device=cpu")

    _invoke("predict", "--model", str(run), "-o", str(tmp_path / "canonical"))
    _invoke("predict", "--model", str(run), "-o", str(tmp_path / "original"), "--original-orientation")
    for frame in ("frame01", "frame08"):
        case = f"p4_{frame}"
        canonical, canonical_affine = read_nifti(tmp_path / "canonical" / f"{case}.nii.gz")
        original, original_affine = read_nifti(tmp_path / "original" / f"{case}.nii.gz")
        _, scan_affine = read_nifti(tmp_path / "B" / "images" / f"{case}.nii.gz")
        assert orientation_codes(canonical_affine) == "RAS" and orientation_codes(original_affine) == "LPS"
        np.testing.assert_allclose(original_affine, scan_affine, atol=1e-5)
        np.testing.assert_array_equal(original, canonical[::-1, ::-1])  # the same labels, the scan's axes
    assert json.loads((tmp_path / "original" / "prediction.json").read_text())["orientation"] == "original"

    # Evaluation compares like with like: the same scores from both folders.
    scores = []
    for name in ("canonical", "original"):
        _invoke("evaluate", "-p", str(tmp_path / name), "-r", str(target), "-o", str(tmp_path / f"eval_{name}"))
        scores.append(json.loads((tmp_path / f"eval_{name}" / "summary.json").read_text())["per_class"])
    assert scores[0] == scores[1]

    # A dataset that records no reorientation has nothing to go back to.
    plain = tmp_path / "plain"
    import_folder(tmp_path / "B" / "images", plain, tmp_path / "B" / "masks", labels=LABELS, test_fraction=0.5)
    info = json.loads((plain / "dataset.json").read_text())
    del info["provenance"]["orientation"]
    (plain / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="records no original orientation"):
        predict_dataset(run, plain, tmp_path / "none", original_orientation=True, progress=False)

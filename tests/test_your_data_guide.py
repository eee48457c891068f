"""docs/your_data.md, run as written: its ```bash commands, in order, through the command line, on a
generated folder of two-centre scans (the second centre stored in another orientation)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diffuse_uda.cli import app
from diffuse_uda.data.dataset_json import list_cases, load_dataset_json
from diffuse_uda.data.io import read_nifti
from diffuse_uda.data.orientation import orientation_codes
from diffuse_uda.pipeline.export_nnunet import read_export_provenance
from diffuse_uda.pipeline.run import CHECK_STAGE
from diffuse_uda.pipeline.synthetic_check import read_check
from scan_folders import LABELS, write_centre

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "your_data.md"
# Only to make the guide's smoke run take seconds: two appearance candidates, two steps everywhere.
FAST = ["--set", "segmentation.training.iterations=2", "--set", "segmentation.training.device=cpu",
        "--set", "segmentation.method.appearance_candidates=[paper,bezier]", "--set", "diffusion.iterations=2",
        "--set", "synthesis.steps=2", "--set", "synthesis.guidance_scale=1.0"]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", GUIDE.read_text(), flags=re.S | re.M)


def guide_commands() -> list[list[str]]:
    """Every `diffuse-uda ...` command of the guide's ```bash blocks (continuation lines joined)."""
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("diffuse-uda "):
                commands.append(shlex.split(line, comments=True)[1:])
    return commands


def test_the_guide_goes_from_a_folder_of_scans_to_a_report_and_an_nnunet_dataset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIFFUSE_UDA_DATA", raising=False)
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    # The scans the guide starts from: centre A stored RAS, centre B (other contrast) stored LPS.
    write_centre(Path("scans/centreA"), [f"patient00{i}" for i in range(1, 5)], "bright", seed=0)
    truth_b = write_centre(Path("scans/centreB"), [f"patient10{i}" for i in range(1, 5)], "dark", seed=1,
                           stored="LPS")
    Path("scans/centreB_test_patients.txt").write_text("# held out before any experiment\npatient104\n")
    (yaml_block,) = _blocks("yaml")
    task_file = Path(yaml_block.splitlines()[0].lstrip("# ").strip())
    task_file.parent.mkdir(parents=True, exist_ok=True)
    task_file.write_text(yaml_block)

    commands = guide_commands()
    assert [c[0] for c in commands] == ["import", "import", "validate", "run", "report", "predict", "export"]
    outputs = {}
    for args in commands:
        result = CliRunner().invoke(app, [*args, *FAST] if args[0] == "run" else args)
        assert result.exit_code == 0, (args, result.output, result.exception)
        outputs[args[0]] = result.output

    # import: named labels, patients kept whole, the listed patient held out, B reoriented to RAS.
    a, b = Path("data/Dataset700_CardiacA"), Path("data/Dataset701_CardiacB")
    assert load_dataset_json(a).labels == load_dataset_json(b).labels == LABELS
    assert len(list_cases(a, "Tr")) == 8 and not (a / "imagesTs").exists()
    assert list_cases(b, "Ts") == ["patient104_frame01", "patient104_frame08"]
    provenance = load_dataset_json(b).provenance
    assert set(provenance["groups"]) == {"patient101", "patient102", "patient103", "patient104"}
    assert provenance["orientation"]["cases"]["patient101_frame01"]["codes"] == "LPS"
    label, affine = read_nifti(b / "labelsTs" / "patient104_frame01.nii.gz")
    assert orientation_codes(affine) == "RAS"
    np.testing.assert_array_equal(label, truth_b["patient104_frame01"][1])
    # validate: both centres fine, and after the import they agree in orientation and field of view.
    assert outputs["validate"].count("OK: ") == 2 and "warning" not in outputs["validate"]
    # run + report: stage 1 and stage 3 evaluated on B's test split, both in the report.
    # The run folder stands for its model: stage 3, or stage 1 where the synthetic check skipped stage 3.
    assert Path("runs/cardiac-a2b/report/report.md").is_file()
    report = Path("reports/cardiac-a2b/report.md").read_text()
    verdict = read_check(Path("runs/cardiac-a2b") / CHECK_STAGE)
    assert verdict is not None  # the check is a default stage
    assert "*ascplus (stage 1)*" in report and ("*diffuse-uda*" in report) == verdict.use_synthetic
    assert Path("runs/cardiac-a2b/5_ascplus_synth").is_dir() == verdict.use_synthetic
    # predict --original-orientation: the test patient's labels in the scan's own (LPS) grid.
    pred, pred_affine = read_nifti(Path("predictions/centreB_test/patient104_frame01.nii.gz"))
    _, scan_affine = read_nifti(Path("scans/centreB/images/patient104_frame01.nii.gz"))
    assert pred.shape == label.shape and np.allclose(pred_affine, scan_affine, atol=1e-5)
    assert json.loads(Path("predictions/centreB_test/prediction.json").read_text())["orientation"] == "original"
    # export: A's pairs and the synthetic pairs, pseudo-labels only where stage 1 was reliable.
    out = Path("nnUNet_raw/Dataset702_CardiacB_adapted")
    assert f"wrote {out}" in outputs["export"] and "nnUNetv2_plan_and_preprocess -d 702" in outputs["export"]
    info, exported = load_dataset_json(out), read_export_provenance(out)
    assert exported is not None and info.labels == LABELS and info.num_training == len(exported.cases)
    assert exported.counts["source"] == 8 and exported.counts["synthetic"] > 0
    for case_id, case in exported.cases.items():
        assert case_id.startswith({"source": "src_", "synthetic": "syn_", "pseudo-label": "pl_"}[case.origin])
        assert "labelsTs" not in case.label and "Dataset701_CardiacB" not in case.label  # never B's own masks
    target_train = set(list_cases(b, "Tr"))
    assert {c[3:] for c in exported.cases if c.startswith("pl_")} | set(exported.skipped_pseudo_labels) == \
        target_train

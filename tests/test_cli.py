from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffuse_uda.cli import app

runner = CliRunner()
VERBS = ["import", "validate", "methods", "train", "predict", "evaluate", "report", "demo"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str) -> None:
    result = runner.invoke(app, [verb, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_methods_lists_the_oracle_as_such() -> None:
    result = runner.invoke(app, ["methods"])
    assert "target-supervised" in result.output and "ORACLE" in result.output


def test_train_predict_evaluate_report_on_the_command_line(tiny_data_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data_root, data)
    task = tmp_path / "tiny.yaml"
    task.write_text("name: tiny\nsource: Dataset901_DemoBrainT1\ntarget: Dataset902_DemoBrainT2\n"
                    "labels: {background: 0, CSF: 1, GM: 2, WM: 3}\n"
                    "preprocessing: {spatial_dims: 2, size: [16, 16]}\n")
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "-m", "fda", "-t", str(task), "-o", str(run), "--profile", "smoke",
                            "--data-root", str(data), "--set", "training.iterations=2", "--set", "training.device=cpu"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["predict", "--model", str(run), "-o", str(run / "predictions_target_test")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["evaluate", "-p", str(run / "predictions_target_test"), "-r",
                            str(data / "Dataset902_DemoBrainT2"), "-o", str(run / "evaluation")])
    assert r.exit_code == 0, r.output
    assert "Dice" in r.output
    r = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "report")])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "report" / "report.md").read_text()
    assert "fda" in text and "dice_per_class.png" in text


def test_bad_input_is_a_clean_error(tmp_path: Path) -> None:
    from diffuse_uda.cli import main

    empty = tmp_path / "Dataset001_Empty"
    empty.mkdir()
    import sys

    argv = sys.argv
    sys.argv = ["diffuse-uda", "validate", str(empty)]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = argv
    assert exc.value.code == 2


def test_demo_smoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    r = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--profile", "smoke"])
    assert r.exit_code == 0, r.output
    report = (tmp_path / "demo" / "report" / "report.md").read_text()
    assert "source-only" in report and "upper bound" in report

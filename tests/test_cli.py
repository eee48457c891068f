from pathlib import Path

import pytest
from typer.testing import CliRunner

from diffuse_uda.cli import app

runner = CliRunner()
VERBS = ["import", "validate", "methods", "train", "predict", "evaluate", "report", "demo", "export",
         "export nnunet", "import folder"]


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(verb: str) -> None:
    result = runner.invoke(app, [*verb.split(), "--help"])
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


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Run the real entry point (with its error boundary); returns (exit status, stderr)."""
    import sys

    from diffuse_uda.cli import main

    saved = sys.argv
    sys.argv = ["diffuse-uda", *argv]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
    finally:
        sys.argv = saved
    return int(exc.value.code), capsys.readouterr().err


@pytest.fixture()
def cli_task(tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    task = tmp_path / "tiny.yaml"
    task.write_text("name: tiny\nsource: Dataset901_DemoBrainT1\ntarget: Dataset902_DemoBrainT2\n"
                    "labels: {background: 0, CSF: 1, GM: 2, WM: 3}\n"
                    "preprocessing: {spatial_dims: 2, size: [16, 16]}\n")
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    return ["-t", str(task), "--data-root", str(tiny_data_root), "--profile", "smoke"]


@pytest.mark.parametrize("setting, message", [
    ("training.checkpoint_every=0", "training.checkpoint_every: Input should be greater than 0"),
    ("training.log_every=0", "training.log_every: Input should be greater than 0"),
    ("training.lr=nan", "training.lr: Input should be a finite number"),
    ("network.init_filters=0", "network.init_filters: Input should be greater than 0"),
    ("training.batch_size=0", "training.batch_size: Input should be greater than 0"),
    ("training.iterations=-3", "training.iterations: Input should be greater than 0"),
    ("training.device=cuda", "sees no CUDA GPU"),
])
def test_bad_settings_are_one_line_errors_before_any_work(setting: str, message: str, cli_task: list[str],
                                                         tmp_path: Path, capsys) -> None:
    """Defect: these raised raw tracebacks (or, for batch_size=0 / iterations=-3, gave a bundle marked
    complete with no learning)."""
    import torch

    if setting.endswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = _main(["train", "-m", "source-only", *cli_task, "-o", str(tmp_path / "run"), "--set", setting],
                      capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 2  # the error + the --debug hint
    assert not (tmp_path / "run").exists()


def test_an_output_path_that_is_a_file_fails_up_front(cli_task: list[str], tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    for argv in (["train", "-m", "source-only", *cli_task, "-o", str(blocker / "run")],
                 ["bench", *cli_task, "--methods", "source-only", "--seeds", "1", "-o", str(blocker)],
                 ["run", *cli_task, "-o", str(blocker)]):
        code, err = _main(argv, capsys)
        assert code == 2 and str(blocker) in err and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "cache" / "preprocessed").exists()  # nothing was preprocessed


def test_debug_shows_the_traceback(cli_task: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from diffuse_uda.cli import main
    from diffuse_uda.errors import ConfigError

    # --debug sets a module-wide flag; restore it afterwards so later tests see one-line errors again.
    monkeypatch.setattr("diffuse_uda.cli._DEBUG", False)

    saved = sys.argv
    sys.argv = ["diffuse-uda", "train", "-m", "source-only", *cli_task, "-o", str(tmp_path / "r"),
                "--set", "training.lr=nan", "--debug"]
    try:
        with pytest.raises(ConfigError):
            main()
    finally:
        sys.argv = saved


def test_bench_seed_list_runs_only_those_seeds(cli_task: list[str], tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    code, err = _main(["bench", *cli_task, "--methods", "source-only", "--seed-list", "1", "--profile", "smoke",
                       "-o", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in (out / "source-only").iterdir()) == ["seed1"]
    code, err = _main(["bench", *cli_task, "--methods", "source-only", "--seed-list", "1,x", "-o", str(out)], capsys)
    assert code == 2 and "--seed-list" in err and "Traceback" not in err

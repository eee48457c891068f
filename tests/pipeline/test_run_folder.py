"""The run-folder contract: a folder is reused only for exactly the request it was made for.

Each test reproduces a defect found by trying the toolkit as a new user would (issue "Runs you can
trust"); each failed on the code before the contract.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from diffuse_uda.config import build_run_config
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.registry import create_method
from diffuse_uda.pipeline.manifest import read_manifest
from diffuse_uda.pipeline.run import CHECK_STAGE, STAGE3, PipelineConfig, run_pipeline
from diffuse_uda.pipeline.run_folder import RunFolder
from diffuse_uda.pipeline.train import build_training_data, train_method
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import Trainer

STAGES = ["1_ascplus", "2_pseudolabels", "3_diffusion", "4_synthetic", CHECK_STAGE, STAGE3]


@pytest.fixture(autouse=True)
def _private_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))


def _train(task, method: str, config, out: Path, **kw) -> Path:
    return train_method(task, method, config, out, cache_dir=out.parent / "prep", progress=False, **kw)


def test_a_finished_run_of_another_method_is_refused_not_reused(tiny_task, smoke_config, tmp_path: Path) -> None:
    """Defect: `train -m fda --out runs/base` on a finished source-only folder printed success and kept
    the source-only model."""
    out = tmp_path / "runs" / "base"
    _train(tiny_task, "source-only", smoke_config, out)
    with pytest.raises(ConfigError, match="'source-only' run .*method 'source-only' \\(requested 'fda'\\)"):
        _train(tiny_task, "fda", smoke_config, out)
    assert load_bundle(out).method == "source-only"  # nothing was lost
    _train(tiny_task, "fda", smoke_config, out, force=True)
    assert load_bundle(out).method == "fda" and RunFolder(out).manifest().method == "fda"


class _Killed(Exception):
    pass


def test_an_unfinished_run_resumes_only_as_the_same_method(tiny_task, smoke_config, tmp_path: Path,
                                                             monkeypatch) -> None:
    """Defect: resuming a killed source-only run with -m fda gave a bundle labelled fda holding
    source-only weights."""
    out = tmp_path / "runs" / "killed"
    config = build_run_config("smoke", 2, {"training": {"iterations": 6, "checkpoint_every": 2, "device": "cpu"}})
    original_fit = Trainer.fit

    def killed_after_step_3(self):  # noqa: ANN202
        hook = self.method.after_optimizer_step

        def crash(ctx):  # noqa: ANN202
            hook(ctx)
            if ctx.step == 3:
                raise _Killed

        self.method.after_optimizer_step = crash
        return original_fit(self)

    monkeypatch.setattr(Trainer, "fit", killed_after_step_3)
    with pytest.raises(_Killed):
        _train(tiny_task, "source-only", config, out)
    monkeypatch.setattr(Trainer, "fit", original_fit)
    assert RunFolder(out).manifest().status == "running" and (out / "checkpoint_last.pt").is_file()
    with pytest.raises(ConfigError, match="running 'source-only' run"):
        _train(tiny_task, "fda", config, out)
    _train(tiny_task, "source-only", config, out)  # the same request resumes and finishes
    manifest = RunFolder(out).manifest()
    assert manifest.status == "complete" and manifest.resumed_from_step == 2


def test_a_checkpoint_of_other_settings_is_never_continued(tiny_task, smoke_config, tmp_path: Path) -> None:
    """Defect: the trainer's resume ignored the config stored in the checkpoint."""
    data = build_training_data(tiny_task, False, False, progress=False)
    Trainer(create_method("source-only"), data, smoke_config, tmp_path, 2, 4, progress=False).fit()
    other = build_run_config("smoke", 2, {"training": {"iterations": 8, "lr": 0.5, "device": "cpu"}})
    with pytest.raises(ConfigError, match="checkpoint was written by method 'source-only' with other settings"):
        Trainer(create_method("source-only"), data, other, tmp_path, 2, 4, progress=False).fit()
    with pytest.raises(ConfigError, match="other settings"):
        Trainer(create_method("fda"), build_training_data(tiny_task, True, False, progress=False), smoke_config,
                tmp_path, 2, 4, progress=False).fit()


def _zero_source_labels(task) -> None:
    for path in sorted((task.source_dir / "labelsTr").glob("*.nii.gz")):
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.zeros(img.shape, dtype=np.uint8), img.affine), path)


def test_changed_source_labels_or_dataset_json_are_not_reused(tiny_task, smoke_config, tmp_path: Path) -> None:
    """Defects: zeroing every source label, or editing dataset.json, left a finished run 'complete'."""
    out = tmp_path / "runs" / "so"
    _train(tiny_task, "source-only", smoke_config, out)
    _train(tiny_task, "source-only", smoke_config, out)  # unchanged inputs: reused
    _zero_source_labels(tiny_task)
    with pytest.raises(ConfigError, match="input 'source' .* changed content"):
        _train(tiny_task, "source-only", smoke_config, out)
    _train(tiny_task, "source-only", smoke_config, out, force=True)
    dataset_json = tiny_task.target_dir / "dataset.json"
    _train(tiny_task, "fda", smoke_config, tmp_path / "runs" / "fda")
    meta = json.loads(dataset_json.read_text())
    dataset_json.write_text(json.dumps({**meta, "description": "edited by hand"}))
    with pytest.raises(ConfigError, match="input 'target_images'"):
        _train(tiny_task, "fda", smoke_config, tmp_path / "runs" / "fda")


def _pipeline_config() -> PipelineConfig:
    return PipelineConfig(profile="smoke", segmentation={"training": {"iterations": 2, "device": "cpu"}},
                          diffusion={"iterations": 2}, synthesis={"steps": 2})


def test_pipeline_stages_follow_their_inputs_and_not_the_spelling_of_the_path(tiny_task, tmp_path: Path,
                                                                            monkeypatch, check_keeps_pairs) -> None:
    """Defects: zeroing every source label left every stage 'complete, skipped'; --out run1 and
    --out /abs/run1 redid stages 2-5."""
    monkeypatch.chdir(tmp_path)
    run_pipeline(tiny_task, Path("run1"), _pipeline_config(), progress=False)
    started = {s: read_manifest(tmp_path / "run1" / s).started for s in STAGES}
    inputs = {s: read_manifest(tmp_path / "run1" / s).inputs for s in STAGES}
    run_pipeline(tiny_task, tmp_path / "run1", _pipeline_config(), progress=False)  # absolute path now
    assert started == {s: read_manifest(tmp_path / "run1" / s).started for s in STAGES}
    # Stage records written before a setting existed (here: gradient checkpointing, at its default) still match.
    for stage in STAGES:
        path = tmp_path / "run1" / stage / "stage.json"
        raw = json.loads(path.read_text())
        raw["config"].get("diffusion", {}).pop("gradient_checkpointing", None)
        raw["config"].get("segmentation", {}).get("network", {}).pop("gradient_checkpointing", None)
        path.write_text(json.dumps(raw))
    run_pipeline(tiny_task, tmp_path / "run1", _pipeline_config(), progress=False)
    assert started == {s: read_manifest(tmp_path / "run1" / s).started for s in STAGES}
    _zero_source_labels(tiny_task)
    with pytest.raises(ConfigError, match="stage 1: ascplus.*input 'source'.*changed content"):
        run_pipeline(tiny_task, Path("run1"), _pipeline_config(), progress=False)
    run_pipeline(tiny_task, Path("run1"), _pipeline_config(), progress=False, force=True)
    # Every stage depends on the source labels, directly or through stage 1: all were redone.
    assert all(read_manifest(tmp_path / "run1" / s).inputs != inputs[s] for s in STAGES)
    redone = RunFolder(tmp_path / "run1" / "1_ascplus").manifest()
    assert redone.status == "complete"


def test_crafted_pickles_are_refused_everywhere(tiny_task, smoke_config, tmp_path: Path) -> None:
    """Defect: `predict --model crafted/model.pt` ran a shell command (torch.load weights_only=False)."""
    import torch

    from diffuse_uda.data.preprocessing import prepare_split
    from diffuse_uda.errors import DataError

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    crafted = tmp_path / "crafted"
    crafted.mkdir()
    torch.save({"format": 1, "network": Payload()}, crafted / "model.pt")
    with pytest.raises(DataError, match="cannot load model bundle"):
        load_bundle(crafted)
    # The trainer's resume checkpoint.
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 1, "method": Payload()}, run / "checkpoint_last.pt")
    data = build_training_data(tiny_task, False, False, progress=False)
    with pytest.raises(DataError, match="cannot load checkpoint"):
        Trainer(create_method("source-only"), data, smoke_config, run, 2, 4, progress=False).fit()
    # The preprocessing cache: a crafted entry is discarded and rebuilt, never unpickled.
    cache = tmp_path / "prep"
    prepare_split(tiny_task.source_dir, "Tr", tiny_task.preprocessing, True, cache, False)
    (entry,) = cache.glob("*.pt")
    torch.save([Payload()], entry)
    cases = prepare_split(tiny_task.source_dir, "Tr", tiny_task.preprocessing, True, cache, False)
    assert cases and cases[0].image.ndim == 4
    assert not marker.exists()
    src = Path(__file__).resolve().parents[2] / "src"
    assert not [p for p in src.rglob("*.py") if "weights_only=False" in p.read_text()]


def test_a_crash_before_the_first_checkpoint_leaves_no_duplicate_log_rows(tiny_task, tmp_path: Path,
                                                                          fit_until_crash) -> None:
    from diffuse_uda.training.log import read_training_log

    config = build_run_config("smoke", 2, {"training": {"iterations": 6, "checkpoint_every": 5, "log_every": 1,
                                                        "device": "cpu"}})
    data = build_training_data(tiny_task, False, False, progress=False)
    fit_until_crash(Trainer(create_method("source-only"), data, config, tmp_path, 2, 4, progress=False), 2)
    assert not (tmp_path / "checkpoint_last.pt").exists()
    Trainer(create_method("source-only"), data, config, tmp_path, 2, 4, progress=False).fit()
    assert [s for s, _ in read_training_log(tmp_path / "training_log.csv")["loss"]] == [1, 2, 3, 4, 5, 6]


def test_keys_logged_in_later_phases_are_kept(tiny_task, tmp_path: Path) -> None:
    """Defect: pseudo-label self-training logs one key in its warm-up and three after, but the wide
    CSV's header was written once, so later rows had more columns than the header."""
    from diffuse_uda.training.log import read_training_log

    config = build_run_config("smoke", 2, {"training": {"iterations": 6, "log_every": 1, "device": "cpu"},
                                           "method": {"warmup_fraction": 0.5}})
    _train(tiny_task, "pseudo-label", config, tmp_path / "runs" / "pl")
    log = read_training_log(tmp_path / "runs" / "pl" / "training_log.csv")
    assert [s for s, _ in log["loss"]] == [1, 2, 3, 4, 5, 6]
    late = [k for k, points in log.items() if points[0][0] > 1]
    assert late, log.keys()  # keys that appear only after the warm-up are in the log


def test_stale_temporaries_of_killed_processes_are_removed(tmp_path: Path) -> None:
    from diffuse_uda.data.io import remove_stale_temporaries

    dead = tmp_path / ".model.pt.999999999-abc123.tmp"
    alive = tmp_path / f".model.pt.{os.getpid()}-abc123.tmp"
    nested = tmp_path / "evaluation" / ".summary.json.999999999-0f0f0f0f0f0f.tmp.txt"
    nested.parent.mkdir()
    for p in (dead, alive, nested):
        p.write_text("half")
    removed = remove_stale_temporaries(tmp_path)
    assert set(removed) == {dead, nested} and alive.exists()


def test_run_folder_path_that_is_a_file_fails_before_work(tiny_task, smoke_config, tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file"):
        _train(tiny_task, "source-only", smoke_config, target)
    assert not (tmp_path / "prep").exists()  # failed before preprocessing anything


def test_outputs_of_unknown_origin_are_not_overwritten(tiny_task, smoke_config, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.pt").write_bytes(b"someone else's model")
    with pytest.raises(ConfigError, match="no run.json"):
        _train(tiny_task, "source-only", smoke_config, out)
    assert (out / "model.pt").read_bytes() == b"someone else's model"
    shutil.rmtree(out)


def test_a_record_from_before_a_new_setting_matches_when_the_setting_is_at_its_default(tiny_task, smoke_config,
                                                                                        tmp_path: Path) -> None:
    """A field added to the settings after a run was recorded (with a default that keeps the old
    behaviour) does not make the run stale; a recorded value that differs still does."""
    out = tmp_path / "runs" / "so"
    _train(tiny_task, "source-only", smoke_config, out)
    raw = json.loads((out / "run.json").read_text())
    del raw["request"]["config"]["network"]["gradient_checkpointing"]  # as written before the option existed
    (out / "run.json").write_text(json.dumps(raw))
    before = (out / "run.json").read_text()
    _train(tiny_task, "source-only", smoke_config, out)  # reused, not refused
    assert (out / "run.json").read_text() == before
    raw["request"]["config"]["network"]["init_filters"] = 4  # a real difference
    (out / "run.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="network.init_filters: 4 -> 8"):
        _train(tiny_task, "source-only", smoke_config, out)

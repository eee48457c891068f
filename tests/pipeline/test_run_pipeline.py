"""The Diffuse-UDA pipeline: every stage, skip-when-complete, and resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from diffuse_uda.cli import app
from diffuse_uda.data.task import Task
from diffuse_uda.pipeline.manifest import read_manifest
from diffuse_uda.pipeline.run import (
    CHECK_STAGE,
    MODEL_STAGE,
    PHOTO_NOTE,
    STAGE3,
    PipelineConfig,
    SynthesisOptions,
    pipeline_model,
    pipeline_notes,
    read_pipeline_record,
    run_pipeline,
    synthesize_from_run,
)
from diffuse_uda.pipeline.run_folder import RunFolder
from diffuse_uda.pipeline.synthetic_check import read_check

STAGES = ["1_ascplus", "2_pseudolabels", "3_diffusion", "4_synthetic", CHECK_STAGE, STAGE3]


def _stages_run(run: Path) -> list[str]:
    """The stage folders a finished run has: stage 3 only where the synthetic check kept the synthetic pairs."""
    verdict = read_check(run / CHECK_STAGE)
    assert verdict is not None  # a default stage
    return STAGES if verdict.use_synthetic else STAGES[:-1]


def _task_yaml(tmp_path: Path) -> Path:
    task = tmp_path / "tiny.yaml"
    task.write_text("name: tiny\nsource: Dataset901_DemoBrainT1\ntarget: Dataset902_DemoBrainT2\n"
                    "labels: {background: 0, CSF: 1, GM: 2, WM: 3}\n"
                    "preprocessing: {spatial_dims: 2, size: [16, 16]}\n")
    return task


def _assert_outputs_whole(run: Path) -> None:
    for stage in _stages_run(run):
        assert read_manifest(run / stage).status == "complete", stage
    assert (run / STAGE3).is_dir() == (_stages_run(run) == STAGES)
    leftovers = [p for p in run.rglob("*") if p.name.endswith(".tmp") or ".tmp" in p.name]
    assert not leftovers, leftovers
    for f in list((run / "4_synthetic").rglob("*.nii.gz")) + list((run / "2_pseudolabels").rglob("*.nii.gz")):
        nib.load(f).get_fdata()  # every written file is complete and readable


def test_pipeline_runs_every_stage_and_skips_when_complete(tiny_task, tmp_path: Path, monkeypatch,
                                                           check_keeps_pairs) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    cfg = PipelineConfig(profile="smoke", segmentation={"training": {"iterations": 3, "device": "cpu"}},
                         diffusion={"iterations": 2}, synthesis={"times": 2})
    report = run_pipeline(tiny_task, tmp_path / "run", cfg, progress=False)
    text = report.read_text()
    assert report.name == "report.md" and "diffuse-uda" in text and "ascplus (stage 1)" in text
    assert "Generator fidelity (label-free) and the guidance scale" in text and "(chosen)" in text
    assert "Appearance transfer (chosen without labels)" in text
    assert "Known limits on this kind of data" not in text  # the photo note is for colour photos only
    _assert_outputs_whole(tmp_path / "run")
    # The domain-guided generator's guidance scale was chosen without labels and recorded.
    guidance = read_manifest(tmp_path / "run" / "4_synthetic").result["guidance_choice"]
    assert (tmp_path / "run" / "4_synthetic" / "generator_choice.json").is_file()
    assert guidance["chosen"] in (1.0, 1.5, 2.0, 3.0) and set(guidance["measures"]) == {"1.0", "1.5", "2.0", "3.0"}
    syn = json.loads((tmp_path / "run" / "4_synthetic" / "dataset.json").read_text())
    assert syn["numTraining"] == 2 * read_manifest(tmp_path / "run" / "4_synthetic").result["n_masks"]
    before = {s: read_manifest(tmp_path / "run" / s).started for s in STAGES}
    run_pipeline(tiny_task, tmp_path / "run", cfg, progress=False)
    assert before == {s: read_manifest(tmp_path / "run" / s).started for s in STAGES}

    # `diffuse-uda synthesize` from the finished run: two shards into one folder = one unsharded job.
    whole = tmp_path / "syn_whole"
    result = CliRunner().invoke(app, ["synthesize", "--run", str(tmp_path / "run"), "--out", str(whole),
                                      "--masks", "target", "--times", "2", "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for i in (0, 1):
        synthesize_from_run(tmp_path / "run", tmp_path / "syn_shards",
                            SynthesisOptions(masks="target", times=2, steps=2), shard=(i, 2), device="cpu",
                            progress=False)
    files = sorted(p.relative_to(whole) for p in (whole / "imagesTr").iterdir())
    assert files and files == sorted(p.relative_to(tmp_path / "syn_shards")
                                     for p in (tmp_path / "syn_shards" / "imagesTr").iterdir())
    for f in files:
        # Equal up to float rounding: the batches group the items differently (~1e-7 differences).
        assert np.allclose(nib.load(whole / f).get_fdata(), nib.load(tmp_path / "syn_shards" / f).get_fdata(),
                           atol=1e-5)
    n_target = read_manifest(tmp_path / "run" / "3_diffusion").result["n_target_pairs"]
    assert json.loads((whole / "dataset.json").read_text())["numTraining"] == 2 * n_target


def test_stage3_can_keep_the_pseudo_labelled_target_images(tiny_task, tmp_path: Path, monkeypatch) -> None:
    """``stage3_pseudolabels``: stage 3 trains on source + synthetic + the target images with stage 1's pseudo-labels;
    a run that asks for it shares stages 1-4 with one that does not, and trains its own stage 3."""
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    base = {"profile": "smoke", "segmentation": {"training": {"iterations": 3, "device": "cpu"}},
            "diffusion": {"iterations": 2}, "synthetic_check": False}
    run_pipeline(tiny_task, tmp_path / "paper", PipelineConfig(**base), progress=False)
    run_pipeline(tiny_task, tmp_path / "pseudo", PipelineConfig(**base, stage3_pseudolabels=True,
                                                                share_stages_with=[str(tmp_path / "paper")]),
                 progress=False)
    record = read_pipeline_record(tmp_path / "pseudo")
    assert record is not None
    reused = {st.stage: st.reused for st in record.stages}
    assert reused == {"1 ascplus": True, "2 pseudo-labels": True, "3 diffusion": True, "4 synthesis": True,
                      MODEL_STAGE: False}
    paper, pseudo = (RunFolder(tmp_path / run / STAGE3).manifest() for run in ("paper", "pseudo"))
    synthetic, labels = ((tmp_path / "paper" / d).resolve() for d in ("4_synthetic", "2_pseudolabels"))
    assert paper.extra_labelled == [str(synthetic)]
    assert pseudo.extra_labelled == [str(synthetic), str(labels)]
    n_target = len(list((labels / "labelsTr").iterdir()))
    assert n_target > 0 and pseudo.n_labelled_samples > paper.n_labelled_samples
    # Asked for again without the pseudo-labels, the paper's stage 3 is reused: the option changes no other request.
    before = read_manifest(tmp_path / "paper" / STAGE3).started
    run_pipeline(tiny_task, tmp_path / "paper", PipelineConfig(**base), progress=False)
    assert read_manifest(tmp_path / "paper" / STAGE3).started == before


def test_colour_photos_get_the_measured_pipeline_note(tiny_task, monkeypatch) -> None:
    assert pipeline_notes(tiny_task) == []
    monkeypatch.setattr(Task, "is_colour_photo", property(lambda self: True))
    (note,) = pipeline_notes(tiny_task)
    assert note == PHOTO_NOTE and "below its own stage 1" in note and "BENCHMARKS.md" in note
    assert "synthesis.init_strength" in note  # the measured option is named as the pipeline spells it
    assert "init_strength" in SynthesisOptions.model_fields


@pytest.mark.slow
def test_sigkill_mid_stage_then_resume(tiny_data_root: Path, tmp_path: Path) -> None:
    """Kill `diffuse-uda run` in the middle of stage 1 training; the rerun resumes from the last
    checkpoint, finishes, and leaves no half-written output."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data_root, data)
    env = {**os.environ, "DIFFUSE_UDA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "diffuse_uda.cli", "run", "-t", str(_task_yaml(tmp_path)), "-o",
           str(tmp_path / "run"), "--profile", "smoke", "--data-root", str(data),
           "--set", "segmentation.training.iterations=400", "--set", "segmentation.training.checkpoint_every=5",
           "--set", "segmentation.training.device=cpu", "--set", "diffusion.iterations=2",
           "--set", "segmentation.method.appearance_candidates=[paper,bezier]"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Stage 1 trains the appearance candidates first; kill it inside the first one.
    ckpt = tmp_path / "run" / "1_ascplus" / "candidates" / "paper" / "checkpoint_last.pt"
    deadline = time.time() + 240
    while time.time() < deadline and not ckpt.exists():
        time.sleep(0.2)
    time.sleep(1.0)  # well inside the stage, between checkpoints
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "stage 1 never checkpointed"
    assert read_manifest(tmp_path / "run" / "1_ascplus").status == "running"
    # Finish quickly: the rerun keeps the stage's config (same iterations) and resumes.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    run_json = json.loads((ckpt.parent / "run.json").read_text())
    assert run_json["resumed_from_step"] >= 5
    _assert_outputs_whole(tmp_path / "run")


def test_conditioning_ids_are_unique_across_domains(tiny_task, tmp_path: Path) -> None:
    """Source and target datasets may share case ids (MS-CMRSeg does): sample ids carry the domain."""
    from diffuse_uda.pipeline.run import conditioning_samples

    # The target training images with a copy of the source labels stand in for a pseudo-label set
    # whose case ids equal the source's.
    src, tgt = conditioning_samples(tiny_task, tiny_task.source_dir, 1.0, (16, 16), None, False)
    ids = [p.case_id for p in src + tgt]
    assert len(ids) == len(set(ids)) == 2 * len(src) > 0
    assert all(p.case_id.startswith("source_") and p.domain == "source" for p in src)
    assert all(p.case_id.startswith("target_") and p.domain == "target" for p in tgt)
    assert all(p.weight == 1.0 for p in tgt)  # a dataset without confidence maps counts as fully reliable


def test_stage_folders_of_a_record_are_found_from_any_working_directory(tmp_path: Path, monkeypatch) -> None:
    # Defect: pipeline.json held stage folders relative to the directory `run` was started from, so
    # `synthesize --run` / `export nnunet --run` from elsewhere looked in the wrong place.
    from diffuse_uda.data.io import atomic_write_json
    from diffuse_uda.pipeline.run import PipelineRecord, StageRecord, pipeline_stage_folders

    run = tmp_path / "work" / "runs" / "r1"
    (run / "4_synthetic").mkdir(parents=True)
    shared = tmp_path / "elsewhere" / "2_pseudolabels"
    shared.mkdir(parents=True)
    record = PipelineRecord(config={}, task={}, stages=[
        StageRecord(stage="4 synthesis", folder="runs/r1/4_synthetic"),  # relative: an older record
        StageRecord(stage="2 pseudo-labels", folder=str(shared), reused=True)])
    atomic_write_json(run / "pipeline.json", record.model_dump(mode="json"))
    monkeypatch.chdir(tmp_path)
    folders = pipeline_stage_folders(run)
    assert folders["4 synthesis"] == run / "4_synthetic" and folders["2 pseudo-labels"] == shared
    # Stage 3 not recorded: its own folder; recorded as reused from another run (a bench row identical to another
    # in every stage): that run's, which is what the bench evaluates and exports for the row.
    from diffuse_uda.pipeline.run import stage3_folder

    assert stage3_folder(run) == run / STAGE3
    other = tmp_path / "elsewhere" / STAGE3
    record.stages.append(StageRecord(stage="5 ascplus + synthetic", folder=str(other), reused=True))
    atomic_write_json(run / "pipeline.json", record.model_dump(mode="json"))
    assert stage3_folder(run) == other


def test_pipeline_runs_end_to_end_on_volumes(tiny_task, tmp_path: Path, monkeypatch) -> None:
    """The same stages in 3D (issue 15): 3D segmenter, 3D generator, synthetic volumes, 3D predictions.
    The task file says 2D; the settings turn it into volumes (as the quick3d profile does), and the
    generator must follow the preprocessed task, not the task file (it stayed 2D before)."""
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    cfg = PipelineConfig(profile="smoke", segmentation={"preprocessing": {"spatial_dims": 3, "size": [16, 16, 8]},
                                                        "training": {"iterations": 3, "device": "cpu"}},
                         diffusion={"iterations": 2}, synthesis={"times": 1})
    # The synthetic check runs for real here (in 3D); the model is stage 3's or, if it dropped the pairs, stage 1's.
    report = run_pipeline(tiny_task, tmp_path / "run", cfg, progress=False)
    _assert_outputs_whole(tmp_path / "run")
    kept = _stages_run(tmp_path / "run") == STAGES
    assert ("diffuse-uda" in report.read_text()) == kept and "Synthetic check (label-free)" in report.read_text()
    synthetic = sorted((tmp_path / "run" / "4_synthetic" / "imagesTr").glob("*.nii.gz"))
    assert synthetic and all(len(nib.load(f).shape) == 3 for f in synthetic)
    generator = read_manifest(tmp_path / "run" / "3_diffusion").config["diffusion"]
    assert generator["spatial_dims"] == 3
    predictions = sorted((pipeline_model(tmp_path / "run") / "predictions_target_test").glob("*.nii.gz"))
    test_images = sorted((tiny_task.target_dir / "imagesTs").glob("*.nii.gz"))
    assert len(predictions) == len(test_images) > 0
    assert nib.load(predictions[0]).shape == nib.load(tiny_task.target_dir / "labelsTs" / predictions[0].name).shape

"""The command line under torchrun: two gloo processes on the CPU, the documented entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffuse_uda import cli
from diffuse_uda.pipeline.manifest import read_manifest
from diffuse_uda.pipeline.run import CHECK_STAGE, STAGE3
from diffuse_uda.pipeline.run_folder import RunFolder
from diffuse_uda.pipeline.synthetic_check import read_check
from diffuse_uda.training.bundle import load_bundle


@pytest.fixture()
def task_args(tiny_data_root: Path, tmp_path: Path) -> list[str]:
    task = tmp_path / "tiny.yaml"
    task.write_text("name: tiny\nsource: Dataset901_DemoBrainT1\ntarget: Dataset902_DemoBrainT2\n"
                    "labels: {background: 0, CSF: 1, GM: 2, WM: 3}\n"
                    "preprocessing: {spatial_dims: 2, size: [16, 16]}\n")
    return ["-t", str(task), "--data-root", str(tiny_data_root), "--profile", "smoke"]


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DIFFUSE_UDA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "DIFFUSE_UDA_DIST_TIMEOUT_MIN": "3"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "diffuse_uda.cli", *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_torchrun_train_on_two_processes(task_args: list[str], tmp_path: Path) -> None:
    run = tmp_path / "run"
    done = _torchrun(["train", "-m", "ascplus", "-o", str(run), *task_args, "--set", "method.appearance=fourier",
                      "--set", "training.device=cpu"], tmp_path)
    assert done.stdout.count("model bundle:") == 1  # only rank 0 reports
    manifest = RunFolder(run).manifest()
    assert manifest.status == "complete" and manifest.world_size == 2 and manifest.iterations == 6
    assert load_bundle(run).method == "ascplus"


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_a_single_process_verb_runs_on_rank_0_alone(rank: str, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr("sys.argv", ["diffuse-uda", "methods"])
    if rank == "1":
        cli.main()  # returns at once: no second copy of the work, no process group to wait for
        assert capsys.readouterr().out == ""
        return
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0 and "ascplus" in capsys.readouterr().out
    assert os.environ["WORLD_SIZE"] == "1"  # rank 0 ran it as one process (joins no group)


@pytest.mark.slow
def test_torchrun_runs_the_whole_pipeline_on_two_processes(task_args: list[str], tmp_path: Path) -> None:
    """Stages 1 and 3 and the generator train on both ranks, synthesis is shared, pseudo-labels,
    evaluation and the report are rank 0's (30-40 s on two busy cores: marked slow)."""
    out = tmp_path / "pipeline"
    _torchrun(["run", "-o", str(out), *task_args, "--set", "segmentation.method.appearance=fourier",
               "--set", "segmentation.training.device=cpu", "--set", "diffusion.iterations=4"], tmp_path)
    assert (out / "report" / "report.md").is_file()
    # The synthetic check (a default stage) ran; stage 3 trained where it kept the synthetic pairs.
    verdict = read_check(out / CHECK_STAGE)
    assert verdict is not None and (out / STAGE3).is_dir() == verdict.use_synthetic
    for stage in ("1_ascplus", STAGE3) if verdict.use_synthetic else ("1_ascplus",):
        assert RunFolder(out / stage).manifest().world_size == 2
    synthetic = read_manifest(out / "4_synthetic")
    assert synthetic is not None and synthetic.status == "complete"
    info = json.loads((out / "4_synthetic" / "dataset.json").read_text())
    assert info["numTraining"] == synthetic.result["n_synthetic"] == len(list((out / "4_synthetic" /
                                                                               "labelsTr").glob("*.nii.gz")))

"""``diffuse-uda demo``: the embedded cross-contrast brain task, end to end, in minutes on a CPU."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diffuse_uda.config import build_run_config
from diffuse_uda.data.demo_brain import DemoBrainConfig, generate_demo_brain
from diffuse_uda.data.io import ensure_output_dir
from diffuse_uda.data.task import load_task
from diffuse_uda.pipeline.experiment import run_experiment
from diffuse_uda.pipeline.run import PipelineConfig, run_pipeline

DEMO_TASK = "demo-brain-t1t2"
DEMO_METHODS: tuple[str, ...] = ("source-only", "target-supervised")
# The demo's generator budget: the quick profile's network, trained for fewer updates (the demo is
# sized to finish within minutes, not hours, on 2 CPU cores).
DEMO_DIFFUSION: dict[str, dict] = {"quick": {"iterations": 400, "checkpoint_every": 100},
                                   "smoke": {"iterations": 2}}


def demo_data_config(profile: str, seed: int) -> DemoBrainConfig:
    if profile == "smoke":
        return DemoBrainConfig(n_source=2, n_target_train=2, n_target_test=2, shape=(32, 32, 16), seed=seed)
    return DemoBrainConfig(seed=seed)


def run_demo(out: Path, profile: str = "quick", seed: int = 0, methods: Sequence[str] = DEMO_METHODS,
             progress: bool = True) -> Path:
    """Generate the demo data under ``out/data/TAG``; run the two bounds and the Diffuse-UDA pipeline
    under ``out/runs/TAG`` (TAG = profile and seed); returns ``out/report/report.md``, which compares them."""
    out = ensure_output_dir(Path(out), "demo output folder")
    # One data/run folder per (profile, seed): the generated data differ between them.
    tag = f"{profile}_seed{seed}"
    data_root = out / "data" / tag
    generate_demo_brain(data_root, demo_data_config(profile, seed), progress=progress)
    task = load_task(DEMO_TASK, data_root)
    runs = []
    # The demo task is small (64 px slices): 600 steps per training keep the whole demo within minutes on a CPU.
    overrides = {"training": {"seed": seed, "iterations": 4 if profile == "smoke" else 600}}
    config = build_run_config(profile, task.preprocessing.spatial_dims, overrides)
    for method in methods:
        run_dir, _ = run_experiment(task, method, config, out / "runs" / tag / method, progress=progress)
        runs.append(run_dir)
    pipeline = PipelineConfig(profile=profile, seed=seed, segmentation={"training": overrides["training"]},
                              diffusion=DEMO_DIFFUSION.get(profile, {}), synthesis={"steps": 10, "times": 1})
    return run_pipeline(task, out / "runs" / tag / "diffuse-uda", pipeline, progress=progress, extra_runs=runs,
                        report_dir=out / "report")

"""Bench entries that are not one trained method: the Diffuse-UDA pipeline and HEAL.

Each produces a run folder with the two files every bench row is read from: ``run.json`` (method,
status, time, memory) and ``evaluation/per_case.csv`` (the shared evaluation path). Both reuse the
bench's own finished runs where the method is built on them, so a bench of ``ascplus,diffuse-uda``
trains stage 1 once, and ``source-only,heal`` trains the source segmenter once:

* ``diffuse-uda`` — the full pipeline (:func:`diffuse_uda.pipeline.run.run_pipeline`) with the
  bench's ``ascplus`` run of the same seed as its stage 1; ``diffuse-uda-M1`` .. ``-M6`` are the
  generation ablation rows (paper Table 3), which also share every identical stage with each other.
* ``heal`` — source-free adaptation of the bench's ``source-only`` model with a source-only
  generator; ``heal-HD`` and ``heal-HD-EGS`` are its ablation rows (paper: HD, +EGS, +SAF).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from diffuse_uda.config import _deep_update, build_run_config
from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.data.task import Task
from diffuse_uda.errors import ConfigError
from diffuse_uda.pipeline.experiment import EVALUATION, PREDICTIONS, run_experiment, score_test_predictions
from diffuse_uda.pipeline.manifest import read_manifest, run_stage
from diffuse_uda.pipeline.run import (
    GENERATION_ABLATION,
    STAGE3,
    PipelineConfig,
    diffusion_config,
    run_pipeline,
)
from diffuse_uda.pipeline.train import RUN_MANIFEST, default_cache_dir, peak_rss_mb

PIPELINE_ENTRY = "diffuse-uda"
# HEAL's ablation rows (its Table 3): hierarchical denoising alone, + edge-guided selection, + size-aware fusion.
HEAL_ENTRIES: dict[str, dict[str, bool]] = {
    "heal-HD": {"edge_guided_selection": False, "size_aware_fusion": False},
    "heal-HD-EGS": {"size_aware_fusion": False},
    "heal": {},
}


def is_composite(entry: str) -> bool:
    return entry in HEAL_ENTRIES or entry == PIPELINE_ENTRY or (
        entry.startswith(PIPELINE_ENTRY + "-") and entry.removeprefix(PIPELINE_ENTRY + "-") in GENERATION_ABLATION)


def _complete_run(run_dir: Path) -> bool:
    path = run_dir / RUN_MANIFEST
    return path.is_file() and json.loads(path.read_text()).get("status") == "complete"


def run_composite(task: Task, entry: str, seed: int, out_dir: Path, profile: str,
                  overrides: dict[str, Any], progress: bool = True) -> Path:
    """Run (or resume) one composite entry for one seed; returns its evaluated run folder."""
    if entry in HEAL_ENTRIES:
        return _run_heal(task, entry, seed, out_dir, profile, overrides, progress)
    if is_composite(entry):
        return _run_diffuse_uda(task, entry, seed, out_dir, profile, overrides, progress)
    raise ConfigError(f"{entry!r} is not a pipeline or HEAL entry")


def _segmentation_config(task: Task, seed: int, profile: str, overrides: dict[str, Any]):
    ov = json.loads(json.dumps(overrides))
    ov.setdefault("training", {})["seed"] = seed
    return build_run_config(profile, task.preprocessing.spatial_dims, ov)


def _run_diffuse_uda(task: Task, entry: str, seed: int, out_dir: Path, profile: str,
                     overrides: dict[str, Any], progress: bool) -> Path:
    folder = out_dir / entry / f"seed{seed}"
    settings: dict[str, Any] = {"profile": profile, "seed": seed, "segmentation": overrides}
    row = entry.removeprefix(PIPELINE_ENTRY + "-") if entry != PIPELINE_ENTRY else None
    if row is not None:
        settings = _deep_update(settings, GENERATION_ABLATION[row])
    stage1 = out_dir / "ascplus" / f"seed{seed}"
    seg_cfg = _segmentation_config(task, seed, profile, overrides)
    if _complete_run(stage1) and json.loads((stage1 / RUN_MANIFEST).read_text()).get("config") == \
            seg_cfg.model_dump(mode="json"):
        settings["stage1_run"] = str(stage1)
    settings["share_stages_with"] = sorted(str(p) for p in out_dir.glob(f"{PIPELINE_ENTRY}*/seed{seed}")
                                           if p.resolve() != folder.resolve())
    run_pipeline(task, folder, PipelineConfig.model_validate(settings), progress=progress)
    return folder / STAGE3


def _run_heal(task: Task, entry: str, seed: int, out_dir: Path, profile: str, overrides: dict[str, Any],
              progress: bool) -> Path:
    from diffuse_uda.methods.heal import HEALConfig, adapt_source_free, train_source_diffusion

    folder = out_dir / entry / f"seed{seed}"
    seg_cfg = _segmentation_config(task, seed, profile, overrides)
    config = HEALConfig(seed=seed, **HEAL_ENTRIES[entry])
    if _complete_run(folder) and (folder / EVALUATION / "per_case.csv").is_file():
        done = json.loads((folder / RUN_MANIFEST).read_text())
        # A finished row is reused only if it was made with these settings (else it would be stale).
        same_heal = done.get("heal") == json.loads(json.dumps(config.to_dict()))
        if same_heal and done.get("config") == seg_cfg.model_dump(mode="json"):
            return folder
    # The source site's two models: the bench's source-only segmenter and a source-only generator.
    segmenter, _ = run_experiment(task, "source-only", seg_cfg, out_dir / "source-only" / f"seed{seed}",
                                  progress=progress)
    ptask = task.with_preprocessing(seg_cfg.preprocessing)
    generator_seconds = 0.0
    checkpoint = Path("unused")
    if config.uses_diffusion:
        dcfg = diffusion_config(profile, ptask.preprocessing.spatial_dims, {}, seed)
        generator = run_stage("HEAL: source-only generator", out_dir / "heal-source-generator" / f"seed{seed}",
                              {"diffusion": dcfg.to_dict()}, [task.source_dir / "dataset.json"], seed,
                              lambda d: {"checkpoint": str(train_source_diffusion(
                                  ptask, d, dcfg, seg_cfg.training.device, progress, default_cache_dir()))})
        checkpoint = generator / "diffusion_last.pt"
        generator_seconds = float((read_manifest(generator) or {}).get("seconds", 0.0))
    folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"status": "running", "method": entry, "display_name": entry, "oracle": False,
                                "source_segmenter": str(segmenter), "heal": config.to_dict(),
                                "config": seg_cfg.model_dump(mode="json")}
    atomic_write_json(folder / RUN_MANIFEST, manifest)
    t0 = time.perf_counter()
    predictions = adapt_source_free(segmenter, checkpoint, task.target_dir, folder / PREDICTIONS, split="Ts",
                                    config=config, device=seg_cfg.training.device, progress=progress)
    adapt_seconds = time.perf_counter() - t0
    score_test_predictions(predictions, task, folder, progress)
    # "train s" of a HEAL row: the source-site generator plus the (learning-free) adaptation.
    manifest.update(status="complete", adapt_seconds=adapt_seconds, generator_seconds=generator_seconds,
                    train_seconds=adapt_seconds + generator_seconds, peak_rss_mb=peak_rss_mb())
    atomic_write_json(folder / RUN_MANIFEST, manifest)
    return folder

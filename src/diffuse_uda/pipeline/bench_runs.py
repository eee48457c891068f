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
from typing import TYPE_CHECKING, Any

from diffuse_uda.config import _deep_update, build_run_config
from diffuse_uda.data.task import Task
from diffuse_uda.errors import ConfigError
from diffuse_uda.pipeline.bench_entries import HEAL_ENTRIES, PIPELINE_ENTRY, is_composite
from diffuse_uda.pipeline.experiment import run_experiment, score_test_predictions
from diffuse_uda.pipeline.manifest import read_manifest, run_stage
from diffuse_uda.pipeline.run import (
    GENERATION_ABLATION,
    PAPER_PIPELINE,
    PipelineConfig,
    diffusion_config,
    run_pipeline,
    segmentation_config,
    stage3_folder,
)
from diffuse_uda.pipeline.run_folder import (
    RunFolder,
    RunManifest,
    RunRequest,
    dataset_input,
    file_input,
    register_settings_section,
)
from diffuse_uda.pipeline.train import default_cache_dir, peak_rss_mb, run_request
from diffuse_uda.training import distributed

if TYPE_CHECKING:
    from diffuse_uda.methods.heal import HEALConfig




def _upgrade_heal(record: dict[str, Any]) -> dict[str, Any]:
    from diffuse_uda.methods.heal import HEALConfig

    return HEALConfig(**record).to_dict()


register_settings_section("heal", _upgrade_heal)

# `bench --set` sections that configure a generator, not a segmenter: they reach the pipeline rows
# (diffusion and synthesis) and HEAL's source-only generator (diffusion), and no other row.
GENERATOR_SECTIONS = ("diffusion", "synthesis")


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(segmentation sections, generator sections) of a bench's ``--set`` overrides."""
    segmentation = {k: v for k, v in overrides.items() if k not in GENERATOR_SECTIONS}
    generator = {k: v for k, v in overrides.items() if k in GENERATOR_SECTIONS}
    return segmentation, generator


def check_generator_overrides(entries: list[str], overrides: dict[str, Any]) -> None:
    """Refuse generator settings that no entry of the bench would read (a silently ignored ``--set``)."""
    from diffuse_uda.methods.heal import HEALConfig

    _, generator = split_overrides(overrides)
    pipeline = [e for e in entries if is_composite(e) and e not in HEAL_ENTRIES]
    heal = [e for e in entries if e in HEAL_ENTRIES and HEALConfig(**HEAL_ENTRIES[e]).uses_diffusion]
    readers = {"diffusion": pipeline + heal, "synthesis": pipeline}
    for section in generator:
        if not readers[section]:
            raise ConfigError(f"--set {section}.* configures the generator, but no entry of this bench has one "
                              f"({', '.join(entries)}); entries that read it: diffuse-uda and its rows"
                              + (", heal entries with a generator" if section == "diffusion" else ""))


def run_composite(task: Task, entry: str, seed: int, out_dir: Path, profile: str,
                  overrides: dict[str, Any], progress: bool = True, force: bool = False) -> Path:
    """Run (or resume) one composite entry for one seed; returns its evaluated run folder. ``overrides``
    holds the segmentation sections and the generator sections (:data:`GENERATOR_SECTIONS`)."""
    segmentation, generator = split_overrides(overrides)
    if entry in HEAL_ENTRIES:
        return _run_heal(task, entry, seed, out_dir, profile, segmentation, generator.get("diffusion", {}),
                         progress, force)
    if is_composite(entry):
        return _run_diffuse_uda(task, entry, seed, out_dir, profile, segmentation, generator, progress, force)
    raise ConfigError(f"{entry!r} is not a pipeline or HEAL entry")


def _segmentation_config(task: Task, seed: int, profile: str, overrides: dict[str, Any]):
    ov = json.loads(json.dumps(overrides))
    ov.setdefault("training", {})["seed"] = seed
    return build_run_config(profile, task.preprocessing.spatial_dims, ov)


def _run_diffuse_uda(task: Task, entry: str, seed: int, out_dir: Path, profile: str, overrides: dict[str, Any],
                     generator: dict[str, Any], progress: bool, force: bool) -> Path:
    folder = out_dir / entry / f"seed{seed}"
    settings: dict[str, Any] = {"profile": profile, "seed": seed, "segmentation": overrides}
    row = entry.removeprefix(PIPELINE_ENTRY + "-") if entry != PIPELINE_ENTRY else None
    if row is not None:
        settings = _deep_update(settings, PAPER_PIPELINE if row == "paper" else GENERATION_ABLATION[row])
    # The user's generator settings go on top of the row's preset, as `diffuse-uda run --ablation --set` does.
    settings = _deep_update(settings, generator)
    # Stage 1 is the bench's `ascplus` row where that row is exactly the pipeline's stage 1; where it is not (on
    # scans `ascplus` adds a self-training round, which the pipeline's stage 1 does not) the pipeline makes its own
    # stage 1 from the bench's `ascplus-<preset>` candidates: only the label-free choice is redone.
    seg_cfg = segmentation_config(PipelineConfig.model_validate(settings), task.preprocessing.spatial_dims)
    stage1 = RunFolder(out_dir / "ascplus" / f"seed{seed}")
    if stage1.is_complete() and stage1.matches(run_request(task.with_preprocessing(seg_cfg.preprocessing), "ascplus",
                                                           seg_cfg)):
        settings["stage1_run"] = str(stage1.path)
    else:
        settings["stage1_candidates"] = str(out_dir)
    settings["share_stages_with"] = sorted(str(p) for p in out_dir.glob(f"{PIPELINE_ENTRY}*/seed{seed}")
                                           if p.resolve() != folder.resolve())
    run_pipeline(task, folder, PipelineConfig.model_validate(settings), progress=progress, force=force)
    # A row identical to another in every stage (e.g. a rerun under a new name) reuses its stage 3.
    return distributed.on_main(stage3_folder, folder)


def _run_heal(task: Task, entry: str, seed: int, out_dir: Path, profile: str, overrides: dict[str, Any],
              diffusion: dict[str, Any], progress: bool, force: bool) -> Path:
    from diffuse_uda.methods.heal import HEALConfig, train_source_diffusion

    folder = RunFolder(out_dir / entry / f"seed{seed}")
    seg_cfg = _segmentation_config(task, seed, profile, overrides)
    ptask = task.with_preprocessing(seg_cfg.preprocessing)
    config = HEALConfig(seed=seed, **HEAL_ENTRIES[entry])
    # The source site's two models: the bench's source-only segmenter and a source-only generator.
    segmenter, _ = run_experiment(task, "source-only", seg_cfg, out_dir / "source-only" / f"seed{seed}",
                                  progress=progress, force=force)
    inputs = {"source_segmenter": file_input(segmenter / "model.pt"),
              "target_images": dataset_input(task.target_dir, with_labels=False)}
    generator_seconds = 0.0
    checkpoint = Path("unused")
    if config.uses_diffusion:
        dcfg = diffusion_config(profile, ptask.preprocessing.spatial_dims, diffusion, seed)
        generator = run_stage("HEAL: source-only generator", out_dir / "heal-source-generator" / f"seed{seed}",
                              {"diffusion": dcfg.to_dict()}, {"source": dataset_input(task.source_dir, True)}, seed,
                              lambda d: {"checkpoint": str(train_source_diffusion(
                                  ptask, d, dcfg, seg_cfg.training.device, progress, default_cache_dir()))},
                              force=force, on_all_ranks=True)
        checkpoint = generator / "diffusion_last.pt"
        inputs["source_generator"] = file_input(checkpoint)
        stage = read_manifest(generator)
        generator_seconds = stage.seconds if stage is not None and stage.seconds is not None else 0.0
    request = RunRequest(method=entry, config={"segmentation": seg_cfg.model_dump(mode="json"),
                                               "heal": config.to_dict()},
                         task=ptask.config.model_dump(mode="json"), inputs=inputs)
    # The adaptation itself is learning-free and not distributed: rank 0 runs it, the others wait.
    return distributed.on_main(_adapt_heal, task, ptask, entry, folder, request, segmenter, checkpoint, config,
                               seg_cfg.training.device, generator_seconds, progress, force)


def _adapt_heal(task: Task, ptask: Task, entry: str, folder: RunFolder, request: RunRequest, segmenter: Path,
                checkpoint: Path, config: HEALConfig, device: str, generator_seconds: float, progress: bool,
                force: bool) -> Path:
    from diffuse_uda.methods.heal import adapt_source_free

    # A finished row is reused only if it was made for exactly this request (else it would be stale).
    if folder.open(request, force=force) == "complete" and (folder.evaluation_dir / "per_case.csv").is_file():
        return folder.path
    manifest = RunManifest(request=request, task=ptask.resolved().to_dict(), display_name=entry,
                           method_summary="HEAL (source-free, learning-free)",
                           details={"source_segmenter": str(segmenter.resolve())})
    folder.write(manifest)
    t0 = time.perf_counter()
    predictions = adapt_source_free(segmenter, checkpoint, task.target_dir, folder.predictions_dir, split="Ts",
                                    config=config, device=device, progress=progress)
    adapt_seconds = time.perf_counter() - t0
    score_test_predictions(predictions, task, folder.path, progress)
    # "train s" of a HEAL row: the source-site generator plus the (learning-free) adaptation.
    manifest = manifest.model_copy(update={
        "status": "complete", "train_seconds": adapt_seconds + generator_seconds, "peak_rss_mb": peak_rss_mb(),
        "details": {**manifest.details, "adapt_seconds": adapt_seconds, "generator_seconds": generator_seconds}})
    folder.write(manifest)
    return folder.path

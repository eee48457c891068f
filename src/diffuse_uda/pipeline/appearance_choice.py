"""The label-free choice of ASCPlus's appearance transfer for a new task (``ascplus`` with
``appearance="auto"``, the product default).

A user cannot know which appearance transfer suits their shift (an FFT amplitude swap for a mild
restyling, a contrast-inverting remap for CT -> MR, a colour-aware one for photos), and target labels
must not decide it. So ASCPlus is trained once per candidate (:data:`diffuse_uda.methods.asc.APPEARANCE_PRESETS`)
and one candidate is kept by a rule that reads no label:

**Rule: cross-candidate agreement.** Every candidate segments the unlabelled target *training* images.
For two candidates, agreement is the Dice between their label maps pooled over all those images,
averaged over the foreground classes (a class both leave empty counts as 0: empty predictions are
no evidence). A candidate's score is its mean agreement with the other candidates; the highest
score wins (ties: the first in the candidate list).

Why this and not the candidates' own confidence: each candidate is trained to be confident and
self-consistent on target views made by its *own* transfer (ASCPlus's consistency loss), so its
entropy, its teacher-student agreement and the stability of its snapshots measure how well it
fitted its objective, not whether its objective suits the shift. Agreement between candidates with
different inductive biases is not optimised by any of them: where most candidates find the same
structures the shift has been bridged, and a candidate whose transfer failed (e.g. an amplitude
swap facing a contrast inversion) disagrees with the rest in its own way. The rule fails when most
candidates fail alike; the candidate set therefore mixes target-driven members (Fourier, histogram
matching) with target-agnostic ones (Bezier curves, GIN). The mean prediction entropy of each
candidate is recorded beside the score for the report, never used.

Which candidate the *test* labels would have picked is computed only afterwards, for reports
(:func:`diffuse_uda.pipeline.bench` tables, BENCHMARKS.md), from each candidate's own evaluation.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from diffuse_uda.config import RunConfig
from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.data.preprocessing import prepare_split
from diffuse_uda.data.task import Task
from diffuse_uda.errors import DataError
from diffuse_uda.inference.predict import predict_probabilities
from diffuse_uda.methods.asc import APPEARANCE_PRESETS
from diffuse_uda.pipeline.run_folder import RunFolder, RunManifest
from diffuse_uda.training import distributed
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device

CHOICE_FILE = "appearance_choice.json"
RULE = "cross-candidate agreement (mean pooled foreground Dice with the other candidates on target training images)"
# The default candidates: target-driven (paper FFT swap, histogram matching), target-agnostic
# contrast-inverting remaps (Bezier curves, GIN) and their mixture; photos add the colour-aware swap.
GREY_CANDIDATES: tuple[str, ...] = ("paper", "histogram-matching", "bezier", "gin", "mix")
RGB_CANDIDATES: tuple[str, ...] = (*GREY_CANDIDATES, "fourier-luminance")


class AppearanceChoice(BaseModel):
    """``appearance_choice.json``: what was chosen, by which rule, from which scores."""

    model_config = ConfigDict(extra="forbid")
    chosen: str
    rule: str = RULE
    scores: dict[str, float]
    agreement: dict[str, dict[str, float]]
    entropy: dict[str, float]
    candidates: dict[str, str]
    seconds: float


def default_candidates(num_channels: int) -> tuple[str, ...]:
    return RGB_CANDIDATES if num_channels == 3 else GREY_CANDIDATES


def candidate_config(config: RunConfig, name: str) -> RunConfig:
    """The run config of one candidate: the product's, with the candidate's appearance preset (so a bench's
    ``ascplus-<name>`` row, made with the same overrides, is the same run)."""
    method = {k: v for k, v in config.method.items() if k not in ("appearance", "appearance_options")}
    method.update(json.loads(json.dumps(APPEARANCE_PRESETS[name])))
    return config.model_copy(update={"method": method})


def _label_maps(run: Path, images: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, float]:
    """Argmax label maps (N, *S) of a run's model on target images (N, C, *S), and its mean normalised
    entropy (for the report)."""
    bundle = load_bundle(run, device)
    labels, entropy_sum, voxels = [], 0.0, 0
    # 2D: slices in batches (predict_probabilities takes them as the last axis of one case); 3D: volumes.
    chunks = ([images[i:i + 64].movedim(0, -1) for i in range(0, images.shape[0], 64)] if images.ndim == 4
              else list(images))
    for chunk in chunks:
        probs = predict_probabilities(bundle.network, chunk, images.ndim - 2, device)  # (K, *S[, n])
        probs = probs.movedim(-1, 0) if images.ndim == 4 else probs[None]  # (n, K, *S)
        labels.append(probs.argmax(1).cpu())
        p = probs.clamp_min(1e-8)
        ent = -(p * p.log()).sum(1) / float(np.log(p.shape[1]))
        entropy_sum += float(ent.sum())
        voxels += ent.numel()
    return torch.cat(labels), entropy_sum / max(voxels, 1)


def pooled_dice(a: torch.Tensor, b: torch.Tensor, classes: list[int]) -> float:
    """Mean over ``classes`` of the Dice of two label maps pooled over all their voxels (0 when both are empty)."""
    scores = []
    for c in classes:
        x, y = a == c, b == c
        denom = int(x.sum()) + int(y.sum())
        scores.append(2.0 * int((x & y).sum()) / denom if denom else 0.0)
    return float(np.mean(scores))


def score_candidates(runs: Mapping[str, Path], task: Task, cache_dir: Path | None, device: str = "auto",
                     progress: bool = False) -> AppearanceChoice:
    """Apply the rule to trained candidate runs (reads the target *images* only)."""
    t0 = time.perf_counter()
    dev = resolve_device(device)
    cases = prepare_split(task.target_dir, "Tr", task.preprocessing, with_labels=False, cache_dir=cache_dir,
                          progress=progress)
    if task.preprocessing.spatial_dims == 2:
        images = torch.cat([torch.from_numpy(np.moveaxis(c.image, -1, 0)) for c in cases])
    else:
        images = torch.stack([torch.from_numpy(c.image) for c in cases])
    if images.shape[0] == 0:
        raise DataError(task.target_dir / "imagesTr", "no target training images to choose an appearance transfer")
    maps, entropy = {}, {}
    for name, run in runs.items():
        maps[name], entropy[name] = _label_maps(Path(run), images, dev)
    classes = [v for v in task.labels.values() if v != 0]
    names = list(runs)
    agreement = {a: {b: pooled_dice(maps[a], maps[b], classes) for b in names if b != a} for a in names}
    scores = {a: float(np.mean(list(agreement[a].values()))) for a in names}
    chosen = max(names, key=lambda n: (scores[n], -names.index(n)))
    return AppearanceChoice(chosen=chosen, scores=scores, agreement=agreement, entropy=entropy,
                            candidates={n: str(Path(r).resolve()) for n, r in runs.items()},
                            seconds=time.perf_counter() - t0)


def adopt_chosen_run(chosen_run: Path, out_dir: Path) -> list[str]:
    """Copy the chosen candidate's model bundle, extra outputs and log into ``out_dir``; returns the names."""
    copied = []
    for path in sorted(Path(chosen_run).iterdir()):
        if path.is_file() and path.suffix in (".pt", ".csv") and path.name != "checkpoint_last.pt":
            tmp = out_dir / f".{path.name}.copy.tmp"
            shutil.copyfile(path, tmp)
            tmp.replace(out_dir / path.name)
            copied.append(path.name)
    return copied


def write_choice(out_dir: Path, choice: AppearanceChoice) -> Path:
    path = Path(out_dir) / CHOICE_FILE
    atomic_write_json(path, choice.model_dump(mode="json"))
    return path


def read_choice(run_dir: Path) -> AppearanceChoice | None:
    path = Path(run_dir) / CHOICE_FILE
    if not path.is_file():
        return None
    try:
        return AppearanceChoice.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise DataError(path, f"invalid appearance choice record ({exc})") from None


def choice_summary(choice: AppearanceChoice) -> dict[str, Any]:
    """The facts a report shows: the pick, the rule and each candidate's score and entropy."""
    return {"chosen": choice.chosen, "rule": choice.rule,
            "scores": {k: round(v, 4) for k, v in choice.scores.items()},
            "entropy": {k: round(v, 4) for k, v in choice.entropy.items()}}


def train_with_appearance_choice(task: Task, config: RunConfig, out_dir: Path,
                                 candidate_dirs: Mapping[str, Path] | None = None, cache_dir: Path | None = None,
                                 progress: bool = True, display_name: str | None = None,
                                 force: bool = False) -> Path:
    """``ascplus`` with ``appearance="auto"``: train every candidate (into ``candidate_dirs[name]``, default
    ``out_dir/candidates/name``; finished ones are reused under the run-folder contract), choose one by
    the label-free rule and make ``out_dir`` a run folder holding the chosen model."""
    from diffuse_uda.methods.registry import create_method
    from diffuse_uda.pipeline.train import run_request, train_method

    out_dir = Path(out_dir)
    task = task.with_preprocessing(config.preprocessing)
    # Rank 0 decides about the folder and writes it; the candidates train on every rank (train_method).
    request = distributed.on_main(run_request, task, "ascplus", config)
    folder = RunFolder(out_dir)

    def complete() -> bool:
        return (folder.open(request, force=force) == "complete" and folder.bundle_path.is_file()
                and (out_dir / CHOICE_FILE).is_file())

    if distributed.on_main(complete):
        return out_dir
    names = create_method("ascplus", config.method).options.appearance_candidates or \
        default_candidates(task.num_channels)
    dirs = {n: Path((candidate_dirs or {}).get(n, out_dir / "candidates" / n)) for n in names}
    manifest = RunManifest(request=request, task=task.resolved().to_dict(), display_name=display_name or "ascplus",
                           method_summary="ASCPlus with the appearance transfer chosen per task without labels",
                           outputs=["candidates"])
    distributed.on_main(folder.write, manifest)
    runs = {n: train_method(task, "ascplus", candidate_config(config, n), d, cache_dir=cache_dir, progress=progress,
                            display_name=f"ascplus-{n}", force=force) for n, d in dirs.items()}
    distributed.on_main(_keep_chosen, task, config, out_dir, runs, folder, manifest, cache_dir, progress)
    return out_dir


def _keep_chosen(task: Task, config: RunConfig, out_dir: Path, runs: dict[str, Path], folder: RunFolder,
                 manifest: RunManifest, cache_dir: Path | None, progress: bool) -> None:
    """Score the trained candidates, record the choice and make ``out_dir`` the chosen run (rank 0)."""
    from diffuse_uda.pipeline.train import peak_rss_mb

    choice = score_candidates(runs, task, cache_dir, config.training.device, progress)
    write_choice(out_dir, choice)
    copied = adopt_chosen_run(runs[choice.chosen], out_dir)
    done = {n: RunFolder(r).manifest() for n, r in runs.items()}
    chosen = done[choice.chosen]
    manifest = manifest.model_copy(update={
        "status": "complete", "outputs": ["candidates", CHOICE_FILE, *copied],
        "n_labelled_samples": chosen.n_labelled_samples, "n_target_samples": chosen.n_target_samples,
        # The cost of the choice is every candidate's training plus the scoring.
        "train_seconds": sum(m.train_seconds or 0.0 for m in done.values()) + choice.seconds,
        "preprocessing_seconds": sum(m.preprocessing_seconds or 0.0 for m in done.values()),
        "peak_rss_mb": max([peak_rss_mb(), *(m.peak_rss_mb or 0.0 for m in done.values())]),
        "iterations": chosen.iterations, "device": chosen.device, "world_size": chosen.world_size,
        "details": {"appearance": choice.chosen, "appearance_choice": choice_summary(choice)}})
    folder.write(RunManifest.model_validate(manifest.model_dump()))
    print(f"[ascplus] appearance chosen without labels: {choice.chosen} "
          f"(scores {', '.join(f'{k} {v:.3f}' for k, v in choice.scores.items())})")

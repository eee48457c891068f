"""Label-free choice of the classifier-free guidance scale of the domain-guided generator.

Guidance trades adherence to the conditioning mask against how strongly samples take the target's
style: too little and a source mask gives a source-styled image (useless to a target model), too much
and images saturate and lose anatomy. No target label may decide it, so each candidate scale samples
the same conditioning masks (half source labels, half target pseudo-labels, evenly spread, fixed
noise) and is scored with the label-free measures of :mod:`diffuse_uda.diffusion.fidelity`:

* mask fidelity: the stage-1 target model finds the conditioning mask in the synthetic image;
* style fidelity: a domain classifier (real source vs real target images) calls the image target;
* Frechet distance between stage-1 encoder features of the synthetic and the real target images.

**Rule:** the scale with the best mean rank over the three measures (higher, higher, lower is
better) wins; ties go to the smaller scale. Ranks, not raw values, because the three measures live on
different scales and none should dominate by its units. Style fidelity is left out of the ranks when
its classifier cannot tell real source from real target images (held-out accuracy below 75 %).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict
from tqdm.auto import tqdm

from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.diffusion.fidelity import (
    FidelityReport,
    fidelity_report,
    real_image_features,
    train_domain_classifier,
)
from diffuse_uda.diffusion.samplers import sample_images
from diffuse_uda.diffusion.trainer import PairSample, load_diffusion
from diffuse_uda.errors import DataError
from diffuse_uda.networks.conditional_unet import DOMAIN_INDEX
from diffuse_uda.training.bundle import load_bundle

GUIDANCE_CANDIDATES: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
# Conditioning masks scored per candidate: 2D slices, or whole 3D volumes. A 64 x 64 x 32 volume costs
# as much to sample as 32 slices of 64 x 64; scoring every volume (19 on abdominal CT -> MR, quick3d) the 3D
# choice ran over 45 minutes on the CPU without finishing (BENCHMARKS.md session 9), so 3D scores fewer.
CHOICE_MASKS: dict[int, int] = {2: 32, 3: 8}
CHOICE_FILE = "generator_choice.json"
RULE = ("best mean rank over stage-1 mask fidelity, domain-classifier style fidelity and Frechet distance to "
        "real target images (ties: the smaller scale)")


class GuidanceChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    chosen: float
    rule: str = RULE
    reports: dict[str, FidelityReport]
    mean_rank: dict[str, float]
    n_masks: int
    sampler: str
    steps: int | None
    seconds: float


def _spread(pairs: Sequence[PairSample], n: int) -> list[PairSample]:
    """``n`` pairs evenly spread over the list (deterministic, no label consulted)."""
    if len(pairs) <= n:
        return list(pairs)
    return [pairs[int(i)] for i in np.linspace(0, len(pairs) - 1, n).round()]


def _ranks(values: dict[str, float | None], higher_is_better: bool) -> dict[str, float] | None:
    """0 = best; equal values share their mean rank. None when a value is undefined."""
    if any(v is None for v in values.values()):
        return None
    sign = -1.0 if higher_is_better else 1.0
    keyed = {k: sign * float(v) for k, v in values.items()}  # type: ignore[arg-type]
    ordered = sorted(keyed.values())
    return {k: float(np.mean([i for i, x in enumerate(ordered) if x == v])) for k, v in keyed.items()}


def rank_choice(reports: dict[str, FidelityReport]) -> tuple[str, dict[str, float]]:
    """The rule: best mean rank over mask fidelity, Frechet distance to target and (when its classifier
    separates the domains) style fidelity; ties go to the smaller scale. Returns (chosen key, mean ranks)."""
    keys = list(reports)
    rankings = [_ranks({k: reports[k].mask_fidelity_mean for k in keys}, True),
                _ranks({k: reports[k].frechet_distance_target for k in keys}, False)]
    if all(reports[k].style_fidelity_meaningful for k in keys):
        rankings.append(_ranks({k: reports[k].style_fidelity for k in keys}, True))
    used = [r for r in rankings if r is not None]
    mean_rank = {k: float(np.mean([r[k] for r in used])) if used else 0.0 for k in keys}
    return min(keys, key=lambda k: (mean_rank[k], float(k))), mean_rank


def choose_guidance(generator_ckpt: Path, stage1_run: Path, source: Sequence[PairSample],
                    target: Sequence[PairSample], num_classes: int, sampler: str, steps: int | None,
                    seed: int, device: torch.device, candidates: Sequence[float] = GUIDANCE_CANDIDATES,
                    n_masks: int | None = None, batch_size: int = 16, eta: float = 0.0,
                    progress: bool = False, init_strength: float = 1.0) -> GuidanceChoice:
    """Score every candidate scale on the same masks and noise, and apply the rule. ``n_masks``: default
    :data:`CHOICE_MASKS` for the generator's dimensionality; ``progress``: a bar over the sampled batches;
    ``init_strength < 1``: every sample starts from its mask's own image, as synthesis then does."""
    t0 = time.perf_counter()
    model, config, info = load_diffusion(generator_ckpt, device)
    n_masks = CHOICE_MASKS[config.spatial_dims] if n_masks is None else n_masks
    bundle = load_bundle(stage1_run, device)
    segmenter = bundle.network
    size = tuple(bundle.preprocessing.size)  # the stage-1 model's input size
    T = config.num_train_timesteps
    steps = T if sampler == "ddpm" else min(50 if steps is None else int(steps), T)  # as synthesis does
    n_source = n_masks // 2 if target else n_masks
    scored = [*_spread(source, n_source), *_spread(target, n_masks - n_source)]
    if not scored:
        raise DataError(None, "no conditioning mask with foreground to choose the guidance scale with")
    cond = torch.from_numpy(np.stack([p.mask for p in scored]).astype(np.int64)).to(device)
    init = (torch.from_numpy(np.stack([p.image for p in scored]).astype(np.float32)).to(device)
            if init_strength < 1 else None)

    def real(pairs: Sequence[PairSample]) -> torch.Tensor | None:
        return torch.from_numpy(np.stack([p.image for p in _spread(pairs, 256)])).to(device) if pairs else None

    real_source, real_target = real(source), real(target)
    # Without both domains' real images a measure is left out (recorded as None), not made up.
    classifier = (train_domain_classifier(real_source, real_target, config.spatial_dims, seed=seed, device=device)
                  if real_source is not None and real_target is not None else None)
    target_features = None if real_target is None else real_image_features(segmenter, real_target, input_size=size)
    source_features = None if real_source is None else real_image_features(segmenter, real_source, input_size=size)
    reports: dict[str, FidelityReport] = {}
    starts = range(0, cond.shape[0], batch_size)
    bar = tqdm(total=len(candidates) * len(starts), desc="choose guidance scale (label-free)", disable=not progress,
               leave=False)
    for scale in candidates:
        t1 = time.perf_counter()
        images = []
        for start in starts:
            chunk = cond[start:start + batch_size]
            gens = [torch.Generator(device=device).manual_seed(seed * 100_003 + start + i) for i in range(len(chunk))]
            images.append(sample_images(model, chunk, num_classes, info["image_channels"], sampler=sampler,
                                        steps=steps, num_train_timesteps=config.num_train_timesteps,
                                        schedule=config.schedule, generator=gens, amp=config.amp,
                                        domain=DOMAIN_INDEX["target"], guidance_scale=scale, eta=eta,
                                        init=None if init is None else init[start:start + batch_size],
                                        strength=init_strength))
            bar.update()
        batch = torch.cat(images)
        reports[str(scale)] = fidelity_report(batch, cond, segmenter, classifier, target_features, source_features,
                                              num_classes, (time.perf_counter() - t1) / batch.shape[0],
                                              input_size=size)
    bar.close()
    chosen, mean_rank = rank_choice(reports)
    return GuidanceChoice(chosen=float(chosen), reports=reports, mean_rank=mean_rank, n_masks=int(cond.shape[0]),
                          sampler=sampler, steps=steps, seconds=time.perf_counter() - t0)


def write_guidance_choice(folder: Path, choice: GuidanceChoice) -> Path:
    path = Path(folder) / CHOICE_FILE
    atomic_write_json(path, choice.model_dump(mode="json"))
    return path


def guidance_summary(choice: GuidanceChoice) -> dict[str, Any]:
    """The facts a report shows for each candidate scale."""
    return {"chosen": choice.chosen, "rule": choice.rule, "mean_rank": choice.mean_rank,
            "measures": {k: {"mask_fidelity": r.mask_fidelity_mean, "style_fidelity": r.style_fidelity,
                             "style_meaningful": r.style_fidelity_meaningful,
                             "frechet_target": r.frechet_distance_target,
                             "frechet_source": r.frechet_distance_source,
                             "seconds_per_image": r.seconds_per_image}
                         for k, r in choice.reports.items()}}

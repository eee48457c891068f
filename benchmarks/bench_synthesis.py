"""Fidelity and speed of the label-conditioned generator, per sampler.

For N conditioning masks, sample one image per mask with each sampler (DDPM with all training
steps, DDIM with fewer), segment the synthetic images with a reference segmenter (the oracle
target model: it knows what target images look like) and score its prediction against the
conditioning mask (mean foreground Dice). Also reports seconds per synthetic image.

    python benchmarks/bench_synthesis.py --generator RUN/3_diffusion/diffusion_last.pt \
        --segmenter bench/mscmr/target-supervised/seed0 --masks RUN/2_pseudolabels \
        --samplers ddpm:250 ddim:50 ddim:25 ddim:10 --n 32 --out synthesis_fidelity.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.diffusion.samplers import sample_images
from diffuse_uda.diffusion.trainer import load_diffusion
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device


def mean_foreground_dice(pred: torch.Tensor, ref: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-sample mean Dice over the foreground classes present in either map."""
    scores = []
    for k in range(1, num_classes):
        p, r = pred == k, ref == k
        denom = p.sum((1, 2)) + r.sum((1, 2))
        dice = torch.where(denom > 0, 2 * (p & r).sum((1, 2)) / denom.clamp(min=1), torch.nan)
        scores.append(dice)
    return torch.stack(scores, 1).nanmean(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, required=True, help="diffusion checkpoint")
    ap.add_argument("--segmenter", type=Path, required=True, help="run folder / model.pt of the reference model")
    ap.add_argument("--masks", type=Path, required=True, help="labelled dataset whose masks condition sampling")
    ap.add_argument("--samplers", nargs="+", default=["ddpm:250", "ddim:50", "ddim:25", "ddim:10"])
    ap.add_argument("--n", type=int, default=32, help="number of conditioning masks")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    device = resolve_device(args.device)
    model, dcfg, info = load_diffusion(args.generator, device)
    bundle = load_bundle(args.segmenter, device)
    cfg = bundle.preprocessing
    cases = prepare_split(args.masks, "Tr", cfg, with_labels=True, progress=False, expected_labels=bundle.labels)
    _, labels = stack_samples(cases, cfg.spatial_dims)
    assert labels is not None
    labels = labels[(labels > 0).flatten(1).any(1)]
    g = torch.Generator().manual_seed(args.seed)
    chosen = labels[torch.randperm(labels.shape[0], generator=g)[: args.n]]
    masks = F.interpolate(chosen[:, None].float(), size=tuple(dcfg.image_size), mode="nearest-exact")[:, 0].long()
    rows = []
    for spec in args.samplers:
        sampler, steps = spec.split(":")
        images, t0 = [], time.perf_counter()
        for i in range(0, masks.shape[0], args.batch_size):
            gen = torch.Generator(device=device).manual_seed(args.seed + i)
            images.append(sample_images(model, masks[i:i + args.batch_size].to(device), info["num_classes"],
                                        info["image_channels"], sampler=sampler, steps=int(steps),
                                        num_train_timesteps=dcfg.num_train_timesteps, schedule=dcfg.schedule,
                                        generator=gen).float())
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        synth = torch.cat(images)
        with torch.no_grad():
            logits = bundle.network(F.interpolate(synth, size=tuple(cfg.size), mode="bilinear", align_corners=False))
        pred = F.interpolate(logits.float().softmax(1), size=tuple(dcfg.image_size), mode="bilinear",
                             align_corners=False).argmax(1).cpu()
        dice = mean_foreground_dice(pred, masks, info["num_classes"])
        rows.append({"sampler": spec, "dice_mean": float(dice.nanmean()), "dice_std": float(dice[~dice.isnan()].std()),
                     "seconds_per_image": seconds / masks.shape[0], "n": int(masks.shape[0])})
        print(f"| {spec} | {100 * rows[-1]['dice_mean']:.1f} ± {100 * rows[-1]['dice_std']:.1f} | "
              f"{rows[-1]['seconds_per_image']:.3f} |", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"device": str(device), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

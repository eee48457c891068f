"""Fidelity and speed of the label-conditioned generator, per sampler.

For N conditioning masks, sample one image per mask with each sampler (DDPM with all training
steps, DDIM with fewer) and report seconds per synthetic image, and:

* post hoc (``--segmenter``): a reference segmenter (the oracle target model, which knows what
  target images look like because it read target labels) segments the synthetic images; its
  prediction is scored against the conditioning mask (mean foreground Dice). For figures only.
* label free (``--stage1``, optionally ``--source`` / ``--target``), usable to choose a sampler or
  checkpoint: the same mask fidelity under the stage-1 target model (read no target label); style
  fidelity, the share of synthetic images a domain classifier trained on real source against real
  target Tr images (no labels) calls target, with its held-out accuracy; Frechet distances of the
  stage-1 model's bottleneck features between synthetic and real target (and real source) images.
  See ``diffuse_uda.diffusion.fidelity``.

The row ``real`` (``--samplers real ...``) scores the masks' own real images at the generator's size instead of
samples: what each measure gives a generator that reproduced them, so the other rows can be read against it.

    python benchmarks/bench_synthesis.py --generator RUN/3_diffusion/diffusion_last.pt \
        --segmenter bench/mscmr/target-supervised/seed0 --masks RUN/2_pseudolabels \
        --stage1 RUN/1_ascplus --source data/Dataset501_MSCMR_bSSFP --target data/Dataset502_MSCMR_LGE \
        --samplers ddpm:250 ddim:50 ddim:25 ddim:10 --n 32 --out synthesis_fidelity.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from diffuse_uda.config import PreprocessingConfig
from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.diffusion.fidelity import (
    fidelity_report,
    mask_fidelity,
    real_image_features,
    train_domain_classifier,
)
from diffuse_uda.diffusion.samplers import sample_images
from diffuse_uda.diffusion.trainer import load_diffusion
from diffuse_uda.networks.conditional_unet import DOMAIN_INDEX
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device


@torch.no_grad()
def real_images(dataset: Path, cfg: PreprocessingConfig, network: nn.Module, size: tuple[int, ...], max_n: int,
                seed: int, device: torch.device, batch_size: int) -> torch.Tensor:
    """Real Tr images of ``dataset`` (no labels read) at the generator's resolution, at most ``max_n``.

    2D: only slices where the stage-1 ``network`` predicts foreground, since every conditioning mask
    has foreground (empty apex/base slices would otherwise dominate the real statistics).
    """
    cases = prepare_split(dataset, "Tr", cfg, with_labels=False, progress=False)
    images, _ = stack_samples(cases, cfg.spatial_dims)
    if cfg.spatial_dims == 2:
        keep = torch.cat([(network(b.to(device)).argmax(1) > 0).flatten(1).any(1).cpu()
                          for b in images.split(batch_size)])
        images = images[keep]
    if images.shape[0] > max_n:
        g = torch.Generator().manual_seed(seed)
        images = images[torch.randperm(images.shape[0], generator=g)[:max_n].sort().values]
    if tuple(images.shape[2:]) != size:  # as the pipeline resamples the generator's training images
        images = F.interpolate(images, size=size, mode="bilinear" if len(size) == 2 else "trilinear",
                               align_corners=False, antialias=len(size) == 2)
    return images.clamp(0, 1)


REAL = "real"  # the row of the masks' own images


def conditioning_masks(dataset: Path, cfg: PreprocessingConfig, labels_of_task: dict, n: int, seed: int,
                       size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` label maps with foreground drawn from ``dataset``'s Tr split (seeded) at the generator's ``size``, and
    the images they label (for a pseudo-label dataset: the real target images)."""
    cases = prepare_split(dataset, "Tr", cfg, with_labels=True, progress=False, expected_labels=labels_of_task)
    images, labels = stack_samples(cases, cfg.spatial_dims)
    assert labels is not None
    keep = (labels > 0).flatten(1).any(1)
    images, labels = images[keep], labels[keep]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(labels.shape[0], generator=g)[:n]
    masks = F.interpolate(labels[pick][:, None].float(), size=size, mode="nearest-exact")[:, 0].long()
    mode = "bilinear" if len(size) == 2 else "trilinear"
    real = F.interpolate(images[pick], size=size, mode=mode, align_corners=False, antialias=len(size) == 2)
    return masks, real.clamp(0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, required=True, help="diffusion checkpoint")
    ap.add_argument("--segmenter", type=Path, default=None,
                    help="run folder / model.pt of the reference model (post-hoc Dice, e.g. the oracle)")
    ap.add_argument("--masks", type=Path, required=True, help="labelled dataset whose masks condition sampling")
    ap.add_argument("--stage1", type=Path, default=None,
                    help="run folder of the stage-1 target model: label-free mask fidelity and Frechet features")
    ap.add_argument("--source", type=Path, default=None, help="source dataset (Tr images, no labels read)")
    ap.add_argument("--target", type=Path, default=None, help="target dataset (Tr images, no labels read)")
    ap.add_argument("--max-real", type=int, default=512, help="at most this many real images per domain")
    ap.add_argument("--classifier-steps", type=int, default=300, help="domain classifier training steps")
    ap.add_argument("--samplers", nargs="+", default=["ddpm:250", "ddim:50", "ddim:25", "ddim:10"],
                    help="SAMPLER:STEPS[:GUIDANCE[:ETA]], e.g. ddpm:250 dpm++2m:20:2.0 ddim:25:1:1; a domain-"
                         "conditioned generator draws the target domain (guidance default 1 = none; eta: DDIM only). "
                         f"'{REAL}': the masks' own real images at the generator's size, no sampling (each "
                         "measure's value for a generator that reproduced them: the measures' ceiling)")
    ap.add_argument("--n", type=int, default=32, help="number of conditioning masks")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.segmenter is None and args.stage1 is None:
        ap.error("give --segmenter (post-hoc reference Dice) and/or --stage1 (label-free measures)")
    if (args.source or args.target) and args.stage1 is None:
        ap.error("--source / --target need --stage1 (its features and foreground select the real images)")

    device = resolve_device(args.device)
    model, dcfg, info = load_diffusion(args.generator, device)
    num_classes, gen_size = info["num_classes"], tuple(dcfg.image_size)
    reference = load_bundle(args.segmenter, device) if args.segmenter else None
    stage1 = load_bundle(args.stage1, device) if args.stage1 else None
    task_bundle = reference or stage1
    assert task_bundle is not None
    cfg = task_bundle.preprocessing
    masks, masks_images = conditioning_masks(args.masks, cfg, task_bundle.labels, args.n, args.seed, gen_size)

    # Label-free references: real images of each domain, their stage-1 features, a domain classifier.
    real: dict[str, torch.Tensor] = {}
    feats: dict[str, torch.Tensor] = {}
    classifier = None
    if stage1 is not None:
        s1cfg = stage1.preprocessing
        for domain, folder in (("source", args.source), ("target", args.target)):
            if folder is not None:
                real[domain] = real_images(folder, s1cfg, stage1.network, gen_size, args.max_real, args.seed,
                                           device, args.batch_size)
                feats[domain] = real_image_features(stage1.network, real[domain], args.batch_size, s1cfg.size)
        if len(real) == 2:
            classifier = train_domain_classifier(real["source"], real["target"], s1cfg.spatial_dims,
                                                 steps=args.classifier_steps, seed=args.seed, device=device)
            print(f"domain classifier: held-out accuracy {100 * classifier.heldout_accuracy:.1f}% "
                  f"({real['source'].shape[0]} source / {real['target'].shape[0]} target real images)", flush=True)

    print("| sampler | reference Dice, post hoc (%) | stage-1 mask fidelity (%) | style fidelity (%) "
          "| FD target | FD source | s / image |", flush=True)
    rows = []
    for spec in args.samplers:
        images, t0 = [], time.perf_counter()
        if spec == REAL:  # the masks' own real images: each measure's value for a generator that copied them
            images.append(masks_images.to(device))
        else:
            sampler, steps, *rest = spec.split(":")
            guidance = float(rest[0]) if rest else 1.0
            eta = float(rest[1]) if len(rest) > 1 else 0.0
            domain = DOMAIN_INDEX["target"] if getattr(model, "num_domains", 0) else None
            for i in range(0, masks.shape[0], args.batch_size):
                gen = torch.Generator(device=device).manual_seed(args.seed + i)
                images.append(sample_images(model, masks[i:i + args.batch_size].to(device), num_classes,
                                            info["image_channels"], sampler=sampler, steps=int(steps),
                                            num_train_timesteps=dcfg.num_train_timesteps, schedule=dcfg.schedule,
                                            generator=gen, domain=domain, guidance_scale=guidance, eta=eta).float())
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        synth = torch.cat(images)
        row: dict = {"sampler": spec, "seconds_per_image": seconds / masks.shape[0], "n": int(masks.shape[0])}
        if reference is not None:
            dice = mask_fidelity(reference.network, synth, masks.to(device), num_classes,
                                 input_size=reference.preprocessing.size).cpu()
            row.update(dice_mean=float(dice.nanmean()), dice_std=float(dice[~dice.isnan()].std()))
        if stage1 is not None:
            report = fidelity_report(synth, masks.to(device), stage1.network, classifier, feats.get("target"),
                                     feats.get("source"), num_classes, row["seconds_per_image"],
                                     input_size=stage1.preprocessing.size, batch_size=args.batch_size)
            row["label_free"] = report.model_dump(mode="json")
        rows.append(row)
        lf = row.get("label_free", {})

        def pct(v: float | None, std: float | None = None) -> str:
            return "-" if v is None else f"{100 * v:.1f}" + ("" if std is None else f" ± {100 * std:.1f}")

        def num(v: float | None) -> str:
            return "-" if v is None else f"{v:.3g}"

        print(f"| {spec} | {pct(row.get('dice_mean'), row.get('dice_std'))} "
              f"| {pct(lf.get('mask_fidelity_mean'), lf.get('mask_fidelity_std'))} | {pct(lf.get('style_fidelity'))} "
              f"| {num(lf.get('frechet_distance_target'))} | {num(lf.get('frechet_distance_source'))} "
              f"| {row['seconds_per_image']:.3f} |", flush=True)
        for note in lf.get("notes", []):
            print(f"  note: {note}", flush=True)
    if args.out:
        out = {"device": str(device),
               "reference_segmenter": str(args.segmenter) if args.segmenter else None,
               "reference_dice": "post hoc: the reference segmenter may have read target labels (oracle)",
               "stage1": str(args.stage1) if args.stage1 else None,
               "classifier_heldout_accuracy": classifier.heldout_accuracy if classifier else None,
               "n_real": {d: int(x.shape[0]) for d, x in real.items()},
               "rows": rows}
        args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()

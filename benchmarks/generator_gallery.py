"""Side-by-side gallery of several generators on the same conditioning masks (issue 14).

One row per mask: the mask | each generator's target-domain sample (same seed, same sampler) | the real image the
mask labels (for a pseudo-label dataset: the real target image it was predicted on). The masks are the first rows
that ``bench_synthesis.py`` draws with the same ``--seed``, so the gallery shows images its fidelity figures scored.

    python benchmarks/generator_gallery.py --masks RUN/2_pseudolabels --stage1 bench/TASK/ascplus/seed0 \\
        --generator default=RUN/3_diffusion/diffusion_last.pt:1 paper=PAPER/3_diffusion/diffusion_last.pt:1 \\
        --rows 6 --out docs/figures/generators_TASK.png
"""

from __future__ import annotations

import argparse
import os
import uuid
from pathlib import Path

import torch
from bench_synthesis import conditioning_masks
from matplotlib.figure import Figure

from diffuse_uda.diffusion.samplers import sample_images
from diffuse_uda.diffusion.synthesize import _display, _middle_slice  # the pipeline gallery's views
from diffuse_uda.diffusion.trainer import load_diffusion
from diffuse_uda.networks.conditional_unet import DOMAIN_INDEX
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--masks", type=Path, required=True, help="labelled dataset whose masks condition sampling")
    ap.add_argument("--stage1", type=Path, required=True, help="a run folder of the task (its preprocessing)")
    ap.add_argument("--generator", nargs="+", required=True, help="LABEL=CHECKPOINT[:GUIDANCE]")
    ap.add_argument("--sampler", default="ddim:25:1", help="SAMPLER:STEPS[:ETA]")
    ap.add_argument("--rows", type=int, default=6)
    ap.add_argument("--n", type=int, default=32, help="as bench_synthesis --n (the draw the rows come from)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    device = resolve_device(args.device)
    bundle = load_bundle(args.stage1, device)
    sampler, steps, *rest = args.sampler.split(":")
    eta = float(rest[0]) if rest else 0.0
    columns: list[tuple[str, torch.Tensor]] = []
    masks = real = None
    for spec in args.generator:
        label, _, where = spec.partition("=")
        path, _, guidance = where.partition(":")
        model, dcfg, info = load_diffusion(path, device)
        size = tuple(dcfg.image_size)
        if masks is None:
            masks, real = conditioning_masks(args.masks, bundle.preprocessing, bundle.labels, args.n, args.seed, size)
            masks, real = masks[: args.rows], real[: args.rows]
        domain = DOMAIN_INDEX["target"] if getattr(model, "num_domains", 0) else None
        images = sample_images(model, masks.to(device), info["num_classes"], info["image_channels"], sampler=sampler,
                               steps=int(steps), num_train_timesteps=dcfg.num_train_timesteps,
                               schedule=dcfg.schedule, eta=eta, domain=domain,
                               guidance_scale=float(guidance or 1.0),
                               generator=torch.Generator(device=device).manual_seed(args.seed))
        columns.append((f"{label} ({args.sampler}, guidance {float(guidance or 1.0):g})", images))
    assert masks is not None and real is not None
    num_classes = int(masks.max()) + 1
    cols = 2 + len(columns)
    fig = Figure(figsize=(2.4 * cols, 2.4 * masks.shape[0]))
    axes = fig.subplots(masks.shape[0], cols, squeeze=False)
    for r in range(masks.shape[0]):
        panels = [(_middle_slice(masks[r].numpy()),
                   {"cmap": "tab10", "vmin": 0, "vmax": max(num_classes - 1, 1)}, "mask")]
        panels += [(*_display(images[r].float().cpu().numpy()), title) for title, images in columns]
        panels.append((*_display(real[r].numpy()), "the real image of this mask"))
        for c, (img, kw, title) in enumerate(panels):
            axes[r, c].imshow(img, interpolation="nearest", **kw)
            axes[r, c].set_axis_off()
            axes[r, c].set_title(title, fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.parent / f".{args.out.name}.{uuid.uuid4().hex[:12]}.tmp.png"
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

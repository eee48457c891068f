"""Post hoc (session 20): does a task satisfy the premise of ASCPlus's structure term? Label-free.

ASCPlus's structure consistency (CutMix) asks the student's prediction on a CutMix-ed target image to equal the
CutMix of the teacher's predictions of the two images: segmentation is assumed *equivariant* to pasting a box of one
image into another. Where the anatomy inside a box is recognised from the box alone (a scan's organs), that holds;
where recognition leans on context across the image (an endoscopic frame's light and colour), a pasted box is seen
differently, and the term trains the student toward a target the network cannot match on real frames.

This script measures the premise with a model trained without the term (e.g. ``source-only``), on the unlabelled
target *training* images and, for reference, the source training images (images only; no label is read):

    equivariance = pooled foreground Dice( argmax f(cutmix(a, b, box)),  cutmix(argmax f(a), argmax f(b), box) )

over every image ``a`` with a random partner ``b`` of the same split and a random box (side fraction U(0.25, 0.5),
ASCPlus's default), for ``--draws`` draws of partners and boxes (one seed). Also reported: the same Dice inside the
boxes and outside them, and the model's plain foreground share.

    python benchmarks/cutmix_equivariance.py measure TASK RUN_DIR OUT.json [--draws 3] [--seed 0]
    python benchmarks/cutmix_equivariance.py table OUT.json...    # the BENCHMARKS.md table

(data root: $DIFFUSE_UDA_DATA or ./data).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.data.task import Task, load_task
from diffuse_uda.pipeline.appearance_choice import label_maps, pooled_dice, target_training_images
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.transforms.cutmix import cutmix, random_box_mask

BOX_PROPORTION = (0.25, 0.5)  # ASCOptions.box_proportion's default


def masked_dice(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor, classes: list[int]) -> float:
    """:func:`pooled_dice` restricted to the voxels where ``keep`` is true."""
    return pooled_dice(a[keep], b[keep], classes)


def equivariance(network: torch.nn.Module, images: torch.Tensor, spatial_dims: int, classes: list[int],
                 draws: int, seed: int) -> dict[str, float]:
    device = torch.device("cpu")
    plain, _ = label_maps(network, images, spatial_dims, device)
    g = torch.Generator().manual_seed(seed)
    whole, inside, outside = [], [], []
    for _ in range(draws):
        partner = torch.randperm(images.shape[0], generator=g)
        box = random_box_mask(images.shape[0], images.shape[2:], BOX_PROPORTION, g)
        mixed, _ = label_maps(network, cutmix(images, images[partner], box), spatial_dims, device)
        expected = cutmix(plain, plain[partner], box[:, 0])
        in_box = box[:, 0] > 0.5
        whole.append(pooled_dice(mixed, expected, classes))
        inside.append(masked_dice(mixed, expected, in_box, classes))
        outside.append(masked_dice(mixed, expected, ~in_box, classes))
    fg = float(np.mean([float((plain == c).float().mean()) for c in classes]))
    return {"equivariance": float(np.mean(whole)), "inside_box": float(np.mean(inside)),
            "outside_box": float(np.mean(outside)), "draws_sd": float(np.std(whole)),
            "foreground_share": fg, "images": int(images.shape[0])}


def source_training_images(task: Task) -> torch.Tensor:
    cases = prepare_split(task.source_dir, "Tr", task.preprocessing, with_labels=False, cache_dir=None)
    images, _ = stack_samples(cases, task.preprocessing.spatial_dims)
    return images


def table(paths: list[Path]) -> str:
    rows = ["| task | source: equivariance (inside / outside the box) | target: equivariance (inside / outside) |",
            "|---|---|---|"]
    for path in paths:
        r = json.loads(path.read_text())
        cells = [f"{100 * r[s]['equivariance']:.1f} ({100 * r[s]['inside_box']:.1f} / {100 * r[s]['outside_box']:.1f})"
                 for s in ("source", "target")]
        rows.append(f"| {r['task']} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    measure = sub.add_parser("measure", help="measure one task's equivariance")
    measure.add_argument("task")
    measure.add_argument("run", type=Path, help="run folder of a model trained without the structure term")
    measure.add_argument("out", type=Path)
    measure.add_argument("--draws", type=int, default=3)
    measure.add_argument("--seed", type=int, default=0)
    sub.add_parser("table", help="print the table of measured files").add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "table":
        print(table(args.files))
        return
    torch.set_grad_enabled(False)
    task = load_task(args.task)
    network = load_bundle(args.run).network.eval()
    classes = [v for v in task.labels.values() if v != 0]
    dims = task.preprocessing.spatial_dims
    result = {"task": task.name, "run": str(args.run), "draws": args.draws, "seed": args.seed,
              "target": equivariance(network, target_training_images(task, None), dims, classes, args.draws,
                                     args.seed),
              "source": equivariance(network, source_training_images(task), dims, classes, args.draws, args.seed)}
    result["target_over_source"] = result["target"]["equivariance"] / max(result["source"]["equivariance"], 1e-9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("task", "target_over_source")}),
          {s: round(result[s]["equivariance"], 3) for s in ("target", "source")})


if __name__ == "__main__":
    main()

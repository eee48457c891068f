"""Which classes a trained model predicts at all: voxels per class of its argmax on one split of a
dataset, preprocessed as the model was trained, beside the voxels per class of that split's labels
(a post-hoc diagnostic, like ``pseudolabel_quality.py``; no training or choice reads it).

    python benchmarks/class_presence.py bench/abdominal-ct2mr-3d/target-supervised/seed0 \\
        data/Dataset522_AbdomenMR --split Tr

Used for BENCHMARKS.md "the same task in 2D and in 3D": a class with 0 predicted voxels on the very
images the model was trained on was never learned.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.training.bundle import load_bundle


def class_voxels(run: Path, dataset: Path, split: str, cases: int | None = None) -> dict[str, dict[str, int]]:
    bundle = load_bundle(run)
    prep = bundle.preprocessing
    prepared = prepare_split(dataset, split, prep, with_labels=True, cache_dir=None, progress=False)[:cases]
    images, labels = stack_samples(prepared, prep.spatial_dims)
    with torch.no_grad():
        predicted = torch.cat([bundle.network.eval()(x).argmax(1) for x in images.split(8)])
    names = {v: k for k, v in bundle.labels.items()}
    out = {"predicted": {names[k]: int((predicted == k).sum()) for k in sorted(names)}}
    if labels is not None:
        out["labels"] = {names[k]: int((labels == k).sum()) for k in sorted(names)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder holding model.pt")
    ap.add_argument("dataset", type=Path, help="a dataset folder (nnU-Net layout)")
    ap.add_argument("--split", default="Tr", choices=["Tr", "Ts"])
    ap.add_argument("--cases", type=int, default=None, help="only the first N cases")
    args = ap.parse_args()
    print(json.dumps(class_voxels(args.run, args.dataset, args.split, args.cases), indent=1))


if __name__ == "__main__":
    main()

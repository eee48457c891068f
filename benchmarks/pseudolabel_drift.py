"""How much the target pseudo-labels change from one self-training round to the next (label-free; issue 13, session 23).

    python benchmarks/pseudolabel_drift.py bench/s22/demo-brain-t1t2/ascplus-self-training-at-pick/seed0 [...] \\
        [--out drift.json]

Round ``k``'s pseudo-labels (``self_training/round<k>_pseudolabels``) are the previous model's argmax on the target
training images: round 1's come from the chosen candidate, round 2's from round 1's model, and so on. Per pair of
consecutive rounds, the pooled foreground Dice between the two label sets (per class over all training images, then
the mean over classes; 100 = unchanged) and the share of voxels whose label changed. Only pseudo-labels are read
for these, never a target label: a candidate signal for when to stop self-training. Beside each pair, post hoc, the
test gain of the round trained on the later set over the round before it (from the rounds' committed-style
evaluations, where both have one), to see whether the drift tells which rounds still gain.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from paired_test import paired_dice, write_record  # this folder
from self_training_at_pick import round_dir

from diffuse_uda.data.dataset_json import label_path, list_cases, load_dataset_json
from diffuse_uda.data.io import read_nifti
from diffuse_uda.pipeline.appearance_choice import SELF_TRAINING_DIR


def pseudo_sets(run: Path) -> dict[int, Path]:
    """The run's finished pseudo-label folders by round, in round order."""
    found = {int(p.name.removeprefix("round").removesuffix("_pseudolabels")): p
             for p in (run / SELF_TRAINING_DIR).glob("round*_pseudolabels") if (p / "dataset.json").is_file()}
    return dict(sorted(found.items()))


def drift(a: Path, b: Path) -> dict[str, float]:
    """Pooled foreground Dice (%) between two pseudo-label sets of the same images, and the changed share (%)."""
    classes = [v for k, v in load_dataset_json(a).labels.items() if v != 0]
    inter = np.zeros(len(classes))
    total = np.zeros(len(classes))
    changed = voxels = 0
    for case in list_cases(a, "Tr"):
        x = read_nifti(label_path(a, "Tr", case))[0]
        y = read_nifti(label_path(b, "Tr", case))[0]
        for i, c in enumerate(classes):
            inter[i] += np.logical_and(x == c, y == c).sum()
            total[i] += (x == c).sum() + (y == c).sum()
        changed += int((x != y).sum())
        voxels += x.size
    dice = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    return {"pooled_dice": float(100 * dice.mean()), "changed": float(100 * changed / voxels)}


def round_gain(run: Path, k: int) -> float | None:
    """Test Dice of round ``k`` minus round ``k - 1`` (round 0: none here), post hoc; None if either is unscored."""
    a, b = round_dir(run, k - 1), round_dir(run, k)
    if k < 2 or not all((x / "evaluation" / "per_case.csv").is_file() for x in (a, b)):
        return None
    before, after, _, _ = paired_dice(a, b, same_cases=True)
    return after - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="row folders with self_training/round<k>_pseudolabels")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = []
    print("| run | pseudo-label sets | pooled foreground Dice (%) | voxels changed (%) | test gain of the round "
          "trained on the later set (post hoc) |\n|---|---|---|---|---|")
    for run in args.runs:
        sets = pseudo_sets(run)
        for j, k in zip(sets, list(sets)[1:], strict=False):
            d = drift(sets[j], sets[k])
            pair = f"round{j} -> round{k}"
            gain = round_gain(run, k)
            out.append({"run": str(run), "pair": pair, **d, "gain": gain})
            shown = "n/a" if gain is None else f"{gain:+.2f}"
            print(f"| {run} | {pair} | {d['pooled_dice']:.1f} | {d['changed']:.2f} | {shown} |")
    write_record(args.out, out)


if __name__ == "__main__":
    main()

"""Post hoc (session 13): label-free signals that could choose ASCPlus's appearance transfer, beside each
candidate's target-test Dice.

For each seed, every candidate (a bench's ``ascplus-<name>/seed<k>`` runs, models needed) segments the target
*training* images (images only). Compared with the source training *labels*:

* ``l1_all``: L1 distance of the class proportions, background included;
* ``l1_fg_rel`` / ``kl_fg_rel``: L1 distance / KL(source || predicted) of the foreground class proportions
  (each class's share of the foreground; ``kl_fg_rel`` is the ``class-ratio`` rule of
  ``pipeline/appearance_choice.py``);
* ``l1_adj``: L1 distance of the label-adjacency distributions (shares of neighbouring voxel pairs with two
  different labels, per pair of classes).

Lower is better for each; the script prints each signal's pick and the test labels' pick. The test Dice is read
from each candidate's ``evaluation/summary.json`` (test labels, for this report only).

    python benchmarks/choice_signals.py TASK BENCH_DIR paper,histogram-matching,bezier,gin,mix OUT.json

(data root: $DIFFUSE_UDA_DATA or ./data).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.data.task import default_data_root, load_task
from diffuse_uda.pipeline.appearance_choice import (
    class_ratio_kl,
    foreground_proportions,
    label_maps,
    target_training_images,
)
from diffuse_uda.training.bundle import load_bundle

SIGNALS = ("l1_all", "l1_fg_rel", "kl_fg_rel", "l1_adj")


def adjacency(maps: torch.Tensor, k: int) -> np.ndarray:
    """Normalised counts of neighbouring label pairs (i < j, i != j) along every spatial axis."""
    counts = np.zeros((k, k))
    for ax in range(1, maps.dim()):
        a = maps.narrow(ax, 0, maps.shape[ax] - 1).flatten().numpy()
        b = maps.narrow(ax, 1, maps.shape[ax] - 1).flatten().numpy()
        m = a != b
        np.add.at(counts, (np.minimum(a[m], b[m]), np.maximum(a[m], b[m])), 1)
    return counts / max(counts.sum(), 1)


def signals(pred: torch.Tensor, p_src: np.ndarray, a_src: np.ndarray, k: int) -> dict[str, float]:
    p = np.bincount(pred.flatten().numpy(), minlength=k) / pred.numel()
    # The foreground shares and their KL as the class-ratio rule computes them (pipeline.appearance_choice).
    fg_s, fg_t = p_src[1:] / p_src[1:].sum(), foreground_proportions(pred, list(range(1, k)))
    return {"l1_all": float(np.abs(p - p_src).sum()), "l1_fg_rel": float(np.abs(fg_t - fg_s).sum()),
            "kl_fg_rel": class_ratio_kl(fg_s, fg_t),
            "l1_adj": float(np.abs(adjacency(pred.long(), k) - a_src).sum()),
            "pred_fg_rel": [round(float(v), 3) for v in fg_t]}


def main() -> None:
    torch.set_num_threads(1)
    task_name, bench, candidates, out_path = sys.argv[1], Path(sys.argv[2]), sys.argv[3].split(","), Path(sys.argv[4])
    out = {}
    for seed in (0, 1, 2):
        runs = {c: bench / f"ascplus-{c}" / f"seed{seed}" for c in candidates}
        cfg = load_bundle(runs[candidates[0]]).run_config
        task = load_task(task_name, default_data_root()).with_preprocessing(cfg.preprocessing)
        k = task.num_classes
        src = prepare_split(task.source_dir, "Tr", task.preprocessing, True, None, False, task.labels)
        _, ys = stack_samples(src, task.preprocessing.spatial_dims)
        p_src = np.bincount(ys.flatten().long().numpy(), minlength=k) / ys.numel()
        a_src = adjacency(ys.long(), k)
        images = target_training_images(task, None)
        rows = {}
        for c, run in runs.items():
            cpu = torch.device("cpu")
            maps, _ = label_maps(load_bundle(run, cpu).network, images, task.preprocessing.spatial_dims, cpu)
            summary = json.loads((run / "evaluation" / "summary.json").read_text())
            dice = 100 * np.mean([v["dice"]["mean"] for v in summary["per_class"].values()])
            rows[c] = {"test_dice": round(float(dice), 1), **signals(maps, p_src, a_src, k)}
        out[seed] = {"source_fg_rel": [round(float(v), 3) for v in p_src[1:] / p_src[1:].sum()], "candidates": rows}
        best = max(rows, key=lambda c: rows[c]["test_dice"])
        for key in SIGNALS:
            pick = min(rows, key=lambda c: rows[c][key])
            print(task_name, seed, key, "pick", pick, rows[pick]["test_dice"], "best", best, rows[best]["test_dice"])
    out_path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()

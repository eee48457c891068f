"""Exploratory (BENCHMARKS.md, session 25): the pick's candidate trained longer or wider, against the same candidate at
the quick profile (2000 updates, 8 filters) and against today's ``ascplus`` (two rounds). From committed files only:

    python benchmarks/training_length.py [--results benchmarks/results] [--out record.json]

Rows: ``training-length/<task>/ascplus-<pick>/seed<S>`` (4000 updates) and the demo's seed-0 variants
``demo-diagnosis/variants-<name>/ascplus-bezier-ipa/seed0`` (16 filters; monotone curves); the references are the
candidate made in session 22 on this machine (``rule-l-design``) and its second round (``rule-m-design``). Values: per
run the mean over test cases of the mean foreground Dice (%); p: paired Wilcoxon over test cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import decision_arguments, row_mean, train_seconds, write_record  # this folder
from pipeline_round_decision import PHOTO_TASK, issue14_mark_against, stage1, two_rounds
from self_training_at_pick import committed_pick
from self_training_decision import mark_dice, pair

VARIANTS = ("width16", "monotone")


def longer(results: Path) -> list[dict]:
    """Each 4000-update run beside its 2000-update candidate and that candidate's second round."""
    rows = []
    for run in sorted((results / "training-length").glob("*/ascplus-*/seed*")):
        task, seed = run.parent.parent.name, int(run.name.removeprefix("seed"))
        pick = committed_pick(results / task / "bench.json", seed)
        if run.parent.name != f"ascplus-{pick}":
            raise SystemExit(f"{run}: not the committed pick ({pick}) of {task} at seed {seed}")
        base, dice, p = pair(stage1(results, task, seed, 0), run)
        rounds, _, p_rounds = pair(stage1(results, task, seed, 2), run)
        rows.append({"task": task, "seed": seed, "pick": pick, "updates_2000": base, "updates_4000": dice,
                     "gain": dice - base, "p": p, "two_rounds": rounds, "over_two_rounds": dice - rounds,
                     "p_over_two_rounds": p_rounds, "train_seconds_2000": train_seconds(stage1(results, task, seed, 0)),
                     "train_seconds_4000": train_seconds(run)})
    return sorted(rows, key=lambda r: (r["task"], r["seed"]))


def longer_training_row(results: Path, task: str, seed: int) -> Path:
    """``ascplus`` with ``longer_training=2`` and no round (an option since session 26; rule P was undecided) at a
    design seed: on scans the committed pick's candidate at 4000 updates (what that option trains after the choice);
    photos get no training after the choice by default, so their committed ``ascplus`` row."""
    if task == PHOTO_TASK:
        return two_rounds(results, task, seed)
    return results / "training-length" / task / f"ascplus-{committed_pick(results / task / 'bench.json', seed)}" / \
        f"seed{seed}"


def main() -> None:
    args = decision_arguments(__doc__)
    rows = longer(args.results)
    print("| task | seed | pick | 2000 updates | 4000 updates | gain (p) | two rounds (default) | "
          "4000 - two rounds (p) | train s (2000 / 4000) |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['seed']} | {r['pick']} | {r['updates_2000']:.1f} | {r['updates_4000']:.1f} | "
              f"{r['gain']:+.1f} ({r['p']:.3f}) | {r['two_rounds']:.1f} | {r['over_two_rounds']:+.1f} "
              f"({r['p_over_two_rounds']:.3f}) | {r['train_seconds_2000']:.0f} / {r['train_seconds_4000']:.0f} |")
    summary = {}
    for task in sorted({r["task"] for r in rows}):
        rs = [r for r in rows if r["task"] == task]
        lo, hi = (row_mean(args.results / task / b) for b in ("source-only", "target-supervised"))
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("updates_2000", "updates_4000", "two_rounds")}
        mark = mark_dice(lo, hi)
        summary[task] = {"seeds": len(rs), **mean, "mark_60_percent": mark,
                         "gap_closed_4000": (mean["updates_4000"] - lo) / (hi - lo)}
        print(f"{task} ({len(rs)} seeds): 2000 updates {mean['updates_2000']:.1f}, 4000 updates "
              f"{mean['updates_4000']:.1f} ({100 * summary[task]['gap_closed_4000']:.1f} % of the gap {lo:.1f} -> "
              f"{hi:.1f}; 60 % mark {mark:.1f}: {mean['updates_4000'] - mark:+.1f}), "
              f"two rounds {mean['two_rounds']:.1f}")
    variants = {}
    for name in VARIANTS:
        run = args.results / "demo-diagnosis" / f"variants-{name}" / "ascplus-bezier-ipa" / "seed0"
        base, dice, p = pair(stage1(args.results, "demo-brain-t1t2", 0, 0), run)
        variants[name] = {"dice": dice, "gain": dice - base, "p": p, "train_seconds": train_seconds(run)}
        print(f"demo seed 0, {name}: {dice:.1f} ({dice - base:+.1f} over {base:.1f}, p {p:.3f}), "
              f"{variants[name]['train_seconds']:.0f} s")
    record = {"longer": rows, "summary": summary, "variants": variants}
    if all(s["seeds"] == 3 for s in summary.values()) and len(summary) == 3:
        record["issue14_mark_against_longer_training"] = issue14_mark_against(
            args.results, longer_training_row, "with the longer training", "longer training")
    write_record(args.out, record)


if __name__ == "__main__":
    main()

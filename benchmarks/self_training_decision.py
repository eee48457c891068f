"""Rule L (BENCHMARKS.md, session 22): does one self-training round after the label-free choice earn its place in
``ascplus``'s default on scans? From committed files only:

    python benchmarks/self_training_decision.py [--results benchmarks/results] [--out decision.json]

Held-out part (the rule): per decision of session 21 (seeds 3-4 of the abdominal tasks, seed 3 of the MS-CMRSeg
tasks), the default's row (``rule-k/<task>/ascplus-floored-class-ratio``) against ``ascplus-self-training``
(``rule-l/<task>``: rule J's pick from the same candidates, then one round). L passes if the round's mean over the
6 decisions is >= 1.0 point above the default's and no task's mean is more than 1.0 point below it.

Design part (reported, not decided): the round on the committed pick of seeds 0-2 (``rule-l-design/<task>``: the
pick's candidate retrained on this machine and the round after it, ``benchmarks/self_training_at_pick.py``), paired
against that candidate, beside the committed ``ascplus`` row and the task's bounds.

Values: per seed, the mean over test cases of the mean foreground Dice (%), as the bench tables; p: two-sided
paired Wilcoxon over test cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import decision_arguments, paired_dice, row_mean, seed_dice, write_record  # this folder
from self_training_at_pick import committed_pick, round_dir

from diffuse_uda.pipeline.appearance_choice import read_choice

HELD_OUT = (("abdominal-ct2mr", 3), ("abdominal-ct2mr", 4), ("abdominal-mr2ct", 3), ("abdominal-mr2ct", 4),
            ("mscmr-bssfp2lge", 3), ("mscmr-lge2bssfp", 3))
DEFAULT_ROW, ROUND_ROW = "ascplus-floored-class-ratio", "ascplus-self-training"
AT_PICK = "ascplus-self-training-at-pick"
MIN_MEAN_GAIN, MAX_TASK_LOSS = 1.0, 1.0


def pair(reference: Path, run: Path) -> tuple[float, float, float]:
    """(reference Dice, run Dice, p) over the test cases, which both runs must have scored alike."""
    ref, dice, p, _ = paired_dice(reference, run, same_cases=True)
    return ref, dice, p


def held_out(results: Path) -> dict:
    rows = []
    for task, seed in HELD_OUT:
        default = results / "rule-k" / task / DEFAULT_ROW / f"seed{seed}"
        rounds = results / "rule-l" / task / ROUND_ROW / f"seed{seed}"
        picks = {read_choice(default).chosen, read_choice(rounds).chosen}
        if len(picks) != 1:  # the round row chose from the same candidates by the same rule
            raise SystemExit(f"{task} seed {seed}: the two rows picked {sorted(picks)}")
        j, st, p = pair(default, rounds)
        rows.append({"task": task, "seed": seed, "pick": picks.pop(), "default": j, "self_training": st,
                     "gain": st - j, "p": p})
    return verdict(rows, "default", "self_training")


def verdict(rows: list[dict], before: str, after: str) -> dict:
    """The held-out decisions' means and the rule's verdict: passes if the mean gain over the decisions is at least
    MIN_MEAN_GAIN and no task's mean gain is below -MAX_TASK_LOSS (rules L and M)."""
    tasks: dict[str, list[float]] = {r["task"]: [] for r in rows}
    for r in rows:
        tasks[r["task"]].append(r["gain"])
    per_task = {t: float(np.mean(g)) for t, g in tasks.items()}
    mean_gain = float(np.mean([r["gain"] for r in rows]))
    passed = mean_gain >= MIN_MEAN_GAIN and min(per_task.values()) >= -MAX_TASK_LOSS
    return {"decisions": rows, f"mean_{before}": float(np.mean([r[before] for r in rows])),
            f"mean_{after}": float(np.mean([r[after] for r in rows])), "mean_gain": mean_gain,
            "per_task_gain": per_task, "passes": passed}


def print_held_out(h: dict, before: str, after: str, columns: tuple[str, str], rule: str) -> None:
    print(f"| task | seed | pick | {columns[0]} | {columns[1]} | gain | p |\n|---|---|---|---|---|---|---|")
    for r in h["decisions"]:
        print(f"| {r['task']} | {r['seed']} | {r['pick']} | {r[before]:.2f} | {r[after]:.2f} | "
              f"{r['gain']:+.2f} | {r['p']:.3f} |")
    print(f"| **mean of the {len(h['decisions'])} decisions** | | | {h[f'mean_{before}']:.2f} | "
          f"{h[f'mean_{after}']:.2f} | {h['mean_gain']:+.2f} | |")
    print("per task gain: " + ", ".join(f"{t} {g:+.2f}" for t, g in h["per_task_gain"].items()))
    print(f"rule {rule}: {'passes' if h['passes'] else 'fails'} (mean gain >= {MIN_MEAN_GAIN}, no task below "
          f"-{MAX_TASK_LOSS}; mean gain minus the bar: {h['mean_gain'] - MIN_MEAN_GAIN:+.2f})")


def mark_dice(source_only: float, oracle: float) -> float:
    """Issue 13's mark: the Dice that closes 60 % of the source-only -> oracle gap."""
    return source_only + 0.6 * (oracle - source_only)


def print_design(d: list[dict], columns: dict[str, str]) -> None:
    """One row per design seed (``columns``: key -> header, before the gain and p), then per task each column's
    mean and the share of the source-only -> oracle gap it closes."""
    print("\n| task | seed | pick | " + " | ".join(columns.values()) + " | gain | p |\n|"
          + "---|" * (len(columns) + 5))
    for r in d:
        print(f"| {r['task']} | {r['seed']} | {r['pick']} | " + " | ".join(f"{r[k]:.1f}" for k in columns)
              + f" | {r['gain']:+.1f} | {r['p']:.3f} |")
    for task in sorted({r["task"] for r in d}):
        rs = [r for r in d if r["task"] == task]
        lo, hi = rs[0]["source_only"], rs[0]["oracle"]
        means = {name: float(np.mean([r[key] for r in rs])) for key, name in columns.items()}
        for name, m in means.items():
            closed = f"{100 * (m - lo) / (hi - lo):.1f} %" if hi > lo else "n/a"
            print(f"{task} ({len(rs)} seeds) {name}: {m:.1f} ({closed} of the gap {lo:.1f} -> {hi:.1f})")
        print(f"{task}: mean gain {float(np.mean([r['gain'] for r in rs])):+.1f}")
        mark = mark_dice(lo, hi)
        print(f"{task}: 60 % of the gap is {mark:.1f} Dice; against it: "
              + ", ".join(f"{name} {m - mark:+.1f}" for name, m in means.items()))


def design(results: Path) -> list[dict]:
    out = []
    for task_dir in sorted((results / "rule-l-design").glob("*")):
        task = task_dir.name
        committed = seed_dice(results / task / "ascplus")
        lo, hi = (row_mean(results / task / r) for r in ("source-only", "target-supervised"))
        for run in sorted(task_dir.glob(f"{AT_PICK}/seed*")):
            seed = int(run.name.removeprefix("seed"))
            pick = committed_pick(results / task / "bench.json", seed)
            stage1, st, p = pair(task_dir / f"ascplus-{pick}" / run.name, round_dir(run, 1))
            out.append({"task": task, "seed": seed, "pick": pick, "committed_ascplus": committed[run.name],
                        "stage1_here": stage1, "self_training": st, "gain": st - stage1, "p": p,
                        "source_only": lo, "oracle": hi})
    return out


def main() -> None:
    args = decision_arguments(__doc__)
    h = held_out(args.results)
    print_held_out(h, "default", "self_training", ("default (J)", "+ one round"), "L")
    d = design(args.results)
    if d:
        print_design(d, {"committed_ascplus": "committed ascplus", "stage1_here": "stage 1 here",
                         "self_training": "+ one round"})
    write_record(args.out, {"held_out": h, "design": d})


if __name__ == "__main__":
    main()

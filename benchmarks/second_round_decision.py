"""Rule M (BENCHMARKS.md, session 23): does a second self-training round earn its place in ``ascplus``'s default on
scans? From committed files only:

    python benchmarks/second_round_decision.py [--results benchmarks/results] [--out decision.json]

Held-out part (the rule): per decision of rules J-L (seeds 3-4 of the abdominal tasks, seed 3 of the MS-CMRSeg
tasks), round 1 (rule L's ``ascplus-self-training`` row) against round 2 made after it in the same folder
(``rule-m/<task>/ascplus-self-training/seed<S>/self_training/round<r>``). M passes if round 2's mean over the 6
decisions is >= 1.0 point above round 1's and no task's mean is more than 1.0 point below it.

Design part (reported, not decided): the second round after session 22's round 1 on the committed pick of seeds 0-2
(``rule-m-design/<task>``), beside the pick's candidate (``rule-l-design/<task>``) and the task's bounds (issue 13's
marks).

Exploratory (no rule): a third round on the design seeds where one was run (``rule-m-design``), against round 2.

Values: per seed, the mean over test cases of the mean foreground Dice (%), as the bench tables; p: two-sided
paired Wilcoxon over test cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from paired_test import decision_arguments, seed_dice  # this folder
from self_training_at_pick import ROW as AT_PICK_ROW
from self_training_at_pick import committed_pick, round_dir
from self_training_decision import HELD_OUT, ROUND_ROW, pair, print_design, print_held_out, verdict


def rounds_of(run: Path) -> tuple[Path, Path]:
    return round_dir(run, 1), round_dir(run, 2)


def held_out(results: Path) -> dict:
    rows = []
    for task, seed in HELD_OUT:
        run = results / "rule-m" / task / ROUND_ROW / f"seed{seed}"
        # Round 1 evaluated in its own folder must score what rule L's committed row scored (the same model).
        committed = seed_dice(results / "rule-l" / task / ROUND_ROW)[f"seed{seed}"]
        one, two, p = pair(*rounds_of(run))
        if abs(one - committed) > 1e-6:
            raise SystemExit(f"{task} seed {seed}: round 1 scores {one:.4f} here, rule L's row {committed:.4f}")
        seconds = json.loads((round_dir(run, 2) / "run.json").read_text())["train_seconds"]
        rows.append({"task": task, "seed": seed, "pick": committed_pick(run, seed), "round1": one, "round2": two,
                     "gain": two - one, "p": p, "round2_train_seconds": seconds})
    return verdict(rows, "round1", "round2")


def design(results: Path) -> list[dict]:
    out = []
    for task_dir in sorted((results / "rule-m-design").glob("*")):
        task = task_dir.name
        bounds = [float(np.mean(list(seed_dice(results / task / r).values())))
                  for r in ("source-only", "target-supervised")]
        for run in sorted(task_dir.glob(f"{AT_PICK_ROW}/seed*")):
            seed = int(run.name.removeprefix("seed"))
            pick = committed_pick(results / task / "bench.json", seed)
            stage1 = seed_dice(results / "rule-l-design" / task / f"ascplus-{pick}")[run.name]
            one, two, p = pair(*rounds_of(run))
            out.append({"task": task, "seed": seed, "pick": pick, "stage1": stage1, "round1": one, "round2": two,
                        "gain": two - one, "p": p, "source_only": bounds[0], "oracle": bounds[1]})
    return out


def third_round(results: Path) -> list[dict]:
    """Exploratory (no rule): round 3 against round 2 where a design seed has one (``rule-m-design``)."""
    out = []
    for run in sorted((results / "rule-m-design").glob(f"*/{AT_PICK_ROW}/seed*")):
        three = round_dir(run, 3)
        if (three / "evaluation" / "per_case.csv").is_file():
            two, dice, p = pair(rounds_of(run)[1], three)
            out.append({"task": run.parent.parent.name, "seed": int(run.name.removeprefix("seed")), "round2": two,
                        "round3": dice, "gain": dice - two, "p": p})
    return out


def main() -> None:
    args = decision_arguments(__doc__)
    h = held_out(args.results)
    print_held_out(h, "round1", "round2", ("one round (rule L)", "two rounds"), "M")
    seconds = [r["round2_train_seconds"] for r in h["decisions"]]
    print(f"round 2's training: {min(seconds):.0f}-{max(seconds):.0f} s per decision (train_seconds)")
    d = design(args.results)
    if d:
        print_design(d, {"stage1": "the pick", "round1": "one round", "round2": "two rounds"})
    third = third_round(args.results)
    if third:
        print("\nExploratory: a third round\n| task | seed | two rounds | three rounds | gain | p |\n"
              "|---|---|---|---|---|---|")
        for r in third:
            print(f"| {r['task']} | {r['seed']} | {r['round2']:.1f} | {r['round3']:.1f} | {r['gain']:+.1f} | "
                  f"{r['p']:.3f} |")
        bounds = {r["task"]: (r["source_only"], r["oracle"]) for r in d}
        for task in sorted({r["task"] for r in third}):
            rs = [r for r in third if r["task"] == task]
            lo, hi = bounds[task]
            for key in ("round2", "round3"):
                m = float(np.mean([r[key] for r in rs]))
                print(f"{task} ({len(rs)} seeds) {key[-1]} rounds: {m:.1f} ({100 * (m - lo) / (hi - lo):.1f} % of the "
                      f"gap)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"held_out": h, "design": d, "third_round": third}, indent=1) + "\n")


if __name__ == "__main__":
    main()

"""Rule N (BENCHMARKS.md, session 24): does a third self-training round earn its place in ``ascplus``'s default on
scans? From committed files only:

    python benchmarks/third_round_decision.py [--results benchmarks/results] [--out decision.json]

Held-out part (the rule): per decision of rules J-M (seeds 3-4 of the abdominal tasks, seed 3 of the MS-CMRSeg
tasks), round 2 (rule M's row) against round 3 made after it in the same folder
(``rule-n/<task>/ascplus-self-training/seed<S>/self_training/round<r>``; round 2 must score there what rule M
committed). N passes if round 3's mean over the 6 decisions is >= 1.0 point above round 2's and no task's mean is
more than 1.0 point below it.

Design part (reported, not decided): rounds 1-3 on the committed pick of seeds 0-2 (``rule-n-design/<task>``), beside
the pick's candidate (``rule-l-design/<task>``) and the task's bounds: issue 13's marks with three rounds.

Exploratory (no rule): a fourth round on the design seeds where one was run, against round 3.

Reported (no rule): the default that stands, two rounds, on the held-out demo tasks (``rule-n-demo-heldout/<task>``:
the committed pick retrained here, then rounds 1-2); gain and p: two rounds against the pick's candidate.

Values: per seed, the mean over test cases of the mean foreground Dice (%), as the bench tables; p: two-sided
paired Wilcoxon over test cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import decision_arguments, row_mean, run_dice, seed_dice, write_record  # this folder
from second_round_decision import design, exploratory_round, held_out, print_exploratory
from self_training_at_pick import ROW as AT_PICK_ROW
from self_training_at_pick import committed_pick, round_dir
from self_training_decision import pair, print_design, print_held_out

from diffuse_uda.evaluation.evaluate import load_per_case
from diffuse_uda.pipeline.experiment import EVALUATION

DEMO_HELD_OUT = "rule-n-demo-heldout"


def demo_held_out(results: Path) -> list[dict]:
    """Per held-out demo task and seed: the pick's candidate (retrained here), rounds 1 and 2, and the bounds."""
    out = []
    for task_dir in sorted((results / DEMO_HELD_OUT).glob("*")):
        task = task_dir.name
        lo, hi, dg = (row_mean(results / task / r) for r in ("source-only", "target-supervised", "source-only-dg"))
        for run in sorted(task_dir.glob(f"{AT_PICK_ROW}/seed*")):
            seed = int(run.name.removeprefix("seed"))
            pick = committed_pick(results / task / "bench.json", seed)
            stage1, two, p = pair(task_dir / f"ascplus-{pick}" / run.name, round_dir(run, 2))
            out.append({"task": task, "seed": seed, "pick": pick, "stage1": stage1,
                        "round1": run_dice(round_dir(run, 1)), "round2": two, "gain": two - stage1, "p": p,
                        "committed_ascplus": seed_dice(results / task / "ascplus")[run.name],
                        "source_only": lo, "oracle": hi, "source_only_dg": dg})
    return out


def print_class_dice(folder: Path, rows: list[dict], k: int) -> None:
    """Per class, each round's mean Dice over the test cases (%), for the seeds in ``rows``: which classes the
    rounds move."""
    for r in rows:
        run = folder / r["task"] / AT_PICK_ROW / f"seed{r['seed']}"
        per_round = [load_per_case(round_dir(run, j) / EVALUATION / "per_case.csv") for j in range(1, k + 1)]
        classes = next(iter(per_round[0].values()))
        print(f"{r['task']} seed {r['seed']}, rounds 1-{k}: " + "; ".join(
            f"{c} " + ", ".join(f"{100 * np.nanmean([case[c]['dice'] for case in pr.values()]):.1f}"
                                for pr in per_round) for c in classes))


def main() -> None:
    args = decision_arguments(__doc__)
    h = held_out(args.results, 3)
    print_held_out(h, "round2", "round3", ("two rounds (rule M)", "three rounds"), "N")
    seconds = [r["round3_train_seconds"] for r in h["decisions"]]
    print(f"round 3's training: {min(seconds):.0f}-{max(seconds):.0f} s per decision (train_seconds)")
    d = design(args.results, "rule-n-design", 3)
    if d:
        print_design(d, {"stage1": "the pick", "round1": "one round", "round2": "two rounds",
                         "round3": "three rounds"})
    fourth = exploratory_round(args.results, "rule-n-design", 4)
    if fourth:
        print_exploratory(fourth, d, 4, ("three rounds", "four rounds"))
        print_class_dice(args.results / "rule-n-design", fourth, 4)
    demo = demo_held_out(args.results)
    if demo:
        print("\nThe two-round default on the held-out demo tasks (gain and p: two rounds against the pick)")
        print_design(demo, {"committed_ascplus": "committed ascplus", "stage1": "the pick here",
                            "round1": "one round", "round2": "two rounds"})
        for task in sorted({r["task"] for r in demo}):
            print(f"{task}: source-only-dg {next(r for r in demo if r['task'] == task)['source_only_dg']:.1f}")
    write_record(args.out, {"held_out": h, "design": d, "fourth_round": fourth, "demo_held_out": demo})


if __name__ == "__main__":
    main()

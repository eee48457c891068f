"""Rule Q (BENCHMARKS.md, session 27): on rule P's held-out decisions, does the chosen candidate trained for twice the
profile's updates (4000) and then given the two self-training rounds (``ascplus`` with ``longer_training=2``) beat
today's ``ascplus`` on scans (the two rounds on the 2000-update candidate)? From committed files only:

    python benchmarks/longer_rounds_decision.py [--results benchmarks/results] [--out decision.json]

Rows: round 2 of ``rule-q/<task>/ascplus-longer-rounds/seed<S>`` (``self_training_at_pick.py --pick-iterations 4000
--rounds 2`` on rule P's 4000-update run, ``rule-p/<task>/ascplus-<pick>/seed<S>``). The two-round default they are
paired with is rule P's (``training_length_decision.references``). Q passes if the mean over the decisions is >= 1.0
point above the default's and no task's mean is more than 1.0 point below it; if the mean is 1.0 point or more below,
nothing changes; else undecided.

Reported with it, no rule: the same at the design seeds (``rule-q-design/<task>/...``) against the committed two
rounds (``rule-m-design``) and 4000 updates alone (``training-length``), issue 13's 60 % marks, and, once every grey
design task has 3 seeds, issue 14's end-to-end mark read against it. Values: per run, the mean over test cases of the
mean foreground Dice (%); p: two-sided paired Wilcoxon over test cases.
"""

from __future__ import annotations

from pathlib import Path

from paired_test import class_dice, decision_arguments, row_mean, run_dice, train_seconds, write_record  # this folder
from pipeline_round_decision import GREY_TASKS, PHOTO_TASK, issue14_mark_against, stage1, two_rounds
from self_training_at_pick import committed_pick, round_dir
from self_training_decision import pair, print_design
from training_length import longer_training_row
from training_length_decision import RULE_P, decide, references

ROW = "ascplus-longer-rounds"
RULE_Q, DESIGN = "rule-q", "rule-q-design"


def held_out(results: Path) -> list[dict]:
    rows = []
    for run in sorted((results / RULE_Q).glob(f"*/{ROW}/seed*")):
        task, seed = run.parent.parent.name, int(run.name.removeprefix("seed"))
        pick, default, candidate, rounds = references(results, task, seed)
        longer = results / RULE_P / task / f"ascplus-{pick}" / f"seed{seed}"
        two, both, p = pair(default, round_dir(run, 2))
        rows.append({"task": task, "seed": seed, "pick": pick, "two_rounds": two, "longer_rounds": both,
                     "gain": both - two, "p": p, "updates_4000": run_dice(longer),
                     "longer_round1": run_dice(round_dir(run, 1)),
                     "train_seconds_two_rounds": sum(train_seconds(r) for r in rounds),
                     "train_seconds_longer_rounds": train_seconds(longer)
                     + sum(train_seconds(round_dir(run, k)) for k in (1, 2)),
                     "per_class": {name: class_dice(r) for name, r in (
                         ("updates_2000", candidate), ("two_rounds", default), ("updates_4000", longer),
                         ("longer_rounds", round_dir(run, 2)))}})
    if not rows:
        raise SystemExit(f"{results / RULE_Q}: no {ROW} runs")
    return sorted(rows, key=lambda r: (r["task"], r["seed"]))


def longer_rounds_row(results: Path, task: str, seed: int) -> Path:
    """``ascplus`` with ``longer_training=2`` and two rounds at a design seed (photos: their committed row)."""
    if task == PHOTO_TASK:
        return two_rounds(results, task, seed)
    return round_dir(results / DESIGN / task / ROW / f"seed{seed}", 2)


def design(results: Path) -> list[dict]:
    rows = []
    for run in sorted((results / DESIGN).glob(f"*/{ROW}/seed*")):
        task, seed = run.parent.parent.name, int(run.name.removeprefix("seed"))
        two, both, p = pair(stage1(results, task, seed, 2), round_dir(run, 2))
        rows.append({"task": task, "seed": seed, "pick": committed_pick(results / task / "bench.json", seed),
                     "two_rounds": two, "updates_4000": run_dice(longer_training_row(results, task, seed)),
                     "longer_rounds": both, "gain": both - two, "p": p,
                     "source_only": row_mean(results / task / "source-only"),
                     "oracle": row_mean(results / task / "target-supervised")})
    return sorted(rows, key=lambda r: (r["task"], r["seed"]))


def main() -> None:
    args = decision_arguments(__doc__)
    h = decide(held_out(args.results), "two_rounds", "longer_rounds",
               ("two rounds (the default until now)", "4000 updates + two rounds"), "Q")
    print("\n| task | seed | 4000 updates | + round 1 | + round 2 | train s (two rounds / 4000 + two rounds) |"
          "\n|---|---|---|---|---|---|")
    for r in h["decisions"]:
        print(f"| {r['task']} | {r['seed']} | {r['updates_4000']:.1f} | {r['longer_round1']:.1f} | "
              f"{r['longer_rounds']:.1f} | {r['train_seconds_two_rounds']:.0f} / "
              f"{r['train_seconds_longer_rounds']:.0f} |")
    print("\nPer class (Dice %: 2000 updates / two rounds / 4000 updates / 4000 updates + two rounds)\n")
    for r in h["decisions"]:
        cells = [f"{c} " + " / ".join(f"{r['per_class'][k][c]:.1f}" for k in r["per_class"])
                 for c in r["per_class"]["two_rounds"]]
        print(f"{r['task']} seed {r['seed']}: " + "; ".join(cells))
    d = design(args.results)
    record = {**h, "design": d}
    if d:
        print("\nDesign seeds (reported, no rule):")
        print_design(d, {"two_rounds": "two rounds (the default until now)", "updates_4000": "4000 updates",
                         "longer_rounds": "4000 updates + two rounds"})
    if sorted({r["task"] for r in d}) == sorted(GREY_TASKS) and len(d) == 3 * len(GREY_TASKS):
        record["issue14_mark_against_longer_rounds"] = issue14_mark_against(
            args.results, longer_rounds_row, "with 4000 updates and two rounds", "4000 updates + two rounds")
    write_record(args.out, record)


if __name__ == "__main__":
    main()

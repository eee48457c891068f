"""Rule P (BENCHMARKS.md, sessions 25-26): on held-out decisions, does the chosen candidate trained for twice the
profile's updates (4000, no round) beat today's ``ascplus`` on scans (the choice, then two self-training rounds at
2000 updates each)? From committed files only:

    python benchmarks/training_length_decision.py [--results benchmarks/results] [--out decision.json]

Rows: ``rule-p/<task>/ascplus-<pick>/seed<S>`` (4000 updates). The two-round default they are paired with:
  * held-out demo tasks (picks committed in ``<task>/bench.json``): round 2 of ``rule-n-demo-heldout/<task>``
    (session 24: the committed pick retrained on this machine, then two rounds);
  * new seeds of the real tasks: ``rule-p-default/<task>/ascplus/seed<S>`` (today's ``ascplus`` run in session 26;
    its own choice is the pick, and its candidates are the ``ascplus-<name>`` rows beside it).
P passes if the 4000-update mean over the decisions is >= 1.0 point above the two-round default's and no task's
mean is more than 1.0 point below it; if the mean is 1.0 point or more below, nothing changes; else undecided.

Reported with it: the pick's candidate at 2000 updates, issue 13's 60 % mark per task, and the training time of the
4000-update run against the two rounds'. Values: per run, the mean over test cases of the mean foreground Dice (%),
as the bench tables; p: two-sided paired Wilcoxon over test cases.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import decision_arguments, row_mean, train_seconds, write_record  # this folder
from self_training_at_pick import ROW as AT_PICK_ROW
from self_training_at_pick import committed_pick, round_dir
from self_training_decision import MAX_TASK_LOSS, MIN_MEAN_GAIN, mark_dice, pair, print_held_out, verdict

RULE_P, DEFAULTS, DEMO_HELD_OUT = "rule-p", "rule-p-default", "rule-n-demo-heldout"


def references(results: Path, task: str, seed: int) -> tuple[str, Path, Path, list[Path]]:
    """(pick, the two-round default's run, the pick's candidate at 2000 updates, the rounds' run folders)."""
    fresh = results / DEFAULTS / task / "ascplus" / f"seed{seed}"
    if fresh.is_dir():
        pick = committed_pick(fresh, seed)
        return (pick, fresh, results / DEFAULTS / task / f"ascplus-{pick}" / f"seed{seed}",
                [round_dir(fresh, k) for k in (1, 2)])
    pick = committed_pick(results / task / "bench.json", seed)
    rounds = results / DEMO_HELD_OUT / task / AT_PICK_ROW / f"seed{seed}"
    return (pick, round_dir(rounds, 2), results / DEMO_HELD_OUT / task / f"ascplus-{pick}" / f"seed{seed}",
            [round_dir(rounds, k) for k in (1, 2)])


def decisions(results: Path) -> list[dict]:
    rows = []
    for run in sorted((results / RULE_P).glob("*/ascplus-*/seed*")):
        task, seed = run.parent.parent.name, int(run.name.removeprefix("seed"))
        pick, default, candidate, rounds = references(results, task, seed)
        if run.parent.name != f"ascplus-{pick}":
            raise SystemExit(f"{run}: not the pick ({pick}) of {task} at seed {seed}")
        two, longer, p = pair(default, run)
        base, _, p_base = pair(candidate, run)
        rows.append({"task": task, "seed": seed, "pick": pick, "two_rounds": two, "updates_4000": longer,
                     "gain": longer - two, "p": p, "updates_2000": base, "p_over_2000": p_base,
                     "train_seconds_4000": train_seconds(run),
                     "train_seconds_rounds": sum(train_seconds(r) for r in rounds)})
    return sorted(rows, key=lambda r: (r["task"], r["seed"]))


def outcome(h: dict) -> str:
    if h["passes"]:
        return "passes"
    return "nothing changes" if h["mean_gain"] <= -MIN_MEAN_GAIN else "undecided"


def decide(rows: list[dict], before: str, after: str, columns: tuple[str, str], rule: str) -> dict:
    """The held-out verdict with its three outcomes (rules P and Q), printed: the decisions' table, then the outcome."""
    h = verdict(rows, before, after)
    h["outcome"] = outcome(h)
    print_held_out(h, before, after, columns, rule)
    print(f"rule {rule}'s outcome: {h['outcome']} (passes: mean gain >= {MIN_MEAN_GAIN} and no task below "
          f"-{MAX_TASK_LOSS}; nothing changes: mean gain <= -{MIN_MEAN_GAIN}; else undecided)")
    return h


def main() -> None:
    args = decision_arguments(__doc__)
    h = decide(decisions(args.results), "two_rounds", "updates_4000", ("two rounds (default)", "4000 updates"), "P")
    print("\n| task | seed | pick | 2000 updates | 4000 updates | gain over 2000 (p) | train s (4000 / two rounds) |"
          "\n|---|---|---|---|---|---|---|")
    for r in h["decisions"]:
        print(f"| {r['task']} | {r['seed']} | {r['pick']} | {r['updates_2000']:.1f} | {r['updates_4000']:.1f} | "
              f"{r['updates_4000'] - r['updates_2000']:+.1f} ({r['p_over_2000']:.3f}) | "
              f"{r['train_seconds_4000']:.0f} / {r['train_seconds_rounds']:.0f} |")
    marks = {}
    for task in sorted({r["task"] for r in h["decisions"]}):
        rs = [r for r in h["decisions"] if r["task"] == task]
        lo, hi = (row_mean(args.results / task / b) for b in ("source-only", "target-supervised"))
        mean = {k: float(np.mean([r[k] for r in rs])) for k in ("updates_2000", "two_rounds", "updates_4000")}
        marks[task] = {"seeds": len(rs), "source_only": lo, "oracle": hi, "mark_60_percent": mark_dice(lo, hi),
                       **mean}
        print(f"{task} ({len(rs)} seed{'s' if len(rs) > 1 else ''}): 2000 updates {mean['updates_2000']:.1f}, two "
              f"rounds {mean['two_rounds']:.1f}, 4000 updates {mean['updates_4000']:.1f}; gap {lo:.1f} -> {hi:.1f}, "
              f"60 % mark {mark_dice(lo, hi):.1f} (4000 updates {mean['updates_4000'] - mark_dice(lo, hi):+.1f}, "
              f"two rounds {mean['two_rounds'] - mark_dice(lo, hi):+.1f})")
    write_record(args.out, {**h, "marks": marks})


if __name__ == "__main__":
    main()

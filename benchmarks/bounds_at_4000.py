"""Reported, no rule (BENCHMARKS.md, session 29): issue 13's marks on the grey design tasks read against bounds
trained as long as today's ``ascplus`` pick (4000 updates) beside the committed bounds (2000 updates). From committed
files only:

    python benchmarks/bounds_at_4000.py [--results benchmarks/results] [--out record.json]

Bounds at 4000 updates: ``bounds-4000/<task>/<row>/seed<S>`` (exported bench folders made with ``--set
training.iterations=4000``); today's ``ascplus`` (4000 updates, then two rounds): the committed design runs of rule Q
(``rule-q-design``). Values: per run the mean over test cases of the mean foreground Dice (%); per task the mean over
seeds. p: paired Wilcoxon over test cases, ``ascplus`` against ``source-only-dg`` at the same seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from longer_rounds_decision import longer_rounds_row
from paired_test import decision_arguments, seed_dice, write_record  # this folder
from self_training_decision import mark_dice, pair

FOLDER = "bounds-4000"
BOUNDS = ("source-only", "source-only-dg", "target-supervised")


def task_marks(results: Path, task: str) -> dict:
    """One task's bounds at both lengths, today's ``ascplus`` and the marks against each."""
    # The seeds with all three bounds made (a session may end before a task's last seed).
    seeds = sorted(set.intersection(*(
        {int(s.removeprefix("seed")) for s in seed_dice(results / FOLDER / task / b)} for b in BOUNDS)))
    ascplus = {s: longer_rounds_row(results, task, s) for s in seeds}
    per_seed = []
    for s in seeds:
        dg, dice, p = pair(results / FOLDER / task / "source-only-dg" / f"seed{s}", ascplus[s])
        per_seed.append({"seed": s, "ascplus": dice, "source_only_dg_4000": dg, "over_dg_4000": dice - dg, "p": p})
    mean = float(np.mean([r["ascplus"] for r in per_seed]))
    out: dict = {"seeds": seeds, "ascplus": mean, "per_seed": per_seed}
    for length, root in (("2000", results / task), ("4000", results / FOLDER / task)):
        # Both lengths over the same seeds as `ascplus` (the committed 2000-update bounds have seeds 0-2).
        bounds = {b: float(np.mean([seed_dice(root / b)[f"seed{s}"] for s in seeds])) for b in BOUNDS}
        lo, hi = bounds["source-only"], bounds["target-supervised"]
        out[f"bounds_{length}"] = bounds
        out[f"gap_closed_{length}"] = (mean - lo) / (hi - lo)
        out[f"over_mark_{length}"] = mean - mark_dice(lo, hi)
        out[f"over_dg_{length}"] = mean - bounds["source-only-dg"]
    return out


def main() -> None:
    args = decision_arguments(__doc__)
    tasks = sorted(p.name for p in (args.results / FOLDER).iterdir() if p.is_dir())
    record = {}
    print("| task | updates | source-only | source-only-dg | oracle | `ascplus` (today's default) | gap closed | "
          "against the 60 % mark | against source-only-dg |\n|---|---|---|---|---|---|---|---|---|")
    for task in tasks:
        m = record[task] = task_marks(args.results, task)
        for length in ("2000", "4000"):
            b = m[f"bounds_{length}"]
            print(f"| {task} | {length} | {b['source-only']:.1f} | {b['source-only-dg']:.1f} | "
                  f"{b['target-supervised']:.1f} | {m['ascplus']:.1f} | {100 * m[f'gap_closed_{length}']:.1f} % | "
                  f"{m[f'over_mark_{length}']:+.1f} | {m[f'over_dg_{length}']:+.1f} |")
    print("\nPer seed, `ascplus` against source-only-dg at 4000 updates (p over test cases):")
    for task in tasks:
        print(f"{task}: " + ", ".join(f"seed {r['seed']} {r['ascplus']:.1f} vs {r['source_only_dg_4000']:.1f} "
                                      f"({r['over_dg_4000']:+.1f}, p {r['p']:.3f})" for r in record[task]["per_seed"]))
    write_record(args.out, record)


if __name__ == "__main__":
    main()

"""Evaluate session 16's pre-registered rules (BENCHMARKS.md) from the committed results alone.

    python benchmarks/guard_decision.py [--results benchmarks/results] [--out FILE.json]

Rule C: the guarded class-ratio rule becomes the default of ``ascplus`` if over the 6 new held-out seed-decisions
(``demo-brain-t2t1``, ``demo-brain-t1flair``, 3 seeds each) its mean Dice is at least the agreement rule's, and on
neither new task its 3-seed mean is more than 1.0 point below agreement's. Rule D (only if C passes): the plain
class-ratio rule becomes the default instead if its mean over all 12 held-out seed-decisions (the two earlier
held-out tasks and the two new ones) is at least the guarded rule's.

Rows: ``ascplus`` was made with the agreement rule (the default until this session) and is read from
``ascplus-agreement`` where a results folder has one (after the default changed). A value is the bench table's:
per seed the mean over test cases of the mean foreground Dice.
"""

from __future__ import annotations

import json
from pathlib import Path

from paired_test import decision_arguments, seed_dice  # this folder: the per-seed value of the bench tables

NEW_HELD_OUT = ("demo-brain-t2t1", "demo-brain-t1flair")
OLD_HELD_OUT = ("abdominal-mr2ct", "mscmr-lge2bssfp")
DESIGN = ("abdominal-ct2mr", "demo-brain-t1t2", "mscmr-bssfp2lge")
GUARDED, PLAIN = "ascplus-guarded-class-ratio", "ascplus-class-ratio"
TOLERANCE = 1.0


def agreement_folder(task: Path) -> Path:
    return task / "ascplus-agreement" if (task / "ascplus-agreement").is_dir() else task / "ascplus"


def main() -> None:
    args = decision_arguments(__doc__)
    rules = {"agreement": None, "guarded": GUARDED, "class-ratio": PLAIN}
    seeds: dict[str, dict[str, dict[str, float]]] = {}
    for t in DESIGN + OLD_HELD_OUT + NEW_HELD_OUT:
        folder = args.results / t
        seeds[t] = {r: seed_dice(agreement_folder(folder) if name is None else folder / name)
                    for r, name in rules.items()}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    rows = {t: {r: mean(list(v.values())) for r, v in by_rule.items()} for t, by_rule in seeds.items()}
    decisions = lambda tasks, r: [x for t in tasks for x in seeds[t][r].values()]  # noqa: E731
    new = {r: mean(decisions(NEW_HELD_OUT, r)) for r in rules}
    every = {r: mean(decisions(OLD_HELD_OUT + NEW_HELD_OUT, r)) for r in rules}
    c = new["guarded"] >= new["agreement"] and all(rows[t]["guarded"] >= rows[t]["agreement"] - TOLERANCE
                                                   for t in NEW_HELD_OUT)
    d = c and every["class-ratio"] >= every["guarded"]
    print("| task | agreement | guarded class-ratio | class-ratio |\n|---|---|---|---|")
    for t in DESIGN + OLD_HELD_OUT + NEW_HELD_OUT:
        kind = " (design)" if t in DESIGN else " (held out, session 13-14)" if t in OLD_HELD_OUT else " (held out, new)"
        print(f"| {t}{kind} | " + " | ".join(f"{rows[t][r]:.2f}" for r in rules) + " |")
    print("| mean of the 6 new held-out decisions | " + " | ".join(f"{new[r]:.2f}" for r in rules) + " |")
    print("| mean of all 12 held-out decisions | " + " | ".join(f"{every[r]:.2f}" for r in rules) + " |")
    print(f"\nRule C (guarded class-ratio the default): {'pass' if c else 'fail'}")
    print(f"Rule D (plain class-ratio instead): {'pass' if d else 'fail' if c else 'not reached'}")
    if args.out:
        args.out.write_text(json.dumps({"seeds": seeds, "rows": rows, "new_held_out": new, "all_held_out": every,
                                        "rule_c": c, "rule_d": d}, indent=2) + "\n")


if __name__ == "__main__":
    main()

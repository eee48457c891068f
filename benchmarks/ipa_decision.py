"""Evaluate session 15's two pre-registered rules (BENCHMARKS.md) from the committed results alone.

    python benchmarks/ipa_decision.py [--results benchmarks/results] [--out FILE.json]

Rule A: the default candidate set changes (bezier -> bezier-ipa) if (1) over the four design tasks the mean of
``ascplus`` with the new set is at least that with the old set, and (2) on each held-out task the new ``ascplus`` is
at most 0.5 points below the old one. Rule B: ASCPlus with the fixed transfer bezier-ipa becomes the default if
(1) ``ascplus-bezier-ipa`` is at least the old ``ascplus`` on average over the design tasks and on at least 3 of 4,
and (2) on each held-out task at most 0.5 points below the old ``ascplus``.

A row's value is the bench table's: per seed the mean over test cases of the mean foreground Dice, then the mean
over seeds. In the results folders the old ``ascplus`` (sessions 7-14 candidate set) is ``ascplus-session12``.
"""

from __future__ import annotations

import json
from pathlib import Path

from paired_test import decision_arguments, seed_dice  # this folder: the per-seed value of the bench tables

DESIGN = ("abdominal-ct2mr", "demo-brain-t1t2", "mscmr-bssfp2lge", "polyp-kvasir2cvc")
HELD_OUT = ("abdominal-mr2ct", "mscmr-lge2bssfp")
OLD, NEW, FIXED = "ascplus-session12", "ascplus", "ascplus-bezier-ipa"
TOLERANCE = 0.5


def row_dice(folder: Path) -> float:
    """Mean over seeds of the per-seed mean over cases of the mean foreground Dice, in %."""
    seeds = list(seed_dice(folder).values())
    return sum(seeds) / len(seeds)


def main() -> None:
    args = decision_arguments(__doc__)
    rows = {t: {name: row_dice(args.results / t / name) for name in (OLD, NEW, FIXED)} for t in DESIGN + HELD_OUT}
    mean = lambda name: sum(rows[t][name] for t in DESIGN) / len(DESIGN)  # noqa: E731
    a1 = mean(NEW) >= mean(OLD)
    a2 = all(rows[t][NEW] >= rows[t][OLD] - TOLERANCE for t in HELD_OUT)
    b1 = mean(FIXED) >= mean(OLD) and sum(rows[t][FIXED] >= rows[t][OLD] for t in DESIGN) >= 3
    b2 = all(rows[t][FIXED] >= rows[t][OLD] - TOLERANCE for t in HELD_OUT)
    print(f"| task | {OLD} (old default) | {NEW} (new set) | {FIXED} |\n|---|---|---|---|")
    for t in DESIGN + HELD_OUT:
        print(f"| {t}{' (held out)' if t in HELD_OUT else ''} | " + " | ".join(f"{rows[t][n]:.2f}"
                                                                           for n in (OLD, NEW, FIXED)) + " |")
    print(f"| mean of the design tasks | {mean(OLD):.2f} | {mean(NEW):.2f} | {mean(FIXED):.2f} |")
    print(f"\nRule A (new candidate set): (1) {a1}, (2) {a2} -> {'adopt' if a1 and a2 else 'keep'}")
    print(f"Rule B (fixed bezier-ipa): (1) {b1}, (2) {b2} -> {'adopt' if b1 and b2 else 'keep'}")
    if args.out:
        args.out.write_text(json.dumps({"rows": rows, "rule_a": [a1, a2], "rule_b": [b1, b2]}, indent=2) + "\n")


if __name__ == "__main__":
    main()

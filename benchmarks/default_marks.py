"""Issue 13's marks for the default ``ascplus`` from the committed results alone (session 16 onwards).

    python benchmarks/default_marks.py [--results benchmarks/results]

Per task: the bounds, ``source-only-dg``, the previous default (``ascplus-agreement``) and the default
(``ascplus``), each the mean over seeds of the per-seed mean over test cases of the mean foreground Dice (as the
bench tables), and the share of the source-only -> oracle gap each closes (n/a where the oracle is not above
source-only).
"""

from __future__ import annotations

from paired_test import decision_arguments, seed_dice  # this folder

TASKS = ("abdominal-ct2mr", "demo-brain-t1t2", "mscmr-bssfp2lge", "polyp-kvasir2cvc", "abdominal-mr2ct",
         "mscmr-lge2bssfp", "demo-brain-t2t1", "demo-brain-t1flair")
ROWS = ("source-only", "source-only-dg", "target-supervised", "ascplus-agreement", "ascplus")


def main() -> None:
    args = decision_arguments(__doc__, record=False)
    print("| task | " + " | ".join(ROWS) + " | gap closed by ascplus (agreement -> default) |\n"
          + "|" + "---|" * (len(ROWS) + 2))
    for t in TASKS:
        v = {r: seed_dice(args.results / t / r) for r in ROWS}
        m = {r: sum(x.values()) / len(x) for r, x in v.items()}
        gap = m["target-supervised"] - m["source-only"]
        closed = [f"{100 * (m[r] - m['source-only']) / gap:.0f} %" if gap > 0 else "n/a"  # as the bench tables
                  for r in ("ascplus-agreement", "ascplus")]
        print(f"| {t} | " + " | ".join(f"{m[r]:.1f}" for r in ROWS) + f" | {closed[0]} -> {closed[1]} |")


if __name__ == "__main__":
    main()

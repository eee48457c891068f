"""Rule S (BENCHMARKS.md, session 29, registered before its runs): on the held-out photo task CVC-ClinicDB ->
Kvasir-SEG, the pick of the candidates trained without the structure term, trained again for 4000 updates without it,
against today's photo default (the choice alone: the term on, 2000 updates). From committed files only:

    python benchmarks/photo_structure_decision.py [--results benchmarks/results] [--out decision.json]

New runs: ``rule-s/polyp-cvc2kvasir/ascplus-<pick>/seed<S>`` (``--set method.structure=false --set
training.iterations=4000``); the reproduction check ``rule-s/reproduction/ascplus-mix/seed0``. Committed (session 20,
``structure-photos/``): the default ``cvc2kvasir-default/ascplus``, the no-structure choice
``cvc2kvasir-no-structure`` (its picks, its ``ascplus`` row at 2000 updates and its candidate rows) and the bounds
``cvc2kvasir-bounds``. Values: per run the mean over test cases of the mean foreground Dice (%); p: paired Wilcoxon
over the 200 test frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import decision_arguments, run_dice, seed_dice, train_seconds, write_record  # this folder
from self_training_at_pick import committed_pick
from self_training_decision import pair

TASK = "polyp-cvc2kvasir"
SEEDS = (0, 1, 2)
COMMITTED = Path("structure-photos")
BAR = 1.0  # points, and the new side higher at 2 or more of the 3 seeds


def decisions(results: Path) -> list[dict]:
    committed = results / COMMITTED
    no_term = committed / "cvc2kvasir-no-structure"
    rows = []
    for seed in SEEDS:
        pick = committed_pick(no_term / "bench.json", seed)
        run = results / "rule-s" / TASK / f"ascplus-{pick}" / f"seed{seed}"
        default, new, p = pair(committed / "cvc2kvasir-default" / "ascplus" / f"seed{seed}", run)
        short, _, p_short = pair(no_term / "ascplus" / f"seed{seed}", run)
        rows.append({"seed": seed, "pick": pick, "default": default, "new": new, "gain": new - default, "p": p,
                     "no_structure_2000": short, "p_over_no_structure_2000": p_short,
                     "train_seconds": train_seconds(run)})
    return rows


def decide(rows: list[dict]) -> str:
    gain = float(np.mean([r["gain"] for r in rows]))
    higher = sum(r["gain"] > 0 for r in rows)
    if gain >= BAR and higher >= 2:
        return "passes"
    return "fails" if gain <= -BAR else "undecided"


def main() -> None:
    args = decision_arguments(__doc__)
    rows = decisions(args.results)
    print("| seed | pick (no structure term) | default (term on, 2000 updates) | no term, 2000 updates | no term, 4000 "
          "updates | gain over the default (p) | train s |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['pick']} | {r['default']:.1f} | {r['no_structure_2000']:.1f} | {r['new']:.1f} | "
              f"{r['gain']:+.1f} ({r['p']:.2g}) | {r['train_seconds']:.0f} |")
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("default", "no_structure_2000", "new", "gain")}
    outcome = decide(rows)
    print(f"Rule S: mean gain {means['gain']:+.2f} over {len(rows)} seeds (default {means['default']:.1f} -> "
          f"{means['new']:.1f}), higher at {sum(r['gain'] > 0 for r in rows)} of {len(rows)}: {outcome}")
    bounds = {b: seed_dice(args.results / COMMITTED / "cvc2kvasir-bounds" / b) for b in ("source-only",
                                                                                          "source-only-dg")}
    bound_means = {b: float(np.mean(list(v.values()))) for b, v in bounds.items()}
    print("Beside it (session 20's bounds, 2000 updates): " + ", ".join(
        f"{b} {m:.1f} (new side {means['new'] - m:+.1f})" for b, m in bound_means.items()))
    check_run = args.results / "rule-s" / "reproduction" / "ascplus-mix" / "seed0"
    committed_run = args.results / COMMITTED / "cvc2kvasir-no-structure" / "ascplus-mix" / "seed0"
    reproduced, original = run_dice(check_run), run_dice(committed_run)
    print(f"Reproduction check (ascplus-mix without the term, seed 0, 2000 updates): {reproduced:.2f} here, "
          f"{original:.2f} committed")
    write_record(args.out, {"rule": "S", "decisions": rows, "means": means, "outcome": outcome,
                            "bounds_2000": bound_means,
                            "reproduction": {"here": reproduced, "committed": original}})


if __name__ == "__main__":
    main()

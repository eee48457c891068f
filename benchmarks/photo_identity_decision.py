"""Rules T and U (BENCHMARKS.md, session 30, each registered before its runs): on colour photos, ASCPlus without
restyling (the ``identity`` preset; U: also without the structure term). From committed files only:

    python benchmarks/photo_identity_decision.py [--results benchmarks/results] [--out decision.json]

Runs (``rule-t/``; U's folders end in ``-no-structure``, made with ``--set method.structure=false``): the exploration
on the design task Kvasir-SEG -> CVC-ClinicDB, ``design[-no-structure]/updates-<N>/ascplus-identity/seed<S>``
(``--set training.iterations=N``), which sets the rule's length L (the one with the higher mean over the seeds); the
held-out check on CVC-ClinicDB -> Kvasir-SEG, ``polyp-cvc2kvasir[-no-structure]/ascplus-identity/seed<S>`` at L
updates, against today's photo default (session 20's committed ``structure-photos/cvc2kvasir-default/ascplus``); the
CVC -> Kvasir bounds made here at each rule's L, ``bounds-<L>/<bound>/seed<S>``; at 2000 updates they are also the
check across sessions against session 20's committed ``structure-photos/cvc2kvasir-bounds`` and the bench table's
``polyp-cvc2kvasir``; and, after the decision, the bench's ``ascplus`` row made with the new photo default,
``product-check/ascplus/seed0`` (Kvasir -> CVC), beside the design run it should equal, and the default side's picks
at two seeds made again, ``default-check/ascplus-<pick>/seed<S>``, beside session 20's runs. Values: per run the
mean over test cases of the mean foreground Dice (%); p: paired Wilcoxon over the test frames.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import decision_arguments, row_mean, run_dice, seed_dice, train_seconds, write_record  # this folder
from photo_structure_decision import decide  # rule S's thresholds: +/-1.0 points, higher at 2 of 3 seeds
from self_training_decision import pair

FOLDER = Path("rule-t")
RULE_SUFFIX = {"T": "", "U": "-no-structure"}
ROW = "ascplus-identity"
DESIGN, HELD_OUT = "polyp-kvasir2cvc", "polyp-cvc2kvasir"
SEEDS = (0, 1, 2)
LENGTHS = (2000, 4000)
BOUNDS = ("source-only", "source-only-dg")
COMMITTED = Path("structure-photos")
# Committed CVC -> Kvasir bounds the bounds made here are checked against: session 20's and the bench table's.
CHECKED = (COMMITTED / "cvc2kvasir-bounds", Path(HELD_OUT))


def design(results: Path, suffix: str) -> dict:
    """The exploration: identity at both lengths beside the committed design-task rows."""
    runs = {n: seed_dice(results / FOLDER / f"design{suffix}" / f"updates-{n}" / ROW) for n in LENGTHS}
    beside = {"source-only 2000": seed_dice(results / DESIGN / "source-only"),
              "source-only 4000": seed_dice(results / "photo-training-length" / DESIGN / "updates-4000" /
                                            "source-only"),
              "source-only-dg 2000": seed_dice(results / DESIGN / "source-only-dg"),
              "ascplus (today's default) 2000": seed_dice(results / DESIGN / "ascplus")}
    means = {f"identity {n}": float(np.mean(list(v.values()))) for n, v in runs.items()}
    means.update({k: float(np.mean(list(v.values()))) for k, v in beside.items()})
    length = max(LENGTHS, key=lambda n: (means[f"identity {n}"], -n))  # a tie keeps the shorter
    per_seed = {f"identity {n}": v for n, v in runs.items()} | beside
    return {"per_seed": per_seed, "means": means, "length": length}


def decisions(results: Path, suffix: str) -> list[dict]:
    rows = []
    for seed in SEEDS:
        run = results / FOLDER / f"{HELD_OUT}{suffix}" / ROW / f"seed{seed}"
        default, new, p = pair(results / COMMITTED / "cvc2kvasir-default" / "ascplus" / f"seed{seed}", run)
        rows.append({"seed": seed, "default": default, "new": new, "gain": new - default, "p": p,
                     "train_seconds": train_seconds(run)})
    return rows


def bounds(results: Path, length: int) -> dict[str, float]:
    folder = results / FOLDER / f"bounds-{length}"
    return {b: row_mean(folder / b) for b in BOUNDS}


def default_side_made_again(results: Path, folder: str = "default-check") -> dict[str, dict[str, float]]:
    """The default side's picks made again (``<folder>/ascplus-<pick>/seed<S>``) beside session 20's committed runs
    rules T and U were paired against, keyed "ascplus-<pick> seed<S>"."""
    out = {}
    for run in sorted((results / FOLDER / folder).glob("ascplus-*/seed*")):
        original = results / COMMITTED / "cvc2kvasir-default" / run.parent.name / run.name
        out[f"{run.parent.name} {run.name}"] = {"here": run_dice(run), "committed": run_dice(original)}
    return out


def rule(results: Path, name: str) -> dict:
    suffix = RULE_SUFFIX[name]
    d = design(results, suffix)
    print(f"Rule {name}, exploration ({DESIGN}, mean Dice % per seed):\n\n| row | "
          + " | ".join(f"seed {s}" for s in SEEDS) + " | mean |\n|---|" + "---|" * (len(SEEDS) + 1))
    for row, per_seed in d["per_seed"].items():
        print(f"| {row} | " + " | ".join(f"{per_seed[f'seed{s}']:.1f}" for s in SEEDS) + f" | {d['means'][row]:.1f} |")
    length, m = d["length"], d["means"]
    print(f"\nL = {length} updates (identity: {m['identity 2000']:.1f} at 2000, {m['identity 4000']:.1f} at 4000). "
          f"Issue 13's photo marks at L: {m[f'identity {length}'] - m['source-only 2000']:+.1f} over source-only "
          f"(2000 updates), {m[f'identity {length}'] - m['source-only 4000']:+.1f} over source-only at 4000, "
          f"{m[f'identity {length}'] - m['source-only-dg 2000']:+.1f} over source-only-dg (2000); per seed over "
          "source-only at 4000: " + ", ".join(
              f"{d['per_seed'][f'identity {length}'][f'seed{s}'] - d['per_seed']['source-only 4000'][f'seed{s}']:+.1f}"
              for s in SEEDS))
    rows = decisions(results, suffix)
    print(f"\nRule {name}, held out ({HELD_OUT}):\n\n| seed | default (restyling candidates, 2000 updates) | "
          f"identity, {length} updates | gain (p) | train s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['default']:.1f} | {r['new']:.1f} | {r['gain']:+.1f} ({r['p']:.2g}) | "
              f"{r['train_seconds']:.0f} |")
    means = {k: float(np.mean([r[k] for r in rows])) for k in ("default", "new", "gain")}
    outcome = decide(rows)
    print(f"Rule {name}: mean gain {means['gain']:+.2f} over {len(rows)} seeds (default {means['default']:.1f} -> "
          f"{means['new']:.1f}), higher at {sum(r['gain'] > 0 for r in rows)} of {len(rows)}: {outcome}")
    b = bounds(results, length)
    print(f"Beside it, the bounds at {length} updates: "
          + ", ".join(f"{k} {v:.1f} (identity {means['new'] - v:+.1f})" for k, v in b.items()) + "\n")
    return {"design": d, "decisions": rows, "means": means, "outcome": outcome, "bounds": {"updates": length, **b}}


def main() -> None:
    args = decision_arguments(__doc__)
    record = {name: rule(args.results, name) for name in RULE_SUFFIX}
    passed = [n for n in RULE_SUFFIX if record[n]["outcome"] == "passes"]
    taken = max(passed, key=lambda n: record[n]["means"]["new"]) if passed else None
    print(f"Taken: {f'rule {taken}' if taken else 'neither (nothing changes)'}")
    gains = {b: record["U"]["bounds"][b] - record["T"]["bounds"][b] for b in BOUNDS}
    print("The CVC -> Kvasir bounds from T's length to U's: " + ", ".join(f"{b} {v:+.1f}" for b, v in gains.items()))
    here = seed_dice(args.results / FOLDER / "bounds-2000" / "source-only")
    committed = {str(c): seed_dice(args.results / c / "source-only") for c in CHECKED}
    for c, values in committed.items():
        print(f"Check across sessions (CVC -> Kvasir source-only, 2000 updates, here / committed {c}): "
              + ", ".join(f"{s} {here[s]:.2f} / {values[s]:.2f}" for s in values))
    # After the decision: the default side's picks made again here (session 20's candidate runs of two seeds).
    default_check = default_side_made_again(args.results)
    for name, v in default_check.items():
        print(f"Default side made again (CVC -> Kvasir {name}, 2000 updates): {v['here']:.2f} here, "
              f"{v['committed']:.2f} committed")
    product = args.results / FOLDER / "product-check" / "ascplus" / "seed0"
    check = {}
    if product.is_dir():
        design_run = args.results / FOLDER / "design-no-structure" / "updates-4000" / ROW / "seed0"
        check = {"product": run_dice(product), "design": run_dice(design_run)}
        print(f"Product check (Kvasir -> CVC seed 0, bench row ascplus with the new photo default): "
              f"{check['product']:.2f}, the design run {check['design']:.2f}")
    write_record(args.out, {"rules": record, "taken": taken,
                            "reproduction": {"here": here, "committed": committed}, "default_check": default_check,
                            "product_check": check})


if __name__ == "__main__":
    main()

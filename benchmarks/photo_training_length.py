"""Exploratory (BENCHMARKS.md, session 29): the photo rows at 2000 and at 4000 updates, one machine. From committed
files only:

    python benchmarks/photo_training_length.py [--results benchmarks/results] [--out record.json]

Runs: ``photo-training-length/<task>/updates-<N>/<row>/seed<S>`` (exported bench folders made with
``--set training.iterations=N``); a 2000-update run not made again here is the committed bench row
(``<task>/<row>/seed<S>``: this machine reproduced the five committed seed-0 runs to the digit). Per row and seed:
mean over test cases of the mean foreground Dice (%), its gain from 2000 to 4000 updates (paired Wilcoxon p over
test cases), and its distance to source-only at the same length. Runs under ``updates-4000-no-structure`` (made with
``--set method.structure=false`` as well) are compared with the same row and with source-only at 4000 updates, and
with session 14's run of the row without the term at 2000 updates (``ascplus-no-structure/<task>``).
The registered question: do the rows that change appearance gain more from the longer training than source-only
does, and does their gap to source-only close by half or more?
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import decision_arguments, train_seconds, write_record  # this folder
from self_training_decision import pair

FOLDER = "photo-training-length"
LENGTHS = (2000, 4000)
REFERENCE = "source-only"


def runs(results: Path) -> dict[tuple[str, str, int], dict[int, Path]]:
    """(task, row, seed) -> updates -> run folder, for runs made at both lengths."""
    found: dict[tuple[str, str, int], dict[int, Path]] = {}
    for length in LENGTHS:
        for per_case in sorted((results / FOLDER).glob(f"*/updates-{length}/*/seed*/evaluation/per_case.csv")):
            run = per_case.parents[1]
            key = (run.parents[2].name, run.parent.name, int(run.name.removeprefix("seed")))
            found.setdefault(key, {})[length] = run
    for (task, row, seed), by_length in found.items():
        committed = results / task / row / f"seed{seed}"
        if 2000 not in by_length and (committed / "evaluation").is_dir():
            by_length[2000] = committed
    return {k: v for k, v in found.items() if len(v) == len(LENGTHS)}


def rows(results: Path) -> list[dict]:
    out = []
    pairs = runs(results)
    for (task, row, seed), by_length in sorted(pairs.items()):
        short, long_, p = pair(by_length[2000], by_length[4000])
        out.append({"task": task, "row": row, "seed": seed, "updates_2000": short, "updates_4000": long_,
                    "gain": long_ - short, "p": p, "train_seconds_2000": train_seconds(by_length[2000]),
                    "train_seconds_4000": train_seconds(by_length[4000])})
    reference = {(r["task"], r["seed"]): r for r in out if r["row"] == REFERENCE}
    for r in out:
        ref = reference.get((r["task"], r["seed"]))
        if ref is None:
            continue
        r["below_source_only_2000"] = ref["updates_2000"] - r["updates_2000"]
        r["below_source_only_4000"] = ref["updates_4000"] - r["updates_4000"]
        r["gain_over_source_only_gain"] = r["gain"] - ref["gain"]
    return out


def without_structure(results: Path) -> list[dict]:
    """ASCPlus candidates at 4000 updates without the structure term (``updates-4000-no-structure``) beside the same
    candidate with it and beside source-only, both at 4000 updates and the same seed."""
    out = []
    for per_case in sorted((results / FOLDER).glob("*/updates-4000-no-structure/*/seed*/evaluation/per_case.csv")):
        run = per_case.parents[1]
        at_4000 = run.parents[2] / "updates-4000"
        with_term, dice, p = pair(at_4000 / run.parent.name / run.name, run)
        source_only, _, p_source_only = pair(at_4000 / REFERENCE / run.name, run)
        task = run.parents[2].name
        # The same candidate without the term at 2000 updates: session 14's committed run.
        short, _, p_short = pair(results / "ascplus-no-structure" / task / run.parent.name / run.name, run)
        out.append({"task": task, "row": run.parent.name, "seed": int(run.name.removeprefix("seed")),
                    "with_structure": with_term, "without_structure": dice, "p": p, "source_only": source_only,
                    "p_source_only": p_source_only, "without_structure_2000": short, "p_2000": p_short,
                    "train_seconds": train_seconds(run)})
    return out


def main() -> None:
    args = decision_arguments(__doc__)
    table = rows(args.results)
    print("| task | row | seed | 2000 updates | 4000 updates | gain (p) | below source-only (2000 -> 4000) | "
          "train s (2000 / 4000) |\n|---|---|---|---|---|---|---|---|")
    for r in table:
        below = (f"{r['below_source_only_2000']:+.1f} -> {r['below_source_only_4000']:+.1f}"
                 if "below_source_only_2000" in r else "")
        print(f"| {r['task']} | {r['row']} | {r['seed']} | {r['updates_2000']:.1f} | {r['updates_4000']:.1f} | "
              f"{r['gain']:+.1f} ({r['p']:.3f}) | {below} | {r['train_seconds_2000']:.0f} / "
              f"{r['train_seconds_4000']:.0f} |")
    summary = {}
    for family, members in (("ascplus candidates", [r for r in table if r["row"].startswith("ascplus")]),
                            ("fda and source-only-dg", [r for r in table if r["row"] in ("fda", "source-only-dg")])):
        members = [r for r in members if "below_source_only_2000" in r]
        if not members:
            continue
        gap = {n: float(np.mean([r[f"below_source_only_{n}"] for r in members])) for n in LENGTHS}
        gain = float(np.mean([r["gain"] for r in members]))
        extra = float(np.mean([r["gain_over_source_only_gain"] for r in members]))
        summary[family] = {"runs": len(members), "mean_gain": gain, "mean_below_source_only_2000": gap[2000],
                           "mean_below_source_only_4000": gap[4000], "mean_gain_beyond_source_only": extra}
        print(f"{family} ({len(members)} runs): mean gain from 4000 updates {gain:+.1f} ({extra:+.1f} beyond "
              f"source-only's at the same seed); {gap[2000]:.1f} points below source-only at 2000 updates, "
              f"{gap[4000]:.1f} at 4000")
    for row in sorted({r["row"] for r in table}):
        seeds = [r for r in table if r["row"] == row]
        if len(seeds) > 1:
            summary[row] = {n: float(np.mean([r[f"updates_{n}"] for r in seeds])) for n in LENGTHS}
            print(f"{row} ({len(seeds)} seeds): " + ", ".join(f"{summary[row][n]:.1f} at {n} updates"
                                                               for n in LENGTHS))
    variants = without_structure(args.results)
    for v in variants:
        print(f"{v['task']} seed {v['seed']}, {v['row']} at 4000 updates without the structure term: "
              f"{v['without_structure']:.1f} (with it {v['with_structure']:.1f}, p {v['p']:.3f}; source-only "
              f"{v['source_only']:.1f}, p {v['p_source_only']:.3f}; without it at 2000 updates "
              f"{v['without_structure_2000']:.1f}, p {v['p_2000']:.3f}), {v['train_seconds']:.0f} s")
    write_record(args.out, {"rows": table, "summary": summary, "without_structure": variants})


if __name__ == "__main__":
    main()

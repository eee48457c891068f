"""The generation ablation (paper Table 3) over seeds, from committed run folders (issue 14).

For each row (stage 1 ``ascplus``, ``diffuse-uda-M1`` ... ``M6``, ``diffuse-uda``): the mean-foreground Dice per seed
and over the seeds; every row against stage 1 and every M row against the row above it, with the paired Wilcoxon
test over all (patient, seed) pairs. A step *separates* (rule pre-registered in BENCHMARKS.md, session 18) when its
mean difference over the seeds is at least 1.0 point and that test gives p < 0.05.

``--stage1-for SEED=ROW``: the M rows of that seed were built on the stage-1 run of row ``ROW`` (e.g. a stage 1
trained again on another machine, whose runs are not bit-identical to the committed ``ascplus``); ``diffuse-uda``
is always compared with ``ascplus``, its own stage 1.

    python benchmarks/generation_ablation.py benchmarks/results/mscmr-bssfp2lge --seeds 0 1 2 \\
        --out benchmarks/results/generation_ablation.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from paired_test import case_mean_dice  # this folder

from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.evaluation.statistics import wilcoxon_paired
from diffuse_uda.pipeline.run import STAGE3

STAGE1 = "ascplus"
ROWS = [f"diffuse-uda-M{i}" for i in range(1, 7)] + ["diffuse-uda"]
MIN_POINTS = 1.0
ALPHA = 0.05


def pooled_cases(results: Path, row: str, seeds: list[int], rows_for: dict[int, str] | None = None) -> dict[str, float]:
    """``seed/case`` -> mean-foreground Dice (%) of a row's evaluated run (a pipeline row: its stage 3); ``rows_for``
    reads another row's run at the seeds it names."""
    out: dict[str, float] = {}
    for seed in seeds:
        run = results / (rows_for or {}).get(seed, row) / f"seed{seed}"
        if row != STAGE1:
            run = run / STAGE3
        if not (run / "evaluation" / "per_case.csv").exists():
            raise SystemExit(f"{run}: no evaluation/per_case.csv")
        out.update({f"seed{seed}/{case}": 100 * d for case, d in case_mean_dice(run).items()})
    return out


def compare(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """``b`` against ``a``: mean difference (points) and the paired Wilcoxon p over their common cases."""
    keys = sorted(set(a) & set(b))
    if len(keys) != len(a) or len(keys) != len(b):
        raise SystemExit("the two rows were not evaluated on the same cases")
    diff = float(np.mean([b[k] - a[k] for k in keys]))
    return {"difference": diff, "p": wilcoxon_paired([a[k] for k in keys], [b[k] for k in keys]), "pairs": len(keys)}


def _per_seed(cases: dict[str, float], seeds: list[int]) -> list[float]:
    return [float(np.mean([v for k, v in cases.items() if k.startswith(f"seed{s}/")])) for s in seeds]


def _cell(c: dict | None) -> str:
    return "—" if c is None else f"{c['difference']:+.1f} ({c['p']:.3g})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, help="a task's committed results folder (rows as sub-folders)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, help="write the table as JSON here")
    ap.add_argument("--stage1-for", action="append", default=[], metavar="SEED=ROW",
                    help="the M rows' stage 1 at SEED is row ROW's run (repeatable)")
    ap.add_argument("--rows", nargs="+", default=ROWS, help="rows to show, in order (default: M1-M6 and the default)")
    args = ap.parse_args()
    rows = list(args.rows)
    stage1_for = {int(k): v for k, _, v in (item.partition("=") for item in args.stage1_for)}
    cases = {row: pooled_cases(args.results, row, args.seeds) for row in [STAGE1, *rows]}
    m_stage1 = pooled_cases(args.results, STAGE1, args.seeds, stage1_for)
    m_stage1_per_seed = _per_seed(m_stage1, args.seeds)
    table = []
    print(f"| row | Dice per seed ({', '.join(map(str, args.seeds))}) | mean | vs stage 1 (p) | vs the row above (p) "
          "| separates |")
    print("|---|---|---|---|---|---|")
    for i, row in enumerate([STAGE1, *rows]):
        per_seed = _per_seed(cases[row], args.seeds)
        entry: dict = {"row": row, "per_seed": per_seed, "mean": float(np.mean(per_seed))}
        if row != STAGE1:
            entry["vs_stage1"] = compare(m_stage1 if row.startswith("diffuse-uda-M") else cases[STAGE1], cases[row])
        # The M rows form a sequence (each adds one step); the default is compared with stage 1 only.
        if row.startswith("diffuse-uda-M") and i >= 2 and rows[i - 2].startswith("diffuse-uda-M"):
            entry["vs_row_above"] = step = compare(cases[rows[i - 2]], cases[row])
            entry["separates"] = bool(abs(step["difference"]) >= MIN_POINTS and step["p"] < ALPHA)
        table.append(entry)
        if row == STAGE1 and stage1_for:
            print(f"| `{STAGE1}`, the M rows' own | {' / '.join(f'{v:.1f}' for v in m_stage1_per_seed)} "
                  f"| {np.mean(m_stage1_per_seed):.1f} "
                  "| — | — | — |")
        sep = {True: "yes", False: "no"}.get(entry.get("separates"), "—")
        print(f"| `{row}` | {' / '.join(f'{v:.1f}' for v in per_seed)} | {entry['mean']:.1f} "
              f"| {_cell(entry.get('vs_stage1'))} | {_cell(entry.get('vs_row_above'))} | {sep} |")
    if stage1_for:
        print(f"\nThe M rows' stage 1 (per seed: {' / '.join(f'{v:.1f}' for v in m_stage1_per_seed)}) "
              f"is {', '.join(f'seed {k}: {v}' for k, v in sorted(stage1_for.items()))}; `ascplus` elsewhere.")
    if args.out:
        atomic_write_json(args.out, {"results": str(args.results), "seeds": args.seeds, "stage1_for": stage1_for,
                                     "m_rows_stage1_per_seed": m_stage1_per_seed, "rule": {
            "min_points": MIN_POINTS, "alpha": ALPHA, "test": "paired Wilcoxon over (patient, seed) pairs"},
            "rows": table})


if __name__ == "__main__":
    main()

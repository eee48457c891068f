"""The same task in 2D (slices) and in 3D (whole volumes), one table (issue 15): target-test Dice, wall
time and peak memory of the bench rows and of an end-to-end pipeline run per dimensionality.

Reads only exported results (``benchmarks/export_results.py``), so the table is rebuilt without retraining:

    R=benchmarks/results
    python benchmarks/dims_table.py \\
        --2d $R/abdominal-ct2mr $R/abdominal-ct2mr-2d-fourier/diffuse-uda-fourier/seed0 \\
        --3d $R/abdominal-ct2mr-3d

Each ``--2d`` / ``--3d`` takes a bench folder (rows ``ENTRY/seed0``) and, optionally, a pipeline run folder. Time of a
bench row: its training; of the pipeline: every stage (a reused stage 1 counted with its own training).
Peak memory: the largest peak resident memory any of its runs recorded (the pipeline's generator and
synthesis stages do not record one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROWS = ("source-only", "target-supervised", "ascplus-paper")


def _dice(run: Path) -> float:
    summary = json.loads((run / "evaluation" / "summary.json").read_text())
    return 100.0 * summary["mean_foreground"]["dice"]["mean"]


def _run_facts(run: Path) -> tuple[float, float]:
    info = json.loads((run / "run.json").read_text())
    return float(info["train_seconds"]), float(info["peak_rss_mb"])


def rows(bench: Path, pipeline: Path | None = None, seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """``{row: (dice %, seconds, peak RSS MB)}`` for the bench rows and the pipeline (``diffuse-uda``)."""
    out = {}
    for name in ROWS:
        run = bench / name / f"seed{seed}"
        if (run / "evaluation" / "summary.json").is_file():
            out[name] = (_dice(run), *_run_facts(run))
    if pipeline is None or not (pipeline / "pipeline.json").is_file():
        return out
    info = json.loads((pipeline / "pipeline.json").read_text())
    first = info["stages"][0]
    seconds = sum(s["seconds"] for s in info["stages"][1:])
    if first["reused"]:  # a bench row's run: its own training time, as exported beside the bench
        stage1_local = bench / "ascplus-paper" / f"seed{seed}"
        stage1 = stage1_local if (stage1_local / "run.json").is_file() else Path(first["folder"])
        s1_seconds, s1_rss = _run_facts(stage1)
    else:  # trained inside this pipeline run
        s1_seconds, s1_rss = _run_facts(pipeline / Path(first["folder"]).name)
    s3_rss = _run_facts(pipeline / "5_ascplus_synth")[1]  # (its time is inside the stages' already)
    out["diffuse-uda (stage 1 = ascplus-paper)"] = (_dice(pipeline / "5_ascplus_synth"), seconds + s1_seconds,
                                                    max(s1_rss, s3_rss))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--2d", dest="two", nargs="+", type=Path, required=True, metavar="BENCH [PIPELINE]")
    ap.add_argument("--3d", dest="three", nargs="+", type=Path, required=True, metavar="BENCH [PIPELINE]")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    two, three = rows(*args.two[:2], seed=args.seed), rows(*args.three[:2], seed=args.seed)
    print("| row | 2D Dice | 3D Dice | 2D time s | 3D time s | 2D peak RSS MB | 3D peak RSS MB |")
    print("|---|---|---|---|---|---|---|")

    def cell(row: tuple[float, float, float] | None, i: int, fmt: str) -> str:
        return fmt.format(row[i]) if row else "-"

    for name in dict.fromkeys([*two, *three]):
        a, b = two.get(name), three.get(name)
        print(f"| {name} | {cell(a, 0, '{:.1f}')} | {cell(b, 0, '{:.1f}')} | {cell(a, 1, '{:.0f}')} | "
              f"{cell(b, 1, '{:.0f}')} | {cell(a, 2, '{:.0f}')} | {cell(b, 2, '{:.0f}')} |")


if __name__ == "__main__":
    main()

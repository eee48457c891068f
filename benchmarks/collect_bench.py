"""Write the bench table from whatever runs of a bench folder are complete (evaluated).

    python benchmarks/collect_bench.py bench/mscmr mscmr-bssfp2lge [--data-root data]
        [--methods a,b,c] [--rows-from OTHER_FOLDER ...]

Useful while a long bench is still running, or to merge folders that were filled by separate
commands; the table is the same as `diffuse-uda bench` writes (bench.md / .csv / .json).
With --rows-from, a --methods row that FOLDER does not hold is read from the first of those folders
that does (a committed table's rows beside runs made later); bench.json names each run's folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from diffuse_uda.data.task import load_task
from diffuse_uda.pipeline.bench import write_bench_table
from diffuse_uda.pipeline.experiment import EVALUATION
from diffuse_uda.pipeline.run import PIPELINE_MANIFEST, stage3_folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("task")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--methods", default=None, help="comma-separated order (default: folder names)")
    ap.add_argument("--rows-from", type=Path, action="append", default=[],
                    help="folder to read a --methods row from when FOLDER lacks it (repeatable, first wins)")
    args = ap.parse_args()
    task = load_task(args.task, args.data_root)
    names = args.methods.split(",") if args.methods else sorted(p.name for p in args.folder.iterdir() if p.is_dir())
    runs: dict[str, dict[int, Path]] = {}
    pipelines: dict[str, dict[int, Path]] = {}  # a pipeline row's folder (its timings)
    for name in names:
        holders = [f for f in (args.folder, *args.rows_from) if (f / name).is_dir()]
        if not holders:
            raise SystemExit(f"{name}: no such row in {args.folder}" + "".join(f" or {f}" for f in args.rows_from))
        for seed_dir in sorted((holders[0] / name).glob("seed*")):
            # A pipeline entry (diffuse-uda*) is evaluated in its model's folder: stage 3's, or stage 1's where the
            # synthetic check skipped stage 3 (pipeline.json says which).
            piped = (seed_dir / PIPELINE_MANIFEST).is_file()
            run = stage3_folder(seed_dir) if piped else seed_dir
            if (run / EVALUATION / "summary.json").is_file() and (run / "run.json").is_file():
                runs.setdefault(name, {})[int(seed_dir.name[4:])] = run
                if piped:
                    pipelines.setdefault(name, {})[int(seed_dir.name[4:])] = seed_dir
    print((write_bench_table(task, runs, args.folder, pipelines) / "bench.md").read_text())


if __name__ == "__main__":
    main()

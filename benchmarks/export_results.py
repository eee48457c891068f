"""Copy the small outputs of a bench folder into the repository (never models), so its tables and
paired tests can be regenerated without retraining:

    python benchmarks/export_results.py bench/abdominal-ct2mr benchmarks/results/abdominal-ct2mr

Copied: bench.json / bench.md / bench.csv; per run: run.json, evaluation/summary.json and
per_case.csv, appearance_choice.json, synthetic_check.json (``synthetic_check_runs.py``); per pipeline run:
pipeline.json and the stage manifests (stage.json, generator_choice.json), and the stage-3 evaluation a pipeline run
reused from another run.
``python benchmarks/collect_bench.py OUT TASK`` then rewrites the
same table from the copy.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

SMALL = ("bench.json", "bench.md", "bench.csv", "pseudolabel_quality.json", "candidate_ensemble.json")
PER_RUN = ("run.json", "appearance_choice.json", "pipeline.json", "stage.json", "generator_choice.json",
           "synthetic_check.json", "evaluation/summary.json", "evaluation/per_case.csv")


def export(bench: Path, out: Path, rows: list[str] | None = None, tables: bool = True) -> list[Path]:
    """``rows``: only these rows' runs (the tables are copied whole; a bench run with ``--methods`` of those rows
    writes tables of those rows alone). ``tables=False``: the runs alone (for rows a script made beside the bench,
    whose folder's tables describe another call)."""
    copied = []
    for name in SMALL if tables else ():
        if (bench / name).is_file():
            copied.append(_copy(bench / name, out / name))
    for path in sorted(bench.rglob("*")):
        rel = path.relative_to(bench)
        if not path.is_file() or len(rel.parts) < 2 or (rows is not None and rel.parts[0] not in rows):
            continue
        tail = "/".join(rel.parts[-2:]) if rel.parts[-2] == "evaluation" else rel.name
        if tail in PER_RUN and "report" not in rel.parts:
            copied.append(_copy(path, out / rel))
        if path.name == "pipeline.json":
            copied += _reused_stage3(path.parent, out / rel.parent)
    return copied


def _reused_stage3(run: Path, out: Path) -> list[Path]:
    """A pipeline run whose model is not its own stage 3 (it reused another run's identical stage 3,
    ``share_stages_with``, or the synthetic check skipped stage 3 and the model is stage 1's) has no stage-3 folder
    of its own: its row is that model's evaluation, copied under the stage-3 name the tables read (the run's
    ``pipeline.json``, copied too, names the model's stage)."""
    from diffuse_uda.pipeline.run import STAGE3, stage3_folder

    stage3 = stage3_folder(run)
    if stage3.resolve() == (run / STAGE3).resolve():
        return []
    return [_copy(stage3 / name, out / STAGE3 / name) for name in PER_RUN if (stage3 / name).is_file()]


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--rows", default=None, help="comma-separated rows to copy the runs of (default: every row)")
    ap.add_argument("--no-tables", action="store_true", help="copy the runs only, not the folder's bench tables")
    args = ap.parse_args()
    copied = export(args.bench, args.out, args.rows.split(",") if args.rows else None, tables=not args.no_tables)
    size = sum(p.stat().st_size for p in copied)
    print(f"{len(copied)} files, {size / 1024:.0f} KiB -> {args.out}")


if __name__ == "__main__":
    main()

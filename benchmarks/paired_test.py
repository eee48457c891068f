"""Each evaluated run against one reference run: mean-foreground Dice difference and the paired
Wilcoxon p-value over test cases (e.g. every Table-3 row against its stage-1 ascplus).

    python benchmarks/paired_test.py bench/mscmr/ascplus/seed0 bench/mscmr/diffuse-uda-M*/seed0/5_ascplus_synth

Reads only the runs' ``evaluation/per_case.csv`` (written by the shared evaluation path).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffuse_uda.evaluation.evaluate import load_per_case
from diffuse_uda.evaluation.statistics import wilcoxon_paired
from diffuse_uda.pipeline.experiment import EVALUATION

RESULTS = Path(__file__).resolve().parent / "results"


def decision_arguments(doc: str | None, record: bool = True) -> argparse.Namespace:
    """The command line of the decision scripts: ``--results`` (the committed results folder) and, with ``record``,
    ``--out`` (where to write the decision record)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=RESULTS)
    if record:
        ap.add_argument("--out", type=Path, default=None)
    return ap.parse_args()


def write_record(out: Path | None, record: object) -> None:
    """Write a decision record (``--out``) as the committed records are: JSON, indent 1, a final newline."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1) + "\n")


def case_mean_dice(run: Path) -> dict[str, float]:
    """Case id -> Dice averaged over the foreground classes."""
    per_case = load_per_case(run / EVALUATION / "per_case.csv")
    return {case: float(np.nanmean([m["dice"] for m in classes.values()])) for case, classes in per_case.items()}


def seed_averaged_dice(runs: list[Path]) -> dict[str, float]:
    """Case id -> :func:`case_mean_dice` averaged over the runs (a row's seeds, as the bench tables' paired test
    reads it)."""
    per_run = [case_mean_dice(run) for run in runs]
    return {case: float(np.mean([r[case] for r in per_run])) for case in per_run[0]}


def class_dice(run: Path) -> dict[str, float]:
    """Class -> Dice (%) averaged over the test cases of one run folder."""
    per_case = load_per_case(run / EVALUATION / "per_case.csv").values()
    classes = next(iter(per_case))
    return {c: 100 * float(np.nanmean([case[c]["dice"] for case in per_case])) for c in classes}


def run_dice(run: Path) -> float:
    """One run folder's bench value: the mean over cases of :func:`case_mean_dice`, in %."""
    means = list(case_mean_dice(run).values())
    return 100 * sum(means) / len(means)


def seed_dice(row: Path) -> dict[str, float]:
    """A bench row's folder (``seed*/`` runs) -> per seed, :func:`run_dice` (the bench tables' value)."""
    out = {per_case.parent.parent.name: run_dice(per_case.parent.parent)
           for per_case in sorted(Path(row).glob(f"seed*/{EVALUATION}/per_case.csv"))}
    if not out:
        raise SystemExit(f"{row}: no evaluated seeds")
    return out


def row_mean(row: Path) -> float:
    """A bench row's value over its seeds: the mean of :func:`seed_dice` (the tables' mean)."""
    return float(np.mean(list(seed_dice(row).values())))


def train_seconds(run: Path) -> float:
    """A run folder's recorded training time (``run.json``)."""
    return float(json.loads((Path(run) / "run.json").read_text())["train_seconds"])


def paired_dice(reference: Path, run: Path, same_cases: bool = False) -> tuple[float, float, float, int]:
    """(reference, run) mean Dice in % over the test cases both scored, the paired Wilcoxon p over those cases, and
    their number; ``same_cases``: stop unless both runs scored the same cases."""
    ref, dice = case_mean_dice(reference), case_mean_dice(run)
    if same_cases and set(ref) != set(dice):
        raise SystemExit(f"{reference} and {run} scored different test cases")
    cases = sorted(set(ref) & set(dice))
    return (100 * float(np.mean([ref[c] for c in cases])), 100 * float(np.mean([dice[c] for c in cases])),
            wilcoxon_paired(dice, ref), len(cases))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference", type=Path, help="evaluated run folder to compare against")
    ap.add_argument("runs", type=Path, nargs="+", help="evaluated run folders")
    args = ap.parse_args()
    ref = case_mean_dice(args.reference)
    print(f"reference {args.reference}: mean Dice {100 * np.mean(list(ref.values())):.1f} over {len(ref)} cases")
    for run in args.runs:
        reference, mean, p, n = paired_dice(args.reference, run)
        print(f"{run}: {mean:.1f} ({mean - reference:+.1f}), Wilcoxon p = {p:.3g} over {n} cases")


if __name__ == "__main__":
    main()

"""Session 36 (BENCHMARKS.md, registered before its runs): the synthetic check with source-mask pairs (rule X, now the
pipeline's default) at seeds 1 and 2 of the held-out tasks, abdominal CT -> MR and the demo, where session 35's
issue-14 mark with the check (+1.23) assumed it keeps the synthetic pairs. From committed files only:

    python benchmarks/synthetic_check_heldout_seeds.py [--results benchmarks/results] [--out record.json]

Runs, in ``synthetic-check/`` beside session 35's seed-0 ones (made here with Session 35 (c)'s commands at
``--seed 1`` and ``--seed 2``): ``heldout/stage1/<task>`` (today's ``ascplus`` default),
``heldout/pipeline/<task>/default/seed<S>`` (stages 2-5 from it, stage 3 always trained) and
``check-source-masks/<task>/seed<S>`` (the check on it). A run not committed is reported missing.

Reported per run, as ``synthetic_check_decision.py`` reports session 35's: both agreements, the check's decision, the
pipeline against its own stage 1 (paired Wilcoxon over test cases), whether rule X's reading calls the decision
right, each segmenter's test Dice (post hoc); then rule R's committed rows at the same seed (made on another
machine), and issue 14's mark with each measured outcome applied to them (a drop makes that seed's pipeline stage
1's model; a seed not measured stays as session 35 assumed: kept).
"""

from __future__ import annotations

from pathlib import Path

from longer_rounds_decision import longer_rounds_row
from paired_test import decision_arguments, run_dice, write_record  # this folder
from pipeline_default_decision import issue14_on_default, pipeline_from_default
from pipeline_round_decision import PHOTO_TASK, STAGE3
from self_training_at_pick import round_dir
from synthetic_check_decision import (
    FOLDER,
    HELD_OUT,
    ROW,
    check_row,
    design_runs,
    design_runs_with_check,
    print_mark,
    print_rows,
    right,
)

SEEDS = (1, 2)
VARIANT = "check-source-masks"
VERDICT = {True: "yes", False: "no", None: "either"}


def heldout_seed_runs(results: Path) -> dict[tuple[str, int], tuple[Path, Path]]:
    """(task, seed) -> (stage 1 run, pipeline run folder) of the committed session-36 held-out runs."""
    out = {}
    for seed in SEEDS:
        for task in HELD_OUT:
            pipeline = results / FOLDER / "heldout" / "pipeline" / task / "default" / f"seed{seed}"
            checked = results / FOLDER / VARIANT / task / f"seed{seed}" / "synthetic_check.json"
            if (pipeline / STAGE3 / "evaluation" / "per_case.csv").is_file() and checked.is_file():
                stage1 = round_dir(results / FOLDER / "heldout" / "stage1" / task / ROW / f"seed{seed}", 2)
                out[task, seed] = (stage1, pipeline)
    return out


def main() -> None:
    args = decision_arguments(__doc__)
    rows = [check_row(args.results, VARIANT, task, seed, *runs)
            for (task, seed), runs in heldout_seed_runs(args.results).items()]
    missing = [f"{t} seed {s}" for s in SEEDS for t in HELD_OUT if not any(
        r["task"] == t and r["seed"] == s for r in rows)]
    print(f"The check with source-mask pairs at seeds {', '.join(map(str, SEEDS))} of the held-out tasks:\n")
    print_rows(rows)
    if missing:
        print(f"\nMissing: {', '.join(missing)}")
    for r in rows:  # rule R's committed rows at the same seed (made on another machine)
        committed = (run_dice(longer_rounds_row(args.results, r["task"], r["seed"])),
                     run_dice(pipeline_from_default(args.results, r["task"], r["seed"]) / STAGE3))
        print(f"{r['task']} seed {r['seed']} as committed by rule R (another machine): stage 1 {committed[0]:.1f}, "
              f"pipeline {committed[1]:.1f} ({committed[1] - committed[0]:+.1f}); made here: {r['stage1']:.1f}, "
              f"{r['pipeline']:.1f} ({r['gain']:+.1f}); the check {'keeps' if r['use_synthetic'] else 'drops'} the "
              f"pairs ({r['synthetic_agreement'] - r['source_agreement']:+.1f}), right: {VERDICT[right(r)]}")
    record: dict = {"session": 36, "seeds": list(SEEDS), "rows": rows, "missing": missing}
    # Issue 14's mark as session 35 printed it (the polyps' model: stage 1's at every seed, the check having dropped
    # their pairs at all three design seeds), with the outcomes measured here applied to rule R's rows.
    design = [check_row(args.results, VARIANT, PHOTO_TASK, s, *runs)
              for s, runs in design_runs(args.results)[PHOTO_TASK].items()]
    dropped = {(r["task"], r["seed"]) for r in rows if not r["use_synthetic"]}
    if rows and all(not r["use_synthetic"] for r in design):
        def held_pipeline(task: str):
            def run(results: Path, seed: int) -> Path:
                if (task, seed) in dropped:
                    return longer_rounds_row(results, task, seed)  # the check skips stage 3: stage 1's model
                return pipeline_from_default(results, task, seed) / STAGE3
            return run

        made = design_runs_with_check()
        made.update({t: (lambda results, seed, t=t: longer_rounds_row(results, t, seed), held_pipeline(t))
                     for t in HELD_OUT})
        mark = issue14_on_default(args.results, made=made)
        measured = sorted({r["seed"] for r in rows} | {0})
        drops = ", ".join(f"{t} seed {s}" for t, s in sorted(dropped)) or "none"
        print(f"\nIssue 14's mark with the check: the polyps' model is stage 1's at every seed; on the held-out "
              f"tasks the check is measured at seeds {', '.join(map(str, measured))} (drops: {drops}), a seed not "
              f"measured assumed kept:\n")
        print_mark(mark)
        record["issue14_with_check"] = mark
    write_record(args.out, record)


if __name__ == "__main__":
    main()

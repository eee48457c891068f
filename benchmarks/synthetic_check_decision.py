"""Session 35, rule W (BENCHMARKS.md, registered before the check ran on real data): does the label-free synthetic
check (``synthetic_check_runs.py``) keep the synthetic pairs where the pipeline gains over its stage 1 and drop them
where it loses? And (exploratory, registered after rule W failed, before its runs) does it with the synthetic-only
segmenter trained on the pairs drawn from source masks alone? From committed files only:

    python benchmarks/synthetic_check_decision.py [--results benchmarks/results] [--out record.json]

Runs, in ``synthetic-check/``, on the pipeline runs behind the committed rows (MS-CMRSeg:
``mscmr-pipeline-default/pipeline/default``, session 34; Kvasir -> CVC and CVC -> Kvasir: ``polyp-*-rule-u/
diffuse-uda``, sessions 31-33), seeds 0-2:

* ``check/<task>/seed<S>``: the check with every synthetic pair (rule W): its record (``synthetic_check.json``) and,
  post hoc, the test evaluation of its two segmenters (``synthetic-only/``, ``source-only/``);
* ``check-source-masks/<task>/seed<S>``: the same with the synthetic-only segmenter trained on the pairs drawn from
  source masks only (``--masks source``; the source-only segmenter is the same run): rule X's design runs;
* rule X's held-out runs: at seed 0 of abdominal CT -> MR and the demo, the pipeline from today's ``ascplus`` default
  made in session 35 (``heldout/stage1/<task>``: ``self_training_at_pick.py --pick-iterations 4000 --rounds 2``;
  ``heldout/pipeline/<task>/default/seed0``: ``pipeline_at_round.py --round 2``) and both checks on it
  (``check-source-masks/<task>/seed0``, ``check/<task>/seed0``).

Reported per run: both agreements (mean foreground Dice, %, against stage 1's pseudo-labels on the target training
images), the check's decision and seconds, the pipeline against its own stage 1 (mean over test cases of the mean
foreground Dice, two-sided paired Wilcoxon over test cases) and, post hoc, each segmenter's test Dice.
"""

from __future__ import annotations

import json
from pathlib import Path

from longer_rounds_decision import longer_rounds_row
from mscmr_pipeline_default import pipeline as mscmr_pipeline
from mscmr_pipeline_default import stage1 as mscmr_stage1
from paired_test import decision_arguments, run_dice, write_record  # this folder
from photo_pipeline_marks import pipeline as kvasir_pipeline
from photo_pipeline_marks import stage1 as kvasir_stage1
from pipeline_default_decision import issue14_on_default, pipeline_from_default, print_issue14_rows
from pipeline_round_decision import PHOTO_TASK, STAGE3
from self_training_at_pick import round_dir
from self_training_decision import pair

FOLDER = Path("synthetic-check")
SEEDS = (0, 1, 2)
CVC2KVASIR = Path("polyp-cvc2kvasir-rule-u")
ALPHA = 0.05  # registered: a photo seed counts where the pipeline is significantly below its stage 1
HELD_OUT = ("abdominal-ct2mr", "demo-brain-t1t2")
ROW = "ascplus-longer-rounds"
VARIANTS = {"check": "every synthetic pair", "check-source-masks": "pairs from source masks only"}


def design_runs(results: Path) -> dict[str, dict[int, tuple[Path, Path]]]:
    """Task -> seed -> (stage 1 run, pipeline run folder) of the committed rows rule W is decided on."""
    return {
        "mscmr-bssfp2lge": {s: (mscmr_stage1(results, s), mscmr_pipeline(results, s)) for s in SEEDS},
        "polyp-kvasir2cvc": {s: (kvasir_stage1(results, s), kvasir_pipeline(results, s)) for s in SEEDS},
        "polyp-cvc2kvasir": {s: (results / CVC2KVASIR / "ascplus" / f"seed{s}",
                                 results / CVC2KVASIR / "diffuse-uda" / f"seed{s}") for s in SEEDS},
    }


def heldout_runs(results: Path) -> dict[str, dict[int, tuple[Path, Path]]]:
    """Task -> {0: (stage 1 run, pipeline run folder)} of rule X's held-out runs, where they are committed."""
    out = {}
    for task in HELD_OUT:
        pipeline = results / FOLDER / "heldout" / "pipeline" / task / "default" / "seed0"
        if (pipeline / STAGE3 / "evaluation" / "per_case.csv").is_file():
            out[task] = {0: (round_dir(results / FOLDER / "heldout" / "stage1" / task / ROW / "seed0", 2), pipeline)}
    return out


def check_row(results: Path, variant: str, task: str, seed: int, stage1: Path, pipeline: Path) -> dict:
    folder = results / FOLDER / variant / task / f"seed{seed}"
    check = json.loads((folder / "synthetic_check.json").read_text())
    own, piped, p = pair(stage1, pipeline / STAGE3)
    stages = json.loads((pipeline / "pipeline.json").read_text())["stages"]
    return {"task": task, "seed": seed, "synthetic_agreement": check["synthetic_agreement"],
            "source_agreement": check["source_agreement"], "use_synthetic": check["use_synthetic"],
            "check_seconds": check["seconds"], "n_target_images": check["n_target_images"],
            "stages_2_5_seconds": sum(st["seconds"] or 0.0 for st in stages if not st["stage"].startswith("1 ")),
            "stage1": own, "pipeline": piped, "gain": piped - own, "p": p,
            "synthetic_only_test": run_dice(folder / "synthetic-only"),
            "source_only_test": run_dice(folder / "source-only")}


def right(row: dict) -> bool | None:
    """The registered reading: keep where the pipeline gains (every MS-CMRSeg seed), drop where it is significantly
    below stage 1; None where either is right (a loss that is not significant)."""
    if row["gain"] > 0:
        return row["use_synthetic"]
    return (not row["use_synthetic"]) if row["p"] < ALPHA else None


def print_rows(rows: list[dict]) -> None:
    print("| task | seed | agreement: synthetic-only | source-only | keeps synthetic | check s | stages 2-5 s | "
          "stage 1 | pipeline | gain | p | right | synthetic-only test | source-only test |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        verdict = {True: "yes", False: "**no**", None: "either"}[right(r)]
        print(f"| {r['task']} | {r['seed']} | {r['synthetic_agreement']:.1f} | {r['source_agreement']:.1f} | "
              f"{'yes' if r['use_synthetic'] else 'no'} | {r['check_seconds']:.0f} | {r['stages_2_5_seconds']:.0f} | "
              f"{r['stage1']:.1f} | {r['pipeline']:.1f} | {r['gain']:+.1f} | {r['p']:.3g} | {verdict} | "
              f"{r['synthetic_only_test']:.1f} | {r['source_only_test']:.1f} |")


def main() -> None:
    args = decision_arguments(__doc__)
    record: dict = {"rule": "W"}
    for variant, what in VARIANTS.items():
        rows = [check_row(args.results, variant, t, s, *runs) for t, seeds in design_runs(args.results).items()
                for s, runs in seeds.items()
                if (args.results / FOLDER / variant / t / f"seed{s}" / "synthetic_check.json").is_file()]
        n_right = sum(right(r) is True for r in rows)
        n_counted = sum(right(r) is not None for r in rows)
        print(f"\nThe check with {what} ({variant}/, {len(rows)} runs):\n")
        print_rows(rows)
        print(f"\nRight where it counts: {n_right} of {n_counted}")
        record[variant] = {"rows": rows, "right": n_right, "counted": n_counted}
    passes = all(right(r) is not False for r in record["check"]["rows"]) and len(record["check"]["rows"]) == 9
    print(f"\nRule W (the check with every synthetic pair becomes a default stage of the pipeline): "
          f"{'pass' if passes else 'fail'}")
    record["passes"] = passes
    design = record["check-source-masks"]["rows"]
    candidate = len(design) == 9 and all(right(r) is not False for r in design)
    margins = ", ".join(f"{r['synthetic_agreement'] - r['source_agreement']:+.1f}" for r in design)
    print(f"Rule X's design runs: the check with source-mask pairs {'stands' if candidate else 'does not stand'} "
          f"(margins: {margins})")
    held = {v: [check_row(args.results, v, t, s, *runs) for t, seeds in heldout_runs(args.results).items()
                for s, runs in seeds.items()
                if (args.results / FOLDER / v / t / f"seed{s}" / "synthetic_check.json").is_file()]
            for v in VARIANTS}
    for variant, what in VARIANTS.items():
        if held[variant]:
            print(f"\nHeld out, the check with {what}:\n")
            print_rows(held[variant])
    for r in held["check-source-masks"]:  # for comparison: rule R's committed seed-0 rows (another machine)
        committed = (run_dice(longer_rounds_row(args.results, r["task"], 0)),
                     run_dice(pipeline_from_default(args.results, r["task"], 0) / STAGE3))
        print(f"{r['task']} seed 0 as committed by rule R (stage 1 made on another machine): stage 1 "
              f"{committed[0]:.1f}, pipeline {committed[1]:.1f} ({committed[1] - committed[0]:+.1f}); made here: "
              f"{r['stage1']:.1f}, {r['pipeline']:.1f} ({r['gain']:+.1f})")
    missing = sorted(set(HELD_OUT) - {r["task"] for r in held["check-source-masks"]})
    x_passes = candidate and not missing and all(right(r) is not False for r in held["check-source-masks"])
    outcome = "pass" if x_passes else "fail" if not candidate or not missing else "waits"
    absent = f" (held-out runs missing: {', '.join(missing)})" if missing else ""
    print(f"\nRule X (the check with source-mask pairs becomes a default stage of the pipeline): {outcome}{absent}")
    record.update(heldout=held, missing=missing, rule_x_candidate=candidate, rule_x_passes=x_passes)
    # Issue 14's mark as session 34 read it, with the source-mask check's outcome on its design runs applied: it drops
    # the Kvasir -> CVC pairs at every seed, so there the pipeline's model is stage 1's; it keeps MS-CMRSeg's. Rule R's
    # abdominal and demo rows stay as they are (the check is measured there at seed 0 only: held out above).
    if all(not r["use_synthetic"] for r in design if r["task"] == PHOTO_TASK):
        mark = issue14_on_default(args.results, made=design_runs_with_check())
        print("\nIssue 14's mark with the check's outcome on the polyps (their model: stage 1's at every seed):\n")
        print_mark(mark)
        record["issue14_with_check"] = mark
    write_record(args.out, record)


def design_runs_with_check() -> dict:
    """Issue 14's ``made`` rows (:func:`issue14_on_default`) of the design tasks with the check's outcome: MS-CMRSeg
    keeps its pairs (its pipeline's stage 3), the polyps' model is stage 1's at every seed."""
    return {"mscmr-bssfp2lge": (mscmr_stage1, lambda results, seed: mscmr_pipeline(results, seed) / STAGE3),
            PHOTO_TASK: (kvasir_stage1, kvasir_stage1)}


def print_mark(mark: dict) -> None:
    """Issue 14's per-task rows and the two figures of its mark."""
    print_issue14_rows(mark)
    print(f"\nmean gain {mark['mean_gain']:+.2f} (mark +2), significant on {mark['significant_gains']} of 4 "
          "(mark 3)")


if __name__ == "__main__":
    main()

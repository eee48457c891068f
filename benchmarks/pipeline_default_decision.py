"""Rule R (BENCHMARKS.md, session 28): should the pipeline start from today's ``ascplus`` default on scans (the pick
trained for 4000 updates, then two self-training rounds) instead of the choice alone? From committed files only:

    python benchmarks/pipeline_default_decision.py [--results benchmarks/results] [--out decision.json]

Rows: stage 3 of ``rule-r/<task>/default/seed<S>`` (``pipeline_at_round.py --round 2 --row ascplus-longer-rounds``:
stages 2-5 on round 2 of ``rule-q-design/<task>/ascplus-longer-rounds/seed<S>``), at seeds 0-2 of abdominal
CT -> MR and the demo. The pipeline as it is (stage 1: the choice alone): rule O's ``round0`` run at seed 0 (this
machine) and the committed ``diffuse-uda`` rows at seeds 1-2 (session 16, another machine). R passes if the mean gain
over the 6 decisions is >= 1.0 and no task's mean gain is below -1.0; if the mean gain is -1.0 or lower, nothing
changes; else undecided.

Reported with it, no rule: issue 14's mark on these two tasks (the pipeline from the default against the ``ascplus``
default, the same stage-1 model), then over four tasks with the committed MS-CMRSeg and polyp pipeline rows (their
stage 1 is still the choice alone); each stage's seconds. Values: per run, the mean over test cases of the mean
foreground Dice (%); p: two-sided paired Wilcoxon over test cases.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from longer_rounds_decision import longer_rounds_row
from paired_test import decision_arguments, write_record  # this folder
from pipeline_round_decision import GREY_TASKS, PHOTO_TASK, RULE_O_TASKS, STAGE3, committed_pipeline, issue14_mark
from self_training_at_pick import committed_pick
from self_training_decision import pair
from training_length_decision import decide

RULE_R = "rule-r"
SEEDS = (0, 1, 2)
SeedRun = Callable[[Path, int], Path]  # (results folder, seed) -> a run folder


def pipeline_as_it_is(results: Path, task: str, seed: int) -> Path:
    """Stage 3 of the pipeline on the choice alone: rule O's run made here at seed 0, the committed row otherwise."""
    if seed == 0:
        return results / "rule-o" / task / "round0" / f"seed{seed}" / STAGE3
    return results / task / "diffuse-uda" / f"seed{seed}" / STAGE3


def pipeline_from_default(results: Path, task: str, seed: int) -> Path:
    return results / RULE_R / task / "default" / f"seed{seed}"


def decisions(results: Path) -> list[dict]:
    rows = []
    for task in RULE_O_TASKS:
        for seed in SEEDS:
            run = pipeline_from_default(results, task, seed)
            before, after, p = pair(pipeline_as_it_is(results, task, seed), run / STAGE3)
            default, _, p_own = pair(longer_rounds_row(results, task, seed), run / STAGE3)
            stages = json.loads((run / "pipeline.json").read_text())["stages"]
            rows.append({"task": task, "seed": seed, "pick": committed_pick(results / task / "bench.json", seed),
                         "pipeline_choice": before, "pipeline_default": after, "gain": after - before, "p": p,
                         "ascplus_default": default, "over_ascplus_default": after - default,
                         "p_over_ascplus_default": p_own,
                         "stage_seconds": {st["stage"]: st["seconds"] for st in stages[1:]}})
    return rows


def issue14_on_default(results: Path, made: Mapping[str, tuple[SeedRun, SeedRun]] | None = None) -> dict:
    """Issue 14's mark against the ``ascplus`` default: rule R's pipeline rows on its tasks, the committed pipeline
    rows of MS-CMRSeg and the polyps (read against the ``ascplus`` default as in session 27). ``made``: per task,
    (its ``ascplus`` run, its pipeline's stage-3 run) per seed instead of those rows (the polyps: session 31;
    MS-CMRSeg: session 34)."""
    made = made or {}

    def default(results: Path, task: str, seed: int) -> Path:
        if task in made:
            return made[task][0](results, seed)
        return longer_rounds_row(results, task, seed)

    def pipeline(results: Path, task: str, seed: int) -> Path:
        if task in made:
            return made[task][1](results, seed)
        if task in RULE_O_TASKS:
            return pipeline_from_default(results, task, seed) / STAGE3
        return committed_pipeline(results, task, seed)

    m = issue14_mark(results, default, pipeline)
    rows = [{k: r[k] for k in ("task", "ascplus", "diffuse_uda", "seed_averaged_p", "gain")} for r in m["rows"]]
    return {"rows": rows,
            "mean_gain_rule_r_tasks": float(np.mean([r["gain"] for r in rows if r["task"] in RULE_O_TASKS])),
            "mean_gain": m["mean_gain"], "significant_gains": m["significant_gains"]}


def print_issue14_rows(m: dict) -> None:
    """The per-task table of :func:`issue14_on_default`'s result."""
    print("| task | `ascplus` (default) | `diffuse-uda` | gain | seed-averaged p |\n|---|---|---|---|---|")
    for r in m["rows"]:
        print(f"| {r['task']} | {r['ascplus']:.1f} | {r['diffuse_uda']:.1f} | {r['gain']:+.1f} | "
              f"{r['seed_averaged_p']:.3g} |")


def main() -> None:
    args = decision_arguments(__doc__)
    rows = decisions(args.results)
    h = decide(rows, "pipeline_choice", "pipeline_default",
               ("pipeline as it is (stage 1: the choice alone)", "pipeline from the `ascplus` default"), "R")
    print("\n| task | seed | `ascplus` default | pipeline from it | gain | p | stages 2-5 (min) |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['seed']} | {r['ascplus_default']:.1f} | {r['pipeline_default']:.1f} | "
              f"{r['over_ascplus_default']:+.1f} | {r['p_over_ascplus_default']:.3f} | "
              f"{sum(r['stage_seconds'].values()) / 60:.0f} |")
    for r in rows:
        print(f"{r['task']} seed {r['seed']}: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["stage_seconds"].items()))
    m = issue14_on_default(args.results)
    print("\nIssue 14's end-to-end mark against the `ascplus` default (rule R's tasks: the pipeline from it; "
          f"{', '.join(t for t in (*GREY_TASKS, PHOTO_TASK) if t not in RULE_O_TASKS)}: the committed rows)\n")
    print_issue14_rows(m)
    print(f"Mean gain on rule R's two tasks: {m['mean_gain_rule_r_tasks']:+.2f}; over the four tasks: "
          f"{m['mean_gain']:+.2f} (mark +2); significant gains on {m['significant_gains']} of 4 tasks (mark 3)")
    write_record(args.out, {**h, "issue14_mark": m})


if __name__ == "__main__":
    main()

"""Session 34 (BENCHMARKS.md, registered before its runs; no rule): the MS-CMRSeg pipeline from today's ``ascplus``
default, and stage 3's run-to-run spread there. From committed files only:

    python benchmarks/mscmr_pipeline_default.py [--results benchmarks/results] [--out record.json]

Runs, in ``mscmr-pipeline-default/`` (seeds 0-2 of ``mscmr-bssfp2lge``):

* ``stage1/``: the ``ascplus`` default made here: the committed label-free pick trained for 4000 updates
  (``ascplus-<pick>/seed<S>``), then two self-training rounds (``ascplus-longer-rounds/seed<S>/self_training/
  round<k>``; ``self_training_at_pick.py --pick-iterations 4000 --rounds 2``), beside the committed rows of session 27
  (``rule-q-design``, made on another machine);
* ``pipeline/default/seed<S>``: stages 2-5 from round 2 (``pipeline_at_round.py --round 2 --row
  ascplus-longer-rounds``, the product's defaults, as rule R ran them on abdominal CT -> MR and the demo);
* ``pipeline/stage3-reseeded/seed<S>``: that pipeline's stage 3 trained again at training seed 100 + S, nothing else
  changed (``stage3_reseeded.py``);
* ``synthesis-real/seed<S>.json``: ``bench_synthesis.py`` on each pipeline's generator and 32 of its pseudo-label
  masks, with the row ``real`` (the masks' own LGE images) beside the samples (DDIM-25, guidance 1-3), under a
  seed-0 oracle made here (``oracle/``): the fidelity measures' ceiling on a grey task (post hoc).

Reported: the pipeline over its own stage 1 per seed and over the seeds; the pipeline from the default against the
pipeline as it was (session 16's committed rows, stage 1 the choice alone); stage 3's spread (the reseeded stage 3
against the pipeline's); issue 14's end-to-end mark with these MS-CMRSeg rows (abdominal CT -> MR and the demo:
rule R's rows; the polyps: rule U's, as in session 33); each stage's seconds. Values: per run, the mean over test
cases of the mean foreground Dice (%); p: two-sided paired Wilcoxon over the test cases; "seed-averaged p": over the
cases' Dice averaged over the seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from longer_rounds_decision import ROW, longer_rounds_row
from paired_test import case_mean_dice, decision_arguments, run_dice, write_record  # this folder
from photo_pipeline_marks import pipeline as photo_pipeline
from photo_pipeline_marks import stage1 as photo_stage1
from photo_stage3_spread import ceiling_rows, print_ceiling, real_and_sampled
from pipeline_default_decision import issue14_on_default, print_issue14_rows
from pipeline_round_decision import PHOTO_TASK, STAGE3, committed_pipeline, seed_averaged_p
from self_training_at_pick import committed_pick, round_dir
from self_training_decision import pair

TASK = "mscmr-bssfp2lge"
FOLDER = Path("mscmr-pipeline-default")
SEEDS = (0, 1, 2)
RESEED_OFFSET = 100  # registered: stage 3 trained again at training seed 100 + S


def pick(results: Path, seed: int) -> str:
    return committed_pick(results / TASK / "bench.json", seed)


def pick_run(results: Path, seed: int) -> Path:
    """The pick's candidate trained for 4000 updates, made here."""
    return results / FOLDER / "stage1" / f"ascplus-{pick(results, seed)}" / f"seed{seed}"


def stage1(results: Path, seed: int, k: int = 2) -> Path:
    """Round ``k`` on the 4000-update pick, made here (round 2: the ``ascplus`` default)."""
    return round_dir(results / FOLDER / "stage1" / ROW / f"seed{seed}", k)


def pipeline(results: Path, seed: int) -> Path:
    return results / FOLDER / "pipeline" / "default" / f"seed{seed}"


def reseeded(results: Path, seed: int) -> Path:
    return results / FOLDER / "pipeline" / "stage3-reseeded" / f"seed{seed}"


def train_seconds(run: Path) -> float:
    return float(json.loads((run / "run.json").read_text())["train_seconds"])


def training_seed(run: Path) -> int:
    return int(json.loads((run / "run.json").read_text())["request"]["config"]["training"]["seed"])


def seed_rows(results: Path) -> list[dict]:
    rows = []
    for seed in SEEDS:
        if training_seed(reseeded(results, seed)) != RESEED_OFFSET + seed:
            raise SystemExit(f"{reseeded(results, seed)}: not trained at the registered seed {RESEED_OFFSET + seed}")
        own, piped, p = pair(stage1(results, seed), pipeline(results, seed) / STAGE3)
        _, again, p_spread = pair(pipeline(results, seed) / STAGE3, reseeded(results, seed))
        old, _, p_old = pair(committed_pipeline(results, TASK, seed), pipeline(results, seed) / STAGE3)
        committed = longer_rounds_row(results, TASK, seed)
        stages = json.loads((pipeline(results, seed) / "pipeline.json").read_text())["stages"]
        rows.append({
            "seed": seed, "pick": pick(results, seed), "pick_4000": run_dice(pick_run(results, seed)),
            "round1": run_dice(stage1(results, seed, 1)), "ascplus_default": own,
            "ascplus_default_committed": run_dice(committed),
            "reproduces_committed_per_case": case_mean_dice(committed) == case_mean_dice(stage1(results, seed)),
            "pipeline": piped, "gain": piped - own, "p": p,
            "pipeline_session16": old, "over_session16": piped - old, "p_over_session16": p_old,
            "stage3_reseeded": again, "spread": again - piped, "p_spread": p_spread,
            "stage1_train_seconds": sum(train_seconds(run) for run in (
                pick_run(results, seed), stage1(results, seed, 1), stage1(results, seed, 2))),
            "stage_seconds": {st["stage"]: st["seconds"] for st in stages}})
    return rows


def main() -> None:
    args = decision_arguments(__doc__)
    rows = seed_rows(args.results)
    print("MS-CMRSeg bSSFP -> LGE: stage 1 (the `ascplus` default) and the pipeline from it, made here\n\n"
          "| seed | pick | pick at 4000 | round 1 | round 2 (`ascplus` default) | committed round 2 (session 27) | "
          "pipeline from it | gain | p | stage 3 reseeded | spread | p |\n" + "|---" * 12 + "|")
    for r in rows:
        print(f"| {r['seed']} | {r['pick']} | {r['pick_4000']:.1f} | {r['round1']:.1f} | {r['ascplus_default']:.1f} | "
              f"{r['ascplus_default_committed']:.1f} | {r['pipeline']:.1f} | {r['gain']:+.1f} | {r['p']:.3g} | "
              f"{r['stage3_reseeded']:.1f} | {r['spread']:+.1f} | {r['p_spread']:.3g} |")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("ascplus_default", "pipeline", "gain",
                                                                "pipeline_session16", "stage3_reseeded")}
    p_seed_averaged = seed_averaged_p([stage1(args.results, s) for s in SEEDS],
                                      [pipeline(args.results, s) / STAGE3 for s in SEEDS])
    spreads = [abs(r["spread"]) for r in rows]
    print(f"Mean over seeds: `ascplus` default {mean['ascplus_default']:.2f}, pipeline {mean['pipeline']:.2f} "
          f"(gain {mean['gain']:+.2f}, seed-averaged p {p_seed_averaged:.3g}); stage 3 reseeded "
          f"{mean['stage3_reseeded']:.2f}; |spread| per seed " + ", ".join(f"{s:.2f}" for s in spreads)
          + f" (mean {np.mean(spreads):.2f})")
    print("Round 2 made here reproduces the committed round 2 at every test case: "
          + ", ".join(f"seed {r['seed']} {'yes' if r['reproduces_committed_per_case'] else 'no'}" for r in rows))
    print("Against the pipeline as it was (session 16's rows, stage 1 the choice alone): "
          + ", ".join(f"seed {r['seed']} {r['pipeline_session16']:.1f} -> {r['pipeline']:.1f} "
                      f"(p {r['p_over_session16']:.3g})" for r in rows)
          + f"; mean {mean['pipeline_session16']:.2f} -> {mean['pipeline']:.2f}")
    for r in rows:
        print(f"seed {r['seed']}: stage 1 trained {r['stage1_train_seconds']:.0f} s (pick at 4000, rounds 1-2); "
              + ", ".join(f"{k} {v:.0f} s" for k, v in r["stage_seconds"].items() if v is not None))
    m = issue14_on_default(args.results, {
        TASK: (stage1, lambda results, seed: pipeline(results, seed) / STAGE3),
        PHOTO_TASK: (photo_stage1, lambda results, seed: photo_pipeline(results, seed) / STAGE3)})
    print("\nIssue 14's end-to-end mark, each task's pipeline against its `ascplus` default (MS-CMRSeg: made here; "
          "abdominal CT -> MR and the demo: rule R's rows; the polyps: rule U's)\n")
    print_issue14_rows(m)
    print(f"Mean gain over the four tasks: {m['mean_gain']:+.2f} (mark +2); significant gains on "
          f"{m['significant_gains']} of 4 tasks (mark 3); over the three grey tasks "
          f"{np.mean([r['gain'] for r in m['rows'] if r['task'] != PHOTO_TASK]):+.2f}")
    oracle = run_dice(args.results / FOLDER / "oracle" / "target-supervised" / "seed0")
    print(f"\nThe seed-0 oracle made here (target-supervised, post hoc): {oracle:.1f} on the LGE test split")
    ceiling = ceiling_rows(args.results, FOLDER)
    print_ceiling("32 conditioning masks (LGE pseudo-labels) per seed", "each seed's pipeline generator", ceiling)
    real, sampled = real_and_sampled(ceiling)
    print(f"The oracle finds the masks in their own real images at {min(real):.1f}-{max(real):.1f} % (mean "
          f"{np.mean(real):.1f}); the samples reach {min(sampled):.1f}-{max(sampled):.1f} % (mean "
          f"{np.mean(sampled):.1f}), {100 * np.mean(sampled) / np.mean(real):.0f} % of the real images' mean.")
    write_record(args.out, {"per_seed": rows, "mean": mean, "seed_averaged_p": p_seed_averaged,
                            "issue14_mark": m, "oracle": oracle, "fidelity_ceiling": ceiling})


if __name__ == "__main__":
    main()

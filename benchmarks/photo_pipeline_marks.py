"""Session 31 (BENCHMARKS.md, registered before its runs; no rule): Kvasir-SEG -> CVC-ClinicDB with rule U's stage 1
(session 30), and the pipeline from it. From committed files only:

    python benchmarks/photo_pipeline_marks.py [--results benchmarks/results] [--out record.json]

Runs: ``polyp-kvasir2cvc-rule-u/{ascplus,diffuse-uda}/seed<S>`` (one bench folder; seed 0's ``ascplus`` is session
30's product check, reused by the bench), beside the committed Kvasir -> CVC rows (``polyp-kvasir2cvc``: the bounds,
the oracle, ``fda``, ``ascplus-paper``, and the ``ascplus`` / ``diffuse-uda`` rows made before rule U) and the
bounds at 4000 updates (session 29, ``photo-training-length``). Reported:

* issue 13's photo mark with the table's rows, and against the bounds trained as long as the new stage 1;
* the pipeline over its own stage 1 per seed, and issue 14's end-to-end mark over the four tasks with these polyp
  rows (the grey tasks as in session 28: rule R's pipeline rows on abdominal CT -> MR and the demo, the committed
  MS-CMRSeg row; each against the ``ascplus`` default of its task);
* each pipeline stage's seconds and the generator's label-free guidance choice with its measures.

Added after seed 0's pipeline, before the runs (exploratory): the pipeline's stage 3 made again at stage 1's length
(``stage3-4000/seed<S>``: ``diffuse-uda train -m ascplus`` with the identity transfer, no structure term, 4000
updates and the pipeline's synthetic dataset), beside the same stage without synthetic pairs at 2000 updates
(``rule-t/design-no-structure/updates-2000``); the generators' mask fidelity under the seed-0 oracle
(``synthesis/seed<S>.json``, ``bench_synthesis.py`` on 32 pseudo-label masks; post hoc); and the post-hoc Dice of
stage 1's pseudo-labels on the CVC training frames (``pseudolabel_quality.json``) beside the committed rows'; and the
photo default of session 20 at CVC -> Kvasir seed 2 (its pick, ``ascplus-gin``) made again here
(``rule-t/default-check-session31``), with session 30's two (``rule-t/default-check``), beside the committed runs
rules T and U were paired against.

Added after those results, before its runs (exploratory, seed 0): the seed-0 pipeline made again with one kind of
conditioning mask (``masks-<source|target>/seed0``: ``diffuse-uda run --set synthesis.masks=<kind>``, stages 1-3
shared with the seed-0 pipeline), beside both kinds (the pipeline) and none (stage 3's request without synthetic pairs).

Values: per run, the mean over test cases of the mean foreground Dice (%); p: two-sided paired Wilcoxon over the
133 test frames; "seed-averaged p": over the frames' Dice averaged over the seeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from paired_test import decision_arguments, row_mean, run_dice, write_record  # this folder
from photo_identity_decision import default_side_made_again
from pipeline_default_decision import issue14_on_default, print_issue14_rows
from pipeline_round_decision import PHOTO_TASK, STAGE3, committed_pipeline
from self_training_decision import pair

FOLDER = Path(f"{PHOTO_TASK}-rule-u")
SEEDS = (0, 1, 2)
# The committed table's rows issue 13 asks for, read from the task's own folder.
TABLE_ROWS = ("source-only", "source-only-dg", "target-supervised", "fda", "ascplus-paper")
LONGER = Path("photo-training-length") / PHOTO_TASK / "updates-4000"


def stage1(results: Path, seed: int) -> Path:
    return results / FOLDER / "ascplus" / f"seed{seed}"


def pipeline(results: Path, seed: int) -> Path:
    return results / FOLDER / "diffuse-uda" / f"seed{seed}"


def no_synthetic(results: Path, seed: int) -> Path:
    """Stage 3's request without the synthetic dataset: session 30's identity run without the structure term."""
    return results / "rule-t" / "design-no-structure" / "updates-2000" / "ascplus-identity" / f"seed{seed}"


def chosen_guidance(run: Path) -> tuple[float, dict]:
    """A pipeline run's label-free guidance choice: the chosen scale and its measures (``generator_choice.json``)."""
    choice = json.loads((run / "4_synthetic" / "generator_choice.json").read_text())
    return choice["chosen"], choice["reports"][f"{float(choice['chosen'])}"]


def per_seed(results: Path) -> list[dict]:
    rows = []
    for seed in SEEDS:
        own, piped, p = pair(stage1(results, seed), pipeline(results, seed) / STAGE3)
        old_stage1, old_pipeline, p_old = pair(results / PHOTO_TASK / "ascplus" / f"seed{seed}",
                                               committed_pipeline(results, PHOTO_TASK, seed))
        record = json.loads((pipeline(results, seed) / "pipeline.json").read_text())
        scale, chosen = chosen_guidance(pipeline(results, seed))
        rows.append({"seed": seed, "ascplus": own, "diffuse_uda": piped, "gain": piped - own, "p": p,
                     "old_ascplus": old_stage1, "old_diffuse_uda": old_pipeline, "old_gain": old_pipeline - old_stage1,
                     "old_p": p_old,
                     "stage_seconds": {st["stage"]: st["seconds"] for st in record["stages"]},
                     "stage1_reused": record["stages"][0]["reused"],
                     "guidance_scale": scale,
                     "chosen_measures": {k: chosen[k] for k in ("mask_fidelity_mean", "style_fidelity",
                                                                "frechet_distance_target")}})
    return rows


def length_split(results: Path) -> list[dict]:
    """Stage 3 without synthetic pairs (2000 updates), with them at 2000 (the pipeline) and at 4000 updates."""
    rows = []
    for seed in SEEDS:
        rows.append({"seed": seed, "stage1_4000": run_dice(stage1(results, seed)),
                     "no_synthetic_2000": run_dice(no_synthetic(results, seed)),
                     "synthetic_2000": run_dice(pipeline(results, seed) / STAGE3),
                     "synthetic_4000": run_dice(results / FOLDER / "stage3-4000" / f"seed{seed}")})
    return rows


def mask_kinds(results: Path, seed: int = 0) -> list[dict]:
    """Stage 3 from synthetic pairs of one kind of conditioning mask, of both (the pipeline) and of none."""
    runs = {"none": None, "source labels": results / FOLDER / "masks-source" / f"seed{seed}",
            "stage-1 pseudo-labels": results / FOLDER / "masks-target" / f"seed{seed}", "both": pipeline(results, seed)}
    rows = []
    for kind, run in runs.items():
        if run is None:
            rows.append({"masks": kind, "n_synthetic": 0, "guidance_scale": None,
                         "dice": run_dice(no_synthetic(results, seed))})
            continue
        synthesis = json.loads((run / "4_synthetic" / "stage.json").read_text())["result"]
        rows.append({"masks": kind, "n_synthetic": synthesis["n_synthetic"],
                     "guidance_scale": synthesis["guidance_scale"], "dice": run_dice(run / STAGE3)})
    return rows


def generator_fidelity(results: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Per seed and sampler: the oracle's and stage 1's mask fidelity (%) of 32 synthetic images."""
    out = {}
    for seed in SEEDS:
        record = json.loads((results / FOLDER / "synthesis" / f"seed{seed}.json").read_text())
        out[f"seed{seed}"] = {r["sampler"]: {"oracle": 100 * r["dice_mean"],
                                             "stage1": 100 * r["label_free"]["mask_fidelity_mean"]}
                              for r in record["rows"]}
    return out


def pseudolabel_dice(path: Path, entry: str) -> list[float]:
    rows = json.loads(path.read_text())["rows"]
    return [100 * r["dice_mean"] for r in sorted(rows, key=lambda r: r["seed"]) if r["entry"] == entry]


def issue13_photo_mark(results: Path) -> dict:
    """The table's rows and the new ``ascplus`` against the bounds at 2000 (the table's) and 4000 updates."""
    means = {row: row_mean(results / PHOTO_TASK / row) for row in TABLE_ROWS}
    means["ascplus"] = row_mean(results / FOLDER / "ascplus")
    means["ascplus (before rule U)"] = row_mean(results / PHOTO_TASK / "ascplus")
    longer = {b: row_mean(results / LONGER / b) for b in ("source-only", "source-only-dg")}
    return {"means": means, "bounds_4000": longer,
            "over_source_only": means["ascplus"] - means["source-only"],
            "over_source_only_dg": means["ascplus"] - means["source-only-dg"],
            "over_source_only_4000": means["ascplus"] - longer["source-only"],
            "over_source_only_dg_4000": means["ascplus"] - longer["source-only-dg"]}


def main() -> None:
    args = decision_arguments(__doc__)
    mark = issue13_photo_mark(args.results)
    print(f"Kvasir -> CVC, mean Dice (%) over 3 seeds ({FOLDER}/bench.md):\n\n| row | mean Dice |\n|---|---|")
    for row, value in mark["means"].items():
        print(f"| {row} | {value:.1f} |")
    b = mark["bounds_4000"]
    print(f"\nIssue 13's photo mark: `ascplus` {mark['over_source_only']:+.1f} over source-only and "
          f"{mark['over_source_only_dg']:+.1f} over `source-only-dg` (both 2000 updates, the table's); at 4000 "
          f"updates (source-only {b['source-only']:.1f}, `source-only-dg` {b['source-only-dg']:.1f}): "
          f"{mark['over_source_only_4000']:+.1f} and {mark['over_source_only_dg_4000']:+.1f}")
    rows = per_seed(args.results)
    print("\nThe pipeline over its own stage 1, per seed (p over the 133 test frames):\n\n"
          "| seed | `ascplus` | `diffuse-uda` | gain | p | before rule U: `ascplus` | `diffuse-uda` | gain |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['ascplus']:.1f} | {r['diffuse_uda']:.1f} | {r['gain']:+.1f} | {r['p']:.2g} | "
              f"{r['old_ascplus']:.1f} | {r['old_diffuse_uda']:.1f} | {r['old_gain']:+.1f} |")
    print(f"| mean | {np.mean([r['ascplus'] for r in rows]):.1f} | {np.mean([r['diffuse_uda'] for r in rows]):.1f} "
          f"| {np.mean([r['gain'] for r in rows]):+.2f} | | {np.mean([r['old_ascplus'] for r in rows]):.1f} | "
          f"{np.mean([r['old_diffuse_uda'] for r in rows]):.1f} | {np.mean([r['old_gain'] for r in rows]):+.2f} |")
    lift = {k: np.mean([r[k] for r in rows]) - np.mean([r[f"old_{k}"] for r in rows])
            for k in ("ascplus", "diffuse_uda")}
    print(f"Rule U's stage 1 lifted stage 1 by {lift['ascplus']:+.1f} and the pipeline by {lift['diffuse_uda']:+.1f}")
    print("\nStage seconds and the generator's label-free guidance choice (measures at the chosen scale):")
    for r in rows:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in r["stage_seconds"].items())
        cm = r["chosen_measures"]
        print(f"seed {r['seed']}: {stages} (stage 1 reused: {r['stage1_reused']}); guidance {r['guidance_scale']}: "
              f"stage-1 mask fidelity {100 * cm['mask_fidelity_mean']:.1f} %, style fidelity "
              f"{100 * cm['style_fidelity']:.1f} %, Frechet distance {cm['frechet_distance_target']:.1f}")
    split = length_split(args.results)
    print("\nThe drop split (exploratory): stage 3's request without / with the synthetic pairs, at 2000 and 4000 "
          "updates\n\n| seed | stage 1 (4000, no synthetic) | no synthetic, 2000 | synthetic, 2000 (the pipeline) | "
          "synthetic, 4000 |\n|---|---|---|---|---|")
    for r in split:
        print(f"| {r['seed']} | {r['stage1_4000']:.1f} | {r['no_synthetic_2000']:.1f} | {r['synthetic_2000']:.1f} | "
              f"{r['synthetic_4000']:.1f} |")
    means = {k: float(np.mean([r[k] for r in split])) for k in split[0] if k != "seed"}
    print(f"| mean | {means['stage1_4000']:.1f} | {means['no_synthetic_2000']:.1f} | {means['synthetic_2000']:.1f} | "
          f"{means['synthetic_4000']:.1f} |")
    print(f"Synthetic pairs at 2000 updates: {means['synthetic_2000'] - means['no_synthetic_2000']:+.1f}; at 4000: "
          f"{means['synthetic_4000'] - means['stage1_4000']:+.1f}; the length without them: "
          f"{means['stage1_4000'] - means['no_synthetic_2000']:+.1f}")
    kinds = mask_kinds(args.results)
    print("\nSeed 0, stage 3 (2000 updates) by the synthetic pairs' conditioning masks (exploratory):\n\n"
          "| masks | synthetic pairs | guidance | Dice |\n|---|---|---|---|")
    for r in kinds:
        print(f"| {r['masks']} | {r['n_synthetic']} | {r['guidance_scale'] or '-'} | {r['dice']:.1f} |")
    fidelity = generator_fidelity(args.results)
    samplers = list(fidelity["seed0"])
    print("\nThe generators' mask fidelity (%), oracle (post hoc) / stage 1, 32 pseudo-label masks:\n\n| seed | "
          + " | ".join(samplers) + " |\n|---|" + "---|" * len(samplers))
    for seed, per in fidelity.items():
        print(f"| {seed} | " + " | ".join(f"{per[k]['oracle']:.1f} / {per[k]['stage1']:.1f}" for k in samplers) + " |")
    for who in ("oracle", "stage1"):
        values = [v[who] for per in fidelity.values() for v in per.values()]
        print(f"{who} mask fidelity over seeds and samplers: {min(values):.1f}-{max(values):.1f} %")
    committed = args.results / PHOTO_TASK / "pseudolabel_quality.json"
    quality = {"ascplus": pseudolabel_dice(args.results / FOLDER / "pseudolabel_quality.json", "ascplus"),
               "ascplus before rule U": pseudolabel_dice(committed, "ascplus"),
               "source-only": pseudolabel_dice(committed, "source-only")}
    print("\nPseudo-label Dice (%) on the CVC training frames, post hoc, seeds 0-2: " + "; ".join(
        f"{k} " + " / ".join(f"{v:.1f}" for v in vals) + f" (mean {np.mean(vals):.1f})" for k, vals in quality.items()))
    # Session 20's photo picks made again: seeds 0-1 in session 30, seed 2 (the last cross-session pair) here.
    check = default_side_made_again(args.results) | default_side_made_again(args.results, "default-check-session31")
    for name, v in check.items():
        print(f"\nDefault side made again (CVC -> Kvasir {name}, 2000 updates): {v['here']:.2f} here, "
              f"{v['committed']:.2f} committed", end="")
    print(f"\nThe three seeds: {np.mean([v['here'] for v in check.values()]):.2f} here, "
          f"{np.mean([v['committed'] for v in check.values()]):.2f} committed")
    m = issue14_on_default(args.results,
                           {PHOTO_TASK: (stage1, lambda results, seed: pipeline(results, seed) / STAGE3)})
    print("\nIssue 14's end-to-end mark, each task's pipeline against its `ascplus` default (polyps: made here)\n")
    print_issue14_rows(m)
    print(f"Mean gain over the four tasks: {m['mean_gain']:+.2f} (mark +2); significant gains on "
          f"{m['significant_gains']} of 4 tasks (mark 3)")
    write_record(args.out, {"issue13_photo_mark": mark, "per_seed": rows, "length_split": split,
                            "mask_kinds": kinds, "generator_fidelity": fidelity, "pseudolabel_dice": quality,
                            "default_side_made_here": check, "issue14_mark": m})


if __name__ == "__main__":
    main()

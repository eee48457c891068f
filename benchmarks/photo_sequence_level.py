"""The Kvasir-SEG -> CVC-ClinicDB comparisons BENCHMARKS.md reports, tested over the CVC test *sequences* as well as
over the test frames (session 33). From committed files only:

    python benchmarks/photo_sequence_level.py [--results benchmarks/results] [--out record.json]

The 133 CVC test frames come from 6 video sequences (the split is by sequence); neighbouring frames are near-duplicates,
so a paired Wilcoxon over frames counts each sequence 11-36 times and its p-values are far too small. Here each
comparison is also tested over the sequence means (each sequence's frames averaged first, as ``bench`` now does for a
dataset that declares ``case_groups``). With 6 pairs the smallest two-sided p a signed-rank test can give is
2/64 = 0.031, reached only when all 6 sequences move the same way. Groups come from the case ids
(``diffuse_uda.data.importers.polyp.cvc_case_sequence``), so the committed ``per_case.csv`` files suffice.

Values: per run, the mean over test frames of the mean foreground Dice (%), as in the tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from paired_test import case_mean_dice, decision_arguments, seed_averaged_dice, write_record  # this folder
from photo_pipeline_marks import FOLDER, SEEDS, no_synthetic, pipeline, stage1
from photo_stage3_spread import spread_run
from pipeline_round_decision import PHOTO_TASK, STAGE3
from sdedit_decision import sdedit

from diffuse_uda.data.importers.polyp import cvc_case_sequence
from diffuse_uda.evaluation.statistics import group_means, wilcoxon_paired


def compare(label: str, reference: dict[str, float], other: dict[str, float]) -> dict:
    if set(reference) != set(other):
        raise SystemExit(f"{label}: the two sides scored different frames")
    groups = {case: cvc_case_sequence(case) for case in reference}
    ref_seq, other_seq = group_means(reference, groups), group_means(other, groups)
    return {"comparison": label, "reference": 100 * float(np.mean(list(reference.values()))),
            "other": 100 * float(np.mean(list(other.values()))), "n_frames": len(reference),
            "p_frames": wilcoxon_paired(other, reference), "n_sequences": len(ref_seq),
            "p_sequences": wilcoxon_paired(other_seq, ref_seq),
            "sequences_up": sum(other_seq[s] > ref_seq[s] for s in ref_seq)}


def comparisons(results: Path) -> list[dict]:
    rows = []
    task = results / PHOTO_TASK
    seeds = [f"seed{s}" for s in SEEDS]
    # Issue 13's photo mark, as the table's paired test reads it (frames averaged over the 3 seeds).
    asc = seed_averaged_dice([stage1(results, s) for s in SEEDS])
    for bound in ("source-only", "source-only-dg"):
        rows.append(compare(f"`ascplus` (3 seeds) against `{bound}` (3 seeds)",
                            seed_averaged_dice([task / bound / s for s in seeds]), asc))
    for seed in SEEDS:  # session 31: the pipeline against its stage 1
        rows.append(compare(f"seed {seed}: the pipeline against its stage 1", case_mean_dice(stage1(results, seed)),
                            case_mean_dice(pipeline(results, seed) / STAGE3)))
    for seed in SEEDS:  # session 32, rule V: from the masks' images against from noise
        rows.append(compare(f"seed {seed}: rule V, from the masks' images against from noise",
                            case_mean_dice(pipeline(results, seed) / STAGE3),
                            case_mean_dice(sdedit(results, seed) / STAGE3)))
    for seed in SEEDS:  # session 33: stage 3 with the same source pairs again by two resampling paths
        rows.append(compare(f"seed {seed}: stage 3 + source pairs (64 px path) against (128 px path)",
                            case_mean_dice(spread_run(results, "source-pairs-128", seed)),
                            case_mean_dice(spread_run(results, "source-pairs-64", seed))))
        rows.append(compare(f"seed {seed}: stage 3 + source pairs (128 px path) against no extra pairs",
                            case_mean_dice(no_synthetic(results, seed)),
                            case_mean_dice(spread_run(results, "source-pairs-128", seed))))
    return rows


def main() -> None:
    args = decision_arguments(__doc__)
    rows = comparisons(args.results)
    print(f"Kvasir -> CVC ({FOLDER}), paired Wilcoxon over the {rows[0]['n_frames']} test frames and over the "
          f"{rows[0]['n_sequences']} test sequences (each sequence's frames averaged first):\n\n"
          "| comparison | reference | other | difference | p over frames | p over sequences | sequences up |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['comparison']} | {r['reference']:.1f} | {r['other']:.1f} | {r['other'] - r['reference']:+.1f} | "
              f"{r['p_frames']:.2g} | {r['p_sequences']:.3g} | {r['sequences_up']} of {r['n_sequences']} |")
    frames = sum(r["p_frames"] < 0.05 for r in rows)
    sequences = sum(r["p_sequences"] < 0.05 for r in rows)
    print(f"\np < 0.05 over frames: {frames} of {len(rows)} comparisons; over sequences: {sequences} of {len(rows)}.")
    write_record(args.out, {"comparisons": rows})


if __name__ == "__main__":
    main()

"""Session 33 (BENCHMARKS.md; registered before its runs, exploratory, no rule): how far stage 3 moves on
Kvasir-SEG -> CVC-ClinicDB when nothing but its random stream changes, and the fidelity measures' ceiling. From
committed files only:

    python benchmarks/photo_stage3_spread.py [--results benchmarks/results] [--out record.json]

1. Stage 3's photo request (``ascplus``, identity transfer, no structure term, 2000 updates, 64 px) per seed:
   without extra pairs (session 30's committed runs, ``rule-t/design-no-structure/updates-2000``, and the same request
   made again in session 33, ``stage3-spread/no-extra-pairs``), and with the 800 Kvasir training pairs again as its
   extra labelled set (``benchmarks/round_trip_dataset.py``), by two resampling paths: resized to 64 px as the
   generator's conditioning pairs are (``stage3-spread/source-pairs-64``) and written at 128 px for stage 3's own
   preprocessing to resize (``stage3-spread/source-pairs-128``). Registered as a test of the generator's 64-px round
   trip; the premise was wrong (the quick profile segments at 64 px too), so both sets are the source pairs again at
   stage 3's size, with identical labels and a mean absolute pixel difference of 0.015. Their difference is the spread
   of stage 3's training under an equivalent labelled set, measured with the same paired Wilcoxon over the 133 CVC
   test frames that the decisions use.
2. ``bench_synthesis.py`` with the row ``real`` (the 32 conditioning masks' own real images: CVC training frames with
   stage 1's pseudo-labels) beside session 31's generators at DDIM-25, guidance 1-3, per seed
   (``synthesis-real/seed<S>.json``): each fidelity measure's ceiling, and the generators' share of it. Item 5: the
   same on CVC -> Kvasir (``polyp-cvc2kvasir-rule-u/synthesis-real/seed<S>.json``, session 32-33's generators, the
   seed-0 oracle ``polyp-cvc2kvasir-rule-u/oracle-session33``).

Values: per run, the mean over test cases of the mean foreground Dice (%).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from paired_test import case_mean_dice, decision_arguments, write_record  # this folder
from photo_pipeline_marks import FOLDER, SEEDS, no_synthetic
from self_training_decision import pair

SPREAD = Path("stage3-spread")
COST_THRESHOLD = 2.0  # registered: item 3 (a 128-px generator) would run had the 64-px set cost this much


def spread_run(results: Path, name: str, seed: int) -> Path:
    return results / FOLDER / SPREAD / name / "ascplus" / f"seed{seed}"


def stage3_rows(results: Path) -> list[dict]:
    rows = []
    for seed in SEEDS:
        at128, at64, p = pair(spread_run(results, "source-pairs-128", seed),
                              spread_run(results, "source-pairs-64", seed))
        committed, remade, p_remade = pair(no_synthetic(results, seed), spread_run(results, "no-extra-pairs", seed))
        identical = case_mean_dice(no_synthetic(results, seed)) == case_mean_dice(
            spread_run(results, "no-extra-pairs", seed))
        runs = [committed, remade, at128, at64]
        rows.append({"seed": seed, "no_extra_pairs_session30": committed, "no_extra_pairs_session33": remade,
                     "p_remade": p_remade, "remade_identical_per_frame": identical,
                     "source_pairs_128": at128, "source_pairs_64": at64,
                     "p_64_vs_128": p, "range": max(runs) - min(runs)})
    return rows


def session31_fidelity(results: Path) -> list[dict]:
    """Session 31's committed oracle mask fidelity of the same generators and masks (no ``real`` row)."""
    rows = []
    for seed in SEEDS:
        record = json.loads((results / FOLDER / "synthesis" / f"seed{seed}.json").read_text())
        rows += [{"seed": seed, "images": row["sampler"], "oracle_mask_fidelity": 100 * row["dice_mean"]}
                 for row in record["rows"]]
    return rows


HELD_OUT = Path("polyp-cvc2kvasir-rule-u")  # item 5: the same measure on the other photo direction


def ceiling_rows(results: Path, folder: Path = FOLDER) -> list[dict]:
    rows = []
    for seed in SEEDS:
        record = json.loads((results / folder / "synthesis-real" / f"seed{seed}.json").read_text())
        for row in record["rows"]:
            lf = row["label_free"]
            rows.append({"seed": seed, "images": row["sampler"], "oracle_mask_fidelity": 100 * row["dice_mean"],
                         "stage1_mask_fidelity": 100 * lf["mask_fidelity_mean"],
                         "style_fidelity": 100 * lf["style_fidelity"],
                         "frechet_distance_target": lf["frechet_distance_target"]})
    return rows


def real_and_sampled(ceiling: list[dict]) -> tuple[list[float], list[float]]:
    """The oracle mask fidelity of the masks' own real images, and of the generators' samples."""
    real = [r["oracle_mask_fidelity"] for r in ceiling if r["images"] == "real"]
    return real, [r["oracle_mask_fidelity"] for r in ceiling if r["images"] != "real"]


def print_ceiling(masks: str, generators: str, ceiling: list[dict]) -> None:
    """The table of :func:`ceiling_rows`: the masks' own real images beside the generators' samples."""
    print(f"\nThe fidelity measures on {masks}: their own real images ('real') against {generators} (DDIM-25, "
          "guidance 1-3):\n\n| seed | images | oracle mask fidelity (%, post hoc) | stage-1 mask fidelity (%) | "
          "style fidelity (%) | FD target |\n|---|---|---|---|---|---|")
    for r in ceiling:
        print(f"| {r['seed']} | {r['images']} | {r['oracle_mask_fidelity']:.1f} | {r['stage1_mask_fidelity']:.1f} | "
              f"{r['style_fidelity']:.1f} | {r['frechet_distance_target']:.3g} |")


def main() -> None:
    args = decision_arguments(__doc__)
    rows = stage3_rows(args.results)
    print("Kvasir -> CVC, stage 3's photo request (2000 updates, 64 px) by its extra labelled set; 133 test frames:\n\n"
          "| seed | no extra pairs (session 30) | the same, made again (session 33) | p | + the 800 source pairs, "
          "written at 128 px | + the same pairs, resized to 64 px | difference | p | range of the four |\n"
          "|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['no_extra_pairs_session30']:.1f} | {r['no_extra_pairs_session33']:.1f} | "
              f"{r['p_remade']:.3g} | {r['source_pairs_128']:.1f} | {r['source_pairs_64']:.1f} | "
              f"{r['source_pairs_64'] - r['source_pairs_128']:+.1f} | {r['p_64_vs_128']:.3g} | {r['range']:.1f} |")
    keys = ("no_extra_pairs_session30", "no_extra_pairs_session33", "source_pairs_128", "source_pairs_64")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    difference = mean["source_pairs_64"] - mean["source_pairs_128"]
    print("| mean | " + " | ".join(f"{mean[k]:.1f}" for k in keys[:2]) + " | | "
          + " | ".join(f"{mean[k]:.1f}" for k in keys[2:]) + f" | {difference:+.1f} | | |")
    cost = -difference
    print("\nMade again on this machine, the request without extra pairs equals session 30's at every frame: "
          + ", ".join(f"seed {r['seed']} {r['remade_identical_per_frame']}" for r in rows)
          + ". So the runs of a seed differ by their labelled set only (the same pairs again: other "
          "batches drawn), not by machine or code.")
    print(f"\nRegistered condition for item 3 (the 64-px set >= {COST_THRESHOLD} points below the 128-px set on the "
          f"mean): {cost:+.1f} -> item 3 {'runs' if cost >= COST_THRESHOLD else 'does not run'}.")
    ceiling = ceiling_rows(args.results)
    print_ceiling("the 32 conditioning masks (CVC pseudo-labels)", "session 31's generators", ceiling)
    committed = {(r["seed"], r["images"]): r["oracle_mask_fidelity"] for r in session31_fidelity(args.results)}
    same = all(abs(committed[(r["seed"], r["images"])] - r["oracle_mask_fidelity"]) < 1e-9
               for r in ceiling if r["images"] != "real")
    print(f"\nThe sampled rows equal session 31's committed ones (synthesis/seed<S>.json, same masks, noise and "
          f"oracle): {same}")
    real, sampled = real_and_sampled(ceiling)
    print(f"The oracle finds the masks in their own real images at {min(real):.1f}-{max(real):.1f} % (mean "
          f"{np.mean(real):.1f}): issue 14's goal (60 %) is above that at every seed. The generators' samples reach "
          f"{min(sampled):.1f}-{max(sampled):.1f} %, {100 * min(sampled) / max(real):.0f}-"
          f"{100 * max(sampled) / min(real):.0f} % of it.")
    held = ceiling_rows(args.results, HELD_OUT)
    print("\nItem 5, the same on CVC -> Kvasir (the generators of sessions 32-33, 32 Kvasir pseudo-label masks each, "
          "a seed-0 oracle made in session 33, oracle-session33):\n\n| seed | images | oracle mask fidelity "
          "(%, post hoc) | stage-1 mask fidelity (%) |\n|---|---|---|---|")
    for r in held:
        print(f"| {r['seed']} | {r['images']} | {r['oracle_mask_fidelity']:.1f} | {r['stage1_mask_fidelity']:.1f} |")
    real2, sampled2 = real_and_sampled(held)
    print(f"On CVC -> Kvasir the oracle finds the masks in their own real images at {min(real2):.1f}-"
          f"{max(real2):.1f} % (mean {np.mean(real2):.1f}), below 60 % at every seed; the samples reach "
          f"{min(sampled2):.1f}-{max(sampled2):.1f} %.")
    write_record(args.out, {"stage3_by_extra_pairs": rows, "means": mean, "item3_condition_64_below_128": cost,
                            "item3_runs": cost >= COST_THRESHOLD, "fidelity_ceiling": ceiling,
                            "sampled_rows_equal_session31": same, "fidelity_ceiling_cvc2kvasir": held})


if __name__ == "__main__":
    main()

"""Rule V (session 32, BENCHMARKS.md, registered before its code and runs): Kvasir-SEG -> CVC-ClinicDB, synthesis
started from each mask's own image (SDEdit, ``synthesis.init_strength=0.5``). From committed files only:

    python benchmarks/sdedit_decision.py [--results benchmarks/results] [--out record.json]

Runs: ``polyp-kvasir2cvc-rule-u/sdedit-0.5/seed<S>`` (``diffuse-uda run`` with stage 1, the pseudo-labels and the
generator shared with session 31's pipeline of the seed, so only synthesis and stage 3 are made again), paired per seed
with session 31's pipeline (``polyp-kvasir2cvc-rule-u/diffuse-uda``) and its stage 1 (``ascplus``).

Rule V passes if stage 3 from ``s = 0.5`` is above session 31's pipeline at each seed (two-sided paired Wilcoxon over
the 133 CVC test frames, p < 0.05) and its 3-seed mean is >= the ``source-only-dg`` row of the table. Passing makes it
the candidate for held-out checks; the default does not change. Reported, no rule: the difference to stage 1 and issue
14's four-task mark with these polyp rows in place of the pipeline's ("what if", not a product figure).

Added after seed 0's run, before theirs (exploratory, seed 0, no rule): ``sdedit-0.5-masks-source/seed0`` (source
masks only), ``sdedit-0.3/seed0`` and ``sdedit-0.2/seed0`` (both kinds, strengths 0.3 and 0.2), beside session 31's
seed-0 runs from noise with both kinds and with source masks only (``masks-source``) and stage 3's request without
synthetic pairs. Added after those, before theirs (diagnostic, seed 0): source masks only at strength 0.05 (one step
at t = 9: the deformed real source images with their exact labels), with and without the deformation
(``sdedit-0.05-masks-source``, ``sdedit-0.05-masks-source-no-deform``).

Registered before its runs (no rule): the held-out photo direction, CVC-ClinicDB -> Kvasir-SEG, seeds 0-1 (session
32) and seed 2 (session 33, registered before its runs) (``polyp-cvc2kvasir-rule-u``: the product's ``ascplus`` and
``diffuse-uda`` from one bench folder, and ``sdedit-0.5/seed<S>`` with stages 1-3 shared with that seed's pipeline),
over the 200 Kvasir test frames. Post hoc (session 33, no rule): over the six seed-direction pairs of both photo tasks,
how often synthesis from the masks' images is above synthesis from noise, with a two-sided sign test over the runs.

Values: per run, the mean over test cases of the mean foreground Dice (%).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from paired_test import decision_arguments, row_mean, write_record  # this folder
from photo_pipeline_marks import FOLDER, SEEDS, chosen_guidance, pipeline, stage1
from pipeline_default_decision import issue14_on_default, print_issue14_rows
from pipeline_round_decision import PHOTO_TASK, STAGE3
from scipy import stats
from self_training_decision import pair

STRENGTH = 0.5
ALPHA = 0.05


def sdedit(results: Path, seed: int) -> Path:
    return results / FOLDER / f"sdedit-{STRENGTH}" / f"seed{seed}"


def chosen_measures(run: Path) -> dict:
    """The label-free measures of the guidance scale the pipeline chose (``4_synthetic/generator_choice.json``)."""
    scale, chosen = chosen_guidance(run)
    return {"guidance_scale": scale, "stage1_mask_fidelity": 100 * chosen["mask_fidelity_mean"],
            "style_fidelity": 100 * chosen["style_fidelity"],
            "frechet_distance_target": chosen["frechet_distance_target"]}


def per_seed(results: Path) -> list[dict]:
    rows = []
    for seed in SEEDS:
        before, after, p = pair(pipeline(results, seed) / STAGE3, sdedit(results, seed) / STAGE3)
        own, _, p_stage1 = pair(stage1(results, seed), sdedit(results, seed) / STAGE3)
        synthesis = json.loads((sdedit(results, seed) / "4_synthetic" / "stage.json").read_text())
        record = json.loads((sdedit(results, seed) / "pipeline.json").read_text())
        rows.append({"seed": seed, "ascplus": own, "pipeline_from_noise": before, "pipeline_from_images": after,
                     "gain_over_noise": after - before, "p_over_noise": p, "gain_over_stage1": after - own,
                     "p_over_stage1": p_stage1, "guidance_scale": synthesis["result"]["guidance_scale"],
                     "n_synthetic": synthesis["result"]["n_synthetic"],
                     "reused": {st["stage"]: st["reused"] for st in record["stages"]},
                     "measures_from_noise": chosen_measures(pipeline(results, seed)),
                     "measures_from_images": chosen_measures(sdedit(results, seed)),
                     "seconds": {st["stage"]: st["seconds"] for st in record["stages"] if not st["reused"]}})
    return rows


def decide(rows: list[dict], source_only_dg: float) -> dict:
    above_each = all(r["gain_over_noise"] > 0 and r["p_over_noise"] < ALPHA for r in rows)
    mean = float(np.mean([r["pipeline_from_images"] for r in rows]))
    return {"above_the_pipeline_at_each_seed": above_each, "mean": mean, "source_only_dg": source_only_dg,
            "at_least_source_only_dg": mean >= source_only_dg, "passes": above_each and mean >= source_only_dg}


def exploratory(results: Path, seed: int = 0) -> list[dict]:
    """Seed 0 by starting point and conditioning masks, each paired with the pipeline from noise (both kinds)."""
    from photo_pipeline_marks import no_synthetic

    noise = pipeline(results, seed) / STAGE3
    runs = {("noise", "both"): pipeline(results, seed), ("noise", "source"): results / FOLDER / "masks-source" /
            f"seed{seed}", ("images, s = 0.5", "both"): sdedit(results, seed),
            ("images, s = 0.5", "source"): results / FOLDER / "sdedit-0.5-masks-source" / f"seed{seed}",
            ("images, s = 0.3", "both"): results / FOLDER / "sdedit-0.3" / f"seed{seed}",
            ("images, s = 0.2", "both"): results / FOLDER / "sdedit-0.2" / f"seed{seed}",
            ("images, s = 0.05", "source"): results / FOLDER / "sdedit-0.05-masks-source" / f"seed{seed}",
            ("images, s = 0.05", "source, not deformed"):
                results / FOLDER / "sdedit-0.05-masks-source-no-deform" / f"seed{seed}"}
    rows = [{"start": "-", "masks": "none", "n_synthetic": 0, "guidance_scale": None,
             "dice": pair(noise, no_synthetic(results, seed))[1], "p_vs_noise_both": None}]
    for (start, masks), run in runs.items():
        synthesis = json.loads((run / "4_synthetic" / "stage.json").read_text())["result"]
        _, dice, p = pair(noise, run / STAGE3)
        rows.append({"start": start, "masks": masks, "n_synthetic": synthesis["n_synthetic"],
                     "guidance_scale": synthesis["guidance_scale"], "dice": dice,
                     "p_vs_noise_both": None if run == pipeline(results, seed) else p})
    return rows


HELD_OUT = Path("polyp-cvc2kvasir-rule-u")
HELD_OUT_SEEDS = (0, 1, 2)


def held_out_direction(results: Path) -> list[dict]:
    """CVC -> Kvasir per seed: stage 1, the pipeline from noise and from the masks' images, paired."""
    rows = []
    for seed in HELD_OUT_SEEDS:
        folder = results / HELD_OUT
        own, noise, p_noise = pair(folder / "ascplus" / f"seed{seed}", folder / "diffuse-uda" / f"seed{seed}" / STAGE3)
        _, images, p_images = pair(folder / "ascplus" / f"seed{seed}", folder / "sdedit-0.5" / f"seed{seed}" / STAGE3)
        _, _, p_between = pair(folder / "diffuse-uda" / f"seed{seed}" / STAGE3,
                               folder / "sdedit-0.5" / f"seed{seed}" / STAGE3)
        rows.append({"seed": seed, "ascplus": own, "from_noise": noise, "p_noise_vs_stage1": p_noise,
                     "from_images": images, "p_images_vs_stage1": p_images, "p_images_vs_noise": p_between,
                     "guidance_from_noise": chosen_measures(folder / "diffuse-uda" / f"seed{seed}")["guidance_scale"],
                     "guidance_from_images": chosen_measures(folder / "sdedit-0.5" / f"seed{seed}")["guidance_scale"]})
    return rows


def sign_test(gains: list[float]) -> dict:
    """How many paired runs gained, and the two-sided sign test over them (each trained run counts once)."""
    above = sum(g > 0 for g in gains)
    return {"runs": len(gains), "above": above, "p": float(stats.binomtest(above, len(gains)).pvalue)}


def main() -> None:
    args = decision_arguments(__doc__)
    rows = per_seed(args.results)
    verdict = decide(rows, row_mean(args.results / PHOTO_TASK / "source-only-dg"))
    print(f"Kvasir -> CVC, stage 3 with synthesis from noise (session 31) and from the masks' own images (s = "
          f"{STRENGTH}); p over the 133 test frames:\n\n| seed | `ascplus` (stage 1) | from noise | from images | "
          "over noise | p | over stage 1 | p | guidance (label-free) |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['seed']} | {r['ascplus']:.1f} | {r['pipeline_from_noise']:.1f} | {r['pipeline_from_images']:.1f}"
              f" | {r['gain_over_noise']:+.1f} | {r['p_over_noise']:.3g} | {r['gain_over_stage1']:+.1f} | "
              f"{r['p_over_stage1']:.2g} | {r['guidance_scale']} |")
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("ascplus", "pipeline_from_noise",
                                                              "pipeline_from_images", "gain_over_noise",
                                                              "gain_over_stage1")}
    print(f"| mean | {mean['ascplus']:.1f} | {mean['pipeline_from_noise']:.1f} | {mean['pipeline_from_images']:.1f} | "
          f"{mean['gain_over_noise']:+.1f} | | {mean['gain_over_stage1']:+.1f} | | |")
    for r in rows:
        stages = ", ".join(f"{k} {v:.0f} s" for k, v in r["seconds"].items())
        print(f"seed {r['seed']}: {r['n_synthetic']} synthetic pairs; made here: {stages}; reused: "
              + ", ".join(k for k, v in r["reused"].items() if v))
    print("\nThe label-free measures at the chosen guidance scale (stage-1 mask fidelity %, style fidelity %, Frechet "
          "distance to real target images), from noise -> from the masks' images:")
    for r in rows:
        a, b = r["measures_from_noise"], r["measures_from_images"]
        print(f"seed {r['seed']}: " + "; ".join(f"{k} {a[k]:.1f} -> {b[k]:.1f}" for k in
                                                ("stage1_mask_fidelity", "style_fidelity", "frechet_distance_target")))
    print(f"\nRule V: above the pipeline at each seed (p < {ALPHA}): {verdict['above_the_pipeline_at_each_seed']}; "
          f"mean {verdict['mean']:.1f} >= `source-only-dg` {verdict['source_only_dg']:.1f}: "
          f"{verdict['at_least_source_only_dg']} -> {'passes' if verdict['passes'] else 'fails'}")
    m = issue14_on_default(args.results,
                           {PHOTO_TASK: (stage1, lambda results, seed: sdedit(results, seed) / STAGE3)})
    print("\nWhat if (not a product figure): issue 14's end-to-end mark with these polyp rows\n")
    print_issue14_rows(m)
    print(f"Mean gain over the four tasks: {m['mean_gain']:+.2f} (mark +2); significant gains on "
          f"{m['significant_gains']} of 4 tasks (mark 3)")
    explore = exploratory(args.results)
    print("\nSeed 0 (exploratory): stage 3 by the synthetic images' start and their conditioning masks\n\n"
          "| start | masks | synthetic pairs | guidance | Dice | against none | p against noise, both |\n"
          "|---|---|---|---|---|---|---|")
    for r in explore:
        p = "-" if r["p_vs_noise_both"] is None else f"{r['p_vs_noise_both']:.3g}"
        print(f"| {r['start']} | {r['masks']} | {r['n_synthetic']} | {r['guidance_scale'] or '-'} | {r['dice']:.1f} | "
              f"{r['dice'] - explore[0]['dice']:+.1f} | {p} |")
    held = held_out_direction(args.results)
    print("\nCVC -> Kvasir (held-out photo direction; 200 test frames; p against stage 1, and images against noise)"
          "\n\n| seed | `ascplus` (stage 1) | pipeline from noise | p | from the masks' images (s = 0.5) | p | "
          "images - noise | p |\n|---|---|---|---|---|---|---|---|")
    for r in held:
        print(f"| {r['seed']} | {r['ascplus']:.1f} | {r['from_noise']:.1f} | {r['p_noise_vs_stage1']:.3g} | "
              f"{r['from_images']:.1f} | {r['p_images_vs_stage1']:.3g} | {r['from_images'] - r['from_noise']:+.1f} | "
              f"{r['p_images_vs_noise']:.3g} |")
    means = {k: float(np.mean([r[k] for r in held])) for k in ("ascplus", "from_noise", "from_images")}
    print(f"| mean | {means['ascplus']:.1f} | {means['from_noise']:.1f} | | {means['from_images']:.1f} | | "
          f"{means['from_images'] - means['from_noise']:+.1f} | |")
    print("guidance chosen (label-free), from noise / from images: "
          + "; ".join(f"seed {r['seed']} {r['guidance_from_noise']} / {r['guidance_from_images']}" for r in held))
    signs = sign_test([r["gain_over_noise"] for r in rows] + [r["from_images"] - r["from_noise"] for r in held])
    print(f"\nPost hoc (session 33, no rule): from the masks' images above from noise at {signs['above']} of "
          f"{signs['runs']} seed-direction pairs of the two photo tasks; a two-sided sign test over these trained "
          f"runs: p = {signs['p']:.3f}")
    write_record(args.out, {"strength": STRENGTH, "per_seed": rows, "rule_v": verdict, "issue14_what_if": m,
                            "sign_test_over_runs": signs,
                            "seed0_by_start_and_masks": explore, "held_out_cvc2kvasir": held})


if __name__ == "__main__":
    main()

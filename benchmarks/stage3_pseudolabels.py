"""Session 37 (BENCHMARKS.md, rule Y, registered before its runs): stage 3 with stage 1's pseudo-labelled target
images in its labelled set (``PipelineConfig.stage3_pseudolabels``) against stage 3 as the paper has it. From
committed files only:

    python benchmarks/stage3_pseudolabels.py [--results benchmarks/results] [--out record.json]

Runs, in ``stage3-pseudolabels/`` (made here with reproduce.sh "Session 37" (a)): ``stage1/<task>`` (today's
``ascplus`` default: the pick at 4000 updates, then self-training rounds; its ``round3`` is stage 3's request without
the synthetic pairs), ``pipeline/<task>/default/seed<S>`` (stages 2-5 from round 2, stage 3 always trained) and
``pipeline/<task>/stage3-pseudo/seed<S>`` (stages 1-4 shared with it; only stage 3 trained, with the pseudo-labels);
where committed, ``pipeline/<task>/stage3-reseeded*/seed<S>`` (the pipeline's stage 3 with other training seeds).

Printed per run: the mean foreground Dice on the target test split of stage 1, round 3, the pipeline and the variant,
and paired Wilcoxon tests over the test cases; the Dice per class (post hoc); whether stage 1 and the pipeline
reproduce session 36's runs at the same seed (``synthetic-check/heldout``, made on this machine type); then rule Y
over the registered seed.
"""

from __future__ import annotations

from pathlib import Path

from paired_test import class_dice, decision_arguments, paired_dice, run_dice, write_record  # this folder
from pipeline_round_decision import STAGE3
from self_training_at_pick import round_dir
from synthetic_check_decision import FOLDER as SESSION36
from synthetic_check_decision import HELD_OUT, ROW

from diffuse_uda.pipeline.experiment import EVALUATION
from diffuse_uda.pipeline.run_folder import RunFolder

FOLDER = "stage3-pseudolabels"
RULE_SEEDS = (1,)  # rule Y's runs (the seed of session 36's missed loss)
SEEDS = (0, 1, 2)
BAR = 1.0  # rule Y: the variant's mean over the runs at least this far above the pipeline, no task this far below


def evaluated(run: Path) -> bool:
    """Whether a run folder's evaluation on the target test split is committed."""
    return (run / EVALUATION / "per_case.csv").is_file()


def runs(results: Path, task: str, seed: int) -> dict[str, Path] | None:
    """The four models of one (task, seed), or None where any is not committed."""
    stage1 = results / FOLDER / "stage1" / task / ROW / f"seed{seed}"
    pipeline = results / FOLDER / "pipeline" / task
    out = {"stage 1": round_dir(stage1, 2), "round 3": round_dir(stage1, 3),
           "pipeline": pipeline / "default" / f"seed{seed}" / STAGE3,
           "variant": pipeline / "stage3-pseudo" / f"seed{seed}" / STAGE3}
    return out if all(evaluated(p) for p in out.values()) else None


def comparison(reference: Path, run: Path) -> dict[str, float]:
    ref, dice, p, n = paired_dice(reference, run, same_cases=True)
    return {"gain": round(dice - ref, 2), "p": round(p, 4), "cases": n}


def row(results: Path, task: str, seed: int, models: dict[str, Path]) -> dict:
    out: dict = {"task": task, "seed": seed, **{k: round(run_dice(v), 2) for k, v in models.items()},
                 "per_class": {k: {c: round(d, 1) for c, d in class_dice(v).items()} for k, v in models.items()}}
    for name, (a, b) in {"variant - pipeline": ("pipeline", "variant"), "variant - stage 1": ("stage 1", "variant"),
                         "pipeline - stage 1": ("stage 1", "pipeline"), "round 3 - stage 1": ("stage 1", "round 3"),
                         "variant - round 3": ("round 3", "variant")}.items():
        out[name] = comparison(models[a], models[b])
    # Stage 3's spread: the pipeline's stage 3 trained again with other training seeds on the same labelled set.
    for reseeded in sorted((results / FOLDER / "pipeline" / task).glob(f"stage3-reseeded*/seed{seed}")):
        if evaluated(reseeded):
            training_seed = RunFolder(reseeded).manifest().config["training"]["seed"]
            out.setdefault("stage 3 reseeded", []).append(
                {"training_seed": training_seed, "dice": round(run_dice(reseeded), 2),
                 "against pipeline": comparison(models["pipeline"], reseeded)})
            out["per_class"][f"stage 3, training seed {training_seed}"] = {
                c: round(d, 1) for c, d in class_dice(reseeded).items()}
    before = results / SESSION36 / "heldout"
    earlier = (round_dir(before / "stage1" / task / ROW / f"seed{seed}", 2),
               before / "pipeline" / task / "default" / f"seed{seed}" / STAGE3)
    if all(evaluated(p) for p in earlier):
        out["session 36"] = {"stage 1": round(run_dice(earlier[0]), 2), "pipeline": round(run_dice(earlier[1]), 2)}
    return out


def rule_y(rows: list[dict]) -> dict:
    """Rule Y over its registered runs: passes if the variant's mean over them is >= BAR above the pipeline's and on
    no task more than BAR below it."""
    ruled = [r for r in rows if r["seed"] in RULE_SEEDS]
    if len(ruled) < len(HELD_OUT) * len(RULE_SEEDS):
        return {"decided": False, "runs": len(ruled)}
    gains = [r["variant - pipeline"]["gain"] for r in ruled]
    per_task = {t: sum(r["variant - pipeline"]["gain"] for r in ruled if r["task"] == t) / len(RULE_SEEDS)
                for t in HELD_OUT}
    mean = sum(gains) / len(gains)
    return {"decided": True, "mean_gain": round(mean, 2), "per_task": {t: round(g, 2) for t, g in per_task.items()},
            "passes": mean >= BAR and min(per_task.values()) >= -BAR}


def main() -> None:
    args = decision_arguments(__doc__)
    rows = [row(args.results, t, s, m) for s in SEEDS for t in HELD_OUT
            if (m := runs(args.results, t, s)) is not None]
    print("Mean foreground Dice (%) on the target test split; gains with the paired Wilcoxon p over the test cases:\n")
    print("| task | seed | stage 1 | round 3 | pipeline | variant | variant - pipeline | variant - stage 1 "
          "| pipeline - stage 1 | round 3 - stage 1 | variant - round 3 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gains = " | ".join(f"{r[k]['gain']:+.1f} (p {r[k]['p']:.3g})" for k in (
            "variant - pipeline", "variant - stage 1", "pipeline - stage 1", "round 3 - stage 1", "variant - round 3"))
        print(f"| {r['task']} | {r['seed']} | {r['stage 1']:.1f} | {r['round 3']:.1f} | {r['pipeline']:.1f} | "
              f"{r['variant']:.1f} | {gains} |")
    for r in rows:
        for again in r.get("stage 3 reseeded", []):
            c = again["against pipeline"]
            print(f"\n{r['task']} seed {r['seed']}: the pipeline's stage 3 with training seed {again['training_seed']} "
                  f"{again['dice']:.1f} against {r['pipeline']:.1f}, {c['gain']:+.1f} (p {c['p']:.3g}); "
                  f"against stage 1 {again['dice'] - r['stage 1']:+.1f}")
    print("\nPer class (post hoc):\n")
    for r in rows:
        for model, dice in r["per_class"].items():
            print(f"{r['task']} seed {r['seed']} {model}: " + ", ".join(f"{c} {d:.1f}" for c, d in dice.items()))
    for r in rows:
        if "session 36" in r:
            s36 = r["session 36"]
            print(f"\n{r['task']} seed {r['seed']}: stage 1 {r['stage 1']:.2f} and pipeline {r['pipeline']:.2f} here; "
                  f"session 36's runs {s36['stage 1']:.2f} and {s36['pipeline']:.2f}")
    verdict = rule_y(rows)
    if verdict["decided"]:
        print(f"\nRule Y (seed {', '.join(map(str, RULE_SEEDS))}): variant - pipeline {verdict['mean_gain']:+.2f} on "
              f"average (bar +{BAR}), per task {verdict['per_task']}: "
              f"{'passes' if verdict['passes'] else 'fails'}")
    else:
        print(f"\nRule Y not decided: {verdict['runs']} of its runs committed")
    write_record(args.out, {"session": 37, "rows": rows, "rule_y": verdict})


if __name__ == "__main__":
    main()

"""Evaluate session 21's pre-registered rule J (BENCHMARKS.md) from the committed choices and the imported data.

    python benchmarks/floor_decision.py [--results benchmarks/results] [--data-root DIR] [--out FILE.json]

Rule J adds a noise floor to the guarded class-ratio rule (``appearance_rule=floored-class-ratio``): the prior may
overrule agreement's pick only if that pick's foreground class proportions stray from the source's further than
``n`` of the source's own training cases do (95th percentile over 1000 case draws; ``n`` the number of target
training cases). Per committed seed-decision of ``ascplus-guarded-class-ratio``, the floor is computed from the
source *labels* of the imported task (the same preprocessing as the run, read from its ``run.json``); the
divergences, the challenger and its support come from the committed ``appearance_choice.json``. A blocked overrule
reverts to agreement's pick, whose evaluation is that seed's committed ``ascplus-agreement`` row (the same model:
the chosen candidate's). No target label is read here; the test-set values are the committed evaluations.

Decision: the floor joins the default if over the 18 decisions of the six multi-class tasks other than
``mscmr-bssfp2lge`` its mean Dice is at least the guarded rule's and on none of them its 3-seed mean is more than
1.0 point below; ``mscmr-bssfp2lge`` (which motivated the rule) is reported beside, never counted. Rule K's picks
(``margin-class-ratio``, written after these decisions were seen: design data, not its check) and those of K1, the
variant set aside for it, are printed beside, with the Dice of the candidate row each picks.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from paired_test import seed_dice  # this folder: the per-seed value of the bench tables

from diffuse_uda.data.dataset_json import list_cases
from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.data.task import default_data_root, load_task
from diffuse_uda.pipeline.appearance_choice import (
    CHOICE_FILE,
    GUARD_LEVEL,
    AppearanceChoice,
    agreement_pick,
    class_ratio_floor,
    source_case_class_counts,
)

HERE = Path(__file__).resolve().parent
COUNTED = ("abdominal-ct2mr", "abdominal-mr2ct", "mscmr-lge2bssfp", "demo-brain-t1t2", "demo-brain-t2t1",
           "demo-brain-t1flair")
MOTIVATING = "mscmr-bssfp2lge"
TASK_FILES = {"demo-brain-t2t1": HERE / "tasks" / "demo-brain-t2t1.yaml",
              "demo-brain-t1flair": HERE / "tasks" / "demo-brain-t1flair.yaml"}
GUARDED, AGREEMENT = "ascplus-guarded-class-ratio", "ascplus-agreement"
TOLERANCE = 1.0


def source_counts(task_name: str, preprocessing: dict, data_root: Path,
                  cache: dict[tuple[str, str], tuple[np.ndarray, int]]) -> tuple[np.ndarray, int]:
    """Per-case source label counts and the number of target training cases, once per task and preprocessing (the
    seeds of a task share them)."""
    key = (task_name, json.dumps(preprocessing, sort_keys=True))
    if key not in cache:
        task = load_task(TASK_FILES.get(task_name, task_name), data_root).with_preprocessing(preprocessing)
        cache[key] = source_case_class_counts(task, None), len(list_cases(task.target_dir, "Tr"))
    return cache[key]


def decide_seed(task_name: str, seed_dir: Path, data_root: Path,
                cache: dict[tuple[str, str], tuple[np.ndarray, int]]) -> dict:
    choice = AppearanceChoice.model_validate_json((seed_dir / CHOICE_FILE).read_text())
    request = json.loads((seed_dir / "run.json").read_text())["request"]
    counts, cases = source_counts(task_name, request["config"].get("preprocessing") or {}, data_root, cache)
    reference = counts.sum(0) / counts.sum()
    recorded = np.array(list((choice.source_class_ratio or {}).values()))
    if recorded.shape != reference.shape or not np.allclose(recorded, reference, atol=1e-6):
        raise SystemExit(f"{seed_dir}: the imported source labels give proportions {reference.round(4)}, the run "
                         f"recorded {recorded.round(4)}: not the same data or preprocessing")
    floor = class_ratio_floor(counts, cases)
    incumbent = agreement_pick(choice)
    kl = choice.class_ratio_kl or {}
    overruled = choice.chosen != incumbent
    blocked = overruled and kl[incumbent] <= floor
    challenger = choice.class_ratio_challenger
    # Rule K (design data here: these decisions were seen before it was written): the challenger wins on a
    # divergence difference beyond the floor, whatever its bootstrap support.
    margin = challenger is not None and kl[incumbent] - kl[challenger] > floor
    # K1, the variant set aside for K when K was written: the challenger wins whenever agreement's pick is beyond the
    # floor.
    beyond = challenger is not None and kl[incumbent] > floor
    return {"seed": seed_dir.name, "incumbent": incumbent, "challenger": challenger,
            "support": choice.class_ratio_support, "kl_incumbent": kl.get(incumbent),
            "kl_challenger": kl.get(challenger) if challenger else None, "floor": floor,
            "source_cases": len(counts), "target_cases": cases, "guarded_pick": choice.chosen,
            "floored_pick": incumbent if blocked else choice.chosen, "margin_pick": challenger if margin else incumbent,
            "k1_pick": challenger if beyond else incumbent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=HERE / "results")
    ap.add_argument("--data-root", type=Path, default=None, help="imported datasets (default $DIFFUSE_UDA_DATA)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    data_root = args.data_root or default_data_root()
    out: dict[str, dict] = {}
    cache: dict[tuple[str, str], tuple[np.ndarray, int]] = {}
    print("| task | seed | agreement pick | challenger (support) | divergence of agreement's pick | floor | guarded "
          "pick | floored pick | guarded Dice | floored Dice | K (design data) | K1 (design data) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
    for task_name in (*COUNTED, MOTIVATING):
        folder = args.results / task_name
        guarded, agreed = seed_dice(folder / GUARDED), seed_dice(folder / AGREEMENT)
        rows = []
        for seed_dir in sorted((folder / GUARDED).glob("seed*")):
            row = decide_seed(task_name, seed_dir, data_root, cache)
            if row["floored_pick"] != row["guarded_pick"]:
                agreement_choice = AppearanceChoice.model_validate_json(
                    (folder / AGREEMENT / seed_dir.name / CHOICE_FILE).read_text())
                assert agreement_choice.chosen == row["floored_pick"], (seed_dir, agreement_choice.chosen)
            for rule in ("margin", "k1"):
                row[f"{rule}_dice"] = seed_dice(folder / f"ascplus-{row[f'{rule}_pick']}")[seed_dir.name]
            row["guarded_dice"] = guarded[seed_dir.name]
            row["agreement_dice"] = agreed[seed_dir.name]
            row["floored_dice"] = guarded[seed_dir.name] if row["floored_pick"] == row["guarded_pick"] \
                else agreed[seed_dir.name]
            rows.append(row)
            challenger = (f"{row['challenger']} ({row['support']:.3f})" if row["support"] is not None else "none")
            kl = f"{row['kl_incumbent']:.4f}" if row["kl_incumbent"] is not None else "n/a"
            print(f"| {task_name} | {row['seed']} | {row['incumbent']} | {challenger} | {kl} | {row['floor']:.4f} | "
                  f"{row['guarded_pick']} | {row['floored_pick']} | {row['guarded_dice']:.2f} | "
                  f"{row['floored_dice']:.2f} | {row['margin_pick']} {row['margin_dice']:.2f} | "
                  f"{row['k1_pick']} {row['k1_dice']:.2f} |")
        out[task_name] = {"seeds": rows, **{rule: float(np.mean([r[f"{rule}_dice"] for r in rows]))
                                            for rule in ("guarded", "floored", "margin", "k1")}}
    counted = [r for t in COUNTED for r in out[t]["seeds"]]
    mean_guarded = float(np.mean([r["guarded_dice"] for r in counted]))
    mean_floored = float(np.mean([r["floored_dice"] for r in counted]))
    worst = min(out[t]["floored"] - out[t]["guarded"] for t in COUNTED)
    passed = mean_floored >= mean_guarded and worst >= -TOLERANCE
    print("\n| task | guarded (3-seed mean) | floored, rule J (3-seed mean) | margin, rule K (design data) | K1 "
          "(design data) |\n|---|---|---|---|---|")
    for t in (*COUNTED, MOTIVATING):
        note = " (motivated the rule; not counted)" if t == MOTIVATING else ""
        print(f"| {t}{note} | {out[t]['guarded']:.2f} | {out[t]['floored']:.2f} | {out[t]['margin']:.2f} | "
              f"{out[t]['k1']:.2f} |")
    print(f"| mean of the {len(counted)} counted decisions | {mean_guarded:.2f} | {mean_floored:.2f} |")
    overrules = [r["guarded_dice"] - r["agreement_dice"] for t in out for r in out[t]["seeds"]
                 if r["guarded_pick"] != r["incumbent"]]
    print(f"\nThe guarded rule's overrules of agreement on these decisions: {len(overrules)}, "
          f"{sum(g > 0 for g in overrules)} to a better candidate; gains {', '.join(f'{g:+.2f}' for g in overrules)}")
    print(f"\nRule J (the floor joins the default; guard level {GUARD_LEVEL:.0%}): {'pass' if passed else 'fail'} "
          f"(largest per-task loss {-worst:.2f}, allowed {TOLERANCE})")
    if args.out:
        atomic_write_json(args.out, {"tasks": out, "counted_mean": {"guarded": mean_guarded, "floored": mean_floored},
                                     "worst_task_difference": worst, "rule_j": "pass" if passed else "fail"})


if __name__ == "__main__":
    main()

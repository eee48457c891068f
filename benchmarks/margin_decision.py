"""Decide session 21's pre-registered rule K (BENCHMARKS.md) from the exported held-out seeds.

    python benchmarks/margin_decision.py [--results benchmarks/results/rule-k] [--out FILE.json]

Held out: seeds 3 and 4 of the abdominal tasks and seed 3 of the MS-CMRSeg tasks, each exported to
``<results>/<task>/`` with the rows ``ascplus-floored-class-ratio`` (rule J), ``ascplus-margin-class-ratio`` (rule K)
and ``ascplus-guarded-class-ratio`` (session 16's rule, shown beside). K becomes the default if over the 6 decisions
its mean Dice is at least J's, on no task its mean over its held-out seeds is more than 1.0 point below J's, and it
picks differently from J at least once; otherwise J does. A value is the bench table's: per seed the mean over
test cases of the mean foreground Dice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from paired_test import seed_dice  # this folder: the per-seed value of the bench tables

from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.pipeline.appearance_choice import agreement_pick, read_choice

HERE = Path(__file__).resolve().parent
SEEDS = {"abdominal-ct2mr": ("seed3", "seed4"), "abdominal-mr2ct": ("seed3", "seed4"),
         "mscmr-bssfp2lge": ("seed3",), "mscmr-lge2bssfp": ("seed3",)}
TASKS = tuple(SEEDS)
ROWS = {"guarded": "ascplus-guarded-class-ratio", "J": "ascplus-floored-class-ratio", "K": "ascplus-margin-class-ratio"}
TOLERANCE = 1.0


def pick(run: Path) -> str:
    choice = read_choice(run)
    assert choice is not None, run
    return choice.chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, default=HERE / "results" / "rule-k")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    decisions, tasks = [], {}
    print("| task | seed | agreement pick (its Dice, not a rule under test) | challenger (support) | floor | guarded "
          "| J | K |\n|---|---|---|---|---|---|---|---|")
    for task in TASKS:
        dice = {r: seed_dice(args.results / task / name) for r, name in ROWS.items()}
        for seed in SEEDS[task]:
            if any(seed not in d for d in dice.values()):
                raise SystemExit(f"{task} {seed}: not every row is evaluated; rule K stays undecided")
            record = read_choice(args.results / task / ROWS["K"] / seed)
            assert record is not None, (task, seed)
            agreed = agreement_pick(record)
            row = {"task": task, "seed": seed, "agreement_pick": agreed,
                   "challenger": record.class_ratio_challenger, "support": record.class_ratio_support,
                   "floor": record.class_ratio_floor,
                   **{f"{r}_pick": pick(args.results / task / name / seed) for r, name in ROWS.items()},
                   **{f"{r}_dice": dice[r][seed] for r in ROWS}}
            # For the report only (not part of the decision): agreement's pick is a candidate row of the same bench.
            row["agreement_dice"] = seed_dice(args.results / task / f"ascplus-{agreed}")[seed]
            decisions.append(row)
            challenger = f"{row['challenger']} ({row['support']:.3f})" if row["support"] is not None else "none"
            floor = f"{row['floor']:.4f}" if row["floor"] is not None else "n/a"
            print(f"| {task} | {seed} | {agreed} {row['agreement_dice']:.2f} | {challenger} | {floor} | "
                  + " | ".join(f"{row[f'{r}_pick']} {row[f'{r}_dice']:.2f}" for r in ROWS) + " |")
        tasks[task] = {r: float(np.mean([dice[r][s] for s in SEEDS[task]])) for r in ROWS}
    mean = {r: float(np.mean([d[f"{r}_dice"] for d in decisions])) for r in (*ROWS, "agreement")}
    worst = min(tasks[t]["K"] - tasks[t]["J"] for t in TASKS)
    differs = sum(d["K_pick"] != d["J_pick"] for d in decisions)
    passed = mean["K"] >= mean["J"] and worst >= -TOLERANCE and differs > 0
    print("\n| task | guarded | J | K |\n|---|---|---|---|")
    for t in TASKS:
        print(f"| {t} | " + " | ".join(f"{tasks[t][r]:.2f}" for r in ROWS) + " |")
    print(f"| mean of the {len(decisions)} held-out decisions | " + " | ".join(f"{mean[r]:.2f}" for r in ROWS) + " |")
    print(f"\nAgreement's picks alone (not under test): mean {mean['agreement']:.2f} over the same decisions.")
    print(f"\nRule K (margin-class-ratio the default): {'pass' if passed else 'fail'} (K differs from J at {differs} "
          f"decision(s); largest per-task loss against J {max(0.0, -worst):.2f}, allowed {TOLERANCE})")
    if args.out:
        atomic_write_json(args.out, {"decisions": decisions, "tasks": tasks, "mean": mean, "differs": differs,
                                     "worst_task_difference": worst, "rule_k": "pass" if passed else "fail"})


if __name__ == "__main__":
    main()

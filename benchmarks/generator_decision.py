"""Evaluate session 17's pre-registered generator rules (BENCHMARKS.md) from the committed results alone.

    python benchmarks/generator_decision.py [--results benchmarks/results] [--out FILE.json]

Rule E: the paper's generator (row ``diffuse-uda-paper``) replaces the domain-guided one (row ``diffuse-uda``) as the
pipeline's default only if over the 12 (task, seed) end-to-end runs of the four design tasks its mean target-test
Dice is at least the domain-guided pipeline's and on no task is its 3-seed mean more than 1.0 point below.
Rule F: the same test for the domain-guided generator with a zero-initialised domain embedding (runs under
``generator-variants/zero-TASK``), decided only when all 12 runs exist.

A value is the bench table's: per seed, the mean over test cases of the mean foreground Dice of the pipeline's
stage 3; beside each seed, the paired Wilcoxon p over test cases against the default row.
"""

from __future__ import annotations

import json
from pathlib import Path

from paired_test import case_mean_dice, decision_arguments  # this folder

from diffuse_uda.evaluation.statistics import wilcoxon_paired
from diffuse_uda.pipeline.run import STAGE3

TASKS = ("abdominal-ct2mr", "demo-brain-t1t2", "mscmr-bssfp2lge", "polyp-kvasir2cvc")
SEEDS = ("seed0", "seed1", "seed2")
TOLERANCE = 1.0


def stage3_cases(row: Path) -> dict[str, dict[str, float]]:
    """seed -> case -> mean foreground Dice (%) of each evaluated pipeline run of ``row``."""
    return {s: {c: 100 * v for c, v in case_mean_dice(row / s / STAGE3).items()}
            for s in SEEDS if (row / s / STAGE3 / "evaluation" / "per_case.csv").is_file()}


def decide(default: dict[str, dict], other: dict[str, dict]) -> dict:
    """Rule E / F for one challenger against the default rows; None when a run is missing."""
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    per_task = {}
    for t in TASKS:
        common = [s for s in SEEDS if s in default[t] and s in other[t]]
        per_task[t] = {
            "seeds": {s: {"default": mean(list(default[t][s].values())), "challenger": mean(list(other[t][s].values())),
                          "p": wilcoxon_paired(other[t][s], default[t][s])} for s in common}}
        if len(common) == len(SEEDS):
            per_task[t]["default"] = mean([v["default"] for v in per_task[t]["seeds"].values()])
            per_task[t]["challenger"] = mean([v["challenger"] for v in per_task[t]["seeds"].values()])
    complete = all("default" in per_task[t] for t in TASKS)
    out: dict = {"tasks": per_task, "complete": complete}
    if complete:
        runs = [(v["default"], v["challenger"]) for t in TASKS for v in per_task[t]["seeds"].values()]
        out["mean_default"] = mean([a for a, _ in runs])
        out["mean_challenger"] = mean([b for _, b in runs])
        out["pass"] = out["mean_challenger"] >= out["mean_default"] and all(
            per_task[t]["challenger"] >= per_task[t]["default"] - TOLERANCE for t in TASKS)
    return out


def main() -> None:
    args = decision_arguments(__doc__)
    default = {t: stage3_cases(args.results / t / "diffuse-uda") for t in TASKS}
    challengers = {
        "E (paper generator)": {t: stage3_cases(args.results / t / "diffuse-uda-paper") for t in TASKS},
        "F (zero-initialised domain embedding)": {
            t: stage3_cases(args.results / "generator-variants" / f"zero-{t}") for t in TASKS},
    }
    report = {}
    for rule, other in challengers.items():
        r = report[rule] = decide(default, other)
        print(f"\nRule {rule}\n\n| task | seed | domain-guided (default) | challenger | difference | p |")
        print("|---|---|---|---|---|---|")
        for t in TASKS:
            for s, v in r["tasks"][t]["seeds"].items():
                print(f"| {t} | {s[4:]} | {v['default']:.1f} | {v['challenger']:.1f} | "
                      f"{v['challenger'] - v['default']:+.1f} | {v['p']:.2g} |")
            if "default" in r["tasks"][t]:
                d, c = r["tasks"][t]["default"], r["tasks"][t]["challenger"]
                print(f"| {t} | mean | {d:.2f} | {c:.2f} | {c - d:+.2f} | |")
        if r["complete"]:
            print(f"| all 12 runs | mean | {r['mean_default']:.2f} | {r['mean_challenger']:.2f} | "
                  f"{r['mean_challenger'] - r['mean_default']:+.2f} | |")
            print(f"\nRule {rule}: {'pass' if r['pass'] else 'fail'}")
        else:
            print(f"\nRule {rule}: not decided (not every one of the 12 runs exists)")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

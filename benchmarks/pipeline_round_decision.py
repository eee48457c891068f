"""Rule O (BENCHMARKS.md, session 25): should the pipeline start from the two-round stage 1? And issue 14's
end-to-end mark against today's ``ascplus`` default. From committed files only:

    python benchmarks/pipeline_round_decision.py [--results benchmarks/results] [--out decision.json]

Rule O (seed 0 of abdominal CT -> MR and the demo): stage 3 of the pipeline on the two-round model
(``rule-o/<task>/round2/seed0``) against the pipeline on the pick alone (``round0``), both made by
``pipeline_at_round.py`` on the stage-1 models of sessions 22-23 (``rule-l-design``: the pick's candidate;
``rule-m-design``: its rounds). Earns the 3-seed comparison if round 2 is >= 1.0 point above on both tasks; the
pipeline keeps its stage 1 without rounds if it is >= 1.0 point below on either; otherwise undecided.

Issue 14's mark (reported, no rule): the committed ``diffuse-uda`` rows (session 16's pipeline; the polyps' are
session 15's) against ``ascplus`` as it is by default now: two rounds on the grey tasks (``rule-m-design``, this
machine), the choice alone on photos (no round there; the committed ``ascplus`` row). The two sides of the grey tasks
were made on different machines (BENCHMARKS, session 18: not bit-identical), so this reads the mark, it does not
decide anything.

Values: per run, the mean over test cases of the mean foreground Dice (%); p: two-sided paired Wilcoxon over test
cases; "seed-averaged p": over the cases' Dice averaged over the seeds (the bench tables' significance line).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from paired_test import decision_arguments, seed_averaged_dice, write_record  # this folder
from self_training_at_pick import ROW as AT_PICK_ROW
from self_training_at_pick import committed_pick, round_dir
from self_training_decision import pair

from diffuse_uda.evaluation.statistics import wilcoxon_paired

RULE_O_TASKS = ("abdominal-ct2mr", "demo-brain-t1t2")
GREY_TASKS = ("abdominal-ct2mr", "demo-brain-t1t2", "mscmr-bssfp2lge")
PHOTO_TASK = "polyp-kvasir2cvc"
STAGE3 = "5_ascplus_synth"
BAR = 1.0


def stage1(results: Path, task: str, seed: int, k: int) -> Path:
    """The committed stage-1 run of round ``k`` (0: the pick's candidate) at a design seed."""
    if k == 0:
        pick = committed_pick(results / task / "bench.json", seed)
        return results / "rule-l-design" / task / f"ascplus-{pick}" / f"seed{seed}"
    return round_dir(results / "rule-m-design" / task / AT_PICK_ROW / f"seed{seed}", k)


def rule_o(results: Path, seed: int = 0) -> dict:
    rows = []
    for task in RULE_O_TASKS:
        pipelines = {k: results / "rule-o" / task / f"round{k}" / f"seed{seed}" / STAGE3 for k in (0, 2)}
        before, after, p = pair(pipelines[0], pipelines[2])
        row = {"task": task, "seed": seed, "pick": committed_pick(results / task / "bench.json", seed),
               "pipeline_round0": before, "pipeline_round2": after, "gain": after - before, "p": p}
        for k in (0, 2):
            s1, s3, p_own = pair(stage1(results, task, seed, k), pipelines[k])
            row.update({f"stage1_round{k}": s1, f"over_own_stage1_round{k}": s3 - s1, f"p_own_round{k}": p_own})
        _, _, row["p_round0_vs_default"] = pair(stage1(results, task, seed, 2), pipelines[0])
        rows.append(row)
    gains = [r["gain"] for r in rows]
    verdict = ("earns the 3-seed comparison" if min(gains) >= BAR else
               "fails: the pipeline keeps its stage 1 without rounds" if min(gains) <= -BAR else "undecided")
    return {"rule": "O", "bar": BAR, "rows": rows, "verdict": verdict}


def seed_averaged_p(reference: list[Path], runs: list[Path]) -> float:
    """Paired Wilcoxon over the test cases, each case's Dice averaged over the seeds (the bench tables' test)."""
    return wilcoxon_paired(seed_averaged_dice(runs), seed_averaged_dice(reference))


def two_rounds(results: Path, task: str, seed: int) -> Path:
    """``ascplus``'s default of sessions 23-25 at a design seed: two rounds on scans, the committed row on photos."""
    return results / task / "ascplus" / f"seed{seed}" if task == PHOTO_TASK else stage1(results, task, seed, 2)


def committed_pipeline(results: Path, task: str, seed: int) -> Path:
    """Stage 3 of the committed ``diffuse-uda`` row at a design seed."""
    return results / task / "diffuse-uda" / f"seed{seed}" / STAGE3


def issue14_mark(results: Path, default: Callable[[Path, str, int], Path] = two_rounds,
                 pipeline: Callable[[Path, str, int], Path] = committed_pipeline) -> dict:
    """Pipeline rows (``pipeline(results, task, seed)``: stage 3's run folder; by default the committed rows) against
    an ``ascplus`` default (``default(results, task, seed)``: its run folder), per seed and per task."""
    rows = []
    for task in (*GREY_TASKS, PHOTO_TASK):
        refs, runs = [], []
        for seed in (0, 1, 2):
            ref = default(results, task, seed)
            refs.append(ref)
            runs.append(pipeline(results, task, seed))
        pairs = [pair(r, s) for r, s in zip(refs, runs, strict=True)]
        rows.append({"task": task, "ascplus": float(np.mean([a for a, _, _ in pairs])),
                     "diffuse_uda": float(np.mean([b for _, b, _ in pairs])),
                     "gain_per_seed": [b - a for a, b, _ in pairs], "p_per_seed": [p for _, _, p in pairs],
                     "seed_averaged_p": seed_averaged_p(refs, runs)})
    for r in rows:
        r["gain"] = r["diffuse_uda"] - r["ascplus"]
    return {"rows": rows, "mean_gain": float(np.mean([r["gain"] for r in rows])),
            "significant_gains": sum(r["gain"] > 0 and r["seed_averaged_p"] < 0.05 for r in rows)}


def issue14_mark_against(results: Path, default: Callable[[Path, str, int], Path], against: str,
                         column: str) -> dict:
    """:func:`issue14_mark` read against another ``ascplus`` (``default`` as there), printed as a short table
    (``against``: the heading's words, ``column``: the ``ascplus`` column's parenthesis)."""
    m = issue14_mark(results, default)
    print(f"\nIssue 14's end-to-end mark against `ascplus` {against} (committed rows, 3 seeds)\n")
    print(f"| task | `ascplus` ({column}) | `diffuse-uda` | gain | seed-averaged p |\n|---|---|---|---|---|")
    for r in m["rows"]:
        print(f"| {r['task']} | {r['ascplus']:.1f} | {r['diffuse_uda']:.1f} | {r['gain']:+.1f} | "
              f"{r['seed_averaged_p']:.3g} |")
    print(f"Mean gain over the four tasks: {m['mean_gain']:+.2f} (mark +2); significant gains on "
          f"{m['significant_gains']} of 4 tasks (mark 3)")
    return m


def main() -> None:
    args = decision_arguments(__doc__)
    o = rule_o(args.results)
    print("Rule O (seed 0): stage 3 of the pipeline on the pick alone (round 0) and on the two-round model\n")
    print("| task | pick | stage 1: pick | stage 1: two rounds | pipeline on the pick | pipeline on two rounds | "
          "gain | p |\n|---|---|---|---|---|---|---|---|")
    for r in o["rows"]:
        print(f"| {r['task']} | {r['pick']} | {r['stage1_round0']:.1f} | {r['stage1_round2']:.1f} | "
              f"{r['pipeline_round0']:.1f} | {r['pipeline_round2']:.1f} | {r['gain']:+.1f} | {r['p']:.3f} |")
    for r in o["rows"]:
        print(f"{r['task']}: each pipeline over its own stage 1: pick {r['over_own_stage1_round0']:+.1f} "
              f"(p {r['p_own_round0']:.3f}), two rounds {r['over_own_stage1_round2']:+.1f} (p {r['p_own_round2']:.3f});"
              f" the pipeline on the pick over the two-round model: "
              f"{r['pipeline_round0'] - r['stage1_round2']:+.1f} (p {r['p_round0_vs_default']:.3f})")
    for task in RULE_O_TASKS:
        for k in (0, 2):
            stages = json.loads((args.results / "rule-o" / task / f"round{k}" / "seed0" / "pipeline.json").read_text())
            later = {st["stage"]: st["seconds"] for st in stages["stages"][1:]}
            print(f"{task} round {k}: stages 2-5 {sum(later.values()) / 60:.0f} min ("
                  + ", ".join(f"{name} {sec:.0f} s" for name, sec in later.items()) + ")")
    gains = ", ".join(f"{r['gain']:+.2f}" for r in o["rows"])
    print(f"Rule O: gains {gains} against +/-{BAR}: {o['verdict']}")

    m = issue14_mark(args.results)
    print("\nIssue 14's end-to-end mark against today's `ascplus` default (committed rows, 3 seeds)\n")
    print("| task | `ascplus` (default) | `diffuse-uda` | gain | per seed (p) | seed-averaged p |\n"
          "|---|---|---|---|---|---|")
    for r in m["rows"]:
        seeds = ", ".join(f"{g:+.1f} ({p:.3f})" for g, p in zip(r["gain_per_seed"], r["p_per_seed"], strict=True))
        print(f"| {r['task']} | {r['ascplus']:.1f} | {r['diffuse_uda']:.1f} | {r['gain']:+.1f} | {seeds} | "
              f"{r['seed_averaged_p']:.3g} |")
    print(f"Mean gain over the four tasks: {m['mean_gain']:+.2f} (mark +2); significant gains on "
          f"{m['significant_gains']} of 4 tasks (mark 3); over the three grey tasks "
          f"{np.mean([r['gain'] for r in m['rows'] if r['task'] in GREY_TASKS]):+.1f}")
    write_record(args.out, {"rule_o": o, "issue14_mark": m})


if __name__ == "__main__":
    main()

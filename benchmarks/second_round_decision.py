"""Rule M (BENCHMARKS.md, session 23): does a second self-training round earn its place in ``ascplus``'s default on
scans? From committed files only:

    python benchmarks/second_round_decision.py [--results benchmarks/results] [--out decision.json]

Held-out part (the rule): per decision of rules J-L (seeds 3-4 of the abdominal tasks, seed 3 of the MS-CMRSeg
tasks), round 1 (rule L's ``ascplus-self-training`` row) against round 2 made after it in the same folder
(``rule-m/<task>/ascplus-self-training/seed<S>/self_training/round<r>``). M passes if round 2's mean over the 6
decisions is >= 1.0 point above round 1's and no task's mean is more than 1.0 point below it.

Design part (reported, not decided): the second round after session 22's round 1 on the committed pick of seeds 0-2
(``rule-m-design/<task>``), beside the pick's candidate (``rule-l-design/<task>``) and the task's bounds (issue 13's
marks).

Exploratory (no rule): a third round on the design seeds where one was run (``rule-m-design``), against round 2.

The functions take the round (``k``), so rule N's script (``third_round_decision.py``) uses them for round 3.

Values: per seed, the mean over test cases of the mean foreground Dice (%), as the bench tables; p: two-sided
paired Wilcoxon over test cases.
"""

from __future__ import annotations

from pathlib import Path

from paired_test import decision_arguments, row_mean, run_dice, seed_dice, train_seconds, write_record  # this folder
from self_training_at_pick import ROW as AT_PICK_ROW
from self_training_at_pick import committed_pick, round_dir
from self_training_decision import HELD_OUT, ROUND_ROW, pair, print_design, print_held_out, verdict

# Where each round's held-out rows are committed (round 1 is rule L's row itself).
HELD_OUT_FOLDERS = {2: "rule-m", 3: "rule-n"}


def committed_round(results: Path, task: str, seed: int, k: int) -> float:
    """Round ``k``'s committed score at a held-out decision: rule L's row for round 1, else the rule's own folder."""
    if k == 1:
        return seed_dice(results / "rule-l" / task / ROUND_ROW)[f"seed{seed}"]
    return run_dice(round_dir(results / HELD_OUT_FOLDERS[k] / task / ROUND_ROW / f"seed{seed}", k))


def held_out(results: Path, k: int = 2) -> dict:
    """Round ``k`` against round ``k - 1`` at each held-out decision, both evaluated in rule ``k``'s folder; round
    ``k - 1`` must score there exactly what its own rule's committed row scored (the same model)."""
    rows = []
    before, after = f"round{k - 1}", f"round{k}"
    for task, seed in HELD_OUT:
        run = results / HELD_OUT_FOLDERS[k] / task / ROUND_ROW / f"seed{seed}"
        committed = committed_round(results, task, seed, k - 1)
        one, two, p = pair(round_dir(run, k - 1), round_dir(run, k))
        if abs(one - committed) > 1e-6:
            raise SystemExit(f"{task} seed {seed}: round {k - 1} scores {one:.4f} here, its committed row "
                             f"{committed:.4f}")
        seconds = train_seconds(round_dir(run, k))
        rows.append({"task": task, "seed": seed, "pick": committed_pick(run, seed), before: one, after: two,
                     "gain": two - one, "p": p, f"{after}_train_seconds": seconds})
    return verdict(rows, before, after)


def design(results: Path, folder: str = "rule-m-design", k: int = 2) -> list[dict]:
    """Rounds 1..``k`` on the committed pick of the design seeds (``folder``), beside the pick's candidate retrained
    here (``rule-l-design``) and the task's bounds; gain and p: round ``k`` against round ``k - 1``."""
    out = []
    for task_dir in sorted((results / folder).glob("*")):
        task = task_dir.name
        bounds = [row_mean(results / task / r) for r in ("source-only", "target-supervised")]
        for run in sorted(task_dir.glob(f"{AT_PICK_ROW}/seed*")):
            seed = int(run.name.removeprefix("seed"))
            pick = committed_pick(results / task / "bench.json", seed)
            row = {"task": task, "seed": seed, "pick": pick,
                   "stage1": seed_dice(results / "rule-l-design" / task / f"ascplus-{pick}")[run.name]}
            row.update({f"round{r}": run_dice(round_dir(run, r)) for r in range(1, k - 1)})
            before, after, p = pair(round_dir(run, k - 1), round_dir(run, k))
            row.update({f"round{k - 1}": before, f"round{k}": after, "gain": after - before, "p": p,
                        "source_only": bounds[0], "oracle": bounds[1]})
            out.append(row)
    return out


def exploratory_round(results: Path, folder: str, k: int) -> list[dict]:
    """Exploratory (no rule): round ``k`` against round ``k - 1`` where a design seed in ``folder`` has one."""
    out = []
    for run in sorted((results / folder).glob(f"*/{AT_PICK_ROW}/seed*")):
        if (round_dir(run, k) / "evaluation" / "per_case.csv").is_file():
            before, dice, p = pair(round_dir(run, k - 1), round_dir(run, k))
            out.append({"task": run.parent.parent.name, "seed": int(run.name.removeprefix("seed")),
                        f"round{k - 1}": before, f"round{k}": dice, "gain": dice - before, "p": p})
    return out


def print_exploratory(rows: list[dict], design_rows: list[dict], k: int, names: tuple[str, str]) -> None:
    """The exploratory round's table, each row with its design row's pick and bounds (:func:`print_design`)."""
    print(f"\nExploratory: round {k}")
    context = {(r["task"], r["seed"]): r for r in design_rows}
    print_design([{**context[r["task"], r["seed"]], **r} for r in rows], {f"round{k - 1}": names[0],
                                                                          f"round{k}": names[1]})


def main() -> None:
    args = decision_arguments(__doc__)
    h = held_out(args.results)
    print_held_out(h, "round1", "round2", ("one round (rule L)", "two rounds"), "M")
    seconds = [r["round2_train_seconds"] for r in h["decisions"]]
    print(f"round 2's training: {min(seconds):.0f}-{max(seconds):.0f} s per decision (train_seconds)")
    d = design(args.results)
    if d:
        print_design(d, {"stage1": "the pick", "round1": "one round", "round2": "two rounds"})
    third = exploratory_round(args.results, "rule-m-design", 3)
    if third:
        print_exploratory(third, d, 3, ("two rounds", "three rounds"))
    write_record(args.out, {"held_out": h, "design": d, "third_round": third})


if __name__ == "__main__":
    main()

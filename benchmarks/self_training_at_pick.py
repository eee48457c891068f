"""Self-training rounds on the candidate a committed label-free choice picked (issue 13, sessions 22-23).

    python benchmarks/self_training_at_pick.py -t abdominal-ct2mr --seed 0 \\
        --choice benchmarks/results/abdominal-ct2mr/bench.json -o bench/s22/abdominal-ct2mr --data-root data \\
        [--rounds 2] [--row ascplus-self-training --choice-row ascplus-self-training]

Reads the pick of the ``ascplus`` row at ``--seed`` from a committed ``bench.json`` (the label-free choice; no test
label decides it), trains that one candidate as the bench's ``ascplus-<pick>`` row (reused when it is already in the
folder) and runs the product's self-training round on it (``pipeline.appearance_choice.self_training_round``: the
round the ``ascplus-self-training`` row runs after its choice) into ``<folder>/ascplus-self-training-at-pick/
seed<S>`` (``--row``), then evaluates the candidate and each round on the target test split. This saves retraining
the four candidates that were not picked; the row equals ``ascplus-self-training`` wherever the choice is the one
recorded. ``--rounds N`` runs rounds 1..N, each on the previous round's pseudo-labels (round ``r`` in
``<row>/seed<S>/self_training/round<r>``); rounds already in the row folder with the same request are reused, so a
second round can follow a bench's ``ascplus-self-training`` row in place (``--row``/``--choice-row`` name it).
``--pick-iterations N`` takes the pick's candidate trained for N updates (the bench row made with ``--set
training.iterations=N``, reused from ``-o``) as the model the first round labels the target with; the rounds keep the
profile's updates. That is the product's ``ascplus`` with ``longer_training`` = N / the profile's updates, then the
rounds (``pipeline.appearance_choice.longer_config``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffuse_uda.config import build_run_config
from diffuse_uda.data.task import load_task
from diffuse_uda.pipeline.appearance_choice import SELF_TRAINING_DIR, read_choice, self_training_round
from diffuse_uda.pipeline.bench import run_bench
from diffuse_uda.pipeline.experiment import evaluate_run

ROW = "ascplus-self-training-at-pick"


def round_dir(run: Path, k: int) -> Path:
    """Round ``k``'s run folder inside a row folder that ran self-training rounds."""
    return Path(run) / SELF_TRAINING_DIR / f"round{k}"


def committed_pick(bench_json: Path, seed: int, row: str = "ascplus") -> str:
    """The appearance transfer the label-free rule of ``row`` chose at ``seed``, as recorded in a bench.json (or in
    the ``appearance_choice.json`` of a run folder, when ``bench_json`` is that folder)."""
    if Path(bench_json).is_dir():
        choice = read_choice(Path(bench_json))
        if choice is None:
            raise SystemExit(f"{bench_json}: no appearance choice recorded")
        return choice.chosen
    choices = json.loads(Path(bench_json).read_text())["appearance_choices"][row]
    picks = [c["chosen"] for c in choices if c["seed"] == seed]
    if len(picks) != 1:
        raise SystemExit(f"{bench_json}: no single {row} choice at seed {seed}")
    return picks[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", "--task", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--choice", type=Path, required=True,
                    help="committed bench.json holding the ascplus choice, or a committed run folder of the row")
    ap.add_argument("-o", "--out", type=Path, required=True, help="bench folder")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--rounds", type=int, default=1, help="self-training rounds after the pick (default 1)")
    ap.add_argument("--row", default=ROW, help=f"row folder holding the rounds (default {ROW})")
    ap.add_argument("--choice-row", default="ascplus", help="row of --choice whose pick is used (default ascplus)")
    ap.add_argument("--pick-iterations", type=int, default=None,
                    help="updates of the pick's candidate the rounds start from (default: the profile's)")
    args = ap.parse_args()

    task = load_task(args.task, args.data_root)
    pick = committed_pick(args.choice, args.seed, args.choice_row)
    print(f"[self-training at pick] {task.name} seed {args.seed}: committed pick {pick}")
    longer = {"training": {"iterations": args.pick_iterations}} if args.pick_iterations else None
    run_bench(task, [f"ascplus-{pick}"], [args.seed], args.out, profile=args.profile, overrides=longer)
    # The bench's own settings for its ``ascplus`` row at this seed (the candidate and the round derive from them).
    config = build_run_config(args.profile, task.preprocessing.spatial_dims,
                              {"training": {"seed": args.seed}, "method": {}})
    ptask = task.with_preprocessing(config.preprocessing)
    row_dir = args.out / args.row / f"seed{args.seed}"
    previous = args.out / f"ascplus-{pick}" / f"seed{args.seed}"
    evaluate_run(previous, ptask)
    for r in range(1, args.rounds + 1):
        previous = self_training_round(ptask, config, pick, previous, row_dir, r, None, True, False)
        evaluate_run(previous, ptask)
        print(f"[self-training at pick] round {r}: {previous}")


if __name__ == "__main__":
    main()

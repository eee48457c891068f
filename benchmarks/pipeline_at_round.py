"""The Diffuse-UDA pipeline (stages 2-5) on a stage 1 with or without self-training rounds (issues 13-14, session 25).

    python benchmarks/pipeline_at_round.py -t demo-brain-t1t2 --seed 0 --round 2 \\
        --choice benchmarks/results/demo-brain-t1t2/bench.json --bench bench/s22/demo-brain-t1t2 \\
        -o bench/s25/demo-brain-t1t2/round2/seed0 --data-root data

Stage 1 is taken from a bench folder made by ``self_training_at_pick.py``: ``--round 0`` is the committed pick's
candidate (``ascplus-<pick>/seed<S>``: the model the product pipeline's stage 1 keeps, since the pipeline runs no
round), ``--round k`` that candidate's self-training round ``k`` (``<row>/seed<S>/self_training/round<k>``; ``--row``
``ascplus-self-training-at-pick``: the rounds on the pick as trained, the ``ascplus`` default on scans of sessions
23-26 when ``k`` = 2; ``ascplus-longer-rounds``: the rounds on the pick trained for 4000 updates, today's default).
Both are reused under the run-folder contract (``reusable_stage1``: the pipeline's stage-1 settings with the pick
fixed, plus the round's own pseudo-labels), so nothing of stage 1 is trained here. The pseudo-labels, generator,
synthesis and stage 3 (ASCPlus with the pick's transfer on source + synthetic pairs) are the product pipeline's
defaults, except that stage 3 is always trained (no synthetic check: these runs score it, session 35); the run folder
is evaluated on the target test split as every pipeline run is. ``--stage3-pseudolabels`` adds stage 1's
pseudo-labelled target images to stage 3's labelled set (session 37); with ``--share <run without it>`` only stage 3
is trained.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from self_training_at_pick import ROW, committed_pick, round_dir

from diffuse_uda.data.task import load_task
from diffuse_uda.pipeline.appearance_choice import APPEARANCE_PRESETS
from diffuse_uda.pipeline.run import PipelineConfig, run_pipeline


def stage1_folder(bench: Path, pick: str, seed: int, round_: int, row: str = ROW) -> Path:
    """The pick's candidate run (round 0) or its self-training round ``round_`` (in the row folder ``row``)."""
    return bench / f"ascplus-{pick}" / f"seed{seed}" if round_ == 0 else round_dir(bench / row / f"seed{seed}", round_)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", "--task", required=True)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--round", type=int, required=True, help="0 = the pick alone; k = its self-training round k")
    ap.add_argument("--choice", type=Path, required=True, help="committed bench.json holding the ascplus choice")
    ap.add_argument("--bench", type=Path, required=True, help="bench folder of self_training_at_pick.py")
    ap.add_argument("--row", default=ROW, help=f"row folder holding the rounds (default {ROW}; "
                    "ascplus-longer-rounds: the rounds on the pick trained for longer, today's default)")
    ap.add_argument("-o", "--out", type=Path, required=True, help="pipeline run folder")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--stage3-pseudolabels", action="store_true",
                    help="stage 3 also trains on stage 1's pseudo-labelled target images (session 37)")
    ap.add_argument("--share", type=Path, action="append", default=[],
                    help="a pipeline run folder whose identical stages are reused (e.g. the run without "
                    "--stage3-pseudolabels: only stage 3 differs)")
    args = ap.parse_args()

    task = load_task(args.task, data_root=args.data_root)
    pick = committed_pick(args.choice, args.seed)
    stage1 = stage1_folder(args.bench, pick, args.seed, args.round, args.row)
    # The pick's transfer fixed: the settings its candidate and rounds were trained with, and stage 3's. Stage 3 is
    # always trained (no synthetic check): these runs are what the check is scored against (BENCHMARKS.md, session 35).
    config = PipelineConfig(seed=args.seed, segmentation={"method": json.loads(json.dumps(APPEARANCE_PRESETS[pick]))},
                            stage1_run=str(stage1), synthetic_check=False,
                            stage3_pseudolabels=args.stage3_pseudolabels,
                            share_stages_with=[str(p) for p in args.share])
    print(f"[pipeline at round {args.round}] {args.task} seed {args.seed}: pick {pick}, stage 1 {stage1}")
    run_pipeline(task, args.out, config)


if __name__ == "__main__":
    main()

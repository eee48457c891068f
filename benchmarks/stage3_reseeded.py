"""Stage 3 of a finished pipeline run trained again with another training seed on the very same labelled set
(session 34, BENCHMARKS.md; registered before its runs, no rule):

    python benchmarks/stage3_reseeded.py --pipeline bench/s34/mscmr-bssfp2lge/default/seed0 --seed 100 \\
        -o bench/s34/mscmr-bssfp2lge/stage3-reseeded/seed0

Reads the run's task (its ``pipeline.json``: the datasets it ran on) and stage-3 request
(``5_ascplus_synth/run.json``: ``ascplus`` with stage 1's transfer fixed, trained on the source pairs plus the run's
synthetic pairs), changes nothing but ``training.seed`` and trains it into ``-o`` with the run's own synthetic
folder as the extra labelled set; then evaluates it on the target test split as every run is. The two stage-3 models
differ only in their random stream (initialisation, batch order, augmentation), so their difference is stage 3's
run-to-run spread on this task, the yardstick for the pipeline's gain over its stage 1. Nothing here reads target
labels before the evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffuse_uda.config import RunConfig
from diffuse_uda.data.task import Task
from diffuse_uda.pipeline.experiment import evaluate_run
from diffuse_uda.pipeline.run import STAGE3, read_pipeline_record
from diffuse_uda.pipeline.train import train_method

SYNTHETIC = "4_synthetic"


def reseeded_config(stage3: Path, seed: int) -> RunConfig:
    """The stage-3 run's own settings with the training seed replaced."""
    config = RunConfig.model_validate(json.loads((stage3 / "run.json").read_text())["request"]["config"])
    return config.model_copy(update={"training": config.training.model_copy(update={"seed": seed})})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True, help="a finished `diffuse-uda run` folder")
    ap.add_argument("--seed", type=int, required=True, help="stage 3's new training seed")
    ap.add_argument("-o", "--out", type=Path, required=True, help="run folder for the reseeded stage 3")
    args = ap.parse_args()

    record = read_pipeline_record(args.pipeline)
    if record is None:
        raise SystemExit(f"{args.pipeline}: no pipeline record")
    task = Task.from_dict(record.task)
    config = reseeded_config(args.pipeline / STAGE3, args.seed)
    task = task.with_preprocessing(config.preprocessing)
    print(f"[stage 3 reseeded] {task.name}: {args.pipeline / STAGE3} at training seed {args.seed} -> {args.out}")
    train_method(task, "ascplus", config, args.out, extra_labelled=[args.pipeline / SYNTHETIC],
                 display_name="diffuse-uda (stage 3 reseeded)")
    evaluate_run(args.out, task)


if __name__ == "__main__":
    main()

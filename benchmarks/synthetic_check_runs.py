"""The label-free synthetic-pair check (:mod:`diffuse_uda.pipeline.synthetic_check`) on a finished pipeline run
(session 35, BENCHMARKS.md; rule W was registered before these runs):

    python benchmarks/synthetic_check_runs.py --pipeline bench/s34/mscmr-bssfp2lge/default/seed0 \\
        -o bench/s35/check/mscmr-bssfp2lge/seed0

Reads the run's task and settings (``pipeline.json``) and stage 3's training settings (``5_ascplus_synth/run.json``),
takes the run's own synthetic pairs (``4_synthetic``) and stage 1's pseudo-labelled target training images
(``2_pseudolabels``, at the generator's size, as the pipeline's generator and guidance choice see them), and runs the
check into ``-o``: a ``source-only`` segmenter on the synthetic pairs alone and one on the real source pairs alone,
each scored by its agreement with the pseudo-labels. Then, post hoc and for the report only, both segmenters are
evaluated on the target test split as every run is. Nothing before that evaluation reads a target label.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from diffuse_uda.config import RunConfig
from diffuse_uda.data.task import Task
from diffuse_uda.pipeline.experiment import evaluate_run
from diffuse_uda.pipeline.run import (
    GENERATORS,
    STAGE3,
    PipelineConfig,
    conditioning_samples,
    diffusion_config,
    read_pipeline_record,
)
from diffuse_uda.pipeline.synthetic_check import check_synthetic_pairs
from diffuse_uda.pipeline.train import default_cache_dir
from diffuse_uda.training.trainer import resolve_device

SYNTHETIC, PSEUDO = "4_synthetic", "2_pseudolabels"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True, help="a finished `diffuse-uda run` folder")
    ap.add_argument("-o", "--out", type=Path, required=True, help="folder for the check's two runs and its record")
    args = ap.parse_args()

    record = read_pipeline_record(args.pipeline)
    if record is None:
        raise SystemExit(f"{args.pipeline}: no pipeline record")
    pipeline = PipelineConfig.model_validate(record.config)
    stage3_request = json.loads((args.pipeline / STAGE3 / "run.json").read_text())["request"]
    stage3 = RunConfig.model_validate(stage3_request["config"])
    task = Task.from_dict(record.task).with_preprocessing(stage3.preprocessing)
    dcfg = diffusion_config(pipeline.profile, task.preprocessing.spatial_dims,
                            {**GENERATORS[pipeline.generator], **pipeline.diffusion}, pipeline.seed)
    _, target = conditioning_samples(task, args.pipeline / PSEUDO, pipeline.training_fraction, dcfg.image_size,
                                     default_cache_dir(), True)
    print(f"[synthetic check] {task.name} seed {pipeline.seed}: {len(target)} pseudo-labelled target images -> "
          f"{args.out}")
    result = check_synthetic_pairs(task, args.pipeline / SYNTHETIC, target, stage3, args.out,
                                   resolve_device(stage3.training.device))
    print(f"[synthetic check] agreement with stage 1: synthetic-only {result.synthetic_agreement:.1f}, "
          f"source-only {result.source_agreement:.1f} -> use synthetic: {result.use_synthetic}")
    for name in ("synthetic-only", "source-only"):  # post hoc, for the report only
        evaluate_run(args.out / name, task)


if __name__ == "__main__":
    main()

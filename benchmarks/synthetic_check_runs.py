"""A label-free check of a pipeline run's synthetic pairs: train on them, test on the pseudo-labelled real target
(session 35, BENCHMARKS.md; rules W and X were registered before their runs: W, with every pair, failed; X, with the
pairs from source masks, passed, and ``diffuse_uda.pipeline.synthetic_check`` is that check as a pipeline stage,
``--set synthetic_check=true``):

    python benchmarks/synthetic_check_runs.py --pipeline bench/s34/mscmr-bssfp2lge/default/seed0 \\
        -o bench/s35/check/mscmr-bssfp2lge/seed0 [--masks source]

Stage 1's segmentation of a synthetic image says whether the image carries its mask (the generator's mask
fidelity), not whether a model *trained* on such images segments real target images, which is what stage 3 depends
on. The check asks that. Two segmenters are trained with one recipe (the ``source-only`` method at stage 3's profile,
length and training seed, from the run's ``5_ascplus_synth/run.json``): one on the run's synthetic pairs alone
(``4_synthetic``; ``--masks source``: only the pairs drawn from source masks, ``source_*``), one on the real source
pairs alone. Each segments the real target training images whose stage-1 pseudo-label has foreground
(``2_pseudolabels`` at the generator's size, as the generator and its guidance choice see them); its *agreement* is
the mean foreground Dice against those pseudo-labels. The rule tested: keep the synthetic pairs if the synthetic-only
agreement is at least the source-only one. The record goes to ``-o/synthetic_check.json``. Then, post hoc and for the
report only, both segmenters are evaluated on the target test split as every run is. Nothing before that evaluation
reads a target label.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diffuse_uda.config import RunConfig
from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.data.task import Task
from diffuse_uda.diffusion.trainer import PairSample
from diffuse_uda.pipeline.experiment import evaluate_run
from diffuse_uda.pipeline.run import (
    GENERATORS,
    STAGE3,
    PipelineConfig,
    conditioning_samples,
    diffusion_config,
    read_pipeline_record,
)
from diffuse_uda.pipeline.synthetic_check import CHECK_FILE, segmenter_agreements, source_mask_pairs
from diffuse_uda.pipeline.train import default_cache_dir
from diffuse_uda.training.trainer import resolve_device

SYNTHETIC, PSEUDO = "4_synthetic", "2_pseudolabels"


def check_inputs(run: Path) -> tuple[Task, RunConfig, PipelineConfig, list[PairSample]]:
    """A finished pipeline run's task, stage 3's training settings, the pipeline's settings and the target training
    images with stage 1's pseudo-labels (at the generator's size, as the generator and its guidance choice see them)."""
    record = read_pipeline_record(run)
    if record is None:
        raise SystemExit(f"{run}: no pipeline record")
    pipeline = PipelineConfig.model_validate(record.config)
    stage3 = RunConfig.model_validate(json.loads((run / STAGE3 / "run.json").read_text())["request"]["config"])
    task = Task.from_dict(record.task).with_preprocessing(stage3.preprocessing)
    dcfg = diffusion_config(pipeline.profile, task.preprocessing.spatial_dims,
                            {**GENERATORS[pipeline.generator], **pipeline.diffusion}, pipeline.seed)
    _, target = conditioning_samples(task, run / PSEUDO, pipeline.training_fraction, dcfg.image_size,
                                     default_cache_dir(), True)
    return task, stage3, pipeline, target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True, help="a finished `diffuse-uda run` folder")
    ap.add_argument("-o", "--out", type=Path, required=True, help="folder for the check's two runs and its record")
    ap.add_argument("--masks", choices=("all", "source"), default="all",
                    help="the synthetic pairs the synthetic-only segmenter trains on: all, or those from source masks")
    args = ap.parse_args()

    task, stage3, pipeline, target = check_inputs(args.pipeline)
    device = resolve_device(stage3.training.device)
    synthetic = args.pipeline / SYNTHETIC
    if args.masks == "source":
        synthetic = source_mask_pairs(synthetic, args.out / "synthetic-source-masks")
    print(f"[synthetic check] {task.name} seed {pipeline.seed}: {len(target)} pseudo-labelled target images, "
          f"synthetic pairs from {args.masks} masks -> {args.out}")
    t0 = time.perf_counter()
    scores = segmenter_agreements(task, synthetic, target, stage3, args.out, device)
    result = {"synthetic_agreement": scores["synthetic"], "source_agreement": scores["source"],
              "n_target_images": len(target), "use_synthetic": scores["synthetic"] >= scores["source"],
              "masks": args.masks, "seconds": time.perf_counter() - t0}
    atomic_write_json(args.out / CHECK_FILE, result)
    print(f"[synthetic check] agreement with stage 1: synthetic-only {result['synthetic_agreement']:.1f}, "
          f"source-only {result['source_agreement']:.1f} -> use synthetic: {result['use_synthetic']}")
    for name in ("synthetic-only", "source-only"):  # post hoc, for the report only
        evaluate_run(args.out / name, task)


if __name__ == "__main__":
    main()

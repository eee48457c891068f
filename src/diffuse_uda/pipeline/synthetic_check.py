"""Label-free check of the synthetic pairs before stage 3: train on synthetic, test on the real target.

Stage 1's segmentation of a synthetic image says whether the image carries its mask (the generator's
mask fidelity), not whether a model *trained* on such images segments real target images: on colour
photos stage 1 finds the masks in the samples at 44-53 % while stage 3 ends 15 points below stage 1
(BENCHMARKS.md, session 31). This check asks the question stage 3 depends on. Two segmenters are
trained with one recipe (the ``source-only`` method, stage 3's profile, length and seed): one on the
synthetic pairs drawn from *source* masks alone, one on the real source pairs alone. Each segments the
real target training images, and its *agreement* is the mean foreground Dice between that segmentation
and stage 1's pseudo-label, over the target images whose pseudo-label has foreground. No target label is
read.

Only the pairs drawn from source masks train the synthetic-only segmenter: the pairs drawn from stage 1's
pseudo-label masks, by a generator trained on the target images with them, teach a segmenter to reproduce
those pseudo-labels whether or not the images look like the target, so the reference cannot judge them (with
every pair the check kept the Kvasir -> CVC pairs, where stage 3 ends 13-16 points below stage 1; rules W and
X, BENCHMARKS.md session 35).

**Rule:** stage 3 uses the synthetic pairs only if the synthetic-only segmenter agrees with stage 1 at
least as well as the source-only one: pairs that teach the target's image-to-label relation (as stage 1
sees it) worse than the source pairs do are not added to them. Otherwise the pipeline's model is stage 1's.
Where the check has nothing to judge (no pair was drawn from a source mask, e.g. ``synthesis.masks=target``;
or no target image has a pseudo-labelled foreground), it says why and stage 3 trains, as in the paper.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from diffuse_uda.config import RunConfig
from diffuse_uda.data.io import atomic_write_json, read_json_record
from diffuse_uda.data.task import Task
from diffuse_uda.diffusion.fidelity import mask_fidelity
from diffuse_uda.diffusion.trainer import PairSample
from diffuse_uda.errors import DataError
from diffuse_uda.pipeline.train import train_method
from diffuse_uda.training import distributed
from diffuse_uda.training.bundle import load_bundle

CHECK_FILE = "synthetic_check.json"
RECIPE = "source-only"  # one plain supervised recipe for both segmenters: only the labelled set differs
RULE = ("stage 3 adds the synthetic pairs only if a segmenter trained on those drawn from source masks alone agrees "
        "with stage 1's pseudo-labels on the real target training images at least as well as one trained the same "
        "way on the real source pairs alone; otherwise the pipeline's model is stage 1's")


class SyntheticCheck(BaseModel):
    """The check's outcome (``synthetic_check.json``). Agreements are mean foreground Dice in %."""

    model_config = ConfigDict(extra="forbid")
    synthetic_agreement: float | None  # None: not judged
    source_agreement: float | None
    n_target_images: int
    use_synthetic: bool
    rule: str = RULE
    seconds: float
    not_judged: str | None = None  # why the check had nothing to judge (then stage 3 trains, as in the paper)

    def drop_reason(self) -> str:
        """Why a judged check that failed dropped the pairs, with both agreements (for the console and notes)."""
        return (f"the synthetic pairs teach the target worse than the source pairs do (agreement with stage 1 "
                f"{self.synthetic_agreement:.1f} against {self.source_agreement:.1f})")


def agreement(run_dir: Path, target: Sequence[PairSample], num_classes: int, device: torch.device) -> float:
    """Mean foreground Dice (%) between a trained run's segmentation of the target images and their
    pseudo-labels (the pairs' masks); images whose prediction and pseudo-label are both empty are skipped."""
    if not target:
        raise DataError(None, "no target image with a pseudo-labelled foreground to check the synthetic pairs on")
    bundle = load_bundle(run_dir, device)
    images = torch.from_numpy(np.stack([p.image for p in target]).astype(np.float32))
    masks = torch.from_numpy(np.stack([p.mask for p in target]).astype(np.int64))
    scores = mask_fidelity(bundle.network, images, masks, num_classes, input_size=tuple(bundle.preprocessing.size))
    return 100.0 * float(scores.nanmean())


def _source_mask_labels(synthetic: Path) -> list[str]:
    """The label files of the synthetic pairs drawn from source masks (``source_*``)."""
    return sorted(p.name for p in (Path(synthetic) / "labelsTr").iterdir() if p.name.startswith("source_"))


def source_mask_pairs(synthetic: Path, out: Path) -> Path:
    """A dataset folder (``out``) holding the synthetic pairs drawn from source masks only (``source_*``)."""
    if (out / "dataset.json").is_file():
        return out
    info = json.loads((synthetic / "dataset.json").read_text())
    labels = _source_mask_labels(synthetic)
    if not labels:
        raise DataError(synthetic, "no synthetic pair drawn from a source mask (source_*) to check")
    for label in labels:
        case = label.removesuffix(info["file_ending"])
        for f in [synthetic / "labelsTr" / label,
                  *sorted((synthetic / "imagesTr").glob(f"{case}_[0-9][0-9][0-9][0-9]{info['file_ending']}"))]:
            (out / f.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, out / f.parent.name / f.name)
    info.update(numTraining=len(labels), name=f"{info['name']}_source_masks")
    atomic_write_json(out / "dataset.json", info)  # last: its presence marks the subset complete
    return out


def check_config(config: RunConfig) -> RunConfig:
    """Stage 3's settings for the check's recipe: same profile, network, length and seed, no method options."""
    return config.model_copy(update={"method": {}})


def segmenter_agreements(task: Task, synthetic_dir: Path, target: Sequence[PairSample], config: RunConfig,
                         out_dir: Path, device: torch.device, progress: bool = True,
                         force: bool = False) -> dict[str, float]:
    """Train the check's recipe on the pairs of ``synthetic_dir`` as they are and on the source pairs, into
    ``out_dir/{synthetic-only,source-only}`` (resumable run folders); returns each one's :func:`agreement` with stage
    1 on ``target`` (keys ``synthetic``, ``source``)."""
    cfg = check_config(config)
    # The synthetic dataset stands in for the source: it has the task's labels and the source's channels.
    synthetic_task = Task(task.config, Path(synthetic_dir), task.target_dir, task.yaml_path)
    runs = {
        "synthetic": train_method(synthetic_task, RECIPE, cfg, Path(out_dir) / "synthetic-only", progress=progress,
                                  display_name="synthetic check: synthetic pairs only", force=force),
        "source": train_method(task, RECIPE, cfg, Path(out_dir) / "source-only", progress=progress,
                               display_name="synthetic check: source pairs only", force=force),
    }
    return {k: agreement(run, target, task.num_classes, device) for k, run in runs.items()}


def check_synthetic_pairs(task: Task, synthetic_dir: Path, target: Sequence[PairSample], config: RunConfig,
                          out_dir: Path, device: torch.device, progress: bool = True,
                          force: bool = False) -> SyntheticCheck:
    """The check on the pairs of ``synthetic_dir`` drawn from source masks (:func:`segmenter_agreements` on
    :func:`source_mask_pairs`), with the rule applied. Writes ``out_dir/synthetic_check.json``."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    reason = ("no synthetic pair was drawn from a source mask (synthesis.masks=target, or no source mask has "
              "foreground)" if not _source_mask_labels(Path(synthetic_dir)) else
              "no target training image has a pseudo-labelled foreground" if not target else None)
    if reason is not None:
        result = SyntheticCheck(synthetic_agreement=None, source_agreement=None, n_target_images=len(target),
                                use_synthetic=True, seconds=time.perf_counter() - t0, not_judged=reason)
    else:
        # Under torchrun rank 0 writes the subset, the other ranks then find it complete.
        subset = distributed.main_first(source_mask_pairs, Path(synthetic_dir), out_dir / "synthetic-source-masks")
        scores = segmenter_agreements(task, subset, target, config, out_dir, device, progress, force)
        result = SyntheticCheck(synthetic_agreement=scores["synthetic"], source_agreement=scores["source"],
                                n_target_images=len(target), use_synthetic=scores["synthetic"] >= scores["source"],
                                seconds=time.perf_counter() - t0)
    distributed.on_main(atomic_write_json, out_dir / CHECK_FILE, result.model_dump(mode="json"))
    return result


def read_check(folder: Path) -> SyntheticCheck | None:
    """The check recorded in ``folder``, or None when there is none."""
    return read_json_record(Path(folder) / CHECK_FILE, SyntheticCheck, "malformed synthetic check record")

"""One method on one task, end to end: train -> predict the target test split -> evaluate.

This is the single evaluation path every method goes through (``demo``, ``bench``, ``run``).
Under torchrun training runs on every rank and evaluation on rank 0 while the others wait.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from diffuse_uda.config import RunConfig
from diffuse_uda.data.dataset_json import has_split
from diffuse_uda.data.fingerprint import dataset_fingerprint, path_fingerprint
from diffuse_uda.data.task import Task
from diffuse_uda.errors import DataError
from diffuse_uda.evaluation.evaluate import EvaluationSummary, evaluate_predictions, load_summary
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.inference.predict import predict_dataset
from diffuse_uda.pipeline.run_folder import EVALUATION, PREDICTIONS, RunFolder
from diffuse_uda.pipeline.train import train_method
from diffuse_uda.training import distributed

__all__ = ["EVALUATION", "PREDICTIONS", "evaluate_run", "run_experiment", "score_test_predictions"]


def _reference_digest(task: Task) -> str:
    """Fingerprint of the held-out test split (read here, by evaluation, and nowhere else)."""
    return dataset_fingerprint(task.target_dir, ("Ts",), with_labels=True)


def evaluate_run(run_dir: Path, task: Task, progress: bool = True) -> EvaluationSummary | None:
    """Predict the held-out target test images with the run's model and score them.

    A finished evaluation is reused only if it scored this very model (its content digest) against
    this very test split; otherwise the predictions are made again. Returns None when the target
    dataset has no labelled test split. Training is finished before this is called, so nothing
    here can influence training or model choice. Under torchrun: rank 0 evaluates, the others wait."""
    return distributed.on_main(_evaluate_run, run_dir, task, progress)


def _evaluate_run(run_dir: Path, task: Task, progress: bool) -> EvaluationSummary | None:
    folder = RunFolder(run_dir)
    if not has_split(task.target_dir, "Ts"):
        return None
    provenance = {"model_digest": path_fingerprint(folder.bundle_path), "reference_digest": _reference_digest(task)}
    summary_path = folder.evaluation_dir / "summary.json"
    if summary_path.is_file():
        try:
            summary = load_summary(summary_path)
        except DataError:
            summary = None
        if summary is not None and all(summary.metadata.get(k) == v for k, v in provenance.items()):
            return summary
    for stale in (folder.predictions_dir, folder.evaluation_dir):
        if stale.is_dir():
            shutil.rmtree(stale)
    preds = predict_dataset(folder.path, task.target_dir, folder.predictions_dir, split="Ts", progress=progress)
    return score_test_predictions(preds, task, folder.path, progress, provenance)


def score_test_predictions(predictions: Path, task: Task, run_dir: Path, progress: bool = True,
                           provenance: dict[str, str] | None = None) -> EvaluationSummary:
    """Score finished target-test predictions into ``run_dir/evaluation`` (also used by methods that
    predict without a model bundle, such as HEAL)."""
    return evaluate_predictions(predictions, ReferenceLabels(task.target_dir, split="Ts"), run_dir / EVALUATION,
                                progress=progress, metadata=provenance)


def run_experiment(task: Task, method: str, config: RunConfig, out_dir: Path,
                   extra_labelled: Sequence[Path] = (), progress: bool = True,
                   force: bool = False, candidate_dirs: Mapping[str, Path] | None = None,
                   ) -> tuple[Path, EvaluationSummary | None]:
    run_dir = train_method(task, method, config, out_dir, extra_labelled=extra_labelled, progress=progress,
                           force=force, candidate_dirs=candidate_dirs)
    return run_dir, evaluate_run(run_dir, task.with_preprocessing(config.preprocessing), progress=progress)

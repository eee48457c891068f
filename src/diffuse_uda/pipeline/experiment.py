"""One method on one task, end to end: train -> predict the target test split -> evaluate.

This is the single evaluation path every method goes through (``demo``, ``bench``, ``run``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diffuse_uda.config import RunConfig
from diffuse_uda.data.dataset_json import has_split
from diffuse_uda.data.task import Task
from diffuse_uda.evaluation.evaluate import EvaluationSummary, evaluate_predictions, load_summary
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.inference.predict import predict_dataset
from diffuse_uda.pipeline.train import train_method

PREDICTIONS = "predictions_target_test"
EVALUATION = "evaluation"


def evaluate_run(run_dir: Path, task: Task, progress: bool = True) -> EvaluationSummary | None:
    """Predict the held-out target test images with the run's model and score them.

    Returns None when the target dataset has no labelled test split. Training is finished before
    this is called, so nothing here can influence training or model choice."""
    run_dir = Path(run_dir)
    summary_path = run_dir / EVALUATION / "summary.json"
    if summary_path.is_file():
        return load_summary(summary_path)
    if not has_split(task.target_dir, "Ts"):
        return None
    preds = predict_dataset(run_dir, task.target_dir, run_dir / PREDICTIONS, split="Ts", progress=progress)
    return score_test_predictions(preds, task, run_dir, progress)


def score_test_predictions(predictions: Path, task: Task, run_dir: Path, progress: bool = True) -> EvaluationSummary:
    """Score finished target-test predictions into ``run_dir/evaluation`` (also used by methods that
    predict without a model bundle, such as HEAL)."""
    return evaluate_predictions(predictions, ReferenceLabels(task.target_dir, split="Ts"), run_dir / EVALUATION,
                                progress=progress)


def run_experiment(task: Task, method: str, config: RunConfig, out_dir: Path,
                   extra_labelled: Sequence[Path] = (), progress: bool = True) -> tuple[Path, EvaluationSummary | None]:
    run_dir = train_method(task, method, config, out_dir, extra_labelled=extra_labelled, progress=progress)
    return run_dir, evaluate_run(run_dir, task.with_preprocessing(config.preprocessing), progress=progress)

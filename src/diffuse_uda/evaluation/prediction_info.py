"""``prediction.json``: the label map (and provenance) that travels with a folder of predictions.

Evaluation compares it with the reference dataset's label map before scoring, so a prediction folder
can never be scored against a reference that declares other classes, or the same classes under
other names (each Dice would then be reported under the wrong name, or a class the model cannot
output would be scored).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from diffuse_uda.data.io import atomic_write_json
from diffuse_uda.errors import DataError

PREDICTION_INFO = "prediction.json"


def write_prediction_info(prediction_dir: Path, labels: dict[str, int], **provenance: Any) -> Path:
    """Record the label map of the predictions in ``prediction_dir`` (plus where they came from)."""
    path = Path(prediction_dir) / PREDICTION_INFO
    atomic_write_json(path, {"labels": {k: int(v) for k, v in labels.items()}, **provenance})
    return path


def read_prediction_labels(prediction_dir: Path) -> dict[str, int] | None:
    """The label map of a prediction folder: its ``prediction.json``, or the ``dataset.json`` of the
    dataset it is the ``labels{Tr,Ts}`` folder of (pseudo-labels, synthetic data); None if neither."""
    prediction_dir = Path(prediction_dir)
    info = prediction_dir / PREDICTION_INFO
    if info.is_file():
        try:
            labels = json.loads(info.read_text())["labels"]
            return {str(k): int(v) for k, v in labels.items()}
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(info, f"unreadable prediction label map ({exc})") from None
    if prediction_dir.name.startswith("labels") and (prediction_dir.parent / "dataset.json").is_file():
        from diffuse_uda.data.dataset_json import load_dataset_json

        return dict(load_dataset_json(prediction_dir.parent).labels)
    return None


def check_label_maps(prediction_dir: Path, predicted: dict[str, int], reference: dict[str, int],
                     reference_dir: Path) -> None:
    """DataError unless both label maps are identical, names and values."""
    if predicted == reference:
        return
    problems = []
    for name in sorted(set(predicted) | set(reference)):
        p, r = predicted.get(name), reference.get(name)
        if p == r:
            continue
        if p is None:
            problems.append(f"the reference declares {name}={r}, which the predictions do not have")
        elif r is None:
            problems.append(f"the predictions have {name}={p}, which the reference does not declare")
        else:
            problems.append(f"{name} is {p} in the predictions but {r} in the reference")
    raise DataError(prediction_dir, f"label map differs from the reference {reference_dir}: " + "; ".join(problems))

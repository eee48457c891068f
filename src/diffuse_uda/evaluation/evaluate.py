"""Score a folder of predictions against reference labels and write per-case and summary tables.

Outputs (all written atomically into ``out_dir``):

* ``per_case.csv``: one row per (case, class) with dice, hd95, assd, nsd (NaN written as ``nan``);
* ``summary.json``: per class and metric mean/std/n/n_nan, the foreground mean (classes averaged per
  case first, then over cases; a case with a NaN class distance has a NaN foreground distance) and
  metadata (what was compared with what); NaN is stored as null;
* ``summary.md``: a small markdown table, Dice and NSD in %, distances in mm.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from diffuse_uda.data.io import atomic_write_json, atomic_write_text, read_nifti, spacing_from_affine
from diffuse_uda.data.orientation import reorient_to_grid
from diffuse_uda.errors import DataError
from diffuse_uda.evaluation.metrics import METRICS, case_metrics
from diffuse_uda.evaluation.prediction_info import PREDICTION_INFO, check_label_maps, read_prediction_labels
from diffuse_uda.evaluation.reference import ReferenceLabels, validate_label_map
from diffuse_uda.evaluation.statistics import describe

PREDICTION_SUFFIX = ".nii.gz"
MEAN_FOREGROUND = "mean_foreground"
# Affines are stored as float32 in NIfTI headers; this absorbs rounding but not a real misregistration.
_AFFINE_ATOL_MM = 1e-3

# metric -> (column header, scale factor, decimals)
_DISPLAY: dict[str, tuple[str, float, int]] = {
    "dice": ("Dice (%)", 100.0, 1),
    "hd95": ("HD95 (mm)", 1.0, 2),
    "assd": ("ASSD (mm)", 1.0, 2),
    "nsd": ("NSD (%)", 100.0, 1),
}

PerCase = dict[str, dict[str, dict[str, float]]]
"""case id -> class name -> metric -> value."""


def _nan_to_none(obj: Any) -> Any:
    """Recursively replace NaN floats by None so the JSON stays strict (no bare NaN tokens)."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def _stats_from_json(obj: Mapping[str, Any]) -> dict[str, float]:
    return {
        "mean": math.nan if obj.get("mean") is None else float(obj["mean"]),
        "std": math.nan if obj.get("std") is None else float(obj["std"]),
        "n": int(obj.get("n", 0)),
        "n_nan": int(obj.get("n_nan", 0)),
    }


@dataclass
class EvaluationSummary:
    """Aggregated evaluation of one prediction folder.

    Attributes:
        per_class: class name -> metric -> {"mean", "std", "n", "n_nan"}.
        mean_foreground: metric -> {"mean", "std", "n", "n_nan"} of the per-case class average.
        metadata: provenance (prediction_dir, reference dataset and split, n_cases, nsd tolerance...).
    """

    per_class: dict[str, dict[str, dict[str, float]]]
    mean_foreground: dict[str, dict[str, float]]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.per_class)

    def mean(self, metric: str, class_name: str = MEAN_FOREGROUND) -> float:
        """Mean of ``metric`` for one class, or the foreground mean by default."""
        stats = self.mean_foreground if class_name == MEAN_FOREGROUND else self.per_class[class_name]
        return float(stats[metric]["mean"])

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> null), the layout of summary.json."""
        return _nan_to_none(
            {"metadata": self.metadata, "per_class": self.per_class, MEAN_FOREGROUND: self.mean_foreground}
        )

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> EvaluationSummary:
        """Inverse of :meth:`to_json` (null -> NaN)."""
        per_class = {
            cls_name: {metric: _stats_from_json(s) for metric, s in metrics.items()}
            for cls_name, metrics in obj["per_class"].items()
        }
        mean_fg = {metric: _stats_from_json(s) for metric, s in obj[MEAN_FOREGROUND].items()}
        return cls(per_class=per_class, mean_foreground=mean_fg, metadata=dict(obj.get("metadata", {})))


def load_summary(path: Path) -> EvaluationSummary:
    """Read a summary.json written by :func:`evaluate_predictions`."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text())
        return EvaluationSummary.from_json(obj)
    except FileNotFoundError:
        raise DataError(path, "evaluation summary not found") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"not a valid evaluation summary ({exc})") from None


def load_per_case(path: Path) -> PerCase:
    """Read a per_case.csv back into case -> class -> metric -> value (for paired tests)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "per-case metrics file not found")
    out: PerCase = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                out.setdefault(row["case"], {})[row["class"]] = {m: float(row[m]) for m in METRICS}
            except (KeyError, TypeError, ValueError) as exc:
                raise DataError(path, f"malformed row {row} ({exc})") from None
    return out


def summarise(
    per_case: PerCase, class_names: Sequence[str], metadata: Mapping[str, Any] | None = None
) -> EvaluationSummary:
    """Aggregate per-case metrics into an :class:`EvaluationSummary`."""
    cases = list(per_case)
    per_class = {
        name: {m: describe(per_case[c][name][m] for c in cases) for m in METRICS} for name in class_names
    }
    mean_fg: dict[str, dict[str, float]] = {}
    for m in METRICS:
        # Average over classes first so every case weighs the same. A case with any NaN class
        # (a structure missed or hallucinated) gets a NaN mean distance, counted in n_nan, rather
        # than a flattering mean over only the classes it happened to find.
        case_means = [
            float(np.mean([per_case[c][name][m] for name in class_names])) if class_names else math.nan
            for c in cases
        ]
        mean_fg[m] = describe(case_means)
    return EvaluationSummary(per_class=per_class, mean_foreground=mean_fg, metadata=dict(metadata or {}))


def format_stat(stats: Mapping[str, float], metric: str) -> str:
    """'mean ± std' in display units (Dice/NSD in %), with the NaN count when some were dropped."""
    _, scale, decimals = _DISPLAY[metric]
    mean, std = float(stats["mean"]), float(stats["std"])
    text = "n/a" if math.isnan(mean) else f"{mean * scale:.{decimals}f} ± {std * scale:.{decimals}f}"
    n_nan = int(stats.get("n_nan", 0))
    if n_nan:
        text += f" ({n_nan} NaN)"
    return text


def metric_header(metric: str) -> str:
    """Column header with unit, e.g. 'Dice (%)' or 'HD95 (mm)'."""
    return _DISPLAY[metric][0]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Render a GitHub-flavoured markdown table ('|' inside cells is escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = [
        "| " + " | ".join(cell(h) for h in headers) + " |",
        "|" + "|".join(" --- " for _ in headers) + "|",
    ]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"table row has {len(row)} cells but there are {len(headers)} headers")
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def summary_table(summary: EvaluationSummary) -> tuple[list[str], list[list[str]]]:
    """Headers and rows (one per class plus the foreground mean) of a single-summary results table."""
    headers = ["Class"] + [metric_header(m) for m in METRICS]
    rows = [
        [name] + [format_stat(summary.per_class[name][m], m) for m in METRICS] for name in summary.per_class
    ]
    rows.append(["Mean (foreground)"] + [format_stat(summary.mean_foreground[m], m) for m in METRICS])
    return headers, rows


def _per_case_csv(per_case: PerCase, class_names: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", "class", *METRICS])
    for case_id, classes in per_case.items():
        for name in class_names:
            writer.writerow([case_id, name, *(repr(float(classes[name][m])) for m in METRICS)])
    return buf.getvalue()


def _summary_markdown(summary: EvaluationSummary) -> str:
    meta = summary.metadata
    headers, rows = summary_table(summary)
    lines = [
        "# Evaluation summary",
        "",
        f"- predictions: `{meta.get('prediction_dir', '?')}`",
        f"- reference: `{meta.get('reference_dataset', '?')}` split `{meta.get('reference_split', '?')}`",
        f"- cases: {meta.get('n_cases', '?')}; NSD tolerance: {meta.get('nsd_tolerance_mm', '?')} mm",
        "- mean ± std over cases; NaN distances (structure missing in exactly one mask) are excluded "
        "and counted.",
        "",
        "",
    ]
    return "\n".join(lines) + markdown_table(headers, rows)


def _load_prediction(
    path: Path, ref_shape: tuple[int, ...], ref_affine: np.ndarray, allowed: np.ndarray
) -> np.ndarray:
    """Read one prediction and check it lives in the reference's image space with declared labels.

    A prediction in another orientation of the same grid (``predict --original-orientation`` of a
    reoriented import) is moved onto the reference's grid first: only axes are permuted or flipped.
    """
    if not path.is_file():
        raise DataError(path, "prediction is missing")
    array, affine = read_nifti(path)
    array = np.asarray(array)
    affine = np.asarray(affine, dtype=np.float64)
    same_grid = tuple(array.shape) == tuple(ref_shape) and affine.shape == ref_affine.shape and np.allclose(
        affine, ref_affine, rtol=1e-5, atol=_AFFINE_ATOL_MM)
    if not same_grid and array.ndim in (2, 3) and affine.shape == (4, 4):
        moved = reorient_to_grid(array, affine, ref_affine, tuple(ref_shape), atol=_AFFINE_ATOL_MM)
        if moved is not None:
            return validate_label_map(path, moved, allowed, what="prediction")
    if tuple(array.shape) != tuple(ref_shape):
        raise DataError(
            path,
            f"prediction shape {tuple(array.shape)} differs from reference label shape {tuple(ref_shape)}; "
            "predictions must be in the original image space of the case",
        )
    if not same_grid:
        raise DataError(
            path,
            "prediction affine differs from the reference label affine; "
            f"got {affine.tolist()}, expected {ref_affine.tolist()}",
        )
    return validate_label_map(path, array, allowed, what="prediction")


def evaluate_predictions(
    prediction_dir: Path,
    reference: ReferenceLabels,
    out_dir: Path,
    nsd_tolerance_mm: float = 2.0,
    progress: bool = True,
    labels: dict[str, int] | None = None,
    metadata: dict[str, Any] | None = None,
) -> EvaluationSummary:
    """Evaluate ``prediction_dir/{case}.nii.gz`` against every case of ``reference``.

    The predictions' label map (``labels``, else their ``prediction.json`` or dataset.json) must equal
    the reference's, names included. Each prediction must have the shape and affine of its reference
    label (original image space); otherwise a :class:`DataError` names the prediction file. Spacing is
    taken from the reference affine. Writes per_case.csv, summary.json and summary.md into ``out_dir``
    (``metadata`` is added to the summary's) and returns the summary.
    """
    prediction_dir = Path(prediction_dir)
    out_dir = Path(out_dir)
    if not prediction_dir.is_dir():
        raise DataError(prediction_dir, "prediction folder does not exist")
    predicted_labels = labels if labels is not None else read_prediction_labels(prediction_dir)
    if predicted_labels is None:
        raise DataError(prediction_dir, f"no label map for these predictions ({PREDICTION_INFO} is written by "
                                        "`diffuse-uda predict`); for other predictions give it with --labels "
                                        "NAME=VALUE,...")
    check_label_maps(prediction_dir, predicted_labels, reference.labels, reference.dataset_dir)
    class_names = [n for n, v in sorted(reference.labels.items(), key=lambda kv: kv[1]) if int(v) != 0]
    allowed = np.array(sorted({int(v) for v in reference.labels.values()}), dtype=np.int64)

    per_case: PerCase = {}
    for case_id in tqdm(reference.case_ids, desc="evaluate", unit="case", disable=not progress):
        ref, ref_affine = reference.load(case_id)
        pred_path = prediction_dir / f"{case_id}{PREDICTION_SUFFIX}"
        pred = _load_prediction(pred_path, ref.shape, ref_affine, allowed)
        spacing = spacing_from_affine(ref_affine)
        per_case[case_id] = case_metrics(pred, ref, reference.labels, spacing, nsd_tolerance_mm)

    metadata = {
        "prediction_dir": str(prediction_dir.resolve()),
        "reference_dataset": str(reference.dataset_dir.resolve()),
        "reference_name": reference.name,
        "reference_split": reference.split,
        "n_cases": len(per_case),
        "classes": class_names,
        "nsd_tolerance_mm": float(nsd_tolerance_mm),
        **(metadata or {}),
        "conventions": "both empty: dice=nsd=1, hd95=assd=0; one empty: dice=nsd=0, hd95=assd=NaN "
        "(excluded from means, counted in n_nan; a case's foreground mean is NaN if any class is NaN)",
    }
    summary = summarise(per_case, class_names, metadata)

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "per_case.csv", _per_case_csv(per_case, class_names))
    atomic_write_json(out_dir / "summary.json", summary.to_json())
    atomic_write_text(out_dir / "summary.md", _summary_markdown(summary))
    return summary

"""Per-case segmentation metrics (Dice, HD95, ASSD, NSD) in physical units, computed with MONAI.

Conventions for empty structures (a class absent from the prediction and/or the reference):

* both empty: dice = 1, nsd = 1, hd95 = 0, assd = 0 (a perfect "nothing there" answer);
* exactly one empty: dice = 0, nsd = 0, hd95 = NaN, assd = NaN (a distance to nothing is undefined).

Summary statistics therefore use NaN-aware means and report how many values were NaN
(see :mod:`diffuse_uda.evaluation.statistics`).

Arrays are label maps with integer class values. A 3D array whose last axis has length 1
(a 2D photo stored as a one-slice NIfTI volume) is evaluated as 2D: the singleton axis and
its spacing are dropped so that surfaces are 2D contours rather than the two faces of a slab.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)

METRICS: tuple[str, ...] = ("dice", "hd95", "assd", "nsd")
"""Metric names in the order they appear in tables and CSV files."""

HIGHER_IS_BETTER: dict[str, bool] = {"dice": True, "hd95": False, "assd": False, "nsd": True}
"""Direction of each metric: Dice and NSD are overlaps (higher is better), HD95/ASSD are mm distances."""

METRIC_UNITS: dict[str, str] = {"dice": "", "hd95": "mm", "assd": "mm", "nsd": ""}

_BOTH_EMPTY: dict[str, float] = {"dice": 1.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0}
_ONE_EMPTY: dict[str, float] = {"dice": 0.0, "hd95": math.nan, "assd": math.nan, "nsd": 0.0}


def foreground_classes(labels: Mapping[str, int]) -> list[tuple[str, int]]:
    """Return (name, value) of every non-background class, ordered by label value."""
    out: list[tuple[str, int]] = []
    for name, value in labels.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(
                f"label {name!r} has value {value!r}; only integer labels are supported (no regions)"
            )
        if int(value) != 0:
            out.append((name, int(value)))
    return sorted(out, key=lambda item: item[1])


def _prepare(
    prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Check shapes/spacing and collapse a trailing singleton Z axis to a true 2D problem."""
    pred = np.asarray(prediction)
    ref = np.asarray(reference)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    spc = tuple(float(s) for s in spacing)
    if pred.ndim not in (2, 3):
        raise ValueError(f"expected a 2D or 3D label map, got shape {pred.shape}")
    if len(spc) < pred.ndim:
        raise ValueError(f"spacing {spc} has fewer entries than the {pred.ndim} array axes")
    spc = spc[: pred.ndim]
    if any(not math.isfinite(s) or s <= 0 for s in spc):
        raise ValueError(f"spacing must be positive and finite, got {spc}")
    if pred.ndim == 3 and pred.shape[2] == 1:
        # A one-slice volume is a 2D image; treating it as 3D would make every pixel a surface voxel.
        pred, ref, spc = pred[:, :, 0], ref[:, :, 0], spc[:2]
    return pred, ref, spc


def case_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    labels: Mapping[str, int],
    spacing: Sequence[float],
    nsd_tolerance_mm: float = 2.0,
) -> dict[str, dict[str, float]]:
    """Compute Dice, HD95 (mm), ASSD (mm) and NSD for every foreground class of one case.

    Args:
        prediction: integer label map, (X, Y, Z), (X, Y, 1) or (X, Y).
        reference: ground-truth label map of the same shape.
        labels: class name -> label value (as in dataset.json); value 0 is background and skipped.
        spacing: voxel size in mm per axis (extra trailing entries are ignored).
        nsd_tolerance_mm: boundary tolerance of the normalised surface Dice.

    Returns:
        {class name: {"dice", "hd95", "assd", "nsd"}}; see the module docstring for empty-mask rules.
    """
    if not nsd_tolerance_mm >= 0:
        raise ValueError(f"nsd_tolerance_mm must be >= 0, got {nsd_tolerance_mm}")
    pred, ref, spc = _prepare(prediction, reference, spacing)
    results: dict[str, dict[str, float]] = {}
    present: list[tuple[str, np.ndarray, np.ndarray]] = []
    for name, value in foreground_classes(labels):
        p_mask = pred == value
        r_mask = ref == value
        p_any, r_any = bool(p_mask.any()), bool(r_mask.any())
        if not p_any and not r_any:
            results[name] = dict(_BOTH_EMPTY)
        elif p_any != r_any:
            results[name] = dict(_ONE_EMPTY)
        else:
            results[name] = {}
            present.append((name, p_mask, r_mask))

    if present:
        # Only classes present in both masks go to MONAI, so its empty-mask NaN/inf paths never run
        # and our documented conventions above are the single source of truth for those cases.
        y_pred = torch.from_numpy(np.stack([p for _, p, _ in present])[None].astype(np.uint8))
        y_ref = torch.from_numpy(np.stack([r for _, _, r in present])[None].astype(np.uint8))
        with warnings.catch_warnings():
            # MONAI emits deprecation chatter from its internals on every call.
            warnings.simplefilter("ignore", FutureWarning)
            dice = compute_dice(y_pred, y_ref, include_background=True)
            hd95 = compute_hausdorff_distance(
                y_pred, y_ref, include_background=True, percentile=95, spacing=list(spc)
            )
            assd = compute_average_surface_distance(
                y_pred, y_ref, include_background=True, symmetric=True, spacing=list(spc)
            )
            nsd = compute_surface_dice(
                y_pred.bool(),
                y_ref.bool(),
                class_thresholds=[float(nsd_tolerance_mm)] * len(present),
                include_background=True,
                spacing=list(spc),
            )
        for idx, (name, _, _) in enumerate(present):
            results[name] = {
                "dice": float(dice[0, idx]),
                "hd95": float(hd95[0, idx]),
                "assd": float(assd[0, idx]),
                "nsd": float(nsd[0, idx]),
            }
    return results

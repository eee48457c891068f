"""Metric values on hand-made masks, including empty-mask conventions and the 2D (Z == 1) path."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diffuse_uda.evaluation.metrics import HIGHER_IS_BETTER, METRICS, case_metrics

LABELS = {"background": 0, "A": 1, "B": 2}


def _square(shape: tuple[int, ...], lo: int, hi: int, value: int = 1) -> np.ndarray:
    arr = np.zeros(shape, dtype=np.uint8)
    arr[tuple(slice(lo, hi) for _ in shape)] = value
    return arr


def test_metric_names_and_direction() -> None:
    assert METRICS == ("dice", "hd95", "assd", "nsd")
    assert HIGHER_IS_BETTER == {"dice": True, "hd95": False, "assd": False, "nsd": True}


def test_identical_masks_are_perfect() -> None:
    ref = _square((12, 12, 6), 2, 8)
    ref[9:11, 9:11, 1:4] = 2
    out = case_metrics(ref, ref.copy(), LABELS, (1.0, 1.0, 2.0))
    assert set(out) == {"A", "B"}
    for cls in ("A", "B"):
        assert out[cls]["dice"] == pytest.approx(1.0)
        assert out[cls]["hd95"] == pytest.approx(0.0)
        assert out[cls]["assd"] == pytest.approx(0.0)
        assert out[cls]["nsd"] == pytest.approx(1.0)


@pytest.mark.parametrize(("axis", "spacing", "expected"), [(0, (2.0, 0.5, 1.0), 4.0), (1, (2.0, 0.5, 1.0), 1.0)])
def test_shifted_cube_hd95_is_shift_times_spacing(axis: int, spacing: tuple[float, ...], expected: float) -> None:
    # A 2-voxel shift along one axis: the farthest boundary points are exactly 2 * spacing apart,
    # so anisotropic spacing must be honoured per axis.
    ref = _square((16, 16, 16), 3, 11)
    pred = np.roll(ref, 2, axis=axis)
    out = case_metrics(pred, ref, {"background": 0, "A": 1}, spacing)
    assert out["A"]["hd95"] == pytest.approx(expected)
    assert 0 < out["A"]["assd"] < expected
    assert out["A"]["dice"] == pytest.approx(6 / 8)


def test_nsd_tolerance_in_mm() -> None:
    ref = _square((16, 16, 16), 3, 11)
    pred = np.roll(ref, 1, axis=0)
    loose = case_metrics(pred, ref, {"background": 0, "A": 1}, (1.0, 1.0, 1.0), nsd_tolerance_mm=2.0)
    tight = case_metrics(pred, ref, {"background": 0, "A": 1}, (1.0, 1.0, 1.0), nsd_tolerance_mm=0.5)
    assert loose["A"]["nsd"] == pytest.approx(1.0)
    assert tight["A"]["nsd"] < 1.0


def test_empty_conventions() -> None:
    ref = _square((10, 10, 4), 2, 6)  # class A only in reference; class B nowhere
    pred = np.zeros_like(ref)
    out = case_metrics(pred, ref, LABELS, (1.0, 1.0, 1.0))
    assert out["A"]["dice"] == 0.0 and out["A"]["nsd"] == 0.0
    assert math.isnan(out["A"]["hd95"]) and math.isnan(out["A"]["assd"])
    assert out["B"] == {"dice": 1.0, "hd95": 0.0, "assd": 0.0, "nsd": 1.0}
    # The symmetric case (false positive only) follows the same rule.
    out = case_metrics(ref, pred, LABELS, (1.0, 1.0, 1.0))
    assert out["A"]["dice"] == 0.0 and math.isnan(out["A"]["hd95"])


def test_singleton_z_is_evaluated_in_2d() -> None:
    ref = _square((20, 20), 5, 15)[..., None]
    pred = np.roll(ref, 3, axis=1)
    out = case_metrics(pred, ref, {"background": 0, "A": 1}, (0.5, 0.25, 7.0))
    # 2D contours: the shift along axis 1 is 3 * 0.25 mm; the slab thickness (7 mm) plays no role.
    assert out["A"]["hd95"] == pytest.approx(0.75)
    assert out["A"]["dice"] == pytest.approx(7 / 10)
    same = case_metrics(ref, ref, {"background": 0, "A": 1}, (0.5, 0.25, 7.0))
    assert same["A"]["hd95"] == 0.0 and same["A"]["nsd"] == pytest.approx(1.0)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        case_metrics(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)), LABELS, (1.0, 1.0, 1.0))

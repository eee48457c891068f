"""NaN-aware summaries, gap closed and the paired Wilcoxon test."""

from __future__ import annotations

import math

import pytest

from diffuse_uda.evaluation.statistics import describe, gap_closed, mean_std, wilcoxon_paired


def test_mean_std_ignores_nan() -> None:
    mean, std = mean_std([1.0, float("nan"), 3.0])
    assert mean == pytest.approx(2.0) and std == pytest.approx(1.0)
    assert all(math.isnan(v) for v in mean_std([float("nan")]))
    assert describe([1.0, float("nan")]) == {"mean": 1.0, "std": 0.0, "n": 2, "n_nan": 1}


def test_gap_closed() -> None:
    assert gap_closed(0.7, 0.5, 0.9) == pytest.approx(0.5)
    assert gap_closed(0.9, 0.5, 0.9) == pytest.approx(1.0)
    assert gap_closed(0.4, 0.5, 0.9) == pytest.approx(-0.25)
    # lower-is-better metric (HD95 in mm): still the fraction of the way from lower to upper bound
    assert gap_closed(6.0, 10.0, 2.0) == pytest.approx(0.5)
    assert math.isnan(gap_closed(0.7, 0.5, 0.5))
    assert math.isnan(gap_closed(float("nan"), 0.5, 0.9))


def test_wilcoxon_paired() -> None:
    a = {f"c{i}": 0.8 + 0.01 * i for i in range(10)}
    b = {f"c{i}": 0.7 + 0.012 * i for i in range(10)}
    b["extra"] = 0.1  # unmatched case is ignored
    p = wilcoxon_paired(a, b)
    assert 0.0 < p < 0.01
    assert wilcoxon_paired([0.5, 0.6], [0.5, 0.6]) == 1.0
    assert math.isnan(wilcoxon_paired([float("nan")], [1.0]))
    with pytest.raises(ValueError):
        wilcoxon_paired([1.0, 2.0], [1.0])

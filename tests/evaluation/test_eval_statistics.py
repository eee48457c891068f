"""NaN-aware summaries, gap closed and the paired Wilcoxon test."""

from __future__ import annotations

import math

import pytest

from diffuse_uda.evaluation.statistics import describe, gap_closed, group_means, mean_std, wilcoxon_paired


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


def test_group_means_count_each_group_once() -> None:
    values = {"s1_f1": 0.2, "s1_f2": 0.4, "s1_f3": float("nan"), "s2_f1": 0.9, "lone": 0.5}
    groups = {"s1_f1": "s1", "s1_f2": "s1", "s1_f3": "s1", "s2_f1": "s2"}
    assert group_means(values, groups) == pytest.approx({"s1": 0.3, "s2": 0.9, "lone": 0.5})
    # Many near-duplicate frames make a frame-level test "significant" that the sequences do not support.
    a = {f"s{s}_f{f}": 0.5 + (0.1 if s < 3 else -0.1) + 0.001 * f for s in range(4) for f in range(30)}
    b = {case: 0.5 for case in a}
    frames = {case: case.split("_")[0] for case in a}
    assert wilcoxon_paired(a, b) < 1e-3
    assert wilcoxon_paired(group_means(a, frames), group_means(b, frames)) > 0.05

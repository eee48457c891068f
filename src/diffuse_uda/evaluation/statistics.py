"""Summary statistics for metric tables: NaN-aware mean/std, gap closed, paired Wilcoxon test."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from scipy import stats


def _as_float_array(values: Iterable[float]) -> np.ndarray:
    return np.asarray(list(values), dtype=np.float64).reshape(-1)


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and population standard deviation (ddof=0) ignoring NaN; (NaN, NaN) if nothing is left."""
    arr = _as_float_array(values)
    finite = arr[~np.isnan(arr)]
    if finite.size == 0:
        # Avoid numpy's "mean of empty slice" warning: an all-NaN column is simply undefined.
        return math.nan, math.nan
    return float(finite.mean()), float(finite.std())


def describe(values: Iterable[float]) -> dict[str, float]:
    """{"mean", "std", "n", "n_nan"}: NaN-aware mean/std plus counts so dropped values stay visible."""
    arr = _as_float_array(values)
    mean, std = mean_std(arr)
    return {"mean": mean, "std": std, "n": int(arr.size), "n_nan": int(np.isnan(arr).sum())}


def gap_closed(method: float, lower: float, upper: float) -> float:
    """Fraction of the lower->upper bound gap closed: (method - lower) / (upper - lower).

    NaN when the bounds coincide (no gap to close) or any input is NaN. For lower-is-better
    metrics (HD95, ASSD) the formula works unchanged because numerator and denominator flip together.
    """
    if any(math.isnan(float(x)) for x in (method, lower, upper)):
        return math.nan
    denom = float(upper) - float(lower)
    if denom == 0.0:
        return math.nan
    return (float(method) - float(lower)) / denom


def wilcoxon_paired(
    a: Mapping[str, float] | Sequence[float],
    b: Mapping[str, float] | Sequence[float],
) -> float:
    """Two-sided Wilcoxon signed-rank p-value for paired per-case values.

    ``a`` and ``b`` are either mappings case id -> value (paired on the cases both contain) or
    equal-length sequences already in matching case order. Pairs with a NaN on either side are
    dropped. Returns NaN with no usable pair and 1.0 when every difference is zero (identical results).
    """
    if isinstance(a, Mapping) != isinstance(b, Mapping):
        raise TypeError("wilcoxon_paired needs two mappings or two sequences, not one of each")
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        cases = sorted(set(a) & set(b))
        x = _as_float_array(a[c] for c in cases)
        y = _as_float_array(b[c] for c in cases)
    else:
        x = _as_float_array(a)
        y = _as_float_array(b)
        if x.size != y.size:
            raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size == 0:
        return math.nan
    if np.all(x == y):
        # scipy cannot rank all-zero differences; there is no evidence of any difference.
        return 1.0
    return float(stats.wilcoxon(x, y, alternative="two-sided").pvalue)


def group_means(values: Mapping[str, float], groups: Mapping[str, str]) -> dict[str, float]:
    """Per-case values averaged within each group (case id -> group, e.g. a video sequence or a patient); a case
    without a group is its own group and NaN values are left out.

    A paired test over frames of a few video sequences treats near-duplicate frames as independent replicates and
    reports p-values far too small; over the group means, each sequence counts once."""
    acc: dict[str, list[float]] = {}
    for case, value in values.items():
        if not math.isnan(float(value)):
            acc.setdefault(groups.get(case, case), []).append(float(value))
    return {group: float(np.mean(v)) for group, v in acc.items()}

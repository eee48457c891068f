"""Figures for reports: per-class bar charts, overlay montages and training curves.

Figures are built on matplotlib's Agg canvas directly (no pyplot global state, no display needed),
so the module is safe to use from headless jobs and does not disturb the caller's backend.
Every plotting function writes its PNG atomically (temp file + os.replace) and returns the path.
"""

from __future__ import annotations

import csv
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.axes import Axes

# The Agg canvas is attached explicitly to each Figure, so nothing depends on (or changes) the
# globally selected pyplot backend and no display is ever needed.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from diffuse_uda.errors import DataError

_OVERLAY_ALPHA = 0.45
_UPPER_BOUND_MARKERS = ("oracle", "target-supervised")

MontageRow = tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None]


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, out_path: str | Path) -> Path:
    """Write ``fig`` to ``out_path`` via a hidden temp sibling so readers never see half a PNG."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.parent / f".{out_path.name}.{uuid.uuid4().hex[:12]}.tmp.png"
    try:
        fig.savefig(tmp, format="png", bbox_inches="tight")
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out_path


def is_upper_bound(method: str) -> bool:
    """True for target-supervised reference methods ("oracle", "target-supervised"), shown as bounds."""
    norm = method.lower().replace("_", "-").replace(" ", "-")
    return any(marker in norm for marker in _UPPER_BOUND_MARKERS)


def class_color(value: int) -> tuple[float, float, float]:
    """Fixed RGB colour of a label value, identical in every figure (tab10, cycling)."""
    rgba = matplotlib.colormaps["tab10"]((int(value) - 1) % 10)
    return (float(rgba[0]), float(rgba[1]), float(rgba[2]))


def plot_class_bars(
    results: Mapping[str, Mapping[str, tuple[float, float]]],
    out_path: str | Path,
    metric_name: str = "Dice (%)",
    title: str | None = None,
) -> Path:
    """Grouped bar chart: classes on the x axis, one bar per method (mean with std error bar).

    ``results`` maps method -> class -> (mean, std). Methods whose name marks them as an upper
    bound (see :func:`is_upper_bound`) are hatched and labelled "(upper bound)" in the legend.
    NaN means are left out (no bar); a NaN std draws no error bar.
    """
    methods = list(results)
    if not methods:
        raise ValueError("plot_class_bars needs at least one method")
    classes: list[str] = []
    for per_class in results.values():
        classes.extend(c for c in per_class if c not in classes)
    n_m = len(methods)
    width = 0.8 / n_m
    x = np.arange(len(classes), dtype=float)
    fig = _new_figure(max(5.0, 1.2 * len(classes) * max(1, n_m) * 0.5 + 2.0), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    cmap = matplotlib.colormaps["tab10"]
    for i, method in enumerate(methods):
        means = np.array([results[method].get(c, (math.nan, math.nan))[0] for c in classes], dtype=float)
        stds = np.array([results[method].get(c, (math.nan, math.nan))[1] for c in classes], dtype=float)
        stds = np.where(np.isfinite(stds), stds, 0.0)
        upper = is_upper_bound(method)
        ax.bar(
            x + (i - (n_m - 1) / 2) * width,
            np.where(np.isfinite(means), means, 0.0),
            width,
            yerr=np.where(np.isfinite(means), stds, 0.0),
            capsize=3,
            color=cmap(i % 10),
            edgecolor="black",
            linewidth=0.6,
            hatch="//" if upper else None,
            label=f"{method} (upper bound)" if upper else method,
        )
    ax.set_xticks(x)
    ax.set_xticklabels(classes)
    ax.set_ylabel(metric_name)
    if title:
        ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save_png(fig, out_path)


def pick_slice(label_or_pred: np.ndarray) -> int:
    """Index along the last (axial) axis with the most foreground voxels; the middle slice if none.

    A 2D array returns 0.
    """
    arr = np.asarray(label_or_pred)
    if arr.ndim == 2:
        return 0
    if arr.ndim != 3:
        raise ValueError(f"pick_slice expects a 2D or 3D label map, got shape {arr.shape}")
    counts = (arr > 0).reshape(-1, arr.shape[-1]).sum(axis=0)
    if counts.max(initial=0) == 0:
        return arr.shape[-1] // 2
    return int(np.argmax(counts))


def to_display(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Scale an image to [0, 1] by its ``low``/``high`` percentiles (robust to outliers); float32.

    Colour images (H, W, 3) are scaled jointly so hues are preserved. Constant images give zeros.
    """
    arr = np.asarray(image, dtype=np.float32)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros_like(arr)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        return np.zeros_like(arr)
    out = np.clip((arr - lo) / (hi - lo), 0.0, 1.0)
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def _label_overlay(mask: np.ndarray, labels: Mapping[str, int]) -> np.ndarray:
    """RGBA image colouring each declared foreground class; everything else transparent."""
    rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
    for value in labels.values():
        if int(value) == 0:
            continue
        sel = mask == int(value)
        if sel.any():
            rgba[sel, :3] = class_color(int(value))
            rgba[sel, 3] = _OVERLAY_ALPHA
    return rgba


def _show_base(ax: Axes, image: np.ndarray) -> None:
    disp = to_display(image)
    if disp.ndim == 2:
        ax.imshow(disp, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    else:
        ax.imshow(disp, interpolation="nearest")


def plot_overlay_montage(
    rows: Sequence[MontageRow],
    labels: Mapping[str, int],
    out_path: str | Path,
    title: str | None = None,
) -> Path:
    """Montage with one row per case: image | reference overlay | prediction overlay.

    Each row is (case id, image (H, W) or (H, W, 3), reference (H, W) or None, prediction (H, W)
    or None); a missing mask shows "not available". Arrays are drawn as given (row = first axis),
    so the caller chooses the orientation. Classes use fixed colours (:func:`class_color`).
    """
    if not rows:
        raise ValueError("plot_overlay_montage needs at least one row")
    n = len(rows)
    fig = _new_figure(9.0, 3.0 * n + (0.8 if title else 0.4) + 0.4)
    columns = ("image", "reference", "prediction")
    for r, (case_id, image, reference, prediction) in enumerate(rows):
        image = np.asarray(image)
        if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"case {case_id}: image must be (H, W) or (H, W, 3), got {image.shape}")
        for c, mask in enumerate((None, reference, prediction)):
            ax = fig.add_subplot(n, 3, r * 3 + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c])
            if c == 0:
                ax.set_ylabel(str(case_id))
            _show_base(ax, image)
            if c == 0:
                continue
            if mask is None:
                ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes,
                        color="white", bbox={"facecolor": "black", "alpha": 0.6})
                continue
            mask = np.asarray(mask)
            if mask.shape != image.shape[:2]:
                raise ValueError(
                    f"case {case_id}: {columns[c]} shape {mask.shape} does not match image {image.shape[:2]}"
                )
            ax.imshow(_label_overlay(mask, labels), interpolation="nearest")
    handles = [
        Patch(facecolor=class_color(v), edgecolor="black", label=name)
        for name, v in sorted(labels.items(), key=lambda kv: kv[1])
        if int(v) != 0
    ]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    if title:
        fig.suptitle(title)
    return _save_png(fig, out_path)


def _read_curve_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(path, "training log not found")
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _to_float(value: object) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def plot_training_curves(
    csv_path_or_records: str | Path | Sequence[Mapping[str, object]],
    out_path: str | Path,
    title: str | None = None,
) -> Path:
    """Plot every loss column against ``step`` (or the row index if there is no step column).

    Input is a CSV path with columns step,<loss names...> or the same rows as dicts. Empty cells
    (losses logged at different steps) are skipped; non-numeric columns are ignored. The y axis is
    logarithmic when all plotted values are positive.
    """
    source: Path | None = None
    if isinstance(csv_path_or_records, (str, Path)):
        source = Path(csv_path_or_records)
        records: Sequence[Mapping[str, object]] = _read_curve_csv(source)
    else:
        records = csv_path_or_records
    names: list[str] = []
    for rec in records:
        names.extend(k for k in rec if k not in names)
    x_name = "step" if "step" in names else None
    x = (
        np.array([_to_float(rec.get("step")) for rec in records])
        if x_name
        else np.arange(len(records), dtype=float)
    )
    series: dict[str, np.ndarray] = {}
    for name in names:
        if name == x_name:
            continue
        y = np.array([_to_float(rec.get(name)) for rec in records])
        if np.isfinite(y).any():
            series[name] = y
    if not series:
        problem = "no numeric loss columns to plot"
        if source is not None:
            raise DataError(source, problem)
        raise ValueError(problem)

    fig = _new_figure(7.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    all_values = []
    for name, y in series.items():
        ok = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[ok], y[ok], label=name, linewidth=1.2)
        all_values.append(y[ok])
    values = np.concatenate(all_values)
    if values.size and np.all(values > 0):
        ax.set_yscale("log")
    ax.set_xlabel(x_name or "record")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", frameon=False)
    if title:
        ax.set_title(title)
    return _save_png(fig, out_path)

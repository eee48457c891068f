"""Plots write non-empty PNGs atomically; slice picking and display scaling."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from diffuse_uda.report.plots import (
    is_upper_bound,
    pick_slice,
    plot_class_bars,
    plot_overlay_montage,
    plot_training_curves,
    to_display,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 100 and path.read_bytes()[:8] == PNG_MAGIC


def _no_temp_files(folder: Path) -> bool:
    return not any(p.name.startswith(".") for p in folder.iterdir())


def test_class_bars(tmp_path: Path) -> None:
    results = {
        "source-only": {"Myo": (60.0, 10.0), "LV": (70.0, 8.0)},
        "diffuse-uda": {"Myo": (75.0, 6.0), "LV": (float("nan"), float("nan"))},
        "oracle (target-supervised)": {"Myo": (85.0, 3.0), "LV": (90.0, 2.0)},
    }
    out = plot_class_bars(results, tmp_path / "figs" / "bars.png")
    assert out == tmp_path / "figs" / "bars.png" and _is_png(out)
    assert _no_temp_files(out.parent)
    assert is_upper_bound("Oracle") and is_upper_bound("target_supervised") and not is_upper_bound("ours")


def test_overlay_montage(tmp_path: Path) -> None:
    labels = {"background": 0, "Myo": 1, "LV": 2}
    img = np.random.default_rng(0).normal(size=(16, 20))
    ref = np.zeros((16, 20), dtype=np.uint8)
    ref[4:10, 5:12] = 1
    ref[6:8, 7:9] = 2
    rgb = np.random.default_rng(1).integers(0, 255, size=(16, 20, 3)).astype(np.uint8)
    rows = [("case0", img, ref, np.roll(ref, 1, axis=0)), ("photo1", rgb, None, ref)]
    out = plot_overlay_montage(rows, labels, tmp_path / "montage.png", title="test")
    assert _is_png(out)
    with pytest.raises(ValueError, match="does not match"):
        plot_overlay_montage([("c", img, ref[:5], None)], labels, tmp_path / "bad.png")


def test_pick_slice_and_to_display() -> None:
    vol = np.zeros((8, 8, 5), dtype=np.uint8)
    vol[1:3, 1:3, 1] = 1
    vol[1:6, 1:6, 3] = 2
    assert pick_slice(vol) == 3
    assert pick_slice(np.zeros((4, 4, 6))) == 3
    assert pick_slice(np.zeros((4, 4))) == 0
    disp = to_display(np.arange(100.0).reshape(10, 10))
    assert disp.min() == 0.0 and disp.max() == 1.0
    assert np.all(to_display(np.full((3, 3), 5.0)) == 0.0)


def test_training_curves_from_csv_and_records(tmp_path: Path) -> None:
    csv_path = tmp_path / "log.csv"
    with csv_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "seg_loss", "diffusion_loss"])
        for step in range(10):
            writer.writerow([step, 1.0 / (step + 1), "" if step % 2 else 0.5 / (step + 1)])
    assert _is_png(plot_training_curves(csv_path, tmp_path / "curves.png"))
    records = [{"step": i, "loss": -0.1 * i} for i in range(5)]  # non-positive: linear y axis
    assert _is_png(plot_training_curves(records, tmp_path / "curves2.png"))

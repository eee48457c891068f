"""Markdown report: results table and relative image links."""

from __future__ import annotations

from pathlib import Path

from diffuse_uda.evaluation.evaluate import EvaluationSummary, summarise
from diffuse_uda.report.report import MarkdownReport, write_evaluation_report


def _summary(dice_myo: float, name: str = "x") -> EvaluationSummary:
    per_case = {
        "c0": {"Myo": {"dice": dice_myo, "hd95": 2.0, "assd": 0.5, "nsd": 0.9},
               "LV": {"dice": 0.9, "hd95": float("nan"), "assd": float("nan"), "nsd": 0.0}},
        "c1": {"Myo": {"dice": dice_myo, "hd95": 4.0, "assd": 1.5, "nsd": 0.7},
               "LV": {"dice": 0.8, "hd95": 3.0, "assd": 1.0, "nsd": 0.8}},
    }
    return summarise(per_case, ["Myo", "LV"], {"n_cases": 2, "reference_split": "Ts", "prediction_dir": name})


def test_single_summary_report(tmp_path: Path) -> None:
    fig = tmp_path / "figs" / "bars.png"
    fig.parent.mkdir()
    fig.write_bytes(b"png")
    out = write_evaluation_report(
        tmp_path / "reports" / "eval.md", "Test report", _summary(0.85), {"Dice per class": fig}, notes=["a note"]
    )
    text = out.read_text()
    assert text.startswith("# Test report")
    assert "- a note" in text
    assert "| Class | Dice (%) | HD95 (mm) | ASSD (mm) | NSD (%) |" in text
    assert "| Myo | 85.0 ± 0.0 | 3.00 ± 1.00 | 1.00 ± 0.50 | 80.0 ± 10.0 |" in text
    assert "(1 NaN)" in text and "Mean (foreground)" in text
    assert "![Dice per class](../figs/bars.png)" in text


def test_multi_method_report(tmp_path: Path) -> None:
    summaries = {"source-only": _summary(0.6), "oracle": _summary(0.9)}
    text = write_evaluation_report(tmp_path / "r.md", "Compare", summaries, {}).read_text()
    assert "| Method | Myo | LV | Mean (foreground) |" in text
    assert "| oracle (upper bound) | 90.0 ± 0.0 |" in text
    assert text.count("| Method |") == 4  # one table per metric


def test_builder_relative_paths(tmp_path: Path) -> None:
    report = MarkdownReport("T").heading("Sec").paragraph("text").table(["a", "b"], [[1, "x|y"]])
    report.image(tmp_path / "my figs" / "f.png", "cap")
    out = report.write(tmp_path / "sub" / "rep.md")
    text = out.read_text()
    assert "## Sec" in text and "| 1 | x\\|y |" in text
    assert "![cap](<../my figs/f.png>)" in text

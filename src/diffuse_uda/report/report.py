"""Markdown reports: a small builder plus the standard evaluation report.

:class:`MarkdownReport` collects blocks (headings, paragraphs, lists, tables, images) and renders them
when written, so image links are made relative to wherever the report file ends up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from diffuse_uda.data.io import atomic_write_text
from diffuse_uda.evaluation.evaluate import (
    EvaluationSummary,
    format_stat,
    markdown_table,
    metric_header,
    summary_table,
)
from diffuse_uda.evaluation.metrics import METRICS
from diffuse_uda.report.plots import is_upper_bound


def _link_target(path: Path, base_dir: Path) -> str:
    """Relative POSIX link from ``base_dir`` to ``path``; angle brackets when it has spaces."""
    rel = Path(os.path.relpath(Path(path).resolve(), Path(base_dir).resolve())).as_posix()
    return f"<{rel}>" if " " in rel else rel


class MarkdownReport:
    """Incremental markdown document; every adder returns ``self`` so calls can be chained."""

    def __init__(self, title: str | None = None) -> None:
        # Blocks are (kind, payload); images keep their absolute path until render time.
        self._blocks: list[tuple[str, Any]] = []
        if title:
            self.heading(title, level=1)

    def heading(self, text: str, level: int = 2) -> MarkdownReport:
        if not 1 <= level <= 6:
            raise ValueError(f"heading level must be 1..6, got {level}")
        self._blocks.append(("text", f"{'#' * level} {text}"))
        return self

    def paragraph(self, text: str) -> MarkdownReport:
        self._blocks.append(("text", text.strip()))
        return self

    def bullets(self, items: Sequence[str]) -> MarkdownReport:
        if items:
            self._blocks.append(("text", "\n".join(f"- {item}" for item in items)))
        return self

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> MarkdownReport:
        self._blocks.append(("text", markdown_table(headers, rows).rstrip("\n")))
        return self

    def image(self, path: str | Path, caption: str = "") -> MarkdownReport:
        self._blocks.append(("image", (Path(path).resolve(), caption)))
        return self

    def render(self, base_dir: str | Path) -> str:
        """Markdown text with image links relative to ``base_dir`` (the report's folder)."""
        parts: list[str] = []
        for kind, payload in self._blocks:
            if kind == "image":
                path, caption = payload
                alt = caption.replace("]", ")").replace("[", "(") or path.name
                block = f"![{alt}]({_link_target(path, Path(base_dir))})"
                if caption:
                    block += f"\n\n*{caption}*"
                parts.append(block)
            else:
                parts.append(payload)
        return "\n\n".join(parts) + "\n"

    def write(self, path: str | Path) -> Path:
        """Render relative to ``path``'s folder and write atomically; returns ``path``."""
        path = Path(path)
        atomic_write_text(path, self.render(path.parent))
        return path


def _method_label(method: str) -> str:
    return f"{method} (upper bound)" if is_upper_bound(method) else method


def add_results_tables(
    report: MarkdownReport, summary: EvaluationSummary | Mapping[str, EvaluationSummary]
) -> None:
    """Append the results table(s): per class and foreground mean, 'mean ± std' over cases.

    A single summary gives one table (rows = classes, columns = metrics). Several summaries
    (method -> summary) give one table per metric (rows = methods, columns = classes + mean).
    """
    if isinstance(summary, EvaluationSummary):
        meta = summary.metadata
        if meta:
            report.bullets(
                [
                    f"predictions: `{meta.get('prediction_dir', '?')}`",
                    f"reference: `{meta.get('reference_name', meta.get('reference_dataset', '?'))}` "
                    f"split `{meta.get('reference_split', '?')}`, {meta.get('n_cases', '?')} cases",
                    f"NSD tolerance: {meta.get('nsd_tolerance_mm', '?')} mm",
                ]
            )
        headers, rows = summary_table(summary)
        report.table(headers, rows)
        return

    methods = list(summary)
    classes: list[str] = []
    for s in summary.values():
        classes.extend(c for c in s.class_names if c not in classes)
    for metric in METRICS:
        report.heading(metric_header(metric), level=3)
        rows = []
        for method in methods:
            s = summary[method]
            cells = [
                format_stat(s.per_class[c][metric], metric) if c in s.per_class else "n/a" for c in classes
            ]
            rows.append([_method_label(method), *cells, format_stat(s.mean_foreground[metric], metric)])
        report.table(["Method", *classes, "Mean (foreground)"], rows)
    report.bullets(
        [
            f"{_method_label(m)}: {summary[m].metadata.get('n_cases', '?')} cases, reference split "
            f"`{summary[m].metadata.get('reference_split', '?')}`"
            for m in methods
        ]
    )


def write_evaluation_report(
    out_path: Path,
    title: str,
    summary: EvaluationSummary | dict[str, EvaluationSummary],
    images: dict[str, Path],
    notes: list[str] | None = None,
) -> Path:
    """Write a markdown evaluation report (title, notes, results tables, figures) atomically.

    ``images`` maps caption -> PNG path; links are written relative to the report's folder.
    Dice and NSD are shown in %, HD95 and ASSD in mm, each as mean ± std over cases.
    """
    report = MarkdownReport(title)
    if notes:
        report.bullets(notes)
    report.heading("Results")
    report.paragraph(
        "Mean ± std over test cases. Dice and NSD in %, HD95 and ASSD in mm. A distance is NaN when a "
        "structure is present in exactly one of prediction and reference; such values are excluded "
        "from the mean and counted. 'Mean (foreground)' averages the classes within each case first."
    )
    add_results_tables(report, summary)
    if images:
        report.heading("Figures")
        for caption, path in images.items():
            report.image(path, caption)
    return report.write(out_path)

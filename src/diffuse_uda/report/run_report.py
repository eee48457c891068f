"""Comparison report over evaluated run folders: tables, bar chart, overlays, training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffuse_uda.data.dataset_json import load_dataset_json
from diffuse_uda.data.io import ensure_output_dir, read_nifti
from diffuse_uda.data.preprocessing import load_image
from diffuse_uda.data.task import Task
from diffuse_uda.errors import DataError
from diffuse_uda.evaluation.evaluate import EvaluationSummary, load_summary
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.pipeline.appearance_choice import (
    GUARD_LEVEL,
    RULES,
    AppearanceChoice,
    agreement_pick,
    read_choice,
)
from diffuse_uda.pipeline.experiment import EVALUATION, PREDICTIONS
from diffuse_uda.pipeline.run_folder import RunFolder, RunManifest
from diffuse_uda.pipeline.train import default_cache_dir
from diffuse_uda.report.feature_embedding import embed_domains, plot_domain_embeddings
from diffuse_uda.report.plots import pick_slice, plot_class_bars, plot_overlay_montage, plot_training_curves
from diffuse_uda.report.report import MarkdownReport, add_results_tables
from diffuse_uda.training.trainer import LOG_NAME


def _run_label(manifest: RunManifest, run_dir: Path, seen: set[str]) -> str:
    label = manifest.display_name or manifest.method
    if manifest.oracle and "target-supervised" not in label:
        label = f"{label} (oracle)"  # the table marks target-supervised rows as the upper bound itself
    if label in seen:
        label = f"{label} [{run_dir.name}]"
    seen.add(label)
    return label


def _fmt_number(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def _display_slice(image: np.ndarray, z: int) -> np.ndarray:
    """(C, X, Y, Z) -> 2D grey (X, Y) or RGB (X, Y, 3) slice for display."""
    sl = image[..., z]
    return np.moveaxis(sl, 0, -1) if sl.shape[0] == 3 else sl[0]


def write_comparison_report(runs: Sequence[Path], out_dir: Path, title: str | None = None,
                            max_overlay_cases: int = 2, extra_sections: Sequence[tuple[str, str]] = (),
                            feature_embedding: bool = True) -> Path:
    """``report.md`` in ``out_dir`` comparing evaluated runs of one task (``feature_embedding``: add
    the t-SNE of source vs target encoder features per model)."""
    out_dir = ensure_output_dir(Path(out_dir), "report folder")
    entries: list[tuple[str, Path, RunManifest, EvaluationSummary]] = []
    seen: set[str] = set()
    for run in runs:
        run = Path(run)
        manifest = RunFolder(run).manifest()
        summary = load_summary(run / EVALUATION / "summary.json")
        entries.append((_run_label(manifest, run, seen), run, manifest, summary))
    if not entries:
        raise DataError(out_dir, "no runs to report")
    task = Task.from_dict(entries[0][2].task)
    report = MarkdownReport(title or f"diffuse-uda report: {task.name}")
    report.paragraph(f"Task **{task.name}**: {task.config.description}  \n"
                     f"Source `{task.source_dir.name}` -> target `{task.target_dir.name}`; labels "
                     f"{', '.join(f'{k}={v}' for k, v in task.labels.items())}; preprocessing "
                     f"{task.preprocessing.spatial_dims}D, size {list(task.preprocessing.size)}.")
    report.paragraph("All numbers are on the held-out target **test** split; target labels were read "
                     "only by the evaluation. Rows marked *oracle* / *upper bound* were trained with target "
                     "training labels and are a bound, not a method.")
    report.heading("Results")
    add_results_tables(report, {label: s for label, _, _, s in entries})
    bars = {label: {c: (s.per_class[c]["dice"]["mean"] * 100, s.per_class[c]["dice"]["std"] * 100)
                    for c in s.class_names} for label, _, _, s in entries}
    report.image(plot_class_bars(bars, out_dir / "dice_per_class.png", title=f"{task.name}: target-test Dice"),
                 "Per-class Dice on the target test split (mean ± std over cases).")
    choices = [(label, read_choice(run), manifest) for label, run, manifest, _ in entries]
    choices = [(label, c, manifest) for label, c, manifest in choices if c is not None]
    if choices:
        report.heading("Appearance transfer (chosen without labels)")
        if any(c.scores for _, c, _ in choices):
            report.paragraph("ASCPlus was trained once per appearance transfer and a rule that reads no target label "
                             "kept one. The agreement score (mean agreement with the other candidates on the target "
                             "images) and the mean normalised prediction entropy are shown for reference.")
        for label, c, manifest in choices:
            if not c.scores:  # one candidate (colour photos since rule U): nothing was scored
                report.paragraph(f"{label}: **{c.chosen}**, {c.rule}.{after_choice_sentence(manifest.details, True)}")
                continue
            agreement = c.agreement_scores or c.scores
            report.table(["candidate", "score", "agreement score", "entropy", "chosen"],
                         [[name, f"{c.scores[name]:.3f}", f"{agreement[name]:.3f}", f"{c.entropy[name]:.3f}",
                           "**yes**" if name == c.chosen else ""] for name in c.scores])
            guard = guard_sentence(c)
            report.paragraph(f"{label}: **{c.chosen}**, by {c.rule}.{guard}{after_choice_sentence(manifest.details)}")
    report.heading("Cost")
    report.table(["Run", "iterations", "train time (s)", "preprocessing (s)", "peak RSS (MB)", "device"],
                 [[label, m.iterations or "?", _fmt_number(m.train_seconds), _fmt_number(m.preprocessing_seconds),
                   _fmt_number(m.peak_rss_mb), m.device or "?"] for label, _, m, _ in entries])
    # Overlays of the held-out test cases (reference read through the evaluation reader).
    reference = ReferenceLabels(task.target_dir, split="Ts")
    info = load_dataset_json(task.target_dir)
    rows = []
    for case_id in reference.case_ids[:max_overlay_cases]:
        ref, _ = reference.load(case_id)
        ref = ref if ref.ndim == 3 else ref[..., None]
        image, _ = load_image(task.target_dir, "Ts", case_id, info.num_channels)
        z = pick_slice(ref)
        for label, run, _, _ in entries:
            pred_path = run / PREDICTIONS / f"{case_id}.nii.gz"
            pred = read_nifti(pred_path)[0] if pred_path.is_file() else None
            pred_sl = None if pred is None else (pred if pred.ndim == 3 else pred[..., None])[..., z]
            rows.append((f"{case_id} · {label}", _display_slice(image, z), ref[..., z], pred_sl))
    if rows:
        report.heading("Target test overlays")
        report.image(plot_overlay_montage(rows, task.labels, out_dir / "overlays.png"),
                     "Image / reference / prediction on held-out target test cases.")
    if feature_embedding:
        embeddings = embed_domains({label: run for label, run, _, _ in entries}, task.source_dir, task.target_dir,
                                   cache_dir=default_cache_dir())
        if embeddings:
            report.heading("Encoder features: source vs target")
            report.image(plot_domain_embeddings(embeddings, out_dir / "feature_tsne.png"),
                         "t-SNE of pooled encoder features of source and target training images (no labels "
                         "read), one panel per model; the number is the leave-one-out 5-NN accuracy of telling "
                         "the domains apart in feature space (50 % = aligned).")
    report.heading("Training curves")
    for label, run, _, _ in entries:
        log = run / LOG_NAME
        if log.is_file():
            name = "".join(ch if ch.isalnum() else "_" for ch in label)
            report.image(plot_training_curves(log, out_dir / f"curves_{name}.png", title=label), label)
    for heading, text in extra_sections:
        report.heading(heading)
        report.paragraph(text)
    return report.write(out_dir / "report.md")


def after_choice_sentence(details: dict, single: bool = False) -> str:
    """What an ``ascplus`` run trained after its choice: longer training, self-training rounds (empty when
    neither). ``single``: there was one candidate, so longer training was its only training."""
    out = ""
    factor = int(details.get("longer_training") or 0)
    rounds = int(details.get("self_training_rounds") or 0)
    if factor and single:
        out += f" It was trained for {factor} times the updates."
    elif factor:
        out += f" Then the chosen candidate was trained again from scratch for {factor} times the updates."
        if not rounds:
            out += " The model reported is that one."
    if rounds:
        out += (f" Then {rounds} self-training round{'s' if rounds > 1 else ''}: the previous model labelled the "
                "target training images and ASCPlus with the chosen transfer was trained again with those pairs "
                "added to the labelled set; the model reported is the last round's.")
    return out


def guard_sentence(c: AppearanceChoice) -> str:
    """What the class-ratio guard saw: the challenger's bootstrap support and, under the floor rules, the
    divergences beside the noise floor (empty when no guard ran)."""
    margin = c.rule == RULES["margin-class-ratio"]
    out = (f" The class-ratio prior preferred {c.class_ratio_challenger} in {100 * c.class_ratio_support:.1f} % of "
           "the case bootstrap resamples"
           + (" (recorded, not used by this rule)." if margin
              else f" (it overrules agreement from {100 * GUARD_LEVEL:.0f} %).")
           if c.class_ratio_support is not None else "")
    if c.class_ratio_floor is not None and c.class_ratio_kl is not None:
        incumbent = agreement_pick(c)
        out += (f" Divergence from the source's class proportions: {incumbent} (agreement's pick) "
                f"{c.class_ratio_kl[incumbent]:.4f}"
                + (f", {c.class_ratio_challenger} {c.class_ratio_kl[c.class_ratio_challenger]:.4f}"
                   if c.class_ratio_challenger else "")
                + f"; the source's own patients stray up to {c.class_ratio_floor:.4f} (the noise floor).")
    return out

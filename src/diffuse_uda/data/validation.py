"""Checks that a dataset in the canonical nnU-Net layout is usable, naming the file at fault.

Target-domain training data is validated with ``check_labels=False``: then no label file is
opened or even stat-ed, so an unsupervised method provably never sees target labels here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from diffuse_uda.data.dataset_json import (
    SPLITS,
    DatasetInfo,
    has_split,
    image_paths,
    label_path,
    list_cases,
    load_dataset_json,
)
from diffuse_uda.data.io import check_not_broken_link, read_nifti, spacing_from_affine
from diffuse_uda.data.orientation import orientation_codes
from diffuse_uda.errors import ConfigError, DataError

# Affines written as float32 in NIfTI headers lose ~1e-5 relative precision; 1e-3 (scaled by the
# voxel size) accepts that round-off but rejects genuinely different geometry.
AFFINE_ATOL = 1e-3
ALL_SPLITS = "all"
_MAX_LISTED = 20
# Two datasets whose median in-plane field of view differs by more than this factor along an axis
# show anatomy at very different scales after resizing to one network input size.
FOV_RATIO_WARNING = 1.5


@dataclass
class ValidationReport:
    """Summary of a successful validation (problems raise DataError instead)."""

    dataset_dir: Path
    n_cases: dict[str, int] = field(default_factory=dict)
    # Per split: min_shape, max_shape, min_spacing, max_spacing, dtypes.
    shapes: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    info: DatasetInfo | None = None
    # Over every validated case: how many have each orientation code ("RAS", "LPS", ...), and each
    # case's in-plane field of view (mm along the first two array axes, where 2D models see a slice).
    orientation_codes: Counter[str] = field(default_factory=Counter)
    fov_mm: list[tuple[float, float]] = field(default_factory=list)

    @property
    def median_fov_mm(self) -> tuple[float, float] | None:
        if not self.fov_mm:
            return None
        fov = np.median(np.array(self.fov_mm), axis=0)
        return float(fov[0]), float(fov[1])

    def __str__(self) -> str:
        """Human-readable summary (the CLI prints it)."""
        lines = [f"{self.dataset_dir}"]
        for split, n in self.n_cases.items():
            s = self.shapes.get(split, {})
            lines.append(f"  {split}: {n} case(s), shape {s.get('min_shape')}..{s.get('max_shape')}, "
                         f"spacing {s.get('min_spacing')}..{s.get('max_spacing')}, dtypes {s.get('dtypes')}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def affines_close(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two 4x4 affines describe the same grid up to header round-off."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(1.0, float(np.abs(a[:3, :3]).max()))
    return bool(np.allclose(a, b, rtol=1e-5, atol=AFFINE_ATOL * scale))


def _fmt_values(values: Sequence[Any]) -> str:
    shown = ", ".join(str(v) for v in values[:_MAX_LISTED])
    more = f", ... ({len(values)} in all)" if len(values) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def check_finite(path: str | Path, image: np.ndarray) -> None:
    """DataError naming `path` when a float image holds NaN or Inf."""
    if image.dtype.kind not in "fc":
        return
    finite = np.isfinite(image)
    if not finite.all():
        n_nan = int(np.isnan(image).sum())
        n_inf = int(image.size - finite.sum()) - n_nan
        raise DataError(path, f"image contains {n_nan} NaN and {n_inf} Inf voxel(s)")


def check_affine(path: str | Path, affine: np.ndarray) -> None:
    """DataError when an affine is non-finite or has a singular 3x3 part (zero spacing)."""
    affine = np.asarray(affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise DataError(path, "affine contains NaN or Inf")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise DataError(path, "degenerate affine (zero voxel spacing or collinear axes)")


def validate_case_arrays(
    image_path: str | Path,
    image: np.ndarray,
    label_path: str | Path | None = None,
    label: np.ndarray | None = None,
    labels: Mapping[str, int] | None = None,
    image_affine: np.ndarray | None = None,
    label_affine: np.ndarray | None = None,
) -> list[int]:
    """Check one case already in memory; return the sorted label values present ([] without label).

    `image` is one channel (same ndim as `label`) or a channel-first stack (one more dim).
    Checks: finite image; label shape == image spatial shape; label affine matches the image
    affine (when both given); integer label values; all values declared in `labels` (when given).
    """
    check_finite(image_path, image)
    if image_affine is not None:
        check_affine(image_path, image_affine)
    if label is None:
        return []
    where = label_path if label_path is not None else image_path
    spatial = image.shape if image.ndim == label.ndim else image.shape[1:]
    if tuple(label.shape) != tuple(spatial):
        raise DataError(where, f"label shape {tuple(label.shape)} differs from image shape {tuple(spatial)} "
                               f"({Path(image_path).name})")
    if label_affine is not None:
        check_affine(where, label_affine)
        if image_affine is not None and not affines_close(image_affine, label_affine):
            raise DataError(where, f"label affine differs from image affine ({Path(image_path).name}):\n"
                                   f"label:\n{np.round(label_affine, 4)}\n"
                                   f"image:\n{np.round(image_affine, 4)}")
    if label.dtype.kind in "biu":
        values = np.unique(label).astype(np.int64)
    elif label.dtype.kind == "f":
        uniq = np.unique(label)
        bad = uniq[~np.isfinite(uniq) | (uniq != np.round(uniq))]
        if bad.size:
            raise DataError(where, f"non-integer label values {_fmt_values(bad.tolist())}")
        values = uniq.astype(np.int64)
    else:
        raise DataError(where, f"label array has unsupported dtype {label.dtype}")
    found = [int(v) for v in values]
    if labels is not None:
        declared = set(int(v) for v in labels.values())
        undeclared = [v for v in found if v not in declared]
        if undeclared:
            raise DataError(where, f"label values {_fmt_values(undeclared)} are not declared in dataset.json "
                                   f"labels {dict(labels)}")
    return found


def _as_3d(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:  # a plain 2D NIfTI is the same as our (H, W, 1) convention
        return array[..., None]
    if array.ndim != 3:
        raise DataError(path, f"expected a 3D image (2D images are stored as (H, W, 1)), "
                              f"got shape {array.shape}")
    return array


def _summarise(shapes: list[tuple[int, ...]], spacings: list[tuple[float, ...]],
               dtypes: set[str]) -> dict[str, Any]:
    s = np.array(shapes)
    sp = np.array(spacings)
    return {
        "min_shape": [int(v) for v in s.min(0)],
        "max_shape": [int(v) for v in s.max(0)],
        "min_spacing": [round(float(v), 4) for v in sp.min(0)],
        "max_spacing": [round(float(v), 4) for v in sp.max(0)],
        "dtypes": sorted(dtypes),
    }


def _validate_split(dataset_dir: Path, info: DatasetInfo, split: str, check_labels: bool,
                    report: ValidationReport) -> None:
    folder = dataset_dir / f"images{split}"
    if not folder.exists():
        raise DataError(folder, f"split {split} was requested but the folder does not exist")
    cases = list_cases(dataset_dir, split)
    ending = info.file_ending
    shapes: list[tuple[int, ...]] = []
    spacings: list[tuple[float, ...]] = []
    dtypes: set[str] = set()
    present: set[int] = set()
    for case_id in tqdm(cases, desc=f"validate {dataset_dir.name} {split}", leave=False, disable=None):
        paths = image_paths(dataset_dir, split, case_id, info.num_channels, ending)
        ref_image: np.ndarray | None = None
        ref_affine: np.ndarray | None = None
        for path in paths:
            array, affine = read_nifti(path)
            array = _as_3d(path, array)
            check_affine(path, affine)
            check_finite(path, array)
            dtypes.add(str(array.dtype))
            if ref_image is None:
                ref_image, ref_affine = array, affine
                continue
            if array.shape != ref_image.shape:
                raise DataError(path, f"shape {array.shape} differs from {paths[0].name} {ref_image.shape}")
            if not affines_close(affine, ref_affine):
                raise DataError(path, f"affine differs from {paths[0].name}")
        assert ref_image is not None and ref_affine is not None
        if ref_image.size and float(np.ptp(ref_image)) == 0.0:
            report.warnings.append(f"{paths[0]}: image is constant ({ref_image.flat[0]})")
        shapes.append(tuple(ref_image.shape))
        spacings.append(spacing_from_affine(ref_affine))
        report.orientation_codes[orientation_codes(ref_affine)] += 1
        report.fov_mm.append((ref_image.shape[0] * spacings[-1][0], ref_image.shape[1] * spacings[-1][1]))
        if check_labels:
            lpath = label_path(dataset_dir, split, case_id, ending)
            check_not_broken_link(lpath)
            if not lpath.is_file():
                raise DataError(lpath, f"missing label file for case {case_id!r}")
            label, label_affine = read_nifti(lpath)
            label = _as_3d(lpath, label)
            present.update(validate_case_arrays(paths[0], ref_image, lpath, label, info.labels,
                                                ref_affine, label_affine))
    report.n_cases[split] = len(cases)
    report.shapes[split] = _summarise(shapes, spacings, dtypes)
    if check_labels:
        label_dir = dataset_dir / f"labels{split}"
        unused = [name for name, v in info.labels.items() if v not in present]
        if unused:
            report.warnings.append(f"{label_dir}: declared label(s) {unused} never occur")
        known = set(cases)
        orphans = sorted(p.name for p in label_dir.iterdir() if p.name.endswith(ending)
                         and not p.name.startswith(".") and p.name[: -len(ending)] not in known)
        if orphans:
            report.warnings.append(f"{label_dir}: label file(s) without images: {_fmt_values(orphans)}")


def validate_dataset(dataset_dir: str | Path, splits: Sequence[str] | str = ("Tr",),
                     check_labels: bool = True) -> ValidationReport:
    """Validate a canonical dataset folder; raise DataError naming the first bad file.

    `splits`: "Tr", "Ts", a sequence of them, or "all" for every split whose images folder holds
    files (Tr when none does, so an empty dataset still fails). A requested split that does not
    exist is an error. With ``check_labels=False`` label folders and files are never touched
    (not even stat-ed).
    """
    dataset_dir = Path(dataset_dir)
    if splits == ALL_SPLITS:
        splits = tuple(s for s in SPLITS if dataset_dir.is_dir() and has_split(dataset_dir, s)) or ("Tr",)
    elif isinstance(splits, str):  # a bare "Tr" would otherwise iterate as "T", "r"
        splits = (splits,)
    for split in splits:
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if not dataset_dir.exists():
        raise DataError(dataset_dir, "dataset folder does not exist")
    if not dataset_dir.is_dir():
        raise DataError(dataset_dir, "is not a folder")
    info = load_dataset_json(dataset_dir)
    report = ValidationReport(dataset_dir=dataset_dir, info=info)
    for split in splits:
        _validate_split(dataset_dir, info, split, check_labels, report)
    if "Tr" in report.n_cases and report.n_cases["Tr"] != info.num_training:
        report.warnings.append(f"{dataset_dir / 'dataset.json'}: numTraining is {info.num_training} but "
                               f"imagesTr holds {report.n_cases['Tr']} case(s)")
    return report


def _codes_text(codes: Counter[str]) -> str:
    total = sum(codes.values())
    return ", ".join(f"{code} ({n}/{total})" for code, n in codes.most_common())


def compare_geometry(source: ValidationReport, target: ValidationReport,
                     fov_ratio: float = FOV_RATIO_WARNING) -> list[str]:
    """Warnings (not errors) where two datasets of a task differ strongly in geometry: their most
    common orientation codes differ, or their median in-plane field of view differs by more than
    ``fov_ratio`` along an axis. Each names both datasets and what differs."""
    out = []
    a, b = source.dataset_dir, target.dataset_dir
    if source.orientation_codes and target.orientation_codes:
        code_a = source.orientation_codes.most_common(1)[0][0]
        code_b = target.orientation_codes.most_common(1)[0][0]
        if code_a != code_b:
            out.append(f"orientation differs: {a} is {_codes_text(source.orientation_codes)}, {b} is "
                       f"{_codes_text(target.orientation_codes)}; a 2D model sees the anatomy flipped or rotated "
                       "between them (import NIfTI scans with `import folder` to reorient them to RAS)")
    fov_a, fov_b = source.median_fov_mm, target.median_fov_mm
    if fov_a is not None and fov_b is not None and min(*fov_a, *fov_b) > 0:
        ratios = [max(x / y, y / x) for x, y in zip(fov_a, fov_b, strict=True)]
        if max(ratios) > fov_ratio:
            out.append(f"in-plane field of view differs: median {fov_a[0]:.0f} x {fov_a[1]:.0f} mm in {a}, "
                       f"{fov_b[0]:.0f} x {fov_b[1]:.0f} mm in {b} (ratio {max(ratios):.2f} > {fov_ratio}); "
                       "after resizing to one input size the anatomy has different scales (consider cropping "
                       "or resampling one of them)")
    return out

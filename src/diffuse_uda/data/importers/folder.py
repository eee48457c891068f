"""Generic importer: a folder of images (NIfTI or photos), optionally with masks, to the canonical layout.

Masks pair with images by file stem, optionally with a ``_mask``, ``_seg`` or ``_label`` suffix
(``case1.png`` <-> ``case1_mask.png``). Lossy JPEG masks are binarised at grey level > 127; a colour
image given as a mask is an error (see COLOUR_LEVELS).

NIfTI volumes are reoriented (default: closest canonical, RAS+; see :mod:`diffuse_uda.data.orientation`)
and each case's original affine is recorded in the provenance, so predictions can be written back in
it. The train/test split is by image, by group (``group``: a regex whose first capture group on the
image file name is the patient or sequence id) or explicit (``test_cases``: a file of ids).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diffuse_uda.data.dataset_json import DatasetInfo
from diffuse_uda.data.importers._common import (
    ImportReport,
    already_imported,
    check_case_id,
    check_test_fraction,
    finish_dataset,
    map_progress,
    n_test_items,
    seeded_permutation,
    staged_dataset,
    write_photo_channels,
)
from diffuse_uda.data.io import (
    IMAGE_2D_SUFFIXES,
    check_not_broken_link,
    is_nifti,
    read_image_2d,
    read_mask_2d,
    read_nifti,
    strip_nifti_suffix,
    write_nifti,
)
from diffuse_uda.data.orientation import ORIENTATIONS, Orientation, orientation_codes, reorient, slice_axis_moved
from diffuse_uda.data.validation import affines_close, check_finite
from diffuse_uda.errors import ConfigError, DataError

MASK_SUFFIXES: tuple[str, ...] = ("_mask", "_seg", "_label")
# More distinct values than this in "masks" means they are probably images, not label maps.
MAX_INFERRED_LABELS = 50
JPEG_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg")
MASK_THRESHOLD = 127
# A 3-channel mask is a real colour image (not a grey mask saved as RGB/JPEG) when more than
# COLOUR_FRACTION of its pixels have channels differing by more than COLOUR_LEVELS grey levels.
# JPEG noise on a grey mask moves channels by a few levels, near edges only; colour photos differ by
# far more on most pixels (Kvasir-SEG photos: ~80% of pixels beyond 32 levels; its masks: none).
COLOUR_LEVELS = 32
COLOUR_FRACTION = 0.01
_IMPORT_VERSION = 1
_SALT = 500
# Told each warning (a declared label never seen, a slice axis moved): printed by the CLI.
WarningReport = Callable[[str], None]


@dataclass
class _Case:
    case_id: str
    image: Path
    mask: Path | None
    is_test: bool = False
    group: str | None = None


@dataclass
class _Converted:
    """What writing one case found out."""

    n_channels: int
    label_values: set[int] = field(default_factory=set)
    # Original geometry of a NIfTI case (affine, orientation codes, shape); None for photos.
    original: dict[str, Any] | None = None
    slice_axis_moved: bool = False


def _stem(path: Path) -> str:
    return strip_nifti_suffix(path.name) if is_nifti(path) else path.stem


def _is_supported(path: Path) -> bool:
    return is_nifti(path) or path.name.lower().endswith(IMAGE_2D_SUFFIXES)


def _list_files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(folder, f"{what} folder does not exist" if not folder.exists() else "is not a folder")
    candidates = [p for p in folder.iterdir() if not p.name.startswith(".") and _is_supported(p)]
    for p in candidates:
        check_not_broken_link(p)
    files = sorted(p for p in candidates if p.is_file())
    if not files:
        raise DataError(folder, f"no {what} files found (NIfTI .nii/.nii.gz, PNG, JPEG, BMP or TIFF)")
    return files


def _by_stem(files: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        stem = _stem(p)
        if stem in out:
            raise DataError(p, f"two files with the same name stem ({out[stem].name})")
        out[stem] = p
    return out


def _pair_cases(images_dir: Path, masks_dir: Path | None) -> list[_Case]:
    """Pair images with masks by stem; DataError naming any image without (or with several) masks."""
    image_files = _list_files(images_dir, "image")
    same_dir = masks_dir is not None and masks_dir.resolve() == images_dir.resolve()
    if same_dir:
        # Images and masks side by side: anything with a mask suffix is a mask, not an image.
        image_files = [p for p in image_files if not _stem(p).endswith(MASK_SUFFIXES)]
        if not image_files:
            raise DataError(images_dir, "only mask files found (names ending in _mask/_seg/_label)")
    images = _by_stem(image_files)
    masks: dict[str, list[Path]] = {}
    if masks_dir is not None:
        for p in _list_files(masks_dir, "mask"):
            masks.setdefault(_stem(p), []).append(p)
    cases = []
    for stem, image in images.items():
        case_id = re.sub(r"[^A-Za-z0-9_.-]", "_", stem)
        check_case_id(case_id, image)
        mask = None
        if masks_dir is not None:
            candidates = [p for s in (stem, *(stem + suf for suf in MASK_SUFFIXES)) for p in masks.get(s, [])]
            if same_dir:
                candidates = [p for p in candidates if p != image]
            if not candidates:
                raise DataError(image, f"no mask found in {masks_dir} (looked for {stem}, "
                                       f"{', '.join(stem + s for s in MASK_SUFFIXES)} with any supported ending)")
            if len(candidates) > 1:
                raise DataError(image, f"several masks match: {', '.join(p.name for p in candidates)}")
            mask = candidates[0]
        cases.append(_Case(case_id, image, mask))
    seen: dict[str, Path] = {}
    for case in cases:
        if case.case_id in seen:
            raise DataError(case.image, f"case id {case.case_id!r} clashes with {seen[case.case_id].name}")
        seen[case.case_id] = case.image
    return cases


def _read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(array, affine) where affine is None for photos; volumes are (X, Y, Z) float32."""
    if is_nifti(path):
        array, affine = read_nifti(path)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise DataError(path, f"expected a 2D or 3D image, got shape {array.shape} (save one file per "
                                  "channel)")
        array = np.asarray(array, dtype=np.float32)
        check_finite(path, array)
        return array, affine
    image = read_image_2d(path)
    check_finite(path, image)
    return image, None


def _grey_mask(mask: np.ndarray, path: Path) -> np.ndarray:
    """One channel from an (H, W, 3) mask; DataError for a colour image or a noisy lossless one."""
    spread = mask.max(axis=2).astype(np.int16) - mask.min(axis=2)
    coloured = float(np.mean(spread > COLOUR_LEVELS))
    if coloured > COLOUR_FRACTION:
        raise DataError(path, f"colour image given as a mask ({coloured:.0%} of pixels have channels differing by "
                              f"more than {COLOUR_LEVELS} grey levels); expected a single-channel label map")
    if not spread.any():
        return mask[..., 0]  # a grey mask saved as RGB
    if path.suffix.lower() in JPEG_SUFFIXES:
        return mask.mean(axis=2)  # JPEG channel noise: binarised by the caller
    # Lossless files have no compression noise to explain slightly different channels.
    raise DataError(path, f"RGB mask whose channels differ by up to {int(spread.max())} grey levels; save masks as "
                          "single-channel (greyscale or palette) label maps")


def _read_mask(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(mask, affine or None for photos): integer (X, Y, Z) for NIfTI, (H, W) for photos; JPEGs binarised."""
    affine = None
    if is_nifti(path):
        mask, affine = read_nifti(path)
        if mask.ndim == 2:
            mask = mask[..., None]
    else:
        mask = read_mask_2d(path)
        if mask.ndim == 3:
            mask = _grey_mask(mask, path)
        if path.suffix.lower() in JPEG_SUFFIXES:
            # JPEG compression smears label values, so only a binary mask can be recovered.
            return (mask > MASK_THRESHOLD).astype(np.uint8), None
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)):
            raise DataError(path, "mask contains NaN or Inf")
        if not np.all(mask == np.round(mask)):
            raise DataError(path, "mask has non-integer values")
        mask = mask.astype(np.int64)
    elif mask.dtype.kind == "b":
        mask = mask.astype(np.uint8)
    elif mask.dtype.kind not in "iu":
        raise DataError(path, f"unsupported mask dtype {mask.dtype}")
    if mask.size and int(mask.min()) < 0:
        raise DataError(path, f"mask has negative values (min {int(mask.min())})")
    return mask, affine


def _infer_labels(cases: list[_Case]) -> tuple[dict[str, int], dict[int, int]]:
    """Labels {background: 0, label_1: 1, ...} from all mask values, and the raw -> new value map."""
    def values_of(case: _Case) -> set[int]:
        assert case.mask is not None
        return {int(v) for v in np.unique(_read_mask(case.mask)[0])}

    found: set[int] = set()
    per_case: list[set[int]] = []
    for case, values in zip(cases, map_progress(values_of, cases, desc="scan masks"), strict=True):
        found |= values
        per_case.append(values)
        if len(found) > MAX_INFERRED_LABELS:
            raise DataError(case.mask, f"masks hold more than {MAX_INFERRED_LABELS} distinct values: these are "
                                       "probably images, not label masks (pass labels= to declare them)")
    _check_binary_encodings(cases, per_case)
    # Consecutive values keep networks' output channels dense: e.g. 0/255 masks become 0/1.
    value_map = {0: 0} | {v: i for i, v in enumerate(sorted(found - {0}), start=1)}
    labels = {"background": 0} | {f"label_{i}": i for i in range(1, len(value_map))}
    return labels, value_map


def _check_binary_encodings(cases: list[_Case], per_case: list[set[int]]) -> None:
    """DataError when every mask is binary but the foreground value differs between files (0/1 vs 0/255).

    Inferring labels would make those two classes. A mask with two or more non-zero values shows that
    values are classes, so the check stays quiet then.
    """
    foreground = [values - {0} for values in per_case]
    if any(len(v) > 1 for v in foreground):
        return
    first_of: dict[int, Path] = {}
    for case, values in zip(cases, foreground, strict=True):
        for value in values:
            assert case.mask is not None
            first_of.setdefault(value, case.mask)
    if len(first_of) < 2:
        return
    (value, path), *others = sorted(first_of.items())
    rest = "; ".join(f"{p} uses 0/{v}" for v, p in others)
    raise DataError(path, f"binary mask 0/{value}, but {rest}: every mask is binary with different foreground "
                          "values, which would become separate classes; pass --binary (binary=True) if every "
                          "non-zero value means foreground, or declare the labels if each value is its own class")


def _remap(mask: np.ndarray, path: Path, labels: dict[str, int], value_map: dict[int, int] | None) -> np.ndarray:
    """Apply the value map, or check values against declared labels; returns uint8/int16."""
    values = [int(v) for v in np.unique(mask)]
    declared = set(labels.values())
    if value_map is None:
        undeclared = [v for v in values if v not in declared]
        if undeclared and declared == {0, 1} and set(values) <= {0, 255}:
            value_map = {0: 0, 255: 1}  # 0/255 binary masks for a binary task: obvious intent
        elif undeclared:
            raise DataError(path, f"mask values {undeclared[:20]} are not among the declared labels {labels}")
    dtype = np.uint8 if max(declared) <= 255 else np.int16
    if value_map is None:
        return mask.astype(dtype)
    out = np.zeros(mask.shape, dtype=dtype)
    for raw, new in value_map.items():
        if new and raw in values:
            out[mask == raw] = new
    return out


def _convert(job: tuple[_Case, Path, dict[str, int], dict[int, int] | None, bool, Orientation]) -> _Converted:
    """Write one case (reoriented when it is a NIfTI volume)."""
    case, root, labels, value_map, binary, orientation = job
    split = "Ts" if case.is_test else "Tr"
    image, affine = _read_image(case.image)
    result = _Converted(n_channels=1)
    if affine is None:
        result.n_channels = write_photo_channels(root / f"images{split}", case.case_id, image)
        spatial = image.shape[:2] + (1,)
    else:
        spatial = image.shape
    mask = mask_affine = None
    if case.mask is not None:
        mask, mask_affine = _read_mask(case.mask)
        if binary:
            mask = (mask != 0).astype(np.uint8)
        if mask.ndim == 2:
            mask = mask[..., None]
        if mask.shape != spatial:
            raise DataError(case.mask, f"mask shape {mask.shape} differs from image {case.image} shape {spatial}")
        if affine is not None and mask_affine is not None and not affines_close(affine, mask_affine):
            raise DataError(case.mask, f"mask affine differs from image {case.image} affine")
    out_affine = affine
    if affine is not None:
        # Image and mask move together, on the image's affine, so they stay on one grid.
        result.original = {"affine": np.round(affine, 6).tolist(), "codes": orientation_codes(affine),
                           "shape": [int(n) for n in image.shape]}
        result.slice_axis_moved = slice_axis_moved(affine, orientation)
        image, out_affine = reorient(image, affine, orientation)
        if mask is not None:
            mask, _ = reorient(mask, affine, orientation)
        write_nifti(root / f"images{split}" / f"{case.case_id}_0000.nii.gz", image, out_affine)
    if case.mask is None:
        return result
    assert mask is not None
    label = _remap(mask, case.mask, labels, value_map)
    write_nifti(root / f"labels{split}" / f"{case.case_id}.nii.gz", label, out_affine)
    result.label_values = {int(v) for v in np.unique(label)}
    return result


def complete_labels(labels: dict[str, int]) -> dict[str, int]:
    """Declared labels with ``background: 0`` first (added when absent); ConfigError when value 0 is
    declared under another name."""
    if "background" in labels:
        return dict(labels)
    zero = [name for name, value in labels.items() if value == 0]
    if zero:
        raise ConfigError(f"label {zero[0]!r} has value 0, which is the background; name it 'background' or "
                          "leave it out (background=0 is implied)")
    return {"background": 0, **labels}


def _compile_group(pattern: str) -> re.Pattern[str]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"--group {pattern!r} is not a valid regular expression ({exc})") from None
    if regex.groups < 1:
        raise ConfigError(f"--group {pattern!r} has no capture group: put the patient / sequence id in "
                          "parentheses, e.g. '^(patient\\d+)_'")
    return regex


def _assign_groups(cases: list[_Case], pattern: str) -> dict[str, list[str]]:
    """Set each case's group (first capture group of ``pattern`` on its image file name); group -> case ids."""
    regex = _compile_group(pattern)
    groups: dict[str, list[str]] = {}
    for case in cases:
        m = regex.search(case.image.name)
        if m is None or not m.group(1):
            raise DataError(case.image, f"file name does not match --group {pattern!r} (its first capture group "
                                        "must give the patient / sequence id)")
        case.group = m.group(1)
        groups.setdefault(case.group, []).append(case.case_id)
    return dict(sorted(groups.items()))


def read_id_list(path: Path) -> list[str]:
    """Ids from a text file, one per line; blank lines and ``#`` comments are ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "test case list does not exist" if not path.exists() else "is not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the test case list ({exc})") from None
    ids = [line.split("#", 1)[0].strip() for line in lines]
    ids = [i for i in ids if i]
    if not ids:
        raise DataError(path, "lists no case ids (one id per line)")
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise DataError(path, f"lists id(s) more than once: {', '.join(repeated[:10])}")
    return ids


def _split(cases: list[_Case], groups: dict[str, list[str]] | None, test_ids: list[str] | None,
           test_cases_file: Path | None, test_fraction: float, seed: int) -> None:
    """Mark the test cases: the explicit list, else a seeded draw of groups (or of images)."""
    if test_ids is not None:
        assert test_cases_file is not None
        known = list(groups) if groups is not None else [c.case_id for c in cases]
        kind = "group" if groups is not None else "case"
        unknown = [i for i in test_ids if i not in set(known)]
        if unknown:
            shown = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
            raise DataError(test_cases_file, f"unknown {kind} id(s) {', '.join(unknown[:10])} (known {kind} ids: "
                                             f"{shown})")
        chosen = set(test_ids)
        for case in cases:
            case.is_test = (case.group if groups is not None else case.case_id) in chosen
        if all(case.is_test for case in cases):
            raise DataError(test_cases_file, "holds every case: nothing is left for training")
        return
    if groups is not None:
        names = list(groups)
        order = seeded_permutation(len(names), seed, _SALT)
        test_groups = {names[int(i)] for i in order[: n_test_items(len(names), test_fraction)]}
        for case in cases:
            case.is_test = case.group in test_groups
        return
    order = seeded_permutation(len(cases), seed, _SALT)
    for i in order[: n_test_items(len(cases), test_fraction)]:
        cases[int(i)].is_test = True


def _warn(on_warning: WarningReport | None, message: str) -> None:
    if on_warning is not None:
        on_warning(message)
    else:
        warnings.warn(message, stacklevel=3)


def import_folder(images_dir: Path, out_dir: Path, masks_dir: Path | None = None,
                  labels: dict[str, int] | None = None, test_fraction: float = 0.0, seed: int = 0,
                  name: str | None = None, binary: bool = False, on_dataset: ImportReport | None = None,
                  group: str | None = None, test_cases: Path | None = None, orientation: Orientation = "ras",
                  on_warning: WarningReport | None = None) -> Path:
    """Convert a folder of images (+ optional masks) into the canonical dataset `out_dir`.

    `labels` None: inferred from the mask values ({background: 0, label_1: 1, ...}, values
    renumbered consecutively), or {background: 0} without masks. Declared `labels` get
    ``background: 0`` when they lack it; a mask value not declared is a DataError naming the mask, a
    declared label that no mask holds a warning. `binary`: every non-zero mask value becomes 1
    (labels {background: 0, label_1: 1} unless declared).

    Split: `test_cases` (a file of case ids, or of group ids with `group`) go to imagesTs/labelsTs;
    without it `test_fraction` of the cases (seeded), or of the groups with `group` (a regex whose first
    capture group on the image file name is the patient / sequence id: a group is never on both
    sides). NIfTI volumes are reoriented to `orientation` (ras, ras-in-plane or as-stored), their
    original affines recorded in the provenance. Skipped if `out_dir` already holds this import;
    `on_dataset(out_dir, written)` is told which happened, `on_warning(message)` each warning
    (default: Python warnings).
    """
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    masks_dir = Path(masks_dir) if masks_dir is not None else None
    check_test_fraction(test_fraction)
    if orientation not in ORIENTATIONS:
        raise ConfigError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    if labels is not None:
        labels = complete_labels(labels)
        # Reuse dataset.json's checks (name -> int, background 0, no duplicates) before any work.
        DatasetInfo.from_json({"channel_names": {"0": "image"}, "labels": labels, "numTraining": 0,
                               "file_ending": ".nii.gz"})
    if binary and labels is not None and sorted(labels.values()) != [0, 1]:
        raise ConfigError(f"binary masks have values 0 and 1 only, but the declared labels are {labels}")
    if group is not None:
        _compile_group(group)
    test_ids = read_id_list(Path(test_cases)) if test_cases is not None else None
    name = name or out_dir.name
    if not name:
        raise ConfigError("a dataset name is required")
    settings: dict[str, Any] = {
        "importer": "folder", "version": _IMPORT_VERSION,
        "images_dir": str(images_dir.resolve()),
        "masks_dir": str(masks_dir.resolve()) if masks_dir is not None else None,
        "labels": labels, "test_fraction": float(test_fraction), "seed": int(seed), "name": name,
        "orientation": orientation,
    }
    if binary:  # only when set, so imports made before the option existed still match
        settings["binary"] = True
    if group is not None:
        settings["group"] = group
    if test_ids is not None:
        settings["test_cases"] = sorted(test_ids)
    if already_imported(out_dir, settings):
        if on_dataset is not None:
            on_dataset(out_dir, False)
        return out_dir

    cases = _pair_cases(images_dir, masks_dir)
    groups = _assign_groups(cases, group) if group is not None else None
    _split(cases, groups, test_ids, Path(test_cases) if test_cases is not None else None, test_fraction, seed)
    value_map: dict[int, int] | None = None
    if masks_dir is None:
        final_labels = dict(labels) if labels is not None else {"background": 0}
    elif binary:
        final_labels = dict(labels) if labels is not None else {"background": 0, "label_1": 1}
    elif labels is None:
        final_labels, value_map = _infer_labels(cases)
    else:
        final_labels = dict(labels)

    with staged_dataset(out_dir) as tmp:
        jobs = [(case, tmp, final_labels, value_map, binary, orientation) for case in cases]
        results = map_progress(_convert, jobs, desc=f"import {name}")
        n_channels = [r.n_channels for r in results]
        seen: set[int] = set().union(*(r.label_values for r in results))
        if masks_dir is not None and not seen - {0}:
            # Background-only training data is a broken export or threshold, never a usable dataset.
            raise DataError(masks_dir, f"every mask is empty (all {len(cases)} hold background only); "
                                       "check how the masks were exported")
        for case, n in zip(cases, n_channels, strict=True):
            if n != n_channels[0]:
                raise DataError(case.image, f"has {n} channel(s) but {cases[0].image.name} has {n_channels[0]}")
        if masks_dir is not None and labels is not None:
            unseen = {k: v for k, v in final_labels.items() if v not in seen and v != 0}
            if unseen:
                _warn(on_warning, f"{masks_dir}: declared label(s) {unseen} occur in no mask")
        moved = [c.image.name for c, r in zip(cases, results, strict=True) if r.slice_axis_moved]
        if moved:
            _warn(on_warning, f"{images_dir}: reorienting to {orientation} moved the thick slice axis of "
                              f"{len(moved)} volume(s) (e.g. {moved[0]}) out of the last position, where 2D "
                              "models slice; pass --orientation ras-in-plane to keep the acquired slices")
        channel_names = {"0": "R", "1": "G", "2": "B"} if n_channels[0] == 3 else {"0": "image"}
        if test_ids is not None:
            split_rule = f"explicit test {'groups' if groups is not None else 'cases'} from {test_cases}"
        elif groups is not None:
            split_rule = (f"by group (regex {group!r} on the image file name), seeded (seed={seed}, "
                          f"test_fraction={test_fraction} of {len(groups)} groups)")
        else:
            split_rule = f"by image, seeded (seed={seed}, test_fraction={test_fraction})"
        provenance: dict[str, Any] = {
            "importer": "diffuse_uda.data.importers.folder",
            "images_dir": str(images_dir.resolve()),
            "masks_dir": str(masks_dir.resolve()) if masks_dir is not None else None,
            "split_rule": split_rule,
            "cases": {"Tr": [c.case_id for c in cases if not c.is_test],
                      "Ts": [c.case_id for c in cases if c.is_test]},
            "source_files": {c.case_id: c.image.name for c in cases},
        }
        if groups is not None:
            provenance["groups"] = groups
            provenance["test_groups"] = sorted({c.group for c in cases if c.is_test and c.group is not None})
        originals = {c.case_id: r.original for c, r in zip(cases, results, strict=True) if r.original is not None}
        if originals:
            provenance["orientation"] = {"rule": orientation, "cases": originals}
        if value_map is not None:
            provenance["label_value_map"] = {str(k): v for k, v in value_map.items()}
        if binary:
            provenance["mask_rule"] = "binary: every non-zero mask value -> 1"
        if any(c.mask is not None and c.mask.suffix.lower() in JPEG_SUFFIXES for c in cases):
            jpeg_rule = f"JPEG masks binarised at grey level > {MASK_THRESHOLD}"
            provenance["mask_rule"] = f"{provenance['mask_rule']}; {jpeg_rule}" if binary else jpeg_rule
        info = DatasetInfo(
            name=name, channel_names=channel_names, labels=final_labels,
            num_training=sum(1 for c in cases if not c.is_test),
            description=f"imported from {images_dir}" + ("" if masks_dir is not None else " (no masks)"),
            provenance=provenance,
            case_groups={c.case_id: c.group for c in cases if c.group is not None} if groups is not None else {},
        )
        finish_dataset(tmp, info, settings)
    if on_dataset is not None:
        on_dataset(out_dir, True)
    return out_dir

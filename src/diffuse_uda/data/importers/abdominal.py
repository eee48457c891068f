"""Importer for the abdominal CT <-> MR T2-SPIR cross-modality pair (liver, kidneys, spleen).

Source layout: ``CT/image_N.nii.gz`` + ``CT/label_N.nii.gz`` (BTCV/Synapse contrast CT) and
``MR_T2/image_N.nii.gz`` + ``MR_T2/label_N.nii.gz`` (CHAOS T2-SPIR). CT and MR come from different
patients. Four datasets serve the two directions:

- ``Dataset521_AbdomenCT``: every CT volume in Tr (labelled source of CT -> MR, the main direction);
- ``Dataset522_AbdomenMR``: MR split by volume into Tr (unlabelled target training; labelsTr only for
  evaluation/oracle code) and a held-out Ts test split;
- ``Dataset523_AbdomenMR_all``: every MR volume in Tr (labelled source of MR -> CT);
- ``Dataset524_AbdomenCT_split``: CT split by volume, the target of MR -> CT (tiny test split).

Both modalities' arrays share one in-plane orientation although the affines' axis codes differ
(the upstream preprocessing resampled arrays without fixing the headers). We trust the arrays:
every output gets a diagonal affine from the voxel spacing, so source and target line up in array
space while physical distances (HD95) stay right; the original affine is kept in the provenance.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from diffuse_uda.data.dataset_json import DatasetInfo
from diffuse_uda.data.importers._common import (
    ImportReport,
    already_imported,
    seeded_permutation,
    single_channel_info,
    write_split_dataset,
)
from diffuse_uda.data.io import check_not_broken_link, read_nifti, spacing_from_affine, write_nifti
from diffuse_uda.data.validation import validate_case_arrays
from diffuse_uda.errors import DataError

CT_DATASET = "Dataset521_AbdomenCT"
MR_DATASET = "Dataset522_AbdomenMR"
MR_ALL_DATASET = "Dataset523_AbdomenMR_all"
CT_SPLIT_DATASET = "Dataset524_AbdomenCT_split"
LABELS: dict[str, int] = {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
CT_FOLDER, MR_FOLDER = "CT", "MR_T2"
# Test-count rule (see n_test_volumes): at least 6 volumes (or 30%) held out, never more than half.
MIN_TEST_VOLUMES = 6
TEST_FRACTION = 0.3
REFERENCE = ("Kavur et al., CHAOS Challenge - combined (CT-MR) healthy abdominal organ segmentation, MedIA 2021; "
             "Landman et al., MICCAI multi-atlas labeling beyond the cranial vault, 2015")
_IMPORT_VERSION = 1
# Salts give the two splits independent random streams from one seed.
_MR_SALT, _CT_SALT = 522, 524
_IMAGE_RE = re.compile(r"^image_(\d+)\.nii\.gz$")
_LABEL_RE = re.compile(r"^label_(\d+)\.nii\.gz$")


def n_test_volumes(n: int) -> int:
    """Held-out test volumes out of `n`: max(6, round(0.3 n)), capped at n // 2.

    Six volumes keep the test Dice of a 19-volume domain from hanging on one or two patients; the
    cap keeps the (unlabelled) training split at least as large as the test split, which for the
    6 CT volumes gives 3 / 3. Zero when n < 2: nothing can be split.
    """
    return int(min(max(MIN_TEST_VOLUMES, round(TEST_FRACTION * n)), n // 2))


def _find_volumes(folder: Path) -> dict[int, tuple[Path, Path]]:
    """volume number -> (image, label) for the ``image_N.nii.gz`` / ``label_N.nii.gz`` pairs in `folder`."""
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist" if not folder.exists() else "is not a folder")
    images: dict[int, Path] = {}
    labels: dict[int, Path] = {}
    for p in folder.iterdir():
        if _IMAGE_RE.match(p.name) or _LABEL_RE.match(p.name):
            check_not_broken_link(p)
        if (m := _IMAGE_RE.match(p.name)) is not None:
            images[int(m.group(1))] = p
        elif (m := _LABEL_RE.match(p.name)) is not None:
            labels[int(m.group(1))] = p
    if not images:
        raise DataError(folder, "no image_N.nii.gz volumes found")
    for n, path in images.items():
        if n not in labels:
            raise DataError(path, f"no label for this volume (expected {folder / f'label_{n}.nii.gz'})")
    for n, path in labels.items():
        if n not in images:
            raise DataError(path, f"label has no matching image (expected {folder / f'image_{n}.nii.gz'})")
    return {n: (images[n], labels[n]) for n in sorted(images)}


def diagonal_affine(affine: np.ndarray) -> np.ndarray:
    """diag(spacing, 1): the voxel spacing of `affine` (its column norms) without rotation, flips or origin."""
    return np.diag([*spacing_from_affine(affine), 1.0])


def _convert_case(paths: tuple[Path, Path], images_dir: Path, labels_dir: Path, case_id: str) -> dict[str, Any]:
    """Read, check and write one volume (image float32, label uint8); returns its provenance record."""
    image_src, label_src = paths
    image, image_affine = read_nifti(image_src)
    label, label_affine = read_nifti(label_src)
    if image.ndim != 3:
        raise DataError(image_src, f"expected a 3D volume, got shape {image.shape}")
    image = np.asarray(image, dtype=np.float32)
    validate_case_arrays(image_src, image, label_src, label, LABELS, image_affine, label_affine)
    affine = diagonal_affine(image_affine)
    write_nifti(images_dir / f"{case_id}_0000.nii.gz", image, affine)
    write_nifti(labels_dir / f"{case_id}.nii.gz", np.asarray(label, dtype=np.uint8), affine)
    return {
        "image": f"{image_src.parent.name}/{image_src.name}",
        "label": f"{label_src.parent.name}/{label_src.name}",
        "original_affine": np.round(image_affine, 6).tolist(),
        "original_axis_codes": "".join(nib.aff2axcodes(image_affine)),
        "spacing": [round(s, 6) for s in spacing_from_affine(image_affine)],
        "shape": list(image.shape),
    }


def _case_id(modality: str, n: int) -> str:
    return f"{modality.lower()}{n:02d}"


def _split(numbers: list[int], seed: int, salt: int) -> set[int]:
    """The volume numbers of the held-out test split (seeded)."""
    order = seeded_permutation(len(numbers), seed, salt)
    return {numbers[int(i)] for i in order[: n_test_volumes(len(numbers))]}


def _write_dataset(out_dir: Path, modality: str, volumes: dict[int, tuple[Path, Path]], test: set[int],
                   description: str, provenance: dict[str, Any], settings: dict[str, Any]) -> None:
    """Stage and write one dataset: the volumes in `test` go to imagesTs/labelsTs, the others to Tr."""

    def describe(tr: list[str], ts: list[str], records: dict[str, dict[str, Any]]) -> DatasetInfo:
        return single_channel_info(out_dir, modality, LABELS, len(tr), description, REFERENCE, {
            **provenance,
            "orientation": "arrays kept as stored (both modalities share one in-plane orientation); "
                           "affine replaced by diag(spacing) from the original affine's column norms, "
                           "whose original is in source_files",
            "intensity": "float64 upstream, stored as float32",
            "cases": {"Tr": tr, "Ts": ts} if ts else {"Tr": tr},
            "source_files": records,
        })

    cases = {_case_id(modality, n): ("Ts" if n in test else "Tr", paths) for n, paths in volumes.items()}
    write_split_dataset(out_dir, cases, _convert_case, describe, settings, desc=out_dir.name)


def import_abdominal(src_dir: Path, out_root: Path, seed: int = 0,
                     on_dataset: ImportReport | None = None) -> tuple[Path, ...]:
    """Create the four abdominal datasets under `out_root` (see the module docstring) and return their folders.

    Splits are by volume (= patient), seeded, with :func:`n_test_volumes` test volumes. A dataset already
    imported with the same settings is kept; `on_dataset(path, written)` is told which happened.
    """
    src_dir, out_root = Path(src_dir), Path(out_root)
    if not src_dir.is_dir():
        raise DataError(src_dir, "abdominal data folder does not exist" if not src_dir.exists() else
                        "is not a folder")
    ct = _find_volumes(src_dir / CT_FOLDER)
    mr = _find_volumes(src_dir / MR_FOLDER)
    for folder, volumes in ((src_dir / CT_FOLDER, ct), (src_dir / MR_FOLDER, mr)):
        if len(volumes) < 2:
            raise DataError(folder, f"only {len(volumes)} volume(s): at least 2 are needed to split by volume")

    # Only split datasets depend on the seed: a new seed must not force re-importing the others.
    base = {"importer": "abdominal", "version": _IMPORT_VERSION}
    split_settings = {**base, "seed": int(seed)}
    common = {"importer": "diffuse_uda.data.importers.abdominal", "source_dir": str(src_dir.resolve())}
    rule = (f"by volume (patient), seeded (seed={seed}): n_test = min(max({MIN_TEST_VOLUMES}, "
            f"round({TEST_FRACTION} * n)), n // 2)")
    mr_test, ct_test = _split(list(mr), seed, _MR_SALT), _split(list(ct), seed, _CT_SALT)
    plan = [
        (CT_DATASET, "CT", ct, set(), base,
         f"Abdominal contrast CT (BTCV/Synapse), all {len(ct)} volumes: labelled source of CT -> MR",
         {"role": "source (CT -> MR)", "split_rule": "all CT volumes -> imagesTr/labelsTr"}),
        (MR_DATASET, "MR", mr, mr_test, split_settings,
         f"Abdominal MR T2-SPIR (CHAOS): target of CT -> MR. imagesTr: {len(mr) - len(mr_test)} unlabelled "
         f"training volumes (labelsTr only for evaluation/oracle code); imagesTs/labelsTs: {len(mr_test)} "
         "held-out test volumes",
         {"role": "target (CT -> MR)", "split_rule": rule}),
        (MR_ALL_DATASET, "MR", mr, set(), base,
         f"Abdominal MR T2-SPIR (CHAOS), all {len(mr)} volumes: labelled source of MR -> CT",
         {"role": "source (MR -> CT)", "split_rule": "all MR volumes -> imagesTr/labelsTr"}),
        (CT_SPLIT_DATASET, "CT", ct, ct_test, split_settings,
         f"Abdominal contrast CT (BTCV/Synapse): target of MR -> CT. imagesTr: {len(ct) - len(ct_test)} "
         f"unlabelled training volumes; imagesTs/labelsTs: a tiny test split of {len(ct_test)} volumes "
         "(only 6 CT volumes exist here): report MR -> CT with that caveat",
         {"role": "target (MR -> CT)", "split_rule": rule}),
    ]
    # Check every output before writing any, so a settings clash leaves nothing half-updated.
    done = {name: already_imported(out_root / name, settings) for name, _, _, _, settings, _, _ in plan}
    for name, modality, volumes, test, settings, description, extra in plan:
        out_dir = out_root / name
        if not done[name]:
            _write_dataset(out_dir, modality, volumes, test, description, {**common, **extra}, settings)
        if on_dataset is not None:
            on_dataset(out_dir, not done[name])
    return tuple(out_root / entry[0] for entry in plan)

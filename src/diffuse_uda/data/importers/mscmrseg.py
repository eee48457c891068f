"""Importer for MS-CMRSeg 2019 (cardiac MR, bSSFP/C0 -> LGE).

Source layout: ``C0/patientN_C0.nii.gz`` + ``C0/patientN_C0_manual.nii.gz`` (N = 1..35) and
``LGE/patientN_LGE.nii.gz`` + ``_manual`` (N = 1..45). Patients 1..35 appear in both sequences,
so the held-out LGE test set is patients 36..45, which occur in no source data at all.
The secondary direction LGE -> bSSFP uses the upper half of the C0 patients as its target (half of
them held out) and every other LGE patient as its source (:func:`reverse_split`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from diffuse_uda.data.dataset_json import DatasetInfo
from diffuse_uda.data.importers._common import (
    ImportReport,
    already_imported,
    single_channel_info,
    write_split_dataset,
)
from diffuse_uda.data.io import check_not_broken_link, read_nifti, write_nifti
from diffuse_uda.data.validation import validate_case_arrays
from diffuse_uda.errors import DataError

SOURCE_DATASET = "Dataset501_MSCMR_bSSFP"
TARGET_DATASET = "Dataset502_MSCMR_LGE"
# The secondary direction, LGE -> bSSFP, on disjoint patients (see reverse_split).
REVERSE_SOURCE_DATASET = "Dataset503_MSCMR_LGE_source"
REVERSE_TARGET_DATASET = "Dataset504_MSCMR_bSSFP_split"
LABELS: dict[str, int] = {"background": 0, "Myo": 1, "LV": 2, "RV": 3}
# Raw intensity codes in the manual masks -> our label values.
LABEL_MAP: dict[int, int] = {0: 0, 200: 1, 500: 2, 600: 3}
# Highest patient number shared by C0 and LGE; LGE patients above it are the held-out test set.
LAST_SHARED_PATIENT = 35
REFERENCE = ("X. Zhuang, IEEE TPAMI 2019 (multivariate mixture model, MS-CMRSeg); F. Wu and X. Zhuang, "
             "IEEE TMI 2021 (variational approximation UDA for cardiac segmentation)")
_IMPORT_VERSION = 1


def _find_patients(folder: Path, modality: str) -> dict[int, Path]:
    """patient number -> image path for ``patientN_{modality}.nii.gz`` files in `folder`."""
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist" if not folder.exists() else "is not a folder")
    pattern = re.compile(rf"^patient(\d+)_{re.escape(modality)}\.nii\.gz$")
    found: dict[int, Path] = {}
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m:
            check_not_broken_link(p)
            found[int(m.group(1))] = p
    if not found:
        raise DataError(folder, f"no patientN_{modality}.nii.gz images found")
    return dict(sorted(found.items()))


def _manual_path(image_path: Path) -> Path:
    return image_path.with_name(image_path.name.replace(".nii.gz", "_manual.nii.gz"))


def map_labels(label: np.ndarray, path: Path) -> np.ndarray:
    """Map raw mask codes 0/200/500/600 to 0/1/2/3 (uint8); DataError naming `path` otherwise."""
    values = np.unique(label)
    unknown = [v.item() for v in values if not (float(v).is_integer() and int(v) in LABEL_MAP)]
    if unknown:
        raise DataError(path, f"unexpected label values {unknown[:20]} (expected {sorted(LABEL_MAP)})")
    out = np.zeros(label.shape, dtype=np.uint8)
    for raw, new in LABEL_MAP.items():
        if new:
            out[label == raw] = new
    return out


def _convert_case(image_src: Path, images_dir: Path, labels_dir: Path, case_id: str) -> None:
    """Read, check and write one patient (image float32, mask uint8, original affines)."""
    label_src = _manual_path(image_src)
    check_not_broken_link(label_src)
    if not label_src.is_file():
        raise DataError(label_src, f"missing manual segmentation for {image_src.name}")
    image, image_affine = read_nifti(image_src)
    raw_label, label_affine = read_nifti(label_src)
    if image.ndim != 3:
        raise DataError(image_src, f"expected a 3D volume, got shape {image.shape}")
    label = map_labels(raw_label, label_src)
    image = np.asarray(image, dtype=np.float32)
    validate_case_arrays(image_src, image, label_src, label, LABELS, image_affine, label_affine)
    write_nifti(images_dir / f"{case_id}_0000.nii.gz", image, image_affine)
    write_nifti(labels_dir / f"{case_id}.nii.gz", label, label_affine)


def _provenance(src_dir: Path, role: str, split_rule: str, cases: dict[str, list[str]]) -> dict[str, object]:
    return {
        "importer": "diffuse_uda.data.importers.mscmrseg",
        "source": "MS-CMRSeg 2019",
        "source_dir": str(src_dir.resolve()),
        "role": role,
        "label_mapping": {str(k): v for k, v in LABEL_MAP.items()},
        "split_rule": split_rule,
        "cases": cases,
    }


def reverse_split(c0_patients: list[int]) -> tuple[list[int], list[int]]:
    """The C0 (bSSFP) patients of the reverse direction's target: (training, held-out test).

    The upper half of the C0 patient numbers is the target; the upper half of that is its test split
    (35 patients: training 18..26, test 27..35). Every LGE patient outside the target is the source, so no
    person is in both domains.
    """
    numbers = sorted(c0_patients)
    target = numbers[len(numbers) // 2:]
    test = target[len(target) // 2:]
    return [n for n in target if n not in test], test


def _write(out_dir: Path, src_dir: Path, modality: str, patients: dict[int, Path], test: set[int],
           description: str, role: str, split_rule: str, settings: dict[str, object]) -> None:
    """Stage and write one dataset: the patients in `test` go to imagesTs/labelsTs, the others to Tr."""

    def describe(tr: list[str], ts: list[str], _records: dict[str, None]) -> DatasetInfo:
        cases = {"Tr": tr, "Ts": ts} if ts else {"Tr": tr}
        return single_channel_info(out_dir, modality, LABELS, len(tr), description, REFERENCE,
                                   _provenance(src_dir, role, split_rule, cases))

    cases = {f"patient{n}": ("Ts" if n in test else "Tr", p) for n, p in patients.items()}
    write_split_dataset(out_dir, cases, _convert_case, describe, settings, desc=f"MS-CMRSeg {out_dir.name}")


def import_mscmrseg(src_dir: Path, out_root: Path, on_dataset: ImportReport | None = None) -> tuple[Path, ...]:
    """Create the four MS-CMRSeg datasets under `out_root` and return their folders.

    bSSFP -> LGE (the main direction): ``Dataset501_MSCMR_bSSFP`` (source: every C0 patient) and
    ``Dataset502_MSCMR_LGE`` (target: LGE patients 1..35 in imagesTr, their labelsTr only for pseudo-label
    evaluation; 36..45, in no source data, in imagesTs/labelsTs). LGE -> bSSFP (secondary):
    ``Dataset503_MSCMR_LGE_source`` (every LGE patient outside the reverse target) and
    ``Dataset504_MSCMR_bSSFP_split`` (C0 patients split by :func:`reverse_split`). Split by patient.
    A dataset already imported completely is skipped; `on_dataset(path, written)` is told which happened.
    """
    src_dir, out_root = Path(src_dir), Path(out_root)
    if not src_dir.is_dir():
        raise DataError(src_dir, "MS-CMRSeg folder does not exist" if not src_dir.exists() else "is not a folder")
    settings: dict[str, object] = {"importer": "mscmrseg", "version": _IMPORT_VERSION}

    c0 = _find_patients(src_dir / "C0", "C0")
    lge = _find_patients(src_dir / "LGE", "LGE")
    leaking = [n for n in c0 if n > LAST_SHARED_PATIENT]
    if leaking:
        # Such patients would also be LGE test patients: the test set must be unseen in source data.
        raise DataError(c0[leaking[0]], f"C0 patient numbers {leaking} exceed {LAST_SHARED_PATIENT}; they would "
                                        "overlap the held-out LGE test patients")
    reverse_train, reverse_test = reverse_split(list(c0))
    reverse_target = set(reverse_train) | set(reverse_test)
    reverse_source = {n: p for n, p in lge.items() if n not in reverse_target}
    if not reverse_train or not reverse_test or not reverse_source:
        raise DataError(src_dir / "C0", f"{len(c0)} C0 patient(s): at least 4 are needed to split the LGE -> bSSFP "
                                        "direction by patient (and LGE patients outside its target)")

    forward_rule = (f"by patient: LGE patients 1..{LAST_SHARED_PATIENT} -> imagesTr (+labelsTr for evaluation "
                    f"only); patients > {LAST_SHARED_PATIENT} -> imagesTs/labelsTs (in no source data)")
    reverse_rule = (f"by patient: C0 patients {reverse_train[0]}..{reverse_train[-1]} -> imagesTr (+labelsTr for "
                    f"evaluation only), {reverse_test[0]}..{reverse_test[-1]} -> imagesTs/labelsTs; the LGE source "
                    "holds every other LGE patient, so no person is in both domains")
    plan = [
        (SOURCE_DATASET, "bSSFP", c0, set(), "MS-CMRSeg 2019 bSSFP (C0) cine MR: labelled source domain",
         "source", "all C0 patients -> imagesTr/labelsTr"),
        (TARGET_DATASET, "LGE", lge, {n for n in lge if n > LAST_SHARED_PATIENT},
         "MS-CMRSeg 2019 late gadolinium enhancement MR: unlabelled target domain "
         "(labelsTr only for pseudo-label evaluation; imagesTs/labelsTs held-out test)", "target", forward_rule),
        (REVERSE_SOURCE_DATASET, "LGE", reverse_source, set(),
         f"MS-CMRSeg 2019 LGE, the {len(reverse_source)} patients outside the bSSFP target of LGE -> bSSFP: "
         "labelled source", "source (LGE -> bSSFP)", "every LGE patient not in the bSSFP target -> imagesTr/labelsTr"),
        (REVERSE_TARGET_DATASET, "bSSFP", {n: c0[n] for n in sorted(reverse_target)}, set(reverse_test),
         f"MS-CMRSeg 2019 bSSFP (C0): target of LGE -> bSSFP. imagesTr: {len(reverse_train)} unlabelled training "
         f"patients (labelsTr only for evaluation/oracle code); imagesTs/labelsTs: {len(reverse_test)} held-out "
         "test patients", "target (LGE -> bSSFP)", reverse_rule),
    ]
    # Check every output before writing any, so a clash leaves nothing half-updated.
    done = {entry[0]: already_imported(out_root / entry[0], settings) for entry in plan}
    for name, modality, patients, test, description, role, rule in plan:
        out_dir = out_root / name
        if not done[name]:
            _write(out_dir, src_dir, modality, patients, test, description, role, rule, settings)
        if on_dataset is not None:
            on_dataset(out_dir, not done[name])
    return tuple(out_root / entry[0] for entry in plan)

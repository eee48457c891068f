"""Importer for MS-CMRSeg 2019 (cardiac MR, bSSFP/C0 -> LGE).

Source layout: ``C0/patientN_C0.nii.gz`` + ``C0/patientN_C0_manual.nii.gz`` (N = 1..35) and
``LGE/patientN_LGE.nii.gz`` + ``_manual`` (N = 1..45). Patients 1..35 appear in both sequences,
so the held-out LGE test set is patients 36..45, which occur in no source data at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from diffuse_uda.data.dataset_json import DatasetInfo
from diffuse_uda.data.importers._common import (
    ImportReport,
    already_imported,
    finish_dataset,
    map_progress,
    staged_dataset,
)
from diffuse_uda.data.io import check_not_broken_link, read_nifti, write_nifti
from diffuse_uda.data.validation import validate_case_arrays
from diffuse_uda.errors import DataError

SOURCE_DATASET = "Dataset501_MSCMR_bSSFP"
TARGET_DATASET = "Dataset502_MSCMR_LGE"
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


def _convert_case(job: tuple[Path, Path, Path, str]) -> None:
    """Read, check and write one patient (image float32, mask uint8, original affines)."""
    image_src, images_dir, labels_dir, case_id = job
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


def import_mscmrseg(src_dir: Path, out_root: Path, on_dataset: ImportReport | None = None) -> tuple[Path, Path]:
    """Create ``out_root/Dataset501_MSCMR_bSSFP`` (source) and ``Dataset502_MSCMR_LGE`` (target).

    Source: every C0 patient in imagesTr/labelsTr. Target: LGE patients 1..35 in imagesTr (their
    labelsTr exist only for pseudo-label evaluation) and 36..45 in imagesTs/labelsTs (held-out
    test). Split by patient. Each dataset is skipped if already imported completely;
    `on_dataset(path, written)` is told which happened.
    """
    src_dir, out_root = Path(src_dir), Path(out_root)
    if not src_dir.is_dir():
        raise DataError(src_dir, "MS-CMRSeg folder does not exist" if not src_dir.exists() else "is not a folder")
    settings = {"importer": "mscmrseg", "version": _IMPORT_VERSION}
    source_dir, target_dir = out_root / SOURCE_DATASET, out_root / TARGET_DATASET

    c0 = _find_patients(src_dir / "C0", "C0")
    lge = _find_patients(src_dir / "LGE", "LGE")
    leaking = [n for n in c0 if n > LAST_SHARED_PATIENT]
    if leaking:
        # Such patients would also be LGE test patients: the test set must be unseen in source data.
        raise DataError(c0[leaking[0]], f"C0 patient numbers {leaking} exceed {LAST_SHARED_PATIENT}; they would "
                                        "overlap the held-out LGE test patients")

    source_done = already_imported(source_dir, settings)
    if not source_done:
        with staged_dataset(source_dir) as tmp:
            jobs = [(p, tmp / "imagesTr", tmp / "labelsTr", f"patient{n}") for n, p in c0.items()]
            map_progress(_convert_case, jobs, desc="MS-CMRSeg C0")
            info = DatasetInfo(
                name="MSCMR_bSSFP",
                channel_names={"0": "bSSFP"},
                labels=dict(LABELS),
                num_training=len(jobs),
                description="MS-CMRSeg 2019 bSSFP (C0) cine MR: labelled source domain",
                reference=REFERENCE,
                provenance=_provenance(src_dir, "source", "all C0 patients -> imagesTr/labelsTr",
                                       {"Tr": [j[3] for j in jobs]}),
            )
            finish_dataset(tmp, info, settings)

    if on_dataset is not None:
        on_dataset(source_dir, not source_done)

    target_done = already_imported(target_dir, settings)
    if not target_done:
        with staged_dataset(target_dir) as tmp:
            jobs = []
            for n, p in lge.items():
                split = "Tr" if n <= LAST_SHARED_PATIENT else "Ts"
                jobs.append((p, tmp / f"images{split}", tmp / f"labels{split}", f"patient{n}"))
            map_progress(_convert_case, jobs, desc="MS-CMRSeg LGE")
            tr = [j[3] for j in jobs if j[1].name == "imagesTr"]
            ts = [j[3] for j in jobs if j[1].name == "imagesTs"]
            info = DatasetInfo(
                name="MSCMR_LGE",
                channel_names={"0": "LGE"},
                labels=dict(LABELS),
                num_training=len(tr),
                description="MS-CMRSeg 2019 late gadolinium enhancement MR: unlabelled target domain "
                            "(labelsTr only for pseudo-label evaluation; imagesTs/labelsTs held-out test)",
                reference=REFERENCE,
                provenance=_provenance(
                    src_dir, "target",
                    f"by patient: LGE patients 1..{LAST_SHARED_PATIENT} -> imagesTr (+labelsTr for evaluation "
                    f"only); patients > {LAST_SHARED_PATIENT} -> imagesTs/labelsTs (in no source data)",
                    {"Tr": tr, "Ts": ts},
                ),
            )
            finish_dataset(tmp, info, settings)
    if on_dataset is not None:
        on_dataset(target_dir, not target_done)
    return source_dir, target_dir

"""Importer for the Kvasir-SEG <-> CVC-ClinicDB colonoscopy polyp pair (2D RGB photos).

CVC-ClinicDB frames come from 29 video sequences and neighbouring frames are near-duplicates,
so its train/test split is by whole sequence, and dataset.json's ``case_groups`` names each frame's
sequence (paired tests average a sequence's frames first). Kvasir-SEG has no patient or sequence ids,
so it can only be split by image.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

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
from diffuse_uda.data.io import check_not_broken_link, read_image_2d, write_nifti
from diffuse_uda.errors import DataError

KVASIR_DATASET = "Dataset511_KvasirSEG"
CVC_DATASET = "Dataset512_CVCClinicDB"
LABELS: dict[str, int] = {"background": 0, "polyp": 1}
CHANNELS: dict[str, str] = {"0": "R", "1": "G", "2": "B"}
# Masks are lossy JPEGs: grey levels near the edges are compression noise, not labels.
MASK_THRESHOLD = 127
_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
_IMPORT_VERSION = 1

# Frame ranges -> video sequence, from CVC-ClinicDB's README.txt.
CVC_SEQUENCES: tuple[tuple[int, int, int], ...] = (
    (1, 25, 1), (26, 50, 2), (51, 67, 3), (68, 78, 4), (79, 103, 5), (104, 126, 6), (127, 151, 7),
    (152, 177, 8), (178, 199, 9), (200, 205, 10), (206, 227, 11), (228, 252, 12), (253, 277, 13),
    (278, 297, 14), (298, 317, 15), (318, 342, 16), (343, 363, 17), (364, 383, 18), (384, 408, 19),
    (409, 428, 20), (429, 447, 21), (448, 466, 22), (467, 478, 23), (479, 503, 24), (504, 528, 25),
    (529, 546, 26), (547, 571, 27), (572, 591, 28), (592, 612, 29),
)
# Salts give Kvasir and CVC independent random streams from the same seed.
_KVASIR_SALT, _CVC_SALT = 511, 512


def cvc_sequence(frame: int) -> int | None:
    """Video sequence (1..29) of a CVC-ClinicDB frame number, None when out of range."""
    for first, last, seq in CVC_SEQUENCES:
        if first <= frame <= last:
            return seq
    return None


_CVC_CASE = re.compile(r"(seq\d{2})_frame\d{4}")


def cvc_case_id(sequence: int, frame: int) -> str:
    """The case id of a CVC-ClinicDB frame: ``seqSS_frameFFFF``."""
    return f"seq{sequence:02d}_frame{frame:04d}"


def cvc_case_sequence(case_id: str) -> str:
    """The video sequence (``seqSS``) of a CVC-ClinicDB case id: the unit a paired test averages frames over."""
    match = _CVC_CASE.fullmatch(case_id)
    if match is None:
        raise ValueError(f"{case_id!r} is not a CVC-ClinicDB case id (seqSS_frameFFFF)")
    return match.group(1)


def _photos(folder: Path) -> dict[str, Path]:
    """stem -> path of the photos in `folder`."""
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist" if not folder.exists() else "is not a folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.suffix.lower() not in _PHOTO_SUFFIXES:
            continue
        check_not_broken_link(p)
        if p.stem in found:
            raise DataError(p, f"two files with the same name stem ({found[p.stem].name})")
        found[p.stem] = p
    if not found:
        raise DataError(folder, "no images found")
    return found


def _pairs(root: Path) -> list[tuple[str, Path, Path]]:
    """(stem, image, mask) for every image in root/images, each with its mask in root/masks."""
    images = _photos(root / "images")
    masks = _photos(root / "masks")
    for stem, path in images.items():
        if stem not in masks:
            raise DataError(path, f"no mask for this image (expected {root / 'masks' / path.name})")
    for stem, path in masks.items():
        if stem not in images:
            raise DataError(path, f"mask has no matching image in {root / 'images'}")
    return [(stem, images[stem], masks[stem]) for stem in images]


def read_binary_mask(path: Path) -> np.ndarray:
    """Read a (possibly colour-saved, lossy) mask photo and binarise it: grey level > 127 -> 1."""
    if path.suffix.lower() in (".jpg", ".jpeg"):
        try:
            with Image.open(path) as img:
                # Let the JPEG decoder emit luma only: about half the decoding work of RGB.
                img.draft("L", img.size)
                grey = np.asarray(img.convert("L"))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(path, f"cannot read image: {exc}") from exc
    else:
        mask = read_image_2d(path)
        grey = mask.mean(axis=2) if mask.ndim == 3 else mask
    return (grey > MASK_THRESHOLD).astype(np.uint8)


def _convert_pair(job: tuple[Path, Path, Path, Path, str]) -> None:
    """Write one photo as R, G, B channel files plus its binarised mask."""
    image_src, mask_src, images_dir, labels_dir, case_id = job
    image = read_image_2d(image_src)
    if image.ndim == 2:  # a stray greyscale frame: replicate so every case has 3 channels
        image = np.repeat(image[..., None], 3, axis=2)
    if image.dtype != np.uint8:
        raise DataError(image_src, f"expected an 8-bit photo, got {image.dtype}")
    mask = read_binary_mask(mask_src)
    if mask.shape != image.shape[:2]:
        raise DataError(mask_src, f"mask size {mask.shape} differs from image {image_src} size {image.shape[:2]}")
    write_photo_channels(images_dir, case_id, image)
    write_nifti(labels_dir / f"{case_id}.nii.gz", mask[..., None])


def _write_dataset(out_dir: Path, name: str, description: str, reference: str,
                   cases: list[tuple[str, Path, Path, bool]], provenance: dict[str, object],
                   settings: dict[str, object], case_groups: dict[str, str] | None = None) -> None:
    """Stage and write one dataset; `cases` are (case_id, image, mask, is_test); `case_groups`: case id -> the
    video sequence it belongs to, where there is one."""
    with staged_dataset(out_dir) as tmp:
        jobs = []
        for case_id, image, mask, is_test in cases:
            split = "Ts" if is_test else "Tr"
            jobs.append((image, mask, tmp / f"images{split}", tmp / f"labels{split}", case_id))
        map_progress(_convert_pair, jobs, desc=name)
        provenance["cases"] = {
            "Tr": [c[0] for c in cases if not c[3]],
            "Ts": [c[0] for c in cases if c[3]],
        }
        info = DatasetInfo(
            name=name, channel_names=dict(CHANNELS), labels=dict(LABELS),
            num_training=sum(1 for c in cases if not c[3]), description=description, reference=reference,
            provenance=provenance, case_groups=case_groups or {},
        )
        finish_dataset(tmp, info, settings)


def _split_cvc(frames: dict[int, tuple[Path, Path]], seed: int,
               test_fraction: float) -> tuple[list[int], dict[int, list[int]]]:
    """Choose whole test sequences so their frames are ~test_fraction of all; returns (test seqs, seq->frames)."""
    by_seq: dict[int, list[int]] = {}
    for frame in sorted(frames):
        seq = cvc_sequence(frame)
        assert seq is not None  # checked by the caller
        by_seq.setdefault(seq, []).append(frame)
    seqs = sorted(by_seq)
    if test_fraction <= 0 or len(seqs) < 2:
        return [], by_seq
    order = [seqs[i] for i in seeded_permutation(len(seqs), seed, _CVC_SALT)]
    target = test_fraction * len(frames)
    # Take the prefix of the shuffled order whose frame count is closest to the target.
    best_k, best_err, total = 1, float("inf"), 0
    for k, seq in enumerate(order[:-1], start=1):  # [:-1]: at least one sequence stays in training
        total += len(by_seq[seq])
        err = abs(total - target)
        if err < best_err:
            best_k, best_err = k, err
    return sorted(order[:best_k]), by_seq


def import_polyp(src_dir: Path, out_root: Path, seed: int = 0, test_fraction: float = 0.2,
                 on_dataset: ImportReport | None = None) -> tuple[Path, Path]:
    """Create ``out_root/Dataset511_KvasirSEG`` and ``Dataset512_CVCClinicDB`` with Tr and held-out Ts splits.

    Kvasir-SEG: seeded split by image (no patient/sequence ids exist). CVC-ClinicDB: seeded split by
    whole video sequence (case ids ``seqSS_frameFFFF``). Masks binarised at > 127; images stored as
    R, G, B uint8 channel files. Each dataset is skipped if already imported with the same settings;
    `on_dataset(path, written)` is told which happened.
    """
    src_dir, out_root = Path(src_dir), Path(out_root)
    check_test_fraction(test_fraction)
    if not src_dir.is_dir():
        raise DataError(src_dir, "polyp data folder does not exist" if not src_dir.exists() else "is not a folder")
    settings = {"importer": "polyp", "version": _IMPORT_VERSION, "seed": int(seed),
                "test_fraction": float(test_fraction)}
    kvasir_dir, cvc_dir = out_root / KVASIR_DATASET, out_root / CVC_DATASET

    kvasir_done = already_imported(kvasir_dir, settings)
    if not kvasir_done:
        pairs = _pairs(src_dir / "Kvasir-SEG")
        for stem, image, _ in pairs:
            check_case_id(stem, image)
        order = seeded_permutation(len(pairs), seed, _KVASIR_SALT)
        test = set(order[: n_test_items(len(pairs), test_fraction)].tolist())
        cases = [(stem, image, mask, i in test) for i, (stem, image, mask) in enumerate(pairs)]
        _write_dataset(
            kvasir_dir, "KvasirSEG", "Kvasir-SEG colonoscopy polyps (RGB photos, binary masks)",
            "Jha et al., Kvasir-SEG: A Segmented Polyp Dataset, MMM 2020",
            cases,
            {
                "importer": "diffuse_uda.data.importers.polyp",
                "source_dir": str((src_dir / "Kvasir-SEG").resolve()),
                "split_rule": f"by image, seeded (seed={seed}, test_fraction={test_fraction}): Kvasir-SEG has "
                              "no patient or sequence ids, so near-duplicate images of one patient may fall "
                              "on both sides",
                "mask_rule": f"JPEG masks binarised at grey level > {MASK_THRESHOLD}",
            },
            settings,
        )

    if on_dataset is not None:
        on_dataset(kvasir_dir, not kvasir_done)

    cvc_done = already_imported(cvc_dir, settings)
    if not cvc_done:
        frames: dict[int, tuple[Path, Path]] = {}
        for stem, image, mask in _pairs(src_dir / "CVC-ClinicDB"):
            if not re.fullmatch(r"\d+", stem) or cvc_sequence(int(stem)) is None:
                raise DataError(image, "not a CVC-ClinicDB frame name (expected N.jpg with N in 1..612)")
            frames[int(stem)] = (image, mask)
        test_seqs, by_seq = _split_cvc(frames, seed, test_fraction)
        cases = []
        for seq, seq_frames in by_seq.items():
            for frame in seq_frames:
                image, mask = frames[frame]
                cases.append((cvc_case_id(seq, frame), image, mask, seq in test_seqs))
        _write_dataset(
            cvc_dir, "CVCClinicDB", "CVC-ClinicDB colonoscopy video frames with polyps (RGB, binary masks)",
            "Bernal et al., WM-DOVA maps for accurate polyp highlighting in colonoscopy, CMIG 2015",
            cases,
            {
                "importer": "diffuse_uda.data.importers.polyp",
                "source_dir": str((src_dir / "CVC-ClinicDB").resolve()),
                "split_rule": f"by whole video sequence, seeded (seed={seed}): shuffled sequences taken until "
                              f"test frames are closest to test_fraction={test_fraction}",
                "test_sequences": test_seqs,
                "sequence_table": [list(r) for r in CVC_SEQUENCES],
                "mask_rule": f"JPEG masks binarised at grey level > {MASK_THRESHOLD}",
            },
            settings,
            case_groups={case[0]: cvc_case_sequence(case[0]) for case in cases},
        )
    if on_dataset is not None:
        on_dataset(cvc_dir, not cvc_done)
    return kvasir_dir, cvc_dir

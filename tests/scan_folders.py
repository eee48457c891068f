"""Tiny folders of cardiac-like NIfTI scans, as a user would bring them: two frames per patient,
masks with Myo=1, LV=2, RV=3, each centre with its own contrast and (optionally) its own storage
orientation."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from diffuse_uda.data.io import write_nifti

FRAMES: tuple[str, ...] = ("frame01", "frame08")
LABELS = {"background": 0, "Myo": 1, "LV": 2, "RV": 3}


def heart(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A mask in RAS voxel order: LV disk (2), myocardium ring (1) and the RV (3) on the +x (right) side,
    so any flip of the x axis shows."""
    nx, ny, nz = shape
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    cx, cy = nx * 0.42 + rng.uniform(-1, 1), ny * 0.5 + rng.uniform(-1, 1)
    r = min(nx, ny) * rng.uniform(0.14, 0.18)
    d = np.hypot(x - cx, y - cy)
    plane = np.zeros((nx, ny), np.uint8)
    plane[d < r + 2] = 1
    plane[d < r] = 2
    rv = (np.hypot(x - (cx + 2.2 * r), y - cy) < r) & (plane == 0)
    plane[rv] = 3
    mask = np.repeat(plane[..., None], nz, axis=2)
    mask[..., 0][mask[..., 0] == 3] = 0  # the basal slice without RV: label counts differ per slice
    return mask


def scan_from_mask(mask: np.ndarray, contrast: str, rng: np.random.Generator) -> np.ndarray:
    """bright: blood pools bright, myocardium dark (cine-like); dark: the other way round."""
    means = {0: 0.15, 1: 0.35, 2: 0.9, 3: 0.85} if contrast == "bright" else {0: 0.3, 1: 0.9, 2: 0.2, 3: 0.25}
    image = np.zeros(mask.shape, np.float32)
    for value, mean in means.items():
        image[mask == value] = mean
    return (image + rng.normal(0, 0.03, mask.shape)).astype(np.float32) * 400.0


def ras_affine(spacing: Sequence[float]) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-40.0, -30.0, 10.0)
    return affine


def flip_xy(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored with the x and y axes reversed (RAS -> LPS storage)."""
    nx, ny = array.shape[:2]
    flip = np.array([[-1.0, 0, 0, nx - 1], [0, -1, 0, ny - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    return np.ascontiguousarray(array[::-1, ::-1]), affine @ flip


def write_centre(folder: Path, patients: Sequence[str], contrast: str, seed: int,
                 shape: tuple[int, int, int] = (20, 20, 3), spacing: Sequence[float] = (1.5, 1.5, 8.0),
                 stored: str = "RAS") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``folder/images/{patient}_{frame}.nii.gz`` and ``folder/masks/`` (same names); ``stored``: RAS or LPS.
    Returns, per file stem, the (image, mask) in RAS voxel order."""
    rng = np.random.default_rng(seed)
    truth = {}
    for patient in patients:
        for frame in FRAMES:
            mask = heart(shape, rng)
            image = scan_from_mask(mask, contrast, rng)
            truth[f"{patient}_{frame}"] = (image, mask)
            affine = ras_affine(spacing)
            if stored == "LPS":
                image, _ = flip_xy(image, affine)
                mask, affine = flip_xy(mask, affine)
            write_nifti(folder / "images" / f"{patient}_{frame}.nii.gz", image, affine)
            write_nifti(folder / "masks" / f"{patient}_{frame}.nii.gz", mask, affine)
    return truth

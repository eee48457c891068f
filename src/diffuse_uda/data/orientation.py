"""Voxel-axis orientation of NIfTI volumes: to a common (canonical) orientation and back.

Centres store the same anatomy with different axis orders and flips (RAS, LPS, a sagittal stack,
...). A 2D model then sees flipped or rotated anatomy between source and target, so importers bring
every volume to one orientation and record the original affine, and ``predict`` can write its
labels back in it. Only axes are permuted and flipped (no resampling), so the round trip is exact.

Orientation rules (``ORIENTATIONS``):

* ``ras``: the closest canonical orientation, RAS+ (``nibabel.as_closest_canonical``);
* ``ras-in-plane``: the stored slice axis stays the last axis (flipped to point to R, A or S),
  the two in-plane axes are put in R, A, S order pointing to +: for thick-slice stacks (cardiac
  short axis) that a 2D model must slice as acquired, whatever their obliquity;
* ``as-stored``: unchanged.
"""

from __future__ import annotations

from typing import Literal

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

Orientation = Literal["ras", "ras-in-plane", "as-stored"]
ORIENTATIONS: tuple[str, ...] = ("ras", "ras-in-plane", "as-stored")
# A slice axis this many times coarser than both in-plane axes is an acquisition's slice axis.
THICK_SLICE_RATIO = 2.0


def orientation_codes(affine: np.ndarray) -> str:
    """Axis codes of an affine as one string, e.g. ``"RAS"``, ``"LPS"``, ``"PSR"``."""
    return "".join(nib.aff2axcodes(np.asarray(affine, dtype=np.float64)))


def _target_ornt(affine: np.ndarray, orientation: Orientation) -> np.ndarray:
    """The (world axis, +1) orientation each array axis should have after reorienting."""
    current = io_orientation(np.asarray(affine, dtype=np.float64))
    if orientation == "as-stored":
        return current
    if orientation == "ras":
        return np.array([[0, 1], [1, 1], [2, 1]], dtype=float)
    # ras-in-plane: keep the last axis's world axis last; order the other two by world axis.
    slice_world = current[2, 0]
    in_plane = sorted(w for w in (0.0, 1.0, 2.0) if w != slice_world)
    return np.array([[in_plane[0], 1], [in_plane[1], 1], [slice_world, 1]], dtype=float)


def reorient(array: np.ndarray, affine: np.ndarray, orientation: Orientation) -> tuple[np.ndarray, np.ndarray]:
    """(array, affine) in ``orientation``; arrays of 2 dims are treated as (X, Y, 1)."""
    affine = np.asarray(affine, dtype=np.float64)
    if orientation == "as-stored":
        return array, affine
    volume = array[..., None] if array.ndim == 2 else array
    transform = ornt_transform(io_orientation(affine), _target_ornt(affine, orientation))
    out = apply_orientation(volume, transform)
    new_affine = affine @ inv_ornt_aff(transform, volume.shape)
    return np.ascontiguousarray(out), new_affine


def reorient_to_grid(array: np.ndarray, affine: np.ndarray, target_affine: np.ndarray,
                     target_shape: tuple[int, ...], atol: float = 1e-3) -> np.ndarray | None:
    """``array`` (on ``affine``'s grid) moved onto the grid of ``target_affine`` / ``target_shape``
    when the two grids hold the same voxels in another axis order or direction; None otherwise."""
    affine = np.asarray(affine, dtype=np.float64)
    target_affine = np.asarray(target_affine, dtype=np.float64)
    volume = array[..., None] if array.ndim == 2 else array
    transform = ornt_transform(io_orientation(affine), io_orientation(target_affine))
    out = apply_orientation(volume, transform)
    new_affine = affine @ inv_ornt_aff(transform, volume.shape)
    scale = max(1.0, float(np.abs(target_affine[:3, :3]).max()))
    if tuple(out.shape) != tuple(target_shape) or not np.allclose(new_affine, target_affine, rtol=1e-5,
                                                                     atol=atol * scale):
        return None
    return np.ascontiguousarray(out)


def slice_axis_moved(affine: np.ndarray, orientation: Orientation) -> bool:
    """True when ``orientation`` moves a thick stored slice axis (last axis, ``THICK_SLICE_RATIO``
    times coarser than both others) away from the last position, where 2D models slice."""
    affine = np.asarray(affine, dtype=np.float64)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    if spacing[2] < THICK_SLICE_RATIO * max(spacing[0], spacing[1]):
        return False
    transform = ornt_transform(io_orientation(affine), _target_ornt(affine, orientation))
    return int(transform[2, 0]) != 2

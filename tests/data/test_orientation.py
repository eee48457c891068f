"""Tests for diffuse_uda.data.orientation: reorienting is exact and reversible, and refuses other grids."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from diffuse_uda.data.orientation import (
    ORIENTATIONS,
    orientation_codes,
    reorient,
    reorient_to_grid,
    slice_axis_moved,
)

OBLIQUE = np.array([[-0.8, -0.6, 7.1, 95.3], [-0.9, 0.1, -8.1, 212.2], [-0.3, 1.1, 5.3, -131.9], [0, 0, 0, 1.0]])
LPS = np.diag([-1.5, -1.5, 8.0, 1.0])


def _world_of(affine: np.ndarray, shape: tuple[int, ...]) -> dict[tuple[float, ...], int]:
    """Each voxel's world position (rounded) -> its index in C order, to compare grids voxel by voxel."""
    idx = np.indices(shape).reshape(3, -1)
    world = (affine[:3, :3] @ idx + affine[:3, 3:]).T
    return {tuple(np.round(w, 3)): i for i, w in enumerate(world)}


@pytest.mark.parametrize("affine", [OBLIQUE, LPS, np.eye(4)])
def test_ras_matches_nibabel_and_keeps_every_voxel_at_its_world_position(affine: np.ndarray) -> None:
    array = np.random.default_rng(0).random((5, 6, 3)).astype(np.float32)
    out, out_affine = reorient(array, affine, "ras")
    canonical = nib.as_closest_canonical(nib.Nifti1Image(array, affine))
    np.testing.assert_array_equal(out, np.asarray(canonical.dataobj))
    np.testing.assert_allclose(out_affine, canonical.affine, atol=1e-6)
    assert orientation_codes(out_affine) == "RAS"
    before, after = _world_of(affine, array.shape), _world_of(out_affine, out.shape)
    assert set(before) == set(after)
    flat_in, flat_out = array.ravel(), out.ravel()
    assert all(flat_in[before[w]] == flat_out[after[w]] for w in before)


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_reorienting_back_onto_the_original_grid_is_exact(orientation: str) -> None:
    array = np.random.default_rng(1).integers(0, 4, (5, 6, 3)).astype(np.uint8)
    out, out_affine = reorient(array, OBLIQUE, orientation)  # type: ignore[arg-type]
    back = reorient_to_grid(out, out_affine, OBLIQUE, array.shape)
    assert back is not None
    np.testing.assert_array_equal(back, array)


def test_reorient_to_grid_refuses_a_different_grid() -> None:
    array = np.zeros((5, 6, 3), np.uint8)
    out, out_affine = reorient(array, LPS, "ras")
    shifted = LPS.copy()
    shifted[0, 3] += 1.5
    assert reorient_to_grid(out, out_affine, shifted, array.shape) is None  # one voxel off
    assert reorient_to_grid(out, out_affine, LPS, (5, 6, 4)) is None  # other size
    assert reorient_to_grid(out, out_affine, np.diag([1.5, 1.5, 4.0, 1.0]), array.shape) is None  # other spacing


def test_ras_in_plane_keeps_the_slice_axis_last() -> None:
    array = np.zeros((5, 6, 3), np.float32)
    out, out_affine = reorient(array, OBLIQUE, "ras-in-plane")
    assert out.shape == (5, 6, 3)
    codes = orientation_codes(out_affine)
    assert codes[2] == "R" and codes[:2] == "AS"  # in-plane axes in R, A, S order, all pointing to +
    assert slice_axis_moved(OBLIQUE, "ras") and not slice_axis_moved(OBLIQUE, "ras-in-plane")
    # Isotropic voxels have no acquisition slice axis to protect.
    iso = OBLIQUE.copy()
    iso[:3, 2] /= np.linalg.norm(iso[:3, 2])
    assert not slice_axis_moved(iso, "ras")


def test_two_dimensional_arrays_are_treated_as_single_slices() -> None:
    out, out_affine = reorient(np.arange(6, dtype=np.float32).reshape(2, 3), LPS, "ras")
    assert out.shape == (2, 3, 1)
    np.testing.assert_array_equal(out[..., 0], np.arange(6).reshape(2, 3)[::-1, ::-1])
    assert orientation_codes(out_affine) == "RAS"

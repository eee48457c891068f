"""Tests for diffuse_uda.data.io."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel

from diffuse_uda.data.io import (
    atomic_write_json,
    atomic_write_text,
    nifti_bytes,
    read_image_2d,
    read_json_record,
    read_mask_2d,
    read_nifti,
    spacing_from_affine,
    write_nifti,
)
from diffuse_uda.errors import DataError


def _visible_and_hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_nifti_round_trip_keeps_array_and_affine(tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    affine = np.diag([0.5, 0.75, 3.0, 1.0])
    affine[:3, 3] = [10.0, -20.0, 5.0]
    path = write_nifti(tmp_path / "sub" / "x.nii.gz", array, affine)
    assert path == tmp_path / "sub" / "x.nii.gz"
    out, out_affine = read_nifti(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, array)
    np.testing.assert_allclose(out_affine, affine, atol=1e-6)
    assert out_affine.dtype == np.float64
    # Atomic write leaves no temp file behind.
    assert _visible_and_hidden(path.parent) == ["x.nii.gz"]


def test_write_nifti_identity_affine_and_dtypes(tmp_path: Path) -> None:
    mask = np.zeros((4, 5, 1), dtype=bool)
    mask[1, 2, 0] = True
    out, affine = read_nifti(write_nifti(tmp_path / "m.nii.gz", mask))
    assert out.dtype == np.uint8 and out[1, 2, 0] == 1
    np.testing.assert_array_equal(affine, np.eye(4))
    out, _ = read_nifti(write_nifti(tmp_path / "i.nii", np.array([[[1, 2]]], dtype=np.int64)))
    assert out.dtype == np.int32
    with pytest.raises(DataError, match="big.nii.gz"):
        write_nifti(tmp_path / "big.nii.gz", np.array([[[2**40]]], dtype=np.int64))
    with pytest.raises(DataError, match="x.png"):
        write_nifti(tmp_path / "x.png", np.zeros((2, 2, 1)))


def test_write_nifti_is_gzipped_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "x.nii.gz"
    write_nifti(path, np.zeros((2, 2, 2), dtype=np.uint8))
    write_nifti(path, np.ones((2, 2, 2), dtype=np.uint8))
    with gzip.open(path) as fh:
        assert len(fh.read()) > 348  # a real NIfTI header inside a gzip stream
    assert read_nifti(path)[0].sum() == 8
    assert _visible_and_hidden(tmp_path) == ["x.nii.gz"]


def test_read_nifti_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing.nii.gz: file does not exist"):
        read_nifti(tmp_path / "missing.nii.gz")
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"this is not a nifti file")
    with pytest.raises(DataError, match="bad.nii.gz: cannot read NIfTI"):
        read_nifti(bad)
    # A truncated gzip stream only fails when the data are read.
    good = write_nifti(tmp_path / "trunc.nii.gz", np.random.rand(8, 8, 8).astype(np.float32))
    good.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="trunc.nii.gz: cannot read NIfTI"):
        read_nifti(good)


def test_spacing_from_affine() -> None:
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.25, 1.25, 12.0])
    assert spacing_from_affine(affine) == pytest.approx((1.25, 1.25, 12.0))


def test_read_image_2d_modes(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (6, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    out = read_image_2d(tmp_path / "rgb.png")
    assert out.shape == (6, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.bmp")
    assert read_image_2d(tmp_path / "grey.bmp").shape == (6, 7)
    rgba = np.dstack([rgb, np.full((6, 7), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image_2d(tmp_path / "rgba.png"), rgb)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    assert read_image_2d(tmp_path / "photo.jpg").shape == (6, 7, 3)
    deep = (np.arange(42, dtype=np.uint16).reshape(6, 7) * 1000).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.tiff")
    out = read_image_2d(tmp_path / "deep.tiff")
    assert out.dtype == np.float32 and out.max() == 41000


def test_read_mask_2d_keeps_palette_indices(tmp_path: Path) -> None:
    idx = np.array([[0, 1], [2, 3]], dtype=np.uint8)
    img = Image.fromarray(idx, mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    img.save(tmp_path / "pal.png")
    np.testing.assert_array_equal(read_mask_2d(tmp_path / "pal.png"), idx)
    assert read_image_2d(tmp_path / "pal.png").shape == (2, 2, 3)  # as a photo it is colour


def test_read_image_2d_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.png: file does not exist"):
        read_image_2d(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match="bad.jpg: cannot read image"):
        read_image_2d(bad)
    other = tmp_path / "x.gif"
    other.write_bytes(b"GIF89a")
    with pytest.raises(DataError, match="x.gif: unsupported image format"):
        read_image_2d(other)


def test_atomic_text_and_json(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a" / "t.txt", "hello")
    assert (tmp_path / "a" / "t.txt").read_text() == "hello"
    atomic_write_json(tmp_path / "a" / "d.json", {"x": np.int64(3), "y": np.arange(2), "p": Path("q")})
    text = (tmp_path / "a" / "d.json").read_text()
    assert json.loads(text) == {"x": 3, "y": [0, 1], "p": "q"}
    assert '\n  "x": 3' in text  # indent=2
    assert _visible_and_hidden(tmp_path / "a") == ["d.json", "t.txt"]


def test_atomic_json_failure_keeps_old_file_and_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    atomic_write_json(path, {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": 1}
    assert _visible_and_hidden(tmp_path) == ["d.json"]


def test_incompressible_data_still_valid_gzip(tmp_path: Path) -> None:
    noisy = np.random.default_rng(0).integers(0, 255, (120, 100, 1), dtype=np.uint8)
    smooth = np.zeros((120, 100, 1), dtype=np.uint8)
    for name, array in (("noisy.nii.gz", noisy), ("smooth.nii.gz", smooth)):
        path = write_nifti(tmp_path / name, array)
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # gzip magic either way
        np.testing.assert_array_equal(read_nifti(path)[0], array)
    # Noise is stored (level 0), zeros are deflated.
    assert (tmp_path / "noisy.nii.gz").stat().st_size > noisy.size
    assert (tmp_path / "smooth.nii.gz").stat().st_size < smooth.size // 10


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, ">i2", np.float32, np.float64])
def test_nifti_bytes_matches_nibabel(dtype: str | type) -> None:
    array = (np.random.default_rng(0).random((3, 4, 5)) * 100).astype(dtype)[:, ::2]  # non-contiguous too
    affine = np.diag([0.7, 0.8, 2.0, 1.0])
    affine[:3, 3] = [1.0, -2.0, 3.5]
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    assert nifti_bytes(array, affine) == img.to_bytes()
    assert nifti_bytes(array, affine) == img.to_bytes()  # again, from the header cache


def test_a_json_record_is_read_none_when_absent_and_a_bad_one_names_its_file(tmp_path: Path) -> None:
    class Record(BaseModel):
        n: int

    path = tmp_path / "record.json"
    assert read_json_record(path, Record, "not a record") is None
    path.write_text('{"n": 3}')
    assert read_json_record(path, Record, "not a record") == Record(n=3)
    for bad in ('{"n": "three"}', "{not json"):
        path.write_text(bad)
        with pytest.raises(DataError, match=r"record\.json.*not a record \(.+\); redo it") as err:
            read_json_record(path, Record, "not a record", "; redo it")
        assert "\n" not in str(err.value)  # the parser's reason on one line

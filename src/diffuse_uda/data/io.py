"""Low-level file I/O: NIfTI volumes, 2D photos and atomic text/JSON writes.

Everything the toolkit writes goes through the atomic helpers here, so an interrupted run never
leaves a half-written file under its final name.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import tempfile
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import nibabel as nib
import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel

from diffuse_uda.errors import DataError

RecordT = TypeVar("RecordT", bound=BaseModel)

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
IMAGE_2D_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Fastest zlib level (nibabel's default too): photos barely compress, so higher levels only cost time.
GZIP_LEVEL = 1
# Above this many bytes write_nifti streams instead of building the whole file in memory.
_IN_MEMORY_LIMIT = 256 * 2**20
# Data whose probe compresses to more than this fraction are stored uncompressed inside the gzip.
_INCOMPRESSIBLE_RATIO = 0.75
_PROBE_BYTES = 4096

def is_nifti(path: str | Path) -> bool:
    """True when the file name ends in .nii or .nii.gz (case-insensitive)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    """File name without its .nii / .nii.gz ending (unchanged when it has neither)."""
    lower = name.lower()
    for suffix in NIFTI_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def check_not_broken_link(path: Path) -> None:
    """DataError naming `path` when it is a symbolic link to nothing (or a link loop).

    Folder listings call this: ``is_file()`` is False for such links, so they would otherwise vanish
    from a dataset without a word.
    """
    if path.is_symlink() and not path.exists():
        raise DataError(path, f"broken symbolic link (its target {os.readlink(path)} does not exist)")


def _require_file(path: Path) -> None:
    if not path.exists():
        raise DataError(path, "file does not exist")
    if not path.is_file():
        raise DataError(path, "is not a file")


def read_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI file: (array as stored, header scaling applied if any; 4x4 float64 affine)."""
    path = Path(path)
    _require_file(path)
    try:
        img = nib.load(str(path))
        # nib.load is lazy: corrupt gzip streams only surface when the data is read, so read here.
        array = np.asarray(img.dataobj)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel/gzip/zlib raise many unrelated types for corrupt files
        raise DataError(path, f"cannot read NIfTI: {exc}") from exc
    if affine.shape != (4, 4):
        raise DataError(path, f"cannot read NIfTI: affine has shape {affine.shape}, expected (4, 4)")
    return array, affine


def read_nifti_header(path: str | Path) -> tuple[tuple[int, ...], np.ndarray]:
    """(shape, 4x4 float64 affine) of a NIfTI file without reading its voxels."""
    path = Path(path)
    _require_file(path)
    try:
        img = nib.load(str(path))
        return tuple(int(n) for n in img.shape), np.asarray(img.affine, dtype=np.float64)
    except Exception as exc:  # nibabel raises many unrelated types for damaged headers
        raise DataError(path, f"cannot read NIfTI header: {exc}") from exc


def _storable(array: np.ndarray, path: Path) -> np.ndarray:
    """Convert dtypes NIfTI cannot hold (bool, float16, 64-bit ints) to ones it can."""
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype in (np.int64, np.uint64):
        if array.size == 0:
            return array.astype(np.int32)
        lo, hi = int(array.min()), int(array.max())
        info = np.iinfo(np.int32)
        if lo < info.min or hi > info.max:
            raise DataError(path, f"integer values [{lo}, {hi}] do not fit in int32")
        return array.astype(np.int32)
    if array.dtype.kind not in "uif":
        raise DataError(path, f"cannot store arrays of dtype {array.dtype} as NIfTI")
    return array


# Temporary files are named ".{final name}.{pid}-{random}.tmp[suffix]": the pid tells a leftover of a
# killed process (removable) from a file another live process is writing right now (kept).
_TEMP_NAME = re.compile(r"^\..+\.(\d+)-[A-Za-z0-9_]+\.tmp(\.[A-Za-z0-9.]+)?$")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete temporary files that killed processes left in ``folder``; returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp*") if recursive else folder.glob(".*.tmp*"):
        match = _TEMP_NAME.match(path.name)
        if match and path.is_file() and not _pid_alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


@contextmanager
def _temp_sibling(path: Path, suffix: str) -> Iterator[Path]:
    """Yield a unique temp path next to `path`; remove it if the caller fails before renaming."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Hidden name plus the real suffix: format detection (e.g. nibabel's gzip choice) keys on
    # the ending, and a leading dot keeps half-written files out of directory listings.
    tmp = path.parent / f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{suffix}"
    try:
        yield tmp
    finally:
        if tmp.exists():
            tmp.unlink()


def _new_image(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    return img


@functools.lru_cache(maxsize=64)
def _header_block(shape: tuple[int, ...], dtype: str, affine: bytes) -> bytes:
    """The 352 bytes before the voxel data of an unscaled single-file NIfTI.

    Cached: building a nibabel header (qform decomposition) costs as much as writing a small
    file, and importers write thousands of files that share shape, dtype and affine.
    """
    # A zero-stride view gives nibabel the shape and dtype without allocating the array.
    dummy = np.broadcast_to(np.zeros((), dtype=np.dtype(dtype)), shape)
    hdr = _new_image(dummy, np.frombuffer(affine, dtype=np.float64).reshape(4, 4)).header.copy()
    hdr.set_data_offset(352)  # 348-byte header + 4-byte "no extensions" flag
    hdr.set_slope_inter(1.0, 0.0)
    return hdr.binaryblock + b"\x00" * 4


def nifti_bytes(array: np.ndarray, affine: np.ndarray) -> bytes:
    """Uncompressed .nii file bytes for `array` (a NIfTI-storable dtype) with `affine`.

    Byte-identical to nibabel's ``Nifti1Image(array, affine).to_bytes()`` with mm units (the tests
    check this) but one array copy instead of nibabel's Python loop over rows.
    """
    affine = np.ascontiguousarray(affine, dtype=np.float64)
    native = array.dtype.newbyteorder("=")  # the header is native-endian, so the data must be too
    head = _header_block(tuple(int(n) for n in array.shape), native.str, affine.tobytes())
    return head + np.asarray(array, dtype=native).tobytes(order="F")


def _gzip_level(data: bytes) -> int:
    """GZIP_LEVEL, or 0 (stored: still a valid .gz) when a sample shows the data barely compress.

    Photo pixels and noisy float volumes shrink by only ~20% yet deflate costs ~25x the time of
    storing them; probing three small chunks costs a fraction of compressing the whole file.
    """
    if len(data) < 4 * _PROBE_BYTES:
        return GZIP_LEVEL
    step = len(data) // 4
    sample = b"".join(data[i * step : i * step + _PROBE_BYTES] for i in (1, 2, 3))
    ratio = len(zlib.compress(sample, GZIP_LEVEL)) / len(sample)
    return 0 if ratio > _INCOMPRESSIBLE_RATIO else GZIP_LEVEL


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Atomically write `array` as NIfTI (identity affine when None); creates parent folders.

    .nii.gz output is always gzip; poorly compressible data (photos) are stored at level 0 for speed.
    """
    path = Path(path)
    if not is_nifti(path):
        raise DataError(path, "NIfTI file names must end in .nii or .nii.gz")
    array = _storable(np.asarray(array), path)
    aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or not np.all(np.isfinite(aff)):
        raise DataError(path, f"invalid affine (shape {aff.shape}, must be a finite 4x4 matrix)")
    compressed = path.name.lower().endswith(".nii.gz")
    # Serialise in memory and gzip in one call: nibabel's own writer pushes arrays row by row
    # through gzip, which dominated import time. mtime=0 makes outputs byte-reproducible.
    with _temp_sibling(path, ".nii.gz" if compressed else ".nii") as tmp:
        if array.nbytes > _IN_MEMORY_LIMIT:
            nib.save(_new_image(array, aff), str(tmp))  # big volumes: stream, don't double memory
        else:
            data = nifti_bytes(array, aff)
            if compressed:
                data = gzip.compress(data, compresslevel=_gzip_level(data), mtime=0)
            with open(tmp, "wb") as fh:
                fh.write(data)
        os.replace(tmp, path)
    return path


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel spacing (mm) along the three array axes: norms of the affine's 3x3 columns."""
    norms = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    return float(norms[0]), float(norms[1]), float(norms[2])


def _open_pil(path: Path) -> Image.Image:
    _require_file(path)
    if not path.name.lower().endswith(IMAGE_2D_SUFFIXES):
        raise DataError(path, f"unsupported image format (expected one of {', '.join(IMAGE_2D_SUFFIXES)})")
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(path, f"cannot read image: {exc}") from exc
    if getattr(img, "n_frames", 1) > 1:
        raise DataError(path, "multi-frame images are not supported (save one image per file)")
    return img


def read_image_2d(path: str | Path) -> np.ndarray:
    """Read a PNG/JPEG/BMP/TIFF photo as (H, W) or (H, W, 3); uint8 for 8-bit data, else float32."""
    path = Path(path)
    img = _open_pil(path)
    mode = img.mode
    try:
        if mode in ("L", "RGB"):
            out = np.asarray(img)
        elif mode in ("1", "LA"):
            out = np.asarray(img.convert("L"))
        elif mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            # High-bit-depth greyscale (16-bit PNG/TIFF, float TIFF): keep the precision.
            out = np.asarray(img).astype(np.float32)
        elif mode == "P":
            # A palette photo: decide grey vs colour from the expanded pixels.
            rgb = np.asarray(img.convert("RGB"))
            same = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
            out = rgb[..., 0] if same else rgb
        else:  # RGBA, CMYK, YCbCr, ...: alpha is dropped, colour spaces converted to RGB
            out = np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read image: {exc}") from exc
    return np.ascontiguousarray(out)


def read_mask_2d(path: str | Path) -> np.ndarray:
    """Read a 2D label image. Unlike read_image_2d, palette images keep their indices (= labels).

    Returns (H, W), or (H, W, 3) for colour-saved masks so the caller can decide what to do.
    """
    path = Path(path)
    img = _open_pil(path)
    if img.mode in ("P", "L", "I", "I;16", "I;16B", "I;16L", "I;16N"):
        out = np.asarray(img)
        if out.dtype != np.uint8:
            out = out.astype(np.int32)
        return np.ascontiguousarray(out)
    if img.mode == "PA":
        return np.ascontiguousarray(np.asarray(img.convert("P")))
    return read_image_2d(path)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text (UTF-8) via a temp file in the same folder and os.replace; creates parent folders."""
    path = Path(path)
    with _temp_sibling(path, ".txt") as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars/arrays and paths, which provenance records often contain."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON (numpy values and paths are converted)."""
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def read_json_record(path: str | Path, model: type[RecordT], problem: str, hint: str = "") -> RecordT | None:
    """The pydantic ``model`` stored as JSON at ``path``; None when there is no such file. An unreadable or invalid
    file is a DataError naming it: ``problem`` (what the file is not), the parser's reason on one line, ``hint``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return model.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:  # JSON and validation errors are ValueErrors
        reason = " ".join(line.strip() for line in str(exc).splitlines())
        raise DataError(path, f"{problem} ({reason}){hint}") from None


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then rename: never a half-written file."""
    import torch  # local: the rest of this module does not need torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def ensure_output_dir(path: str | Path, what: str = "output folder") -> Path:
    """Create ``path`` (and parents) and prove it writable before any work starts, so a bad output
    location fails in a second rather than after an hour of training."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, f"{what} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=f".write-probe.{os.getpid()}-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise DataError(path, f"{what} cannot be written ({exc.strerror or exc})") from None
    return path


def safe_torch_load(path: str | Path, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only. A file that would run code
    when unpickled (or is damaged) is a one-line DataError naming it."""
    import pickle

    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "GLOBAL" in line), "")
        raise DataError(path, f"cannot load {what}: it holds Python objects that could run code when loaded, "
                              f"refused{f' ({detail})' if detail else ''}") from None
    except Exception as exc:  # torch raises many types for damaged files
        raise DataError(path, f"cannot load {what}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")\
            from None

"""Preprocessing: robust intensity normalisation and resampling to a fixed size, with its inverse.

2D mode treats each axial slice (last axis) of a volume as a sample and resizes it in-plane;
photos are volumes with one slice. 3D mode resizes the whole volume. Labels use nearest
neighbour. Predictions go back to the original grid through :func:`restore_labels`, so that
evaluation compares against the untouched reference files.

Nothing here is ever given the labels of the target domain: :func:`prepare_split` reads labels
only when ``with_labels=True``, which the training code passes for the source domain alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from diffuse_uda.config import PreprocessingConfig
from diffuse_uda.data.dataset_json import image_paths, label_path, list_cases, load_dataset_json
from diffuse_uda.data.io import atomic_torch_save, read_nifti
from diffuse_uda.data.validation import validate_case_arrays
from diffuse_uda.errors import DataError

CACHE_VERSION = 2


@dataclass
class PreparedCase:
    case_id: str
    image: np.ndarray  # (C, *spatial) float32 in [0, 1]; 2D mode: (C, H, W, Z)
    label: np.ndarray | None  # (*spatial) uint8, same grid as image
    original_shape: tuple[int, ...]  # (X, Y, Z) of the file on disk
    affine: np.ndarray  # 4x4 of the file on disk

    @property
    def num_slices(self) -> int:
        return int(self.image.shape[-1])


def normalise_intensity(image: np.ndarray, clip_percentiles: tuple[float, float]) -> np.ndarray:
    """Per channel: clip to percentiles of the case, then scale to [0, 1]."""
    out = np.empty(image.shape, dtype=np.float32)
    for c in range(image.shape[0]):
        channel = image[c].astype(np.float32)
        lo, hi = np.percentile(channel, clip_percentiles)
        if hi > lo:
            out[c] = (np.clip(channel, lo, hi) - lo) / (hi - lo)
        else:  # constant channel: nothing to scale
            out[c] = 0.0
    return out


def _resize(array: torch.Tensor, size: tuple[int, ...], spatial_dims: int, mode: str) -> torch.Tensor:
    """Resize (N, C, *spatial) tensors; ``mode`` is 'linear' or 'nearest'."""
    if tuple(array.shape[2:]) == tuple(size):
        return array
    if mode == "nearest":
        return F.interpolate(array, size=size, mode="nearest-exact")
    interp = "bilinear" if spatial_dims == 2 else "trilinear"
    # Anti-aliasing avoids moire when shrinking photos; torch supports it in 2D only.
    return F.interpolate(array, size=size, mode=interp, align_corners=False, antialias=spatial_dims == 2)


def resample_image(image: np.ndarray, cfg: PreprocessingConfig) -> np.ndarray:
    """(C, X, Y, Z) -> 2D mode (C, H, W, Z); 3D mode (C, *size)."""
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    if cfg.spatial_dims == 2:
        slices = t.permute(3, 0, 1, 2)  # (Z, C, X, Y)
        out = _resize(slices, tuple(cfg.size), 2, "linear").permute(1, 2, 3, 0)
    else:
        out = _resize(t[None], tuple(cfg.size), 3, "linear")[0]
    return out.numpy().astype(np.float32, copy=False)


def resample_label(label: np.ndarray, cfg: PreprocessingConfig) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(label.astype(np.float32)))
    if cfg.spatial_dims == 2:
        out = _resize(t.permute(2, 0, 1)[:, None], tuple(cfg.size), 2, "nearest")[:, 0].permute(1, 2, 0)
    else:
        out = _resize(t[None, None], tuple(cfg.size), 3, "nearest")[0, 0]
    return out.round().numpy().astype(np.uint8)


def restore_probabilities(probabilities: torch.Tensor, original_shape: tuple[int, ...],
                          cfg: PreprocessingConfig) -> torch.Tensor:
    """Class probabilities on the preprocessed grid (K, *spatial) -> (K, X, Y, Z) on the original grid."""
    if cfg.spatial_dims == 2:
        slices = probabilities.permute(3, 0, 1, 2)  # (Z, K, H, W)
        return _resize(slices, tuple(original_shape[:2]), 2, "linear").permute(1, 2, 3, 0)
    return _resize(probabilities[None], tuple(original_shape), 3, "linear")[0]


def restore_labels(probabilities: torch.Tensor, original_shape: tuple[int, ...],
                   cfg: PreprocessingConfig) -> np.ndarray:
    """Argmax on the original grid (interpolating probabilities, not labels, keeps edges smooth)."""
    restored = restore_probabilities(probabilities.float(), original_shape, cfg)
    return restored.argmax(0).to(torch.uint8).cpu().numpy()


def load_image(dataset_dir: Path, split: str, case_id: str, num_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack the channel files of one case into (C, X, Y, Z) float32 with the first channel's affine."""
    arrays, affine, first = [], None, None
    for path in image_paths(dataset_dir, split, case_id, num_channels):
        array, aff = read_nifti(path)
        if array.ndim == 2:
            array = array[..., None]
        if array.ndim != 3:
            raise DataError(path, f"expected a 3D array (2D images stored as (H, W, 1)), got shape {array.shape}")
        if first is None:
            first, affine = path, aff
        elif array.shape != arrays[0].shape:
            raise DataError(path, f"shape {array.shape} differs from channel 0 ({first.name}) {arrays[0].shape}")
        arrays.append(np.asarray(array, dtype=np.float32))
    assert affine is not None
    return np.stack(arrays), affine


def prepare_case(dataset_dir: Path, split: str, case_id: str, cfg: PreprocessingConfig, num_channels: int,
                 labels: dict[str, int] | None) -> PreparedCase:
    """Read, validate and preprocess one case; its label is read only when ``labels`` is given."""
    image, affine = load_image(dataset_dir, split, case_id, num_channels)
    img_path = image_paths(dataset_dir, split, case_id, num_channels)[0]
    label = label_aff = lab_path = None
    if labels is not None:
        lab_path = label_path(dataset_dir, split, case_id)
        label, label_aff = read_nifti(lab_path)
        if label.ndim == 2:
            label = label[..., None]
    validate_case_arrays(img_path, image[0], lab_path, label, labels, affine, label_aff)
    prepared = normalise_intensity(image, tuple(cfg.clip_percentiles))
    prepared = resample_image(prepared, cfg)
    prep_label = resample_label(np.asarray(label), cfg) if label is not None else None
    return PreparedCase(case_id, prepared, prep_label, tuple(image.shape[1:]), affine)


def _fingerprint(dataset_dir: Path, split: str, cases: list[str], cfg: PreprocessingConfig, with_labels: bool,
                 num_channels: int) -> str:
    """Cache key: config + every input file's size and mtime (labels only when they are read)."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, str(dataset_dir.resolve()), split, cfg.model_dump(mode="json"),
                         with_labels]).encode())
    for case in cases:
        paths = image_paths(dataset_dir, split, case, num_channels)
        if with_labels:
            paths = [*paths, label_path(dataset_dir, split, case)]
        for p in paths:
            st = p.stat()
            h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def prepare_split(dataset_dir: Path, split: str, cfg: PreprocessingConfig, with_labels: bool,
                  cache_dir: Path | None = None, progress: bool = True,
                  expected_labels: dict[str, int] | None = None) -> list[PreparedCase]:
    """Preprocess every case of ``images{split}`` (and its labels if ``with_labels``), cached on disk."""
    info = load_dataset_json(dataset_dir)
    cases = list_cases(dataset_dir, split)
    labels = (expected_labels or info.labels) if with_labels else None
    cache_file = None
    if cache_dir is not None:
        key = _fingerprint(dataset_dir, split, cases, cfg, with_labels, info.num_channels)
        cache_file = Path(cache_dir) / f"{info.name or dataset_dir.name}_{split}_{key}.pt"
        if cache_file.is_file():
            try:
                return [_case_from_state(s) for s in torch.load(cache_file, weights_only=True)]
            except Exception:  # a damaged (or crafted) cache is rebuilt, never trusted
                cache_file.unlink(missing_ok=True)
    desc = f"preprocess {dataset_dir.name}/images{split}" + (" + labels" if with_labels else "")
    prepared = [prepare_case(dataset_dir, split, c, cfg, info.num_channels, labels)
                for c in tqdm(cases, desc=desc, disable=not progress, leave=False)]
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save([_case_state(c) for c in prepared], cache_file)
    return prepared


def _case_state(case: PreparedCase) -> dict[str, object]:
    """A cache entry as tensors and plain values only, so the cache loads with ``weights_only=True``."""
    return {"case_id": case.case_id, "image": torch.from_numpy(case.image),
            "label": None if case.label is None else torch.from_numpy(case.label),
            "original_shape": list(case.original_shape), "affine": torch.from_numpy(case.affine)}


def _case_from_state(state: dict) -> PreparedCase:
    label = state["label"]
    return PreparedCase(str(state["case_id"]), state["image"].numpy(), None if label is None else label.numpy(),
                        tuple(int(n) for n in state["original_shape"]), state["affine"].numpy())


def stack_samples(cases: list[PreparedCase], spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Training samples: 2D mode -> every slice (N, C, H, W); 3D mode -> every volume (N, C, X, Y, Z)."""
    if spatial_dims == 2:
        images = np.concatenate([np.moveaxis(c.image, -1, 0) for c in cases])
        has_labels = all(c.label is not None for c in cases)
        labels = np.concatenate([np.moveaxis(c.label, -1, 0) for c in cases]) if has_labels else None
    else:
        images = np.stack([c.image for c in cases])
        has_labels = all(c.label is not None for c in cases)
        labels = np.stack([c.label for c in cases]) if has_labels else None
    image_t = torch.from_numpy(np.ascontiguousarray(images))
    label_t = torch.from_numpy(np.ascontiguousarray(labels)).long() if labels is not None else None
    return image_t, label_t

"""Embedded demo task: synthetic T1-like (source) -> T2-like (target) brain MRI, made offline.

What it is derived from
    The MNI ICBM152 2009a nonlinear template that ships *inside* the nilearn wheel (files
    ``nilearn/datasets/data/mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``, 1 mm):
    the skull-stripped T1 average (``nilearn.datasets.load_mni152_template``) and the grey- and
    white-matter probability maps (``load_mni152_gm_template``, ``load_mni152_wm_template``).
    These loaders only read those packaged files; nothing is downloaded (checked for nilearn 0.14:
    they run in a network namespace with no interfaces, and the tests block sockets).

How a subject is made
    1. Template (once per process): brain mask = hole-filled ``T1 > 0.1`` (so the ventricles are
       inside), dilated by ``csf_rim_mm`` to add the outer subarachnoid CSF that skull-stripping
       removed. The volumes are cropped to the mask's bounding box plus ``margin_mm``, low-pass
       filtered for the coarse output grid and kept on a grid 1.5x finer than it. The output grid
       (``shape``, default 64 x 64 x 48) tiles that box with anisotropic voxels (about
       2.6 x 3.2 x 3.7 mm by default); the NIfTI affine records them, in MNI world coordinates.
    2. Anatomy: a random smooth deformation of the template, pulled back onto the output grid:
       a random affine (rotation up to ``max_rotation_deg`` about each axis, per-axis scale in
       ``1 +- max_scale``, shift up to ``max_shift_mm``, all about the box centre, in mm) plus an
       elastic displacement field (white noise smoothed by a Gaussian of width
       ``elastic_smoothness_mm``, rescaled to an RMS displacement of ``elastic_magnitude_mm``,
       i.e. about 2 voxels of the default grid). The mask and the GM/WM maps are resampled
       through it (trilinear); ``p_csf = clip(mask - p_gm - p_wm, 0, 1)`` and ``p_bg = 1 - mask``.
    3. Label: background where the deformed mask is < 0.5, else ``1 + argmax(p_csf, p_gm, p_wm)``
       -> {background 0, CSF 1, GM 2, WM 3}.
    4. Image: the tissue probabilities are sharpened (``p_k ** tissue_sharpness``, renormalised,
       to limit the partial-volume blur of the coarse grid), mixed as ``sum_k p_k * mu_k`` with
       per-tissue intensities ``mu_k`` (jittered per subject by ``intensity_jitter``), times a
       faint fine texture (``texture_std``), times a smooth multiplicative bias field ``exp(b)``
       (``b`` a random quadratic polynomial with max ``|b| = bias_strength``), optionally
       Gaussian-blurred (``blur_sigma_vox``), plus Rician noise (``noise_sigma`` per complex
       channel). float32, roughly in [0, 1.3].

Why the domain gap is real
    Source (T1-like): WM 0.9 > GM 0.6 > CSF 0.2, bias 0.05, noise 0.02, no blur.
    Target (T2-like): CSF 1.0 > GM 0.6 > WM 0.35, bias 0.25, noise 0.04, blur 0.6 voxel.
    The WM/CSF contrast is *inverted*, so a model that learned "bright = WM, dark = CSF" on the
    source mislabels exactly those tissues on the target, while one trained on target labels does
    not. Quick check (default config, per-voxel gradient-boosted classifier on intensity and two
    smoothed intensities, 4 training subjects, 4 target test subjects; Dice CSF/GM/WM):
    source-trained 0.00/0.72/0.00, target-trained 0.84/0.89/0.84.

Randomness
    Every subject has its own generator ``numpy.random.default_rng([seed, domain, index])``
    (domain 1 = source, 2 = target), so source and target subjects are distinct draws, target
    test subjects differ from the target training subjects, and the same seed gives identical
    arrays.

Output
    ``Dataset901_DemoBrainT1`` (imagesTr/labelsTr) and ``Dataset902_DemoBrainT2`` (imagesTr plus
    labelsTr - kept only for evaluating pseudo-label quality, never for training - and
    imagesTs/labelsTs) in the nnU-Net v2 raw layout. Each dataset is written into a hidden temporary
    folder next to its final place and renamed when complete; an existing complete dataset made
    with the same parameters is left untouched. See ``docs/demo_dataset.md``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import nibabel as nib
import numpy as np
from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from diffuse_uda.config import ConfigModel
from diffuse_uda.errors import DataError

SOURCE_DATASET = "Dataset901_DemoBrainT1"
TARGET_DATASET = "Dataset902_DemoBrainT2"
DEMO_LABELS: dict[str, int] = {"background": 0, "CSF": 1, "GM": 2, "WM": 3}
FILE_ENDING = ".nii.gz"
# Bump when the generator's output for a given config changes, so old datasets are not reused.
GENERATOR_VERSION = 1

MNI_NOTICE = (
    "MNI ICBM152 nonlinear 2009 template: Copyright (C) 1993-2009 Louis Collins, McConnell Brain "
    "Imaging Centre, Montreal Neurological Institute, McGill University. Permission to use, copy, "
    "modify, and distribute this software and its documentation for any purpose and without fee is "
    "hereby granted, provided that the above copyright notice appear in all copies. The authors and "
    "McGill University make no representations about the suitability of this software for any "
    "purpose. It is provided \"as is\" without express or implied warranty. The authors are not "
    "responsible for any data loss, equipment damage, property loss, or injury to subjects or patients "
    "resulting from the use or misuse of this software package."
)
REFERENCES = (
    "Fonov et al., NeuroImage 47 (2009) S102; Fonov et al., NeuroImage 54(1) (2011) 313-327; "
    "Collins et al., Information Processing in Medical Imaging (IPMI) 1999, LNCS 1613."
)

_DOMAIN_CODE = {"source": 1, "target": 2}


class ContrastModel(ConfigModel):
    """Appearance of one domain: tissue intensities and acquisition artefacts."""

    model_config = ConfigDict(frozen=True)

    modality: str
    csf: float = Field(ge=0.0)
    gm: float = Field(ge=0.0)
    wm: float = Field(ge=0.0)
    background: float = Field(0.0, ge=0.0)
    bias_strength: float = Field(0.05, ge=0.0)  # max |log bias| over the field of view
    noise_sigma: float = Field(0.02, ge=0.0)  # std of each Gaussian component of the Rician noise
    blur_sigma_vox: float = Field(0.0, ge=0.0)  # Gaussian point-spread, in output voxels
    intensity_jitter: float = Field(0.04, ge=0.0, lt=1.0)  # relative per-subject std of each tissue intensity
    texture_std: float = Field(0.02, ge=0.0, lt=1.0)  # relative std of a fine multiplicative within-tissue texture


def _t1_like() -> ContrastModel:
    return ContrastModel(modality="T1w", csf=0.2, gm=0.6, wm=0.9, bias_strength=0.05, noise_sigma=0.02)


def _t2_like() -> ContrastModel:
    return ContrastModel(modality="T2w", csf=1.0, gm=0.6, wm=0.35, bias_strength=0.25, noise_sigma=0.04,
                         blur_sigma_vox=0.6)


class DemoBrainConfig(ConfigModel):
    """Parameters of the demo generator (all lengths in mm unless named ``_vox``)."""

    model_config = ConfigDict(frozen=True)

    n_source: PositiveInt = 12
    n_target_train: PositiveInt = 12
    n_target_test: NonNegativeInt = 6
    # Output grid (x, y, z); axial slices are (x, y). Small so a 2D model trains in ~1 min on CPU.
    shape: tuple[Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)], Annotated[int, Field(ge=8)]] = (64, 64, 48)
    seed: NonNegativeInt = 0
    max_rotation_deg: float = Field(5.0, ge=0.0, le=180.0)
    max_scale: float = Field(0.06, ge=0.0, lt=1.0)
    max_shift_mm: float = Field(4.0, ge=0.0)
    elastic_magnitude_mm: float = Field(6.0, ge=0.0)
    elastic_smoothness_mm: float = Field(16.0, gt=0.0)
    margin_mm: float = Field(8.0, ge=0.0)  # room around the brain so deformed brains stay inside the grid
    csf_rim_mm: NonNegativeInt = 3  # outer CSF rim added around the skull-stripped template's mask
    # Exponent on the tissue probabilities before intensities are mixed: > 1 reduces the partial-volume
    # blur of the coarse grid so each tissue keeps its contrast (labels are unaffected).
    tissue_sharpness: float = Field(2.0, gt=0.0)
    source: ContrastModel = Field(default_factory=_t1_like)
    target: ContrastModel = Field(default_factory=_t2_like)


# --------------------------------------------------------------------------------------------
# Template


@dataclass(frozen=True)
class _Template:
    """Cropped 1 mm template volumes (read-only) and where they sit."""

    mask: np.ndarray  # float32 {0, 1}
    gm: np.ndarray
    wm: np.ndarray
    affine: np.ndarray  # voxel -> world of the cropped volumes
    voxel_mm: np.ndarray  # (3,)


@lru_cache(maxsize=2)
def _load_template(margin_mm: float, csf_rim_mm: int) -> _Template:
    """Load nilearn's packaged MNI152 volumes (no network) and crop them around the brain."""
    import nilearn.datasets as nds  # heavy import: only when data is actually generated

    t1_img = nds.load_mni152_template()
    t1 = np.asarray(t1_img.get_fdata(dtype=np.float32))
    gm = np.asarray(nds.load_mni152_gm_template().get_fdata(dtype=np.float32))
    wm = np.asarray(nds.load_mni152_wm_template().get_fdata(dtype=np.float32))
    voxel_mm = np.asarray(t1_img.header.get_zooms()[:3], dtype=np.float64)

    # Crop first (cheaper morphology below): the brain's bounding box plus the CSF rim and margin.
    support = t1 > 0.1
    idx = np.argwhere(support)
    pad = np.ceil((margin_mm + csf_rim_mm) / voxel_mm).astype(int)
    lo, hi = idx.min(0) - pad, idx.max(0) + 1 + pad
    # The box may extend past the template's edge (the brainstem touches it): pad with zeros.
    src_lo, src_hi = np.maximum(lo, 0), np.minimum(hi, support.shape)

    def crop(vol: np.ndarray) -> np.ndarray:
        out = np.zeros(tuple(hi - lo), vol.dtype)
        sl_out = tuple(slice(a - b, c - b) for a, b, c in zip(src_lo, lo, src_hi, strict=True))
        sl_in = tuple(slice(a, c) for a, c in zip(src_lo, src_hi, strict=True))
        out[sl_out] = vol[sl_in]
        return out

    # The T1 template is skull-stripped: its support (holes filled, so ventricles count) is the brain;
    # dilating it adds the outer CSF that skull-stripping removed.
    mask = ndi.binary_fill_holes(crop(support))
    if csf_rim_mm > 0:
        ball = ndi.generate_binary_structure(3, 1)
        mask = ndi.binary_dilation(mask, ball, iterations=max(1, round(csf_rim_mm / voxel_mm.min())))
    vols = [mask.astype(np.float32), crop(gm), crop(wm)]
    for v in vols:
        v.setflags(write=False)
    shift = np.eye(4)
    shift[:3, 3] = lo
    return _Template(mask=vols[0], gm=vols[1], wm=vols[2], affine=t1_img.affine @ shift, voxel_mm=voxel_mm)


# Template maps are kept on a grid this many times finer than the output grid: fine enough for
# linear interpolation, and much smaller (faster to sample) than the 1 mm originals.
_OVERSAMPLE = 1.5


@dataclass(frozen=True)
class _Grid:
    """Output grid over the cropped template, with anti-aliased template maps for sampling it."""

    shape: tuple[int, int, int]
    step: np.ndarray  # output voxel size in template voxels, per axis
    affine: np.ndarray  # output voxel -> world
    points: np.ndarray  # (3, N) output voxel centres in template voxel coordinates
    fine_step: np.ndarray  # voxel size of the maps below, in template voxels
    fine_offset: np.ndarray  # template voxel coordinate of the maps' voxel 0
    mask: np.ndarray
    gm: np.ndarray
    wm: np.ndarray


def _cell_centres(n_vox: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step and first-centre offset of ``n_vox`` cells tiling ``box`` template voxels per axis."""
    step = box / n_vox
    # Cell i covers template voxels [i*step, (i+1)*step): centre at (i + 0.5)*step - 0.5.
    return step, 0.5 * step - 0.5


def _centres(shape: tuple[int, ...], step: np.ndarray, offset: np.ndarray) -> np.ndarray:
    axes = [np.arange(n, dtype=np.float64) * s + o for n, s, o in zip(shape, step, offset, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij")).reshape(3, -1)


def _make_grid(tpl: _Template, shape: tuple[int, int, int]) -> _Grid:
    box = np.asarray(tpl.mask.shape, np.float64)
    step, offset = _cell_centres(np.asarray(shape, np.float64), box)
    to_tpl = np.eye(4)
    to_tpl[:3, :3] = np.diag(step)
    to_tpl[:3, 3] = offset
    fine_shape = tuple(max(2, round(n * _OVERSAMPLE)) for n in shape)
    fine_step, fine_offset = _cell_centres(np.asarray(fine_shape, np.float64), box)
    fine_points = _centres(fine_shape, fine_step, fine_offset)
    # Low-pass before sampling 1 mm maps every few mm (otherwise thin cortex aliases).
    sigma = 0.4 * np.maximum(step, 1.0)
    fine = []
    for vol in (tpl.mask, tpl.gm, tpl.wm):
        v = ndi.map_coordinates(ndi.gaussian_filter(vol, sigma), fine_points, order=1, mode="nearest")
        v = v.reshape(fine_shape)
        v.setflags(write=False)
        fine.append(v)
    return _Grid(shape=shape, step=step, affine=tpl.affine @ to_tpl, points=_centres(shape, step, offset),
                 fine_step=fine_step, fine_offset=fine_offset, mask=fine[0], gm=fine[1], wm=fine[2])


@lru_cache(maxsize=4)
def _grid_for(margin_mm: float, csf_rim_mm: int, shape: tuple[int, int, int]) -> tuple[_Template, _Grid]:
    """Template and output grid, cached: generating several datasets loads nilearn's files once."""
    tpl = _load_template(margin_mm, csf_rim_mm)
    return tpl, _make_grid(tpl, shape)


# --------------------------------------------------------------------------------------------
# One subject


def _rotation(angles: np.ndarray) -> np.ndarray:
    """Rotation matrix from three angles (radians) about the x, y and z axes."""
    out = np.eye(3)
    for axis, a in enumerate(angles):
        c, s = math.cos(a), math.sin(a)
        i, j = [k for k in range(3) if k != axis]
        r = np.eye(3)
        r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
        out = r @ out
    return out


def _smooth_random_field(shape: tuple[int, int, int], spacing_mm: np.ndarray, smoothness_mm: float,
                         n_fields: int, rng: np.random.Generator) -> np.ndarray:
    """``n_fields`` smooth random fields on ``shape``: white-noise weights on control points every
    ``smoothness_mm`` (covering the grid plus a border), each spread by a Gaussian of that width.

    This is Gaussian-filtered noise written as a separable sum, which costs three small matrix
    products instead of a full-resolution filter.
    """
    kernels = []
    for n, h in zip(shape, spacing_mm, strict=True):
        x = np.arange(n) * h
        ctrl = np.arange(-2 * smoothness_mm, x[-1] + 2 * smoothness_mm + 1e-9, smoothness_mm)
        kernels.append(np.exp(-0.5 * ((x[:, None] - ctrl[None, :]) / smoothness_mm) ** 2))
    kx, ky, kz = kernels
    weights = rng.standard_normal((n_fields, kx.shape[1], ky.shape[1], kz.shape[1]))
    out = ky @ (weights @ kz.T)  # (f, a, y, z)
    # Last axis as one plain matrix product (a batched one is several times slower here).
    out = kx @ out.transpose(1, 0, 2, 3).reshape(kx.shape[1], -1)  # (x, f * y * z)
    return np.ascontiguousarray(out.reshape(shape[0], n_fields, *shape[1:]).transpose(1, 0, 2, 3))


def _deformed_tissue(grid: _Grid, tpl: _Template, cfg: DemoBrainConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Tissue probabilities (4, *shape) [bg, CSF, GM, WM] and label map of one random subject."""
    vox = tpl.voxel_mm[:, None]
    centre = (np.asarray(tpl.mask.shape, np.float64)[:, None] - 1) / 2
    angles = np.deg2rad(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg, 3))
    scale = rng.uniform(1 - cfg.max_scale, 1 + cfg.max_scale, 3)
    shift_mm = rng.uniform(-cfg.max_shift_mm, cfg.max_shift_mm, (3, 1))
    # Affine acts in mm about the template centre so rotations are not sheared by anisotropic voxels.
    a = _rotation(angles) @ np.diag(scale)
    coords_mm = a @ ((grid.points - centre) * vox) + shift_mm

    # Elastic field, rescaled to the requested RMS displacement.
    field_mm = _smooth_random_field(grid.shape, grid.step * tpl.voxel_mm, cfg.elastic_smoothness_mm, 3, rng)
    field_mm = field_mm.reshape(3, -1)
    rms = float(np.sqrt((field_mm**2).sum(0).mean()))
    if rms > 0:
        field_mm *= cfg.elastic_magnitude_mm / rms
    coords = (coords_mm + field_mm) / vox + centre
    # Template voxel -> index into the fine maps; float32 halves the interpolation's memory traffic.
    coords = ((coords - grid.fine_offset[:, None]) / grid.fine_step[:, None]).astype(np.float32)

    def warp(vol: np.ndarray) -> np.ndarray:
        return ndi.map_coordinates(vol, coords, order=1, mode="grid-constant", cval=0.0).reshape(grid.shape)

    mask, gm, wm = (np.clip(warp(v), 0.0, 1.0) for v in (grid.mask, grid.gm, grid.wm))
    gm, wm = gm * mask, wm * mask  # no tissue outside the head
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    probs = np.stack([1.0 - mask, csf, gm, wm]).astype(np.float32)
    probs /= np.maximum(probs.sum(0, keepdims=True), 1e-6)
    label = np.where(mask >= 0.5, 1 + np.argmax(probs[1:], axis=0), 0).astype(np.uint8)
    return probs, label


def _bias_field(shape: tuple[int, int, int], strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(b), b a random quadratic polynomial with max |b| = strength."""
    x, y, z = np.meshgrid(*[np.linspace(-1.0, 1.0, n) for n in shape], indexing="ij")
    terms = [x, y, z, x * y, x * z, y * z, x * x, y * y, z * z]
    b = sum(rng.standard_normal() * t for t in terms)
    peak = float(np.abs(b).max())
    if peak > 0:
        b *= strength / peak
    return np.exp(b).astype(np.float32)


def _synthesise(probs: np.ndarray, contrast: ContrastModel, rng: np.random.Generator) -> np.ndarray:
    """Image of one subject in one domain's contrast, from its tissue probabilities."""
    shape = probs.shape[1:]
    means = np.array([contrast.background, contrast.csf, contrast.gm, contrast.wm], np.float32)
    jitter = 1.0 + contrast.intensity_jitter * rng.standard_normal(4)
    jitter[0] = 1.0
    clean = np.tensordot((means * jitter).astype(np.float32), probs, axes=1)
    texture = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
    texture *= contrast.texture_std / max(float(texture.std()), 1e-6)
    clean *= 1.0 + texture
    clean *= _bias_field(shape, contrast.bias_strength, rng)
    if contrast.blur_sigma_vox > 0:
        clean = ndi.gaussian_filter(clean, contrast.blur_sigma_vox)
    # Rician noise: magnitude of a complex signal with Gaussian noise in both channels.
    n_re = contrast.noise_sigma * rng.standard_normal(shape)
    n_im = contrast.noise_sigma * rng.standard_normal(shape)
    return np.sqrt((clean + n_re) ** 2 + n_im**2).astype(np.float32)


def make_subject(cfg: DemoBrainConfig, domain: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32, label uint8, affine) of subject ``index`` of ``domain`` ('source'/'target')."""
    tpl, grid = _grid_for(cfg.margin_mm, cfg.csf_rim_mm, cfg.shape)
    rng = np.random.default_rng([cfg.seed, _DOMAIN_CODE[domain], index])
    probs, label = _deformed_tissue(grid, tpl, cfg, rng)
    if cfg.tissue_sharpness != 1.0:
        probs = probs**cfg.tissue_sharpness
        probs /= np.maximum(probs.sum(0, keepdims=True), 1e-6)
    contrast = cfg.source if domain == "source" else cfg.target
    return _synthesise(probs, contrast, rng), label, grid.affine.copy()


# --------------------------------------------------------------------------------------------
# Writing


def _temp_name(final: Path, suffix: str = "") -> Path:
    """Unique hidden sibling of ``final``. Not ``tempfile.mkstemp``/``mkdtemp``: those create mode
    0600/0700 and the mode would survive the rename, leaving the data unreadable to other users."""
    return final.parent / f".{final.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}"


def _save_nifti_atomic(data: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write a NIfTI file via a temporary file in the same folder, so readers never see half a file."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    tmp = _temp_name(path, FILE_ENDING)  # must end in .nii.gz: nibabel picks gzip from the name
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_json_atomic(obj: dict[str, Any], path: Path) -> None:
    tmp = _temp_name(path)
    try:
        with open(tmp, "x") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _config_record(cfg: DemoBrainConfig) -> dict[str, Any]:
    """JSON-normalised config (tuples become lists) so it compares equal after a round trip."""
    return cfg.model_dump(mode="json")


# Settings that do not change a domain's files: changing them must not invalidate that dataset.
_OTHER_DOMAIN_FIELDS = {"source": ("n_target_train", "n_target_test", "target"), "target": ("n_source", "source")}


def _relevant_config(record: dict[str, Any], domain: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _OTHER_DOMAIN_FIELDS[domain]}


def _cases(cfg: DemoBrainConfig, domain: str) -> Iterator[tuple[str, str, int]]:
    """(split, case id, subject index): split is 'Tr' or 'Ts'."""
    if domain == "source":
        for i in range(cfg.n_source):
            yield "Tr", f"demot1_{i:03d}", i
    else:
        for i in range(cfg.n_target_train + cfg.n_target_test):
            yield ("Tr" if i < cfg.n_target_train else "Ts"), f"demot2_{i:03d}", i


def _expected_files(cfg: DemoBrainConfig, domain: str) -> list[str]:
    files = ["dataset.json"]
    for split, case, _ in _cases(cfg, domain):
        files += [f"images{split}/{case}_0000{FILE_ENDING}", f"labels{split}/{case}{FILE_ENDING}"]
    return files


def _dataset_json(cfg: DemoBrainConfig, domain: str) -> dict[str, Any]:
    import nilearn

    import diffuse_uda

    contrast = cfg.source if domain == "source" else cfg.target
    if domain == "source":
        name = SOURCE_DATASET
        description = ("Demo UDA source domain: synthetic T1-like brain MRI made by randomly deforming the "
                       "MNI152 2009 template shipped with nilearn. Labelled.")
        n_train = cfg.n_source
    else:
        name = TARGET_DATASET
        description = ("Demo UDA target domain: synthetic T2-like brain MRI (inverted WM/CSF contrast, "
                       "strong bias field, more noise, blur) of different random subjects. imagesTr are "
                       "the unlabelled adaptation images; labelsTr exist ONLY to evaluate pseudo-label "
                       "quality and must not be used for training. imagesTs/labelsTs are the test split.")
        n_train = cfg.n_target_train
    return {
        "channel_names": {"0": contrast.modality},
        "labels": dict(DEMO_LABELS),
        "numTraining": n_train,
        "file_ending": FILE_ENDING,
        "name": name,
        "description": description,
        "reference": REFERENCES,
        "license": MNI_NOTICE,
        "provenance": {
            "generator": "diffuse_uda.data.demo_brain",
            "generator_version": GENERATOR_VERSION,
            "diffuse_uda_version": diffuse_uda.__version__,
            "domain": domain,
            "seed": cfg.seed,
            "config": _config_record(cfg),
            "nilearn_version": nilearn.__version__,
            "template": ("MNI ICBM152 2009a nonlinear T1, GM and WM maps packaged with nilearn, read with "
                         "nilearn.datasets.load_mni152_template / load_mni152_gm_template / "
                         "load_mni152_wm_template (files mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted"
                         ".nii.gz)"),
        },
    }


def _existing_is_complete(folder: Path, cfg: DemoBrainConfig, domain: str) -> bool:
    """True if ``folder`` holds this exact dataset; raise if it holds something else."""
    if not folder.exists():
        return False
    meta_path = folder / "dataset.json"
    try:
        meta = json.loads(meta_path.read_text())
        prov = meta["provenance"]
        same = (prov["generator"] == "diffuse_uda.data.demo_brain"
                and prov["generator_version"] == GENERATOR_VERSION
                and _relevant_config(prov["config"], domain) == _relevant_config(_config_record(cfg), domain))
    except (OSError, ValueError, KeyError, TypeError):
        same = False
    if not same:
        raise DataError(folder, "exists but is not the demo dataset for these generator settings; "
                                "delete it or choose another output folder")
    missing = [f for f in _expected_files(cfg, domain) if not (folder / f).is_file()]
    if missing:
        raise DataError(folder, f"demo dataset is incomplete ({len(missing)} files missing, e.g. "
                                f"{missing[0]}); delete the folder to regenerate it")
    return True


def _generate_one(out_root: Path, cfg: DemoBrainConfig, domain: str, progress: bool) -> Path:
    name = SOURCE_DATASET if domain == "source" else TARGET_DATASET
    final = out_root / name
    if _existing_is_complete(final, cfg, domain):
        return final
    # Load nilearn's template before the progress bar starts, so the first case does not look slow.
    _grid_for(cfg.margin_mm, cfg.csf_rim_mm, cfg.shape)
    tmp = _temp_name(final)
    tmp.mkdir()
    try:
        cases = list(_cases(cfg, domain))
        for split in {s for s, _, _ in cases}:
            (tmp / f"images{split}").mkdir()
            (tmp / f"labels{split}").mkdir()
        for split, case, index in tqdm(cases, desc=f"demo {name}", unit="case", disable=not progress):
            image, label, affine = make_subject(cfg, domain, index)
            _save_nifti_atomic(image, affine, tmp / f"images{split}" / f"{case}_0000{FILE_ENDING}")
            _save_nifti_atomic(label, affine, tmp / f"labels{split}" / f"{case}{FILE_ENDING}")
        _write_json_atomic(_dataset_json(cfg, domain), tmp / "dataset.json")
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same dataset first: keep theirs if it is what we want.
            if not _existing_is_complete(final, cfg, domain):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def generate_demo_brain(out_root: Path, config: DemoBrainConfig = DemoBrainConfig(),
                        progress: bool = True) -> tuple[Path, Path]:
    """Write (or reuse) the demo source and target datasets under ``out_root``.

    Returns ``(out_root / "Dataset901_DemoBrainT1", out_root / "Dataset902_DemoBrainT2")``.
    A dataset that already exists complete with the same parameters is not rewritten; one that
    exists with other contents raises :class:`DataError`.
    """
    out_root = Path(out_root)
    try:
        out_root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(out_root, f"cannot create the demo data folder: {exc}") from exc
    source = _generate_one(out_root, config, "source", progress)
    target = _generate_one(out_root, config, "target", progress)
    return source, target

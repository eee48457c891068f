"""``diffuse-uda pseudolabel``: a trained model labels the target training images.

Output is a canonical dataset (nnU-Net v2 raw layout) that the diffusion stage and any
trainer can consume: ``imagesTr`` (the target images, copied), ``labelsTr`` (argmax
pseudo-labels, complete masks) and ``confidenceTr`` (per-voxel max probability, float32 NIfTI).
Voxels below the confidence threshold are counted in ``dataset.json``'s provenance and can be
ignored by consumers (:func:`confident_fraction`). No target label is read here: quality is
measured afterwards with ``diffuse-uda evaluate --split Tr`` (see BENCHMARKS.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffuse_uda.data.dataset_json import (
    DatasetInfo,
    image_paths,
    label_path,
    list_cases,
    load_dataset_json,
    write_dataset_json,
)
from diffuse_uda.data.io import ensure_output_dir, read_nifti, write_nifti
from diffuse_uda.data.preprocessing import prepare_case, restore_probabilities
from diffuse_uda.inference.predict import predict_probabilities
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device

CONFIDENCE_DIR = "confidenceTr"


def write_pseudolabels(run: Path, out_dir: Path, dataset: Path | None = None, threshold: float | None = None,
                       device: str = "auto", progress: bool = True) -> Path:
    """Pseudo-label ``dataset/imagesTr`` (default: the run's target) into ``out_dir``; resumable per case."""
    dev = resolve_device(device)
    bundle = load_bundle(run, dev)
    dataset = Path(dataset) if dataset is not None else bundle.task.target_dir
    if threshold is None:
        threshold = float(bundle.run_config.method.get("confidence_threshold", 0.9))
    info = load_dataset_json(dataset)
    cfg = bundle.preprocessing
    out_dir = ensure_output_dir(Path(out_dir), "pseudo-label dataset folder")
    confident: dict[str, float] = {}
    cases = list_cases(dataset, "Tr")
    for case_id in tqdm(cases, desc=f"pseudo-label {dataset.name}", disable=not progress, leave=False):
        lab_out = label_path(out_dir, "Tr", case_id)
        conf_out = out_dir / CONFIDENCE_DIR / f"{case_id}.nii.gz"
        if not (lab_out.is_file() and conf_out.is_file()):
            case = prepare_case(dataset, "Tr", case_id, cfg, info.num_channels, labels=None)
            probs = predict_probabilities(bundle.network, case.image, cfg.spatial_dims, dev)
            restored = restore_probabilities(probs.float(), case.original_shape, cfg)
            conf, lab = restored.max(0)
            conf_np = conf.cpu().numpy().astype(np.float32)
            for src, dst in zip(image_paths(dataset, "Tr", case_id, info.num_channels),
                                image_paths(out_dir, "Tr", case_id, info.num_channels), strict=True):
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
            write_nifti(conf_out, conf_np, case.affine)
            # The label is written last: its presence marks the case complete (resume).
            write_nifti(lab_out, lab.to(torch.uint8).cpu().numpy(), case.affine)
        else:
            conf_np = read_nifti(conf_out)[0]
        confident[case_id] = float((conf_np >= threshold).mean())
    write_dataset_json(out_dir, DatasetInfo(
        name=f"{info.name}_pseudo", channel_names=dict(info.channel_names), labels=dict(info.labels),
        num_training=len(cases), description=f"Pseudo-labels of {dataset.name}/imagesTr by {bundle.method}",
        provenance={"model": str(bundle.path), "method": bundle.method, "source_dataset": str(dataset),
                    "confidence_threshold": threshold, "confident_fraction": confident}))
    return out_dir


def confident_fraction(pseudo_dataset: Path) -> dict[str, float]:
    """Per-case fraction of voxels at or above the threshold, as recorded at writing time."""
    return dict(load_dataset_json(pseudo_dataset).provenance.get("confident_fraction", {}))


def pseudo_label_reliability(pseudo_dataset: Path, case_id: str, spatial_dims: int) -> np.ndarray:
    """Stage 1's own reliability of a case's pseudo-label, label-free: the fraction of its predicted
    foreground voxels whose confidence reaches the threshold, per axial slice (2D mode: shape (Z,)) or
    for the volume (3D: shape (1,)). A slice without predicted foreground scores 1 (it holds no structure
    to get wrong). Datasets without confidence maps (not written by :func:`write_pseudolabels`) score 1."""
    pseudo_dataset = Path(pseudo_dataset)
    conf_path = pseudo_dataset / CONFIDENCE_DIR / f"{case_id}.nii.gz"
    label, _ = read_nifti(label_path(pseudo_dataset, "Tr", case_id))
    label = label if label.ndim == 3 else label[..., None]
    if not conf_path.is_file():
        return np.ones(label.shape[-1] if spatial_dims == 2 else 1, dtype=np.float32)
    threshold = float(load_dataset_json(pseudo_dataset).provenance.get("confidence_threshold", 0.9))
    conf, _ = read_nifti(conf_path)
    conf = conf if conf.ndim == 3 else conf[..., None]
    fg = label > 0
    reliable = fg & (conf >= threshold)
    axes = (0, 1) if spatial_dims == 2 else (0, 1, 2)
    n_fg = fg.sum(axis=axes)
    out = np.where(n_fg > 0, reliable.sum(axis=axes) / np.maximum(n_fg, 1), 1.0)
    return np.atleast_1d(out).astype(np.float32)

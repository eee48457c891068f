"""Prediction: preprocess target images (never labels), segment, restore to the original grid, write NIfTI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from diffuse_uda.data.dataset_json import list_cases, load_dataset_json
from diffuse_uda.data.io import ensure_output_dir, write_nifti
from diffuse_uda.data.preprocessing import PreparedCase, prepare_case, restore_labels
from diffuse_uda.evaluation.prediction_info import write_prediction_info
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device


@torch.no_grad()
def predict_probabilities(network: nn.Module, image: np.ndarray | torch.Tensor, spatial_dims: int,
                          device: torch.device, batch_size: int = 32) -> torch.Tensor:
    """Softmax probabilities for one preprocessed case: 2D mode (C, H, W, Z) -> (K, H, W, Z)."""
    x = torch.as_tensor(image, dtype=torch.float32)
    amp = device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        if spatial_dims == 2:
            slices = x.permute(3, 0, 1, 2)  # (Z, C, H, W)
            outs = [network(slices[i:i + batch_size].to(device)).float().softmax(1)
                    for i in range(0, slices.shape[0], batch_size)]
            return torch.cat(outs).permute(1, 2, 3, 0)
        return network(x[None].to(device)).float().softmax(1)[0]


def predict_case(network: nn.Module, case: PreparedCase, bundle_spatial_dims: int, preprocessing,
                 device: torch.device) -> tuple[np.ndarray, torch.Tensor]:
    """Label map on the original grid and the probabilities on the preprocessed grid."""
    probs = predict_probabilities(network, case.image, bundle_spatial_dims, device)
    return restore_labels(probs, case.original_shape, preprocessing), probs


def predict_dataset(model: str | Path, dataset_dir: Path, out_dir: Path, split: str = "Ts",
                    device: str = "auto", progress: bool = True) -> Path:
    """Segment every image of ``dataset_dir/images{split}``; writes ``out_dir/{case}.nii.gz``."""
    dev = resolve_device(device)
    bundle = load_bundle(model, dev)
    info = load_dataset_json(dataset_dir)
    cfg = bundle.preprocessing
    out_dir = ensure_output_dir(out_dir, "prediction folder")
    write_prediction_info(out_dir, bundle.labels, model=str(bundle.path.resolve()), method=bundle.method,
                          dataset=str(Path(dataset_dir).resolve()), split=split)
    for case_id in tqdm(list_cases(dataset_dir, split), desc=f"predict {dataset_dir.name}/images{split}",
                        disable=not progress, leave=False):
        case = prepare_case(dataset_dir, split, case_id, cfg, info.num_channels, labels=None)
        labels, _ = predict_case(bundle.network, case, cfg.spatial_dims, cfg, dev)
        write_nifti(out_dir / f"{case_id}.nii.gz", labels, case.affine)
    return out_dir

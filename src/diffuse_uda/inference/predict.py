"""Prediction: preprocess target images (never labels), segment, restore to the original grid, write NIfTI.

Predictions are written on the dataset's grid (the one its reference labels use, so ``evaluate``
compares like with like). Datasets imported with a reorientation (``import folder`` records each
case's original affine) can also be segmented back into the orientation the scans came in:
``original_orientation=True`` (``predict --original-orientation``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from diffuse_uda.config import PreprocessingConfig
from diffuse_uda.data.dataset_json import DatasetInfo, image_paths, list_cases, load_dataset_json
from diffuse_uda.data.io import ensure_output_dir, write_nifti
from diffuse_uda.data.orientation import reorient_to_grid
from diffuse_uda.data.preprocessing import PreparedCase, prepare_case, restore_labels
from diffuse_uda.errors import DataError
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


def original_geometry(dataset_dir: Path, info: DatasetInfo) -> dict[str, tuple[np.ndarray, tuple[int, ...]]]:
    """Per case, the (affine, shape) its scan had before the import reoriented it (from the provenance)."""
    record = info.provenance.get("orientation")
    if not isinstance(record, dict) or not isinstance(record.get("cases"), dict):
        raise DataError(Path(dataset_dir) / "dataset.json", "records no original orientation of its cases (only "
                                                            "`import folder` of NIfTI volumes does); its grid is "
                                                            "the original one")
    try:
        return {case: (np.asarray(v["affine"], dtype=np.float64), tuple(int(n) for n in v["shape"]))
                for case, v in record["cases"].items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(Path(dataset_dir) / "dataset.json", f"malformed orientation record ({exc})") from None


def predict_dataset(model: str | Path, dataset_dir: Path, out_dir: Path, split: str = "Ts",
                    device: str = "auto", progress: bool = True, original_orientation: bool = False) -> Path:
    """Segment every image of ``dataset_dir/images{split}``; writes ``out_dir/{case}.nii.gz`` on the dataset's
    grid, or with ``original_orientation`` in each scan's orientation before import."""
    dev = resolve_device(device)
    bundle = load_bundle(model, dev)
    out_dir = ensure_output_dir(out_dir, "prediction folder")
    write_prediction_info(out_dir, bundle.labels, model=str(bundle.path.resolve()), method=bundle.method,
                          dataset=str(Path(dataset_dir).resolve()), split=split,
                          orientation="original" if original_orientation else "dataset")
    segment_split(bundle.network, bundle.preprocessing, dataset_dir, out_dir, split, dev, progress,
                  original_orientation)
    return out_dir


def segment_split(network: nn.Module, preprocessing: PreprocessingConfig, dataset_dir: Path, out_dir: Path, split: str,
                  device: torch.device, progress: bool = True, original_orientation: bool = False) -> None:
    """Write ``out_dir/{case}.nii.gz`` for every image of ``dataset_dir/images{split}`` with a loaded network
    (a bundle's, or an ensemble of several); images only, never labels."""
    info = load_dataset_json(dataset_dir)
    originals = original_geometry(dataset_dir, info) if original_orientation else {}
    for case_id in tqdm(list_cases(dataset_dir, split), desc=f"predict {Path(dataset_dir).name}/images{split}",
                        disable=not progress, leave=False):
        case = prepare_case(dataset_dir, split, case_id, preprocessing, info.num_channels, labels=None)
        labels, _ = predict_case(network, case, preprocessing.spatial_dims, preprocessing, device)
        affine = case.affine
        if original_orientation:
            image = image_paths(dataset_dir, split, case_id, info.num_channels)[0]
            if case_id not in originals:
                raise DataError(image, "no original orientation recorded for this case in dataset.json")
            affine, shape = originals[case_id]
            restored = reorient_to_grid(labels, case.affine, affine, shape)
            if restored is None:
                raise DataError(image, f"its grid is not a reorientation of the recorded original grid {shape}")
            labels = restored
        write_nifti(out_dir / f"{case_id}.nii.gz", labels, affine)

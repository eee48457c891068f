"""Model bundle: the inference network plus everything ``predict`` needs (task, preprocessing, labels)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from diffuse_uda.config import PreprocessingConfig, RunConfig
from diffuse_uda.data.io import atomic_torch_save, safe_torch_load
from diffuse_uda.data.task import Task
from diffuse_uda.errors import DataError
from diffuse_uda.networks.segmenter import segmenter_from_spec

BUNDLE_NAME = "model.pt"


@dataclass
class ModelBundle:
    network: nn.Module
    spec: dict[str, Any]
    task: Task
    method: str
    run_config: RunConfig
    path: Path

    @property
    def preprocessing(self) -> PreprocessingConfig:
        return self.task.preprocessing

    @property
    def labels(self) -> dict[str, int]:
        return self.task.labels


def save_bundle(out_dir: Path, network: nn.Module, spec: dict[str, Any], task: Task, method: str,
                run_config: RunConfig) -> Path:
    path = Path(out_dir) / BUNDLE_NAME
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    atomic_torch_save({"format": 1, "network": state, "spec": spec, "task": task.to_dict(), "method": method,
                       "run_config": run_config.model_dump(mode="json")}, path)
    return path


def load_bundle(path: str | Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Load from a run folder or a ``model.pt`` path."""
    path = Path(path)
    if path.is_dir():
        path = path / BUNDLE_NAME
    if not path.is_file():
        raise DataError(path, "model bundle does not exist (train a model first: `diffuse-uda train`)")
    # A bundle is tensors and plain containers; anything else (a crafted pickle that would run code
    # when loaded) is refused by the unpickler.
    raw = safe_torch_load(path, "model bundle")
    try:
        network = segmenter_from_spec(raw["spec"])
        network.load_state_dict(raw["network"])
    except Exception as exc:
        raise DataError(path, f"cannot load model bundle: {exc}") from exc
    network.to(device).eval()
    return ModelBundle(network, raw["spec"], Task.from_dict(raw["task"]), raw["method"],
                       RunConfig.model_validate(raw["run_config"], context={"stored": True}), path)

"""Typed configuration objects and the three size profiles (smoke / quick / paper).

Every setting has a default; a profile only changes sizes and lengths, never the method.
Any field can be overridden from the command line with ``--set section.field=value``.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diffuse_uda.errors import ConfigError

Profile = Literal["smoke", "quick", "paper"]
PROFILES: tuple[str, ...] = ("smoke", "quick", "paper")


class StrictModel(BaseModel):
    """Base model: unknown keys are errors (a typo in a YAML file must not pass silently)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PreprocessingConfig(StrictModel):
    """How images become network inputs. Never looks at labels of the target domain."""

    spatial_dims: Literal[2, 3] = 2
    # 2D mode: in-plane size (H, W) of every axial slice; 3D mode: full volume size.
    size: tuple[int, ...] = (128, 128)
    # Robust intensity normalisation: clip to these per-case percentiles, then scale to [0, 1].
    clip_percentiles: tuple[float, float] = (0.5, 99.5)

    def model_post_init(self, __context: Any) -> None:
        if len(self.size) != self.spatial_dims:
            raise ConfigError(
                f"preprocessing.size {self.size} must have {self.spatial_dims} entries for spatial_dims="
                f"{self.spatial_dims}"
            )
        lo, hi = self.clip_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ConfigError(f"preprocessing.clip_percentiles {self.clip_percentiles} must satisfy 0<=lo<hi<=100")


class NetworkConfig(StrictModel):
    """The segmentation network (MONAI SegResNet)."""

    init_filters: int = 16
    blocks_down: tuple[int, ...] = (1, 2, 2, 4)
    blocks_up: tuple[int, ...] = (1, 1, 1)
    dropout: float | None = None


class TrainingConfig(StrictModel):
    """The shared segmentation trainer."""

    iterations: int = 2000
    # Labelled (source) and unlabelled (target) images per step. The paper: 4, split across domains.
    batch_size: int = 4
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 1e-4
    weight_decay: float = 1e-5
    momentum: float = 0.99
    lr_schedule: Literal["poly", "constant"] = "poly"
    poly_power: float = 0.9
    ema_decay: float = 0.99
    # Light augmentation of labelled batches (small affine + intensity), the same for all methods.
    augment: bool = True
    amp: bool = True
    checkpoint_every: int = 200
    log_every: int = 10
    # Fraction of source cases held out for source validation (model selection never uses target labels).
    source_val_fraction: float = 0.0
    # Epoch length in iterations for epoch-based hooks (ensembles); 0 = iterations // 20.
    epoch_length: int = 0
    seed: int = 0
    device: str = "auto"


class RunConfig(StrictModel):
    """Everything a training run needs besides the task: network, trainer and method options."""

    profile: Profile = "quick"
    # Overrides of the task's preprocessing (e.g. {"size": [64, 64]}); stored with the model bundle.
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    method: dict[str, Any] = Field(default_factory=dict)


def profile_defaults(profile: str, spatial_dims: int = 2) -> dict[str, Any]:
    """The overrides a profile applies on top of the field defaults."""
    if profile == "smoke":
        return {
            "network": {"init_filters": 8, "blocks_down": (1, 1, 1), "blocks_up": (1, 1)},
            "training": {"iterations": 6, "batch_size": 2, "lr": 1e-3, "checkpoint_every": 3,
                         "log_every": 1, "amp": False, "epoch_length": 2},
        }
    if profile == "quick":
        # Sized for a CPU benchmark: one source-only run takes ~2 minutes on one core. At 128 px the
        # same budget under-fits badly (measured: the polyp oracle's training loss still ~0.5 after
        # 800 steps), so 2D tasks are resampled to 64 px here; `--set preprocessing.size=[128,128]`
        # restores the task's own size.
        return {
            "preprocessing": {"size": (64, 64)} if spatial_dims == 2 else {"size": (64, 64, 64)},
            "network": {"init_filters": 8},
            "training": {"iterations": 2000, "batch_size": 4, "lr": 2e-3, "checkpoint_every": 250,
                         "log_every": 20},
        }
    if profile == "paper":
        return {
            "network": {"init_filters": 16},
            "training": {"iterations": 100 * 250, "batch_size": 4, "lr": 1e-4, "checkpoint_every": 1000,
                         "log_every": 50, "epoch_length": 250},
        }
    raise ConfigError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """Turn ``["training.lr=1e-3", "method.beta=0.05"]`` into a nested dict (values parsed as YAML)."""
    result: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.field=value")
        key, raw = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value: {exc}") from exc
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


def build_run_config(
    profile: str = "quick",
    spatial_dims: int = 2,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Field defaults, then the profile, then user overrides (highest priority)."""
    merged = _deep_update(profile_defaults(profile, spatial_dims), overrides or {})
    merged["profile"] = profile
    try:
        return RunConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc

"""Typed configuration objects and the three size profiles (smoke / quick / paper).

Every setting has a default; a profile only changes sizes and lengths, never the method.
Any field can be overridden from the command line with ``--set section.field=value``.
"""

from __future__ import annotations

from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from diffuse_uda.errors import ConfigError

Profile = Literal["smoke", "quick", "quick3d", "paper"]
PROFILES: tuple[str, ...] = ("smoke", "quick", "quick3d", "paper")


class StrictModel(BaseModel):
    """Base model: unknown keys are errors (a typo in a YAML file must not pass silently), and NaN or
    infinite numbers are refused (``lr=nan`` would train nothing and say nothing)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ConfigModel(StrictModel):
    """A settings object made in code (``DiffusionConfig(...)``): a bad value is a ConfigError that
    names the field, raised when the object is made, before any work starts."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid {type(self).__name__}: {format_validation_error(exc)}") from None


class PreprocessingConfig(StrictModel):
    """How images become network inputs. Never looks at labels of the target domain."""

    spatial_dims: Literal[2, 3] = 2
    # 2D mode: in-plane size (H, W) of every axial slice; 3D mode: full volume size.
    size: tuple[PositiveInt, ...] = (128, 128)
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

    init_filters: PositiveInt = 16
    blocks_down: tuple[PositiveInt, ...] = (1, 2, 2, 4)
    blocks_up: tuple[PositiveInt, ...] = (1, 1, 1)
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    # Recompute each level's activations in the backward pass (less memory, ~1 more forward of compute;
    # the same results). For large 3D inputs.
    gradient_checkpointing: bool = False

    def model_post_init(self, __context: Any) -> None:
        if not self.blocks_down or len(self.blocks_up) != len(self.blocks_down) - 1:
            raise ConfigError(f"network.blocks_up {self.blocks_up} must have one entry fewer than "
                              f"network.blocks_down {self.blocks_down}")


class TrainingConfig(StrictModel):
    """The shared segmentation trainer."""

    iterations: PositiveInt = 2000
    # Labelled (source) and unlabelled (target) images per step. The paper: 4, split across domains.
    # The global batch: under torchrun each of N processes takes batch_size / N of them.
    batch_size: PositiveInt = 4
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-4, gt=0.0)
    weight_decay: float = Field(1e-5, ge=0.0)
    momentum: float = Field(0.99, ge=0.0, lt=1.0)
    lr_schedule: Literal["poly", "constant"] = "poly"
    poly_power: float = Field(0.9, gt=0.0)
    ema_decay: float = Field(0.99, ge=0.0, lt=1.0)
    # Light augmentation of labelled batches (small affine + intensity), the same for all methods.
    augment: bool = True
    amp: bool = True
    checkpoint_every: PositiveInt = 200
    log_every: PositiveInt = 10
    # Fraction of source cases held out for source validation (model selection never uses target labels).
    source_val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    # Epoch length in iterations for epoch-based hooks (ensembles); 0 = iterations // 20.
    epoch_length: NonNegativeInt = 0
    seed: NonNegativeInt = 0
    device: str = "auto"

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str, info: ValidationInfo) -> str:
        # A stored config (a model bundle trained on a GPU, opened on a laptop) is not checked
        # against this machine's devices: only a request to run here is.
        if info.context and info.context.get("stored"):
            return value
        return check_device(value)


class RunConfig(StrictModel):
    """Everything a training run needs besides the task: network, trainer and method options."""

    profile: Profile = "quick"
    # Overrides of the task's preprocessing (e.g. {"size": [64, 64]}); stored with the model bundle.
    preprocessing: dict[str, Any] = Field(default_factory=dict)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    method: dict[str, Any] = Field(default_factory=dict)


def check_device(name: str) -> str:
    """``auto``, ``cpu``, ``cuda`` / ``cuda:N`` (needs a CUDA build with a GPU) or ``mps``; else ConfigError."""
    import torch

    if name in ("auto", "cpu"):
        return name
    if name == "cuda" or name.startswith("cuda:"):
        index = name.partition(":")[2]
        if index and not index.isdigit():
            raise ConfigError(f"device {name!r}: expected cuda or cuda:N")
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but this PyTorch build sees no CUDA GPU "
                              f"(torch {torch.__version__}); use device=auto or cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return name
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("device 'mps' requested but it is not available")
        return name
    raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


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
    if profile == "quick3d":
        # Whole volumes at CPU size: any task (2D or 3D in its YAML) is resampled to 64 x 64 x 32 volumes
        # (in-plane x slices). One update of the quick network at batch 2 takes ~0.8 s on one core
        # (abdominal CT -> MR oracle: 1200 updates in 937 s). 400 updates were too few: the oracle never
        # predicted the left kidney (0 Dice, the other organs 68-91); at 1200 it learns all four, but the
        # source-only model (6 CT volumes) still does not learn the left kidney (BENCHMARKS.md).
        return {
            "preprocessing": {"spatial_dims": 3, "size": (64, 64, 32)},
            "network": {"init_filters": 8},
            "training": {"iterations": 1200, "batch_size": 2, "lr": 2e-3, "checkpoint_every": 200,
                         "log_every": 10},
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
        raise ConfigError(f"invalid configuration: {format_validation_error(exc)}") from None


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``training.lr: Input should be greater than 0 (got 0)``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ())) or "value"
        msg = err.get("msg", "invalid")
        if "input" in err and not isinstance(err["input"], dict):
            msg += f" (got {err['input']!r})"
        parts.append(f"{where}: {msg}")
    return "; ".join(parts)

"""Settings of the mask-conditioned diffusion model (paper Sec. 4.3-4.4) and named profiles."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from diffuse_uda.errors import ConfigError
from diffuse_uda.transforms.deformation import DeformationParams

__all__ = ["ARCHITECTURE_FIELDS", "DEFORM_CHOICES", "DiffusionConfig"]

DEFORM_CHOICES: tuple[str, ...] = ("source", "target", "both", "none")
SCHEDULES: tuple[str, ...] = ("cosine", "linear_beta", "scaled_linear_beta", "sigmoid_beta")

# Fields that define the network or the noise process: a checkpoint can only be resumed or
# sampled with the same values.
ARCHITECTURE_FIELDS: tuple[str, ...] = (
    "spatial_dims",
    "image_size",
    "channels",
    "attention_levels",
    "num_res_blocks",
    "embed_channels",
    "norm_num_groups",
    "num_train_timesteps",
    "schedule",
)


@dataclass
class DiffusionConfig:
    """Training settings of the conditional DDPM.

    An *iteration* is one optimizer update, made of ``grad_accumulation`` micro-batches of
    ``batch_size`` pairs each (so ``iterations * grad_accumulation * batch_size`` pairs are seen).

    Attributes:
        spatial_dims: 2 (slices / photos) or 3 (volumes).
        image_size: spatial size every training pair must have (model resolution); each entry must
            be divisible by ``2 ** (len(channels) - 1)`` (one down-sampling per extra level).
        channels: UNet feature channels per level.
        attention_levels: self-attention per level (``None`` = none, the cheap default).
        num_res_blocks: residual blocks per level.
        embed_channels: channels of the mask embedding ``f_e``.
        norm_num_groups: GroupNorm groups (must divide every entry of ``channels``).
        num_train_timesteps: diffusion steps ``T``.
        schedule: MONAI noise schedule name (the paper uses ``"cosine"``).
        lr: Adam learning rate.
        batch_size: pairs per micro-batch.
        grad_accumulation: micro-batches per optimizer update.
        iterations: optimizer updates in total.
        ema_decay: decay of the exponential moving average of the weights used for sampling.
        ema_start: iterations before the EMA starts; until then the EMA copy simply tracks the
            weights. Averaging the first, essentially random, weights would only delay the point
            where the EMA model becomes usable (with decay 0.995 their influence lasts ~1000 steps).
        checkpoint_every: iterations between checkpoints (one is always written at the end).
        sample_every: iterations between preview sample grids (0 = off).
        log_every: iterations between loss log lines (each line is the mean over the window).
        amp: mixed precision on CUDA (bf16 where supported, else fp16 with loss scaling);
            ignored on CPU.
        seed: seed of every random draw (initial weights, batches, timesteps, noise, deformation).
        deform: which domain's pairs get the deformable augmentation during training: "source"
            (the paper: target pairs carry noisy pseudo-labels), "target", "both" or "none".
        source_target_ratio: ``None`` draws pairs uniformly from all pairs as given; otherwise the
            probability that a drawn pair is a source pair (e.g. 0.5 = balanced domains).
        deformation: ranges of the deformable augmentation (Algorithm 1).
    """

    spatial_dims: int = 2
    image_size: tuple[int, ...] = (128, 128)
    channels: tuple[int, ...] = (64, 128, 128)
    attention_levels: tuple[bool, ...] | None = None
    num_res_blocks: int = 1
    embed_channels: int = 8
    norm_num_groups: int = 32
    num_train_timesteps: int = 250
    schedule: str = "cosine"
    lr: float = 1e-5
    batch_size: int = 1
    grad_accumulation: int = 2
    iterations: int = 100_000
    ema_decay: float = 0.995
    ema_start: int = 100
    checkpoint_every: int = 1000
    sample_every: int = 0
    log_every: int = 50
    amp: bool = True
    seed: int = 0
    deform: str = "source"
    source_target_ratio: float | None = None
    deformation: DeformationParams = field(default_factory=DeformationParams)

    def __post_init__(self) -> None:
        # Accept lists (from YAML/JSON/checkpoints) but store tuples so configs compare equal.
        self.image_size = tuple(int(s) for s in self.image_size)
        self.channels = tuple(int(c) for c in self.channels)
        if self.attention_levels is not None:
            self.attention_levels = tuple(bool(a) for a in self.attention_levels)
        if isinstance(self.deformation, dict):
            self.deformation = _deformation_from_dict(self.deformation)

    # ------------------------------------------------------------------ checks
    def validate(self) -> DiffusionConfig:
        """Raise :class:`ConfigError` on inconsistent settings; returns ``self``."""
        if self.spatial_dims not in (2, 3):
            raise ConfigError(f"diffusion spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if len(self.image_size) != self.spatial_dims:
            raise ConfigError(
                f"diffusion image_size {self.image_size} does not have spatial_dims={self.spatial_dims} entries"
            )
        if not self.channels:
            raise ConfigError("diffusion channels must not be empty")
        factor = 2 ** (len(self.channels) - 1)
        if any(s <= 0 or s % factor for s in self.image_size):
            raise ConfigError(
                f"diffusion image_size {self.image_size} must be divisible by {factor} "
                f"(the UNet has {len(self.channels)} levels)"
            )
        if any(c % self.norm_num_groups for c in self.channels):
            raise ConfigError(
                f"every diffusion channel count {self.channels} must be a multiple of "
                f"norm_num_groups={self.norm_num_groups}"
            )
        if self.attention_levels is not None and len(self.attention_levels) != len(self.channels):
            raise ConfigError("diffusion attention_levels must have one entry per channels level")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"diffusion schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.deform not in DEFORM_CHOICES:
            raise ConfigError(f"diffusion deform must be one of {DEFORM_CHOICES}, got {self.deform!r}")
        positive = {
            "num_res_blocks": self.num_res_blocks,
            "embed_channels": self.embed_channels,
            "num_train_timesteps": self.num_train_timesteps,
            "batch_size": self.batch_size,
            "grad_accumulation": self.grad_accumulation,
            "iterations": self.iterations,
            "checkpoint_every": self.checkpoint_every,
            "log_every": self.log_every,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise ConfigError(f"diffusion {name} must be >= 1, got {value}")
        if not self.lr > 0:
            raise ConfigError(f"diffusion lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"diffusion ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.ema_start < 0 or self.sample_every < 0:
            raise ConfigError("diffusion ema_start and sample_every must be >= 0")
        if self.source_target_ratio is not None and not 0.0 <= self.source_target_ratio <= 1.0:
            raise ConfigError(f"diffusion source_target_ratio must be in [0, 1], got {self.source_target_ratio}")
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, numbers, strings) for checkpoints and JSON provenance."""
        out = dataclasses.asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        out["deformation"] = {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self.deformation).items()
        }
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown diffusion setting(s): {', '.join(unknown)}")
        return cls(**d)

    def architecture(self) -> dict[str, Any]:
        """The subset of settings that fixes the network and the noise process."""
        full = self.to_dict()
        return {k: full[k] for k in ARCHITECTURE_FIELDS}

    def replace(self, **changes: Any) -> DiffusionConfig:
        """Copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ profiles
    @classmethod
    def smoke(cls, spatial_dims: int = 2, **overrides: Any) -> DiffusionConfig:
        """Tiny settings for tests and wiring checks: 16 px, 10 timesteps, ~10 iterations (seconds)."""
        base = cls(
            spatial_dims=spatial_dims,
            image_size=(16,) * spatial_dims,
            channels=(8, 16),
            norm_num_groups=4,
            embed_channels=4,
            num_train_timesteps=10,
            lr=1e-3,
            batch_size=2,
            grad_accumulation=1,
            iterations=10,
            ema_start=2,
            checkpoint_every=5,
            log_every=2,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def quick(cls, spatial_dims: int = 2, **overrides: Any) -> DiffusionConfig:
        """CPU benchmark: 2D 64 px, about 10 minutes on 2 cores.

        Measured with torch 2.13 on the 2-core development machine while other jobs were running
        (load ~4): one update of this (16, 32, 64) network at 64 px, batch 8, deformation included,
        takes 0.22-0.35 s (one sampling step, batch 8: ~0.09 s); the whole 2000-update run on
        333 MS-CMRSeg bSSFP slices took 787 s on one thread and DDIM-50 samples of 8 masks (5.9 s)
        were recognisable cardiac MR with the myocardium and blood pool where the masks put them.
        Larger settings do not fit the budget: 128 px costs 0.9-1.3 s per update (sampling step
        0.26-0.39 s) and the (32, 64, 64) network 0.62 s (64 px) / 3.2-3.6 s (128 px). The large
        learning rate (vs 1e-5 in the paper) and batch 8 (vs 1 x 2 accumulated) are what make a
        few thousand updates enough.
        """
        base = cls(
            spatial_dims=spatial_dims,
            image_size=(64,) * spatial_dims,
            channels=(16, 32, 64),
            norm_num_groups=8,
            embed_channels=8,
            num_train_timesteps=250,
            lr=2e-4,
            batch_size=8,
            grad_accumulation=1,
            iterations=2000,
            ema_start=200,
            checkpoint_every=250,
            sample_every=0,
            log_every=25,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def paper(cls, spatial_dims: int = 2, **overrides: Any) -> DiffusionConfig:
        """The paper's settings (Sec. 4.4): 128 px (2D) or 128^3 (3D), 64 base channels, 1 residual
        block, 250 cosine steps, Adam 1e-5, batch 1 with 2-step gradient accumulation, EMA 0.995,
        100k iterations, samples saved every 1000 iterations."""
        base = cls(
            spatial_dims=spatial_dims,
            image_size=(128,) * spatial_dims,
            channels=(64, 128, 128),
            num_res_blocks=1,
            norm_num_groups=32,
            num_train_timesteps=250,
            schedule="cosine",
            lr=1e-5,
            batch_size=1,
            grad_accumulation=2,
            iterations=100_000,
            ema_decay=0.995,
            ema_start=100,
            checkpoint_every=1000,
            sample_every=1000,
        )
        return dataclasses.replace(base, **overrides)


def _deformation_from_dict(d: dict[str, Any]) -> DeformationParams:
    names = {f.name for f in dataclasses.fields(DeformationParams)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown deformation setting(s): {', '.join(unknown)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return DeformationParams(**kwargs)

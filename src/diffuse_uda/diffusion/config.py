"""Settings of the mask-conditioned diffusion model (paper Sec. 4.3-4.4) and named profiles."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from diffuse_uda.config import ConfigModel
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
    "domain_conditioning",
    "prediction_type",
)


class DiffusionConfig(ConfigModel):
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
        domain_conditioning: the network also takes a learned embedding of the pair's domain (source
            or target; added to the timestep embedding), so sampling can ask for the target's style.
            False is the paper's generator (mask only).
        domain_embedding_init: with domain conditioning, the initial domain embedding: ``"normal"`` (MONAI's
            default, N(0, 1): about 6x the norm of the timestep embedding it is added to, measured in session 17)
            or ``"zero"`` (the network starts as the paper's; see
            :class:`~diffuse_uda.networks.conditional_unet.ConditionalDiffusionUNet`).
        domain_dropout: with domain conditioning, the probability that a training pair's domain is
            replaced by the "unknown" domain, which classifier-free guidance contrasts with at sampling.
        mask_dropout: the probability that a pair's mask is replaced by an empty condition (all-zero
            one-hot), so the model also learns the unconditional image distribution.
        target_mask_dropout: the probability that a *target* pair's mask (a stage-1 pseudo-label) is replaced
            by the empty condition, on top of ``mask_dropout``: such a pair still shows the generator the target's
            appearance, but not stage 1's idea of where the structures are, so the mask-to-image coupling is
            learned more from the source's expert masks. At 1.0 every target pair is mask-free and sampling
            with a mask in the target domain composes what the two domains taught (no loss weight applies to a
            mask-free pair: its image is real).
        pair_weighting: "none" (the paper), or "confidence": each target pseudo-pair's loss is weighted
            by its ``weight`` (stage 1's own confidence in that pseudo-label; source pairs weigh 1).
        prediction_type: the regression target of the L1 loss: ``"epsilon"`` (the paper, Eq. 13: the
            noise) or ``"v"``, the velocity ``sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho,
            "Progressive Distillation for Fast Sampling of Diffusion Models", 2022), which stays well
            posed where the noise dominates (large ``t``, where recovering ``x0`` from a noise estimate
            divides by ``sqrt(abar_t)`` ~ 0 under the cosine schedule). Every sampler serves both: the
            samplers turn a velocity into the noise estimate they step with. ``"flow"``: rectified flow
            (Liu, Gong & Liu, "Flow Straight and Fast", ICLR 2023) through MONAI's ``RFlowScheduler``: the
            noisy input is the straight line ``x_t = (1 - t/T) x0 + (t/T) eps`` (``t`` in 1..T, so pure
            noise is seen in training), the target its velocity ``x0 - eps``, and sampling integrates the
            ODE with Euler steps (synthesis sampler ``"euler"``, the only one a flow model takes; ``schedule``
            does not apply).
        gradient_checkpointing: keep only the inputs of the UNet's blocks during the forward pass and
            recompute their activations in the backward pass (``torch.utils.checkpoint``): much less
            activation memory for about one more forward pass of compute. Same weights, same results.

    Distributed training (torchrun) keeps ``batch_size * grad_accumulation`` pairs per update in all,
    shared by the processes (see :mod:`diffuse_uda.diffusion.trainer`).
    """

    spatial_dims: Literal[2, 3] = 2
    image_size: tuple[PositiveInt, ...] = (128, 128)
    channels: tuple[PositiveInt, ...] = (64, 128, 128)
    attention_levels: tuple[bool, ...] | None = None
    num_res_blocks: PositiveInt = 1
    embed_channels: PositiveInt = 8
    norm_num_groups: PositiveInt = 32
    num_train_timesteps: PositiveInt = 250
    schedule: Literal["cosine", "linear_beta", "scaled_linear_beta", "sigmoid_beta"] = "cosine"
    lr: float = Field(1e-5, gt=0.0)
    batch_size: PositiveInt = 1
    grad_accumulation: PositiveInt = 2
    iterations: PositiveInt = 100_000
    ema_decay: float = Field(0.995, ge=0.0, lt=1.0)
    ema_start: NonNegativeInt = 100
    checkpoint_every: PositiveInt = 1000
    sample_every: NonNegativeInt = 0
    log_every: PositiveInt = 50
    amp: bool = True
    seed: NonNegativeInt = 0
    deform: Literal["source", "target", "both", "none"] = "source"
    source_target_ratio: float | None = Field(None, ge=0.0, le=1.0)
    deformation: DeformationParams = Field(default_factory=DeformationParams)
    domain_conditioning: bool = False
    domain_embedding_init: Literal["normal", "zero"] = "normal"
    domain_dropout: float = Field(0.15, ge=0.0, le=1.0)
    mask_dropout: float = Field(0.0, ge=0.0, le=1.0)
    target_mask_dropout: float = Field(0.0, ge=0.0, le=1.0)
    pair_weighting: Literal["none", "confidence"] = "none"
    gradient_checkpointing: bool = False
    prediction_type: Literal["epsilon", "v", "flow"] = "epsilon"

    @model_validator(mode="after")
    def _consistent(self) -> DiffusionConfig:
        if len(self.image_size) != self.spatial_dims:
            raise ValueError(f"image_size {self.image_size} does not have spatial_dims={self.spatial_dims} entries")
        if not self.channels:
            raise ValueError("channels must not be empty")
        factor = 2 ** (len(self.channels) - 1)
        if any(s % factor for s in self.image_size):
            raise ValueError(f"image_size {self.image_size} must be divisible by {factor} "
                             f"(the UNet has {len(self.channels)} levels)")
        if any(c % self.norm_num_groups for c in self.channels):
            raise ValueError(f"every channel count {self.channels} must be a multiple of "
                             f"norm_num_groups={self.norm_num_groups}")
        if self.attention_levels is not None and len(self.attention_levels) != len(self.channels):
            raise ValueError("attention_levels must have one entry per channels level")
        return self

    def checked(self) -> DiffusionConfig:
        """Kept for callers that validated explicitly: a DiffusionConfig is validated when it is made."""
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, numbers, strings) for checkpoints and JSON provenance."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DiffusionConfig:
        """Inverse of :meth:`to_dict`; unknown keys or bad values raise :class:`ConfigError`."""
        return cls(**d)

    def architecture(self) -> dict[str, Any]:
        """The subset of settings that fixes the network and the noise process."""
        full = self.to_dict()
        return {k: full[k] for k in ARCHITECTURE_FIELDS}

    def replace(self, **changes: Any) -> DiffusionConfig:
        """Copy with some fields changed (validated)."""
        return type(self)(**{**self.model_dump(), **changes})

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
        return base.replace(**overrides)

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
        return base.replace(**overrides)

    @classmethod
    def quick3d(cls, spatial_dims: int = 3, **overrides: Any) -> DiffusionConfig:
        """3D at CPU size, beside the ``quick3d`` segmentation profile: the quick network on
        64 x 64 x 32 volumes, batch 2, 400 updates. On one CPU thread an update took 1.9-3.5 s (934 s for
        the 400 on abdominal CT -> MR; 12 s with two threads on two overloaded cores), so a 3D pipeline
        run at this size is about an hour on a CPU (BENCHMARKS.md, session 9)."""
        if spatial_dims != 3:
            raise ValueError("the quick3d profile is 3D")
        return cls.quick(3, image_size=(64, 64, 32), batch_size=2, iterations=400, ema_start=50,
                         checkpoint_every=100, log_every=10).replace(**overrides)

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
        return base.replace(**overrides)

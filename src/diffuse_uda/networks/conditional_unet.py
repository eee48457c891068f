"""Mask-conditioned denoising UNet of Diffuse-UDA (paper Sec. 4.3.1, Eq. 11).

The condition ``c`` (a label map) is one-hot encoded and passed through a learned per-voxel
linear layer ``f_e`` (a 1x1(x1) convolution); the embedding is concatenated with the noisy
image ``x_t`` along the channel axis and fed to MONAI's ``DiffusionModelUNet``, which predicts
the noise ``epsilon``.

Beyond the paper, the network can also take the *domain* of the image it denoises (``num_domains``
> 0): a learned embedding per domain (index 0 = "unknown", then source, target, ...) that MONAI's
UNet adds to the timestep embedding (its class embedding). Training with the domain sometimes set
to "unknown" lets sampling use classifier-free guidance toward the target domain
(:func:`diffuse_uda.diffusion.samplers.sample_images`).

With ``gradient_checkpointing`` the UNet's residual and attention blocks and its output head keep only
their inputs during a training forward pass and recompute their activations in the backward pass
(:mod:`diffuse_uda.networks.checkpointing`; MONAI's UNet has no such option). Outputs, gradients and
state dicts are those of the plain network; inference is unaffected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import SpatialAttentionBlock
from monai.networks.nets import DiffusionModelUNet
from monai.networks.nets.diffusion_model_unet import DiffusionUNetResnetBlock
from torch import Tensor, nn

from diffuse_uda.networks.checkpointing import checkpoint_modules

__all__ = ["DOMAIN_INDEX", "PREDICTION_TYPES", "ConditionalDiffusionUNet", "one_hot"]

# What the network predicts: the noise (the paper) or the velocity (Salimans & Ho 2022).
PREDICTION_TYPES: tuple[str, ...] = ("epsilon", "v", "flow")

# Domain ids of the domain embedding; 0 is the "unknown" domain of classifier-free guidance.
DOMAIN_INDEX: dict[str, int] = {"unknown": 0, "source": 1, "target": 2}


def one_hot(mask: Tensor, num_classes: int) -> Tensor:
    """One-hot encode an integer label map.

    Args:
        mask: ``(B, *S)`` or ``(B, 1, *S)`` integer labels in ``[0, num_classes)``; values outside
            that range encode as all zeros (callers validate labels when loading data).
        num_classes: number of classes ``K`` (background included).

    Returns:
        ``(B, K, *S)`` float32 tensor on the mask's device.
    """
    if mask.is_floating_point():
        raise TypeError(f"one_hot expects an integer mask, got dtype {mask.dtype}")
    if mask.ndim >= 3 and mask.shape[1] == 1:
        mask = mask[:, 0]
    # Broadcast comparison instead of F.one_hot, which checks the value range with a host sync
    # (min/max .item()) on CPU and a device-side assert (fatal to the CUDA context) on GPU.
    classes = torch.arange(num_classes, device=mask.device).view(1, num_classes, *([1] * (mask.ndim - 1)))
    return (mask.unsqueeze(1) == classes).float()


class ConditionalDiffusionUNet(nn.Module):
    """Noise predictor ``eps_theta([x_t, f_e(onehot(c))], t)`` (or velocity predictor).

    Args:
        spatial_dims: 2 or 3.
        image_channels: channels of the image being generated (``C``).
        num_classes: classes of the conditioning mask (``K``, background included).
        embed_channels: output channels of the mask embedding ``f_e``.
        channels: feature channels per UNet level.
        attention_levels: self-attention per level; ``None`` means none (cheaper). MONAI's
            middle block always has one self-attention layer; it runs through PyTorch's
            memory-efficient ``scaled_dot_product_attention``.
        num_res_blocks: residual blocks per level.
        norm_num_groups: GroupNorm groups; must divide every entry of ``channels``.
        num_domains: 0 (the paper: no domain input) or the number of domains (2: source and
            target), each with a learned embedding, plus the "unknown" domain 0.
        gradient_checkpointing: recompute block activations in the backward pass (less memory).
        prediction_type: what the output is: ``"epsilon"`` (the paper: the noise), ``"v"`` (the
            velocity ``sqrt(abar) eps - sqrt(1 - abar) x0``) or ``"flow"`` (a rectified-flow velocity
            ``x0 - eps`` on the straight path between noise and data); the samplers read it from the model.
        domain_embedding_init: ``"normal"`` (MONAI's ``nn.Embedding`` default, N(0, 1) per entry) or ``"zero"``.
            The domain embedding is added to the timestep embedding, whose norm is about 1-2 (and differs by
            about 1-2 between timesteps): N(0, 1) entries give it a norm of about ``sqrt(4 * channels[0])`` (8 for
            the quick profile), which swamps the timestep signal and, at a few thousand updates, barely moves.
            ``"zero"`` starts the network exactly as the paper's (the domains identical) and lets training
            separate them. Other weights are the same either way (no random draw is taken or skipped).
    """

    def __init__(
        self,
        spatial_dims: int,
        image_channels: int,
        num_classes: int,
        embed_channels: int = 8,
        channels: Sequence[int] = (64, 128, 128),
        attention_levels: Sequence[bool] | None = None,
        num_res_blocks: int = 1,
        norm_num_groups: int = 32,
        num_domains: int = 0,
        gradient_checkpointing: bool = False,
        prediction_type: str = "epsilon",
        domain_embedding_init: str = "normal",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + foreground), got {num_classes}")
        if domain_embedding_init not in ("normal", "zero"):
            raise ValueError(f"domain_embedding_init must be 'normal' or 'zero', got {domain_embedding_init!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        channels = tuple(int(c) for c in channels)
        if attention_levels is None:
            attention_levels = (False,) * len(channels)
        self.spatial_dims = spatial_dims
        self.image_channels = image_channels
        self.num_classes = num_classes
        self.embed_channels = embed_channels
        self.num_domains = int(num_domains)
        self.prediction_type = prediction_type

        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        # f_e: a learned per-voxel linear map from the one-hot label to an embedding
        self.mask_embed = conv(num_classes, embed_channels, kernel_size=1)
        # one head per level keeps the (always present) mid-block attention cheap
        self.unet = DiffusionModelUNet(
            spatial_dims=spatial_dims,
            in_channels=image_channels + embed_channels,
            out_channels=image_channels,
            num_res_blocks=num_res_blocks,
            channels=channels,
            attention_levels=tuple(bool(a) for a in attention_levels),
            norm_num_groups=norm_num_groups,
            num_head_channels=channels,
            use_flash_attention=True,
            num_class_embeds=self.num_domains + 1 if self.num_domains else None,
        )
        if self.num_domains and domain_embedding_init == "zero":
            nn.init.zeros_(self.unet.class_embedding.weight)
        if gradient_checkpointing:
            # Residual and attention blocks, and the head (GroupNorm + SiLU + conv at full resolution).
            blocks = [m for m in self.unet.modules() if isinstance(m, DiffusionUNetResnetBlock | SpatialAttentionBlock)]
            checkpoint_modules([*blocks, self.unet.out])

    def embed_condition(self, mask_onehot: Tensor) -> Tensor:
        """Apply ``f_e`` to a one-hot mask ``(B, K, *S)``."""
        return self.mask_embed(mask_onehot)

    def forward(self, noisy_image: Tensor, mask_onehot: Tensor, timesteps: Tensor,
                domain: Tensor | None = None) -> Tensor:
        """Predict the noise.

        Args:
            noisy_image: ``(B, C, *S)`` noisy image ``x_t`` (in the ``[-1, 1]`` data range).
            mask_onehot: ``(B, K, *S)`` one-hot condition (see :func:`one_hot`); all zeros = no mask.
            timesteps: ``(B,)`` integer timesteps.
            domain: ``(B,)`` domain ids (:data:`DOMAIN_INDEX`) for a domain-conditioned network
                (``None`` = unknown); must be ``None`` for the paper's network.

        Returns:
            ``(B, C, *S)`` predicted noise (or velocity, see ``prediction_type``).
        """
        if noisy_image.shape[0] != mask_onehot.shape[0] or noisy_image.shape[2:] != mask_onehot.shape[2:]:
            raise ValueError(
                f"image {tuple(noisy_image.shape)} and mask {tuple(mask_onehot.shape)} disagree in batch/space"
            )
        if mask_onehot.shape[1] != self.num_classes:
            raise ValueError(f"mask has {mask_onehot.shape[1]} channels, model expects {self.num_classes}")
        cond = self.embed_condition(mask_onehot.to(noisy_image.dtype))
        labels = None
        if self.num_domains:
            labels = domain if domain is not None else torch.zeros_like(timesteps)
        elif domain is not None:
            raise ValueError("this generator has no domain input (trained without domain conditioning)")
        return self.unet(torch.cat([noisy_image, cond], dim=1), timesteps, class_labels=labels)

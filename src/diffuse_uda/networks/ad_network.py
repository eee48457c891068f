"""Networks of the A&D comparator (Aggregating & Decoupling, Wang & Li, NeurIPS 2023), 2D or 3D.

* :class:`DiffusionEncoder` (the "Diff-VNet" encoder, shared by every flow): a residual encoder
  with ``levels`` resolution levels (width ``F * 2^i``). The image always enters through an image
  stem; for the denoising flow a noisy one-hot label ``y_t`` enters through a label stem (the two
  stems are summed, which equals one convolution over ``concat([y_t, x])``) and every level's
  features get a learned per-channel bias from the sinusoidal embedding of ``t``. The image-only
  flows (difficulty-aware, unlabelled) skip both, so their features have the same shapes.
* :class:`ADDecoder`: a residual decoder (upsample, add skip, residual block) ending in a 1x1 conv
  to ``num_classes`` logits. The three decoders (denoising ``xi``, difficulty-aware ``psi``,
  unlabelled ``theta``) share this architecture so that ``theta`` can receive the EMA of ``xi``
  and ``psi`` (paper Sec. 3.3).
* :class:`ADInferenceNetwork`: encoder + unlabelled decoder, the only part used at inference
  (``forward(x) -> logits``); :class:`ADNetwork` adds the two labelled-flow decoders for training.

Building blocks are MONAI's SegResNet blocks with GroupNorm (no running statistics, so batching
the flows together never changes a flow's output and EMA needs no buffer handling).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from monai.networks.blocks.segresnet_block import ResBlock, get_conv_layer
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import Tensor, nn

__all__ = ["ADDecoder", "ADInferenceNetwork", "ADNetwork", "DiffusionEncoder", "level_channels"]

_INTERP = {2: "bilinear", 3: "trilinear"}


def level_channels(features: int, levels: int) -> list[int]:
    """Widths of the resolution levels: ``F, 2F, 4F, ...``."""
    return [features * 2**i for i in range(levels)]


def _norm(channels: int) -> tuple[str, dict[str, int]]:
    # Up to 8 groups that divide the width (widths are F * 2^i, so any F works).
    return ("GROUP", {"num_groups": math.gcd(8, channels)})


class DiffusionEncoder(nn.Module):
    """Shared encoder; ``forward(x)`` for image-only flows, ``forward(x, y_t, t)`` for the denoising flow.

    Returns the multi-scale features ``[h_0, ..., h_{L-1}]`` (full resolution first).
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, features: int = 8,
                 levels: int = 4) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if levels < 1 or features < 1:
            raise ValueError(f"levels and features must be >= 1, got {levels}, {features}")
        chans = level_channels(features, levels)
        # At least 16 sinusoid channels, so even a narrow encoder tells 1000 time steps apart.
        self.sinusoid_dim = max(16, features)
        self.time_dim = 4 * features
        self.image_stem = get_conv_layer(spatial_dims, in_channels, features)
        self.label_stem = get_conv_layer(spatial_dims, num_classes, features)
        self.time_mlp = nn.Sequential(nn.Linear(self.sinusoid_dim, self.time_dim), nn.SiLU(),
                                      nn.Linear(self.time_dim, self.time_dim))
        self.down = nn.ModuleList(
            [nn.Identity()] + [get_conv_layer(spatial_dims, chans[i - 1], chans[i], stride=2) for i in range(1, levels)]
        )
        self.blocks = nn.ModuleList([ResBlock(spatial_dims, c, _norm(c)) for c in chans])
        self.time_proj = nn.ModuleList([nn.Linear(self.time_dim, c) for c in chans])

    def forward(self, x: Tensor, noisy_label: Tensor | None = None, t: Tensor | None = None) -> list[Tensor]:
        h = self.image_stem(x)
        emb = None
        if noisy_label is not None:
            if t is None:
                raise ValueError("the denoising flow needs both the noisy label and its time step")
            h = h + self.label_stem(noisy_label.to(h.dtype))
            emb = F.silu(self.time_mlp(get_timestep_embedding(t, self.sinusoid_dim).to(h.dtype)))
        outs: list[Tensor] = []
        for down, block, proj in zip(self.down, self.blocks, self.time_proj, strict=True):
            h = block(down(h))
            if emb is not None:
                h = h + proj(emb).view(*emb.shape[:1], -1, *([1] * (h.ndim - 2)))
            outs.append(h)
        return outs


class ADDecoder(nn.Module):
    """Residual decoder over the encoder's features; ends in ``num_classes`` logits."""

    def __init__(self, spatial_dims: int, num_classes: int, features: int = 8, levels: int = 4) -> None:
        super().__init__()
        chans = level_channels(features, levels)
        self.up = nn.ModuleList([get_conv_layer(spatial_dims, chans[i + 1], chans[i], kernel_size=1)
                                 for i in range(levels - 1)])
        self.blocks = nn.ModuleList([ResBlock(spatial_dims, chans[i], _norm(chans[i])) for i in range(levels - 1)])
        self.head = nn.Sequential(nn.GroupNorm(_norm(features)[1]["num_groups"], features), nn.ReLU(),
                                  get_conv_layer(spatial_dims, features, num_classes, kernel_size=1, bias=True))
        self.mode = _INTERP[spatial_dims]

    def forward(self, feats: list[Tensor]) -> Tensor:
        h = feats[-1]
        for i in reversed(range(len(self.up))):
            skip = feats[i]
            # Interpolating to the skip's size (not a fixed x2) accepts any input size.
            h = F.interpolate(self.up[i](h), size=skip.shape[2:], mode=self.mode, align_corners=False)
            h = self.blocks[i](h + skip)
        return self.head(h)


class ADInferenceNetwork(nn.Module):
    """Encoder + unlabelled-data decoder ``D(x^u; theta)``: the network A&D predicts with."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, features: int = 8,
                 levels: int = 4) -> None:
        super().__init__()
        self.encoder = DiffusionEncoder(spatial_dims, in_channels, num_classes, features, levels)
        self.decoder = ADDecoder(spatial_dims, num_classes, features, levels)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))


class ADNetwork(nn.Module):
    """All of A&D: ``core`` (encoder + ``theta`` decoder, the inference network) plus the labelled-flow
    decoders ``xi`` (denoising) and ``psi`` (difficulty-aware). ``xi`` is omitted with ``diffusion=False``."""

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, features: int = 8, levels: int = 4,
                 diffusion: bool = True, shared_init: bool = True) -> None:
        super().__init__()
        self.core = ADInferenceNetwork(spatial_dims, in_channels, num_classes, features, levels)
        self.xi = ADDecoder(spatial_dims, num_classes, features, levels) if diffusion else None
        self.psi = ADDecoder(spatial_dims, num_classes, features, levels)
        # Start theta where the labelled decoders start: the EMA transfer then blends like with like.
        self.core.decoder.load_state_dict(self.psi.state_dict())
        if shared_init and self.xi is not None:
            # theta tracks the parameter mean of xi and psi. Two decoders from different random
            # initialisations sit in unrelated basins (their channels are permuted relative to each other),
            # so their mean is not a working decoder; from one shared start it is.
            self.xi.load_state_dict(self.psi.state_dict())

    @property
    def encoder(self) -> DiffusionEncoder:
        return self.core.encoder

    @property
    def theta(self) -> ADDecoder:
        return self.core.decoder

    def denoise(self, x: Tensor, noisy_label: Tensor, t: Tensor) -> Tensor:
        """Denoising flow: logits of the clean label ``y_0`` from ``(x, y_t, t)``."""
        assert self.xi is not None, "the denoising decoder is disabled (diffusion=False)"
        return self.xi(self.encoder(x, noisy_label, t))

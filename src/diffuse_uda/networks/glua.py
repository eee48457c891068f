"""GLUA's segmentation subnet: a SegResNet whose target features are reweighted by a local domain-gap mask.

The pixel-wise feature discriminator D1 looks at the bottleneck features ``f`` and gives a one-channel
logit map; ``m = |D1(f)|`` is large where D1 tells the domains apart easily (large local domain gap),
and ``f_hat = f + f * tanh(m)`` (mask broadcast over channels) emphasises those features before the
decoder. D1 is therefore part of the inference network, while it is *trained* as a discriminator
(by the method's own optimizer, never by the segmentation loss).

The output-space discriminator D2 (:class:`OutputDiscriminator`) is only used during training.
"""

from __future__ import annotations

import torch
from torch import nn

from diffuse_uda.networks.style_transfer import fitting_downsamplings


class PixelDiscriminator(nn.Module):
    """D1: stride-1 convs, so one domain logit per feature pixel (the local mask keeps the feature size)."""

    def __init__(self, in_channels: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class OutputDiscriminator(nn.Module):
    """D2: fully convolutional classifier on softmax predictions (stride-2 4x4 convs, widths doubling)."""

    def __init__(self, num_classes: int, base: int = 32, n_down: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch_in, ch = num_classes, base
        for _ in range(n_down):
            layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            ch_in, ch = ch, 2 * ch
        layers.append(nn.Conv2d(ch_in, 1, 3, 1, 1))
        self.net = nn.Sequential(*layers)

    @classmethod
    def for_image_size(cls, num_classes: int, size: int, base: int = 32, max_down: int = 4) -> OutputDiscriminator:
        """As deep as ``max_down`` allows without shrinking the map below 2 pixels."""
        return cls(num_classes, base, fitting_downsamplings(size, max_down))

    def forward(self, probabilities: torch.Tensor) -> torch.Tensor:
        return self.net(probabilities)


def bottleneck_channels(segmenter: nn.Module) -> int:
    """Channels of a MONAI SegResNet's deepest features: init_filters * 2^(levels - 1)."""
    return int(segmenter.init_filters) * 2 ** (len(segmenter.blocks_down) - 1)


class LocalAlignmentSegmenter(nn.Module):
    """SegResNet (``encode``/``decode``) + D1 whose mask reweights the bottleneck features.

    ``forward(x)`` is the inference path for target images (reweighting on); the training code uses
    :meth:`encode`, :meth:`reweight` and :meth:`decode` to reweight only the target half of a batch.
    """

    def __init__(self, segmenter: nn.Module, d1_channels: int = 64) -> None:
        super().__init__()
        self.segmenter = segmenter
        self.d1 = PixelDiscriminator(bottleneck_channels(segmenter), d1_channels)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Bottleneck features and the skip list, already in the order ``decode`` expects."""
        features, skips = self.segmenter.encode(x)
        skips.reverse()
        return features, skips

    def decode(self, features: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        return self.segmenter.decode(features, skips)

    @staticmethod
    def reweight(features: torch.Tensor, d1_logits: torch.Tensor) -> torch.Tensor:
        """f + f * tanh(|D1(f)|); tanh bounds the mask to [0, 1) so early, wild D1 outputs cannot blow up f."""
        return features + features * torch.tanh(d1_logits.abs())

    def forward(self, x: torch.Tensor, reweight: bool = True) -> torch.Tensor:
        features, skips = self.encode(x)
        if reweight:
            features = self.reweight(features, self.d1(features))
        return self.decode(features, skips)

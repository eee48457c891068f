"""FDA: train on source images restyled toward random target images (fixed beta), plus the source."""

from __future__ import annotations

import torch

from diffuse_uda.config import StrictModel
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import register
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import dice_ce_loss
from diffuse_uda.transforms.fourier import FourierStyleTransfer


class FDAOptions(StrictModel):
    # Half-width of the swapped low-frequency box as a fraction of half the image size (1 = whole spectrum).
    beta: float = 0.1
    include_source: bool = True


@register
class FDA(Method):
    name = "fda"
    summary = "Fourier domain adaptation: source restyled to target (fixed beta) + source."
    Options = FDAOptions
    uses_target_images = True

    def build(self, ctx: TrainContext) -> None:
        super().build(ctx)
        self.restyle = FourierStyleTransfer(mode="fixed", beta=self.options.beta)

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None and batch.target_image is not None
        restyled, _ = self.restyle(batch.source_image, batch.target_image, ctx.generator)
        images = torch.cat([batch.source_image, restyled]) if self.options.include_source else restyled
        labels = torch.cat([batch.source_label] * 2) if self.options.include_source else batch.source_label
        return {"loss": dice_ce_loss(self.student(images), labels)}

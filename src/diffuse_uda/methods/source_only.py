"""Source-only training: the lower bound every UDA method must beat."""

from __future__ import annotations

import torch

from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import register
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import dice_ce_loss


@register
class SourceOnly(Method):
    name = "source-only"
    summary = "Supervised on labelled source data only (lower bound)."

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None
        loss = dice_ce_loss(self.student(batch.source_image), batch.source_label)
        return {"loss": loss}

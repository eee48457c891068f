"""Pseudo-label self-training: a source-only phase, then the model labels the target (confident voxels
only) and training continues on source + target pseudo-labels."""

from __future__ import annotations

from typing import Any

import torch

from diffuse_uda.config import StrictModel
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import register
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import IGNORE_INDEX, dice_ce_loss


class PseudoLabelOptions(StrictModel):
    warmup_fraction: float = 0.5  # fraction of iterations trained on source only
    confidence_threshold: float = 0.9
    pseudo_weight: float = 1.0
    batch_size: int = 32  # inference batch when labelling the target


@torch.no_grad()
def label_target(network: torch.nn.Module, images: torch.Tensor, ctx: TrainContext, threshold: float,
                 batch_size: int = 32) -> torch.Tensor:
    """Argmax pseudo-labels; voxels below ``threshold`` confidence become IGNORE_INDEX."""
    out = []
    with ctx.eval_mode(network), ctx.autocast():
        for i in range(0, images.shape[0], batch_size):
            probs = network(images[i:i + batch_size]).float().softmax(1)
            conf, lab = probs.max(1)
            out.append(lab.masked_fill(conf < threshold, IGNORE_INDEX))
    return torch.cat(out)


@register
class PseudoLabel(Method):
    name = "pseudo-label"
    summary = "Self-training: source-only warm-up, then source + confident target pseudo-labels."
    Options = PseudoLabelOptions
    uses_target_images = True

    def build(self, ctx: TrainContext) -> None:
        super().build(ctx)
        self.pseudo: torch.Tensor | None = None
        self.switch_step = int(self.options.warmup_fraction * ctx.total_steps)

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None and batch.target_image is not None
        if ctx.step >= self.switch_step and self.pseudo is None:
            assert ctx.data.target_images is not None
            self.pseudo = label_target(self.student, ctx.data.target_images, ctx,
                                       self.options.confidence_threshold, self.options.batch_size)
        if self.pseudo is None:
            return {"loss": dice_ce_loss(self.student(batch.source_image), batch.source_label)}
        n = batch.source_image.shape[0]
        logits = self.student(torch.cat([batch.source_image, batch.target_image]))
        sup = dice_ce_loss(logits[:n], batch.source_label)
        pl = dice_ce_loss(logits[n:], self.pseudo[batch.target_index])
        return {"loss": sup + self.options.pseudo_weight * pl, "supervised": sup, "pseudo": pl}

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "pseudo": self.pseudo}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.pseudo = state.get("pseudo")

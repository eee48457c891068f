"""Source-only training with contrast-robust intensity augmentation (single-source domain generalisation).

No target image is read. Each source batch is doubled with a copy restyled by a target-agnostic
appearance transfer and both halves get the source-only Dice-CE loss. The default restyling draws,
per sample, either a random Bezier intensity curve (Models Genesis; Su et al., AAAI 2023) or a
random shallow convolutional network (GIN; Ouyang et al., IEEE TMI 2022), each followed by a
random global scale and shift (Su et al.'s global location-scale augmentation). Unlike the
Fourier amplitude swap, these maps can invert a contrast (T1 -> T2, CT -> MR), so this is the
baseline to try first on such a shift, before any target data is involved.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import Field, model_validator

from diffuse_uda.config import StrictModel
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import register
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import dice_ce_loss
from diffuse_uda.transforms.appearance import AppearanceTransfer, build_appearance_transfer

# The default restyling: per sample a Bezier curve or a GIN network, then a random scale and shift.
DG_RANDOM_CHOICE: dict[str, Any] = {
    "members": ["bezier", "gin"],
    "member_options": {"bezier": {"location_scale": True}, "gin": {"location_scale": True}},
}


class SourceOnlyDGOptions(StrictModel):
    appearance: str = Field("random-choice", description="A target-agnostic appearance transfer, by name.")
    appearance_options: dict[str, Any] | None = Field(
        None, description="Its options; None = its defaults (for random-choice: bezier or gin with location-scale).")

    @model_validator(mode="after")
    def _target_agnostic(self) -> SourceOnlyDGOptions:
        if dg_appearance(self).uses_reference:
            raise ValueError(f"source-only-dg reads no target images, but appearance transfer {self.appearance!r} "
                             "needs a reference image; choose a target-agnostic one (e.g. bezier, gin)")
        return self


def dg_appearance(o: SourceOnlyDGOptions) -> AppearanceTransfer:
    options = o.appearance_options
    if options is None and o.appearance == "random-choice":
        options = DG_RANDOM_CHOICE
    return build_appearance_transfer(o.appearance, options)


@register
class SourceOnlyDG(Method):
    name = "source-only-dg"
    summary = "Source only + random contrast-inverting intensity remapping (Bezier / GIN); no target images."
    Options = SourceOnlyDGOptions
    uses_target_images = False

    def build(self, ctx: TrainContext) -> None:
        super().build(ctx)
        self.restyle = dg_appearance(self.options)

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None
        x, y = batch.source_image, batch.source_label
        restyled, strength = self.restyle(x, None, ctx.generator)
        loss = dice_ce_loss(self.student(torch.cat([x, restyled])), torch.cat([y, y]))
        return {"loss": loss, "appearance_strength": strength.mean().detach()}

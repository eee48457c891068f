"""FDA: train on source images restyled toward random target images (fixed beta), plus the source.

The restyling is the FFT amplitude swap by default; ``appearance`` picks another member of
:mod:`diffuse_uda.transforms.appearance` (the Fourier members take ``beta`` from here, fixed).
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


class FDAOptions(StrictModel):
    # Half-width of the swapped low-frequency box as a fraction of half the image size (1 = whole spectrum).
    beta: float = 0.1
    include_source: bool = True
    appearance: str = Field("fourier", description="Appearance transfer restyling the source, by name.")
    appearance_options: dict[str, Any] = Field(default_factory=dict, description="Options of that member.")

    @model_validator(mode="after")
    def _appearance_is_valid(self) -> FDAOptions:
        fda_appearance(self)
        return self


def fda_appearance(o: FDAOptions) -> AppearanceTransfer:
    """The restyler; ``"fourier"`` is FDA with the fixed ``beta``."""
    return build_appearance_transfer(o.appearance, o.appearance_options,
                                     fourier_defaults={"mode": "fixed", "beta": o.beta})


@register
class FDA(Method):
    name = "fda"
    summary = "Fourier domain adaptation: source restyled to target (fixed beta) + source."
    Options = FDAOptions
    uses_target_images = True

    def build(self, ctx: TrainContext) -> None:
        super().build(ctx)
        self.restyle = fda_appearance(self.options)

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None and batch.target_image is not None
        restyled, _ = self.restyle(batch.source_image, batch.target_image, ctx.generator)
        images = torch.cat([batch.source_image, restyled]) if self.options.include_source else restyled
        labels = torch.cat([batch.source_label] * 2) if self.options.include_source else batch.source_label
        return {"loss": dice_ce_loss(self.student(images), labels)}

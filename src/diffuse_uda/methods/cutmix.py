"""CutMix mean teacher: the student sees CutMix-ed target images, the teacher's predictions are mixed alike."""

from __future__ import annotations

import torch
from pydantic import Field

from diffuse_uda.methods.registry import register
from diffuse_uda.methods.teacher_student import TeacherStudentMethod, TeacherStudentOptions
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import dice_ce_loss, softmax_mse
from diffuse_uda.transforms.cutmix import cutmix, random_box_mask


class CutMixOptions(TeacherStudentOptions):
    box_proportion: tuple[float, float] = Field((0.25, 0.5), description="Box side as a fraction of the image.")


@register
class CutMixMeanTeacher(TeacherStudentMethod):
    name = "cutmix"
    summary = "Mean teacher with CutMix structure perturbation on target images."
    Options = CutMixOptions

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None and batch.target_image is not None
        n = batch.source_image.shape[0]
        x_t = batch.target_image
        box = random_box_mask(x_t.shape[0], x_t.shape[2:], tuple(self.options.box_proportion), ctx.generator,
                              x_t.device)
        mixed = cutmix(x_t, x_t.roll(1, 0), box)
        logits = self.student(torch.cat([batch.source_image, mixed]))
        sup = dice_ce_loss(logits[:n], batch.source_label)
        with torch.no_grad():
            t = self.teacher(x_t).float()
            target = cutmix(t, t.roll(1, 0), box)
        cons = softmax_mse(logits[n:], target)
        return {"loss": sup + self.consistency_weight(ctx) * cons, "supervised": sup, "consistency": cons}

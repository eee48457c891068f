"""Mean teacher: consistency between the student on a perturbed target image and the EMA teacher."""

from __future__ import annotations

import torch

from diffuse_uda.methods.registry import register
from diffuse_uda.methods.teacher_student import TeacherStudentMethod, TeacherStudentOptions
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import dice_ce_loss, softmax_mse


class MeanTeacherOptions(TeacherStudentOptions):
    noise_std: float = 0.1  # Gaussian input noise on the student's view


@register
class MeanTeacher(TeacherStudentMethod):
    name = "mean-teacher"
    summary = "Mean teacher: EMA teacher, consistency on noisy target images."
    Options = MeanTeacherOptions

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None and batch.target_image is not None
        n = batch.source_image.shape[0]
        x_t = batch.target_image
        noise = torch.randn(x_t.shape, generator=ctx.generator, device=x_t.device) * self.options.noise_std
        logits = self.student(torch.cat([batch.source_image, x_t + noise]))
        sup = dice_ce_loss(logits[:n], batch.source_label)
        with torch.no_grad():
            teacher = self.teacher(x_t)
        cons = softmax_mse(logits[n:], teacher)
        return {"loss": sup + self.consistency_weight(ctx) * cons, "supervised": sup, "consistency": cons}

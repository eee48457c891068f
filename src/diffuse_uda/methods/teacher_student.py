"""Shared machinery of the mean-teacher family: an EMA teacher, a ramped consistency weight."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from torch import nn

from diffuse_uda.config import StrictModel
from diffuse_uda.methods.base import Method
from diffuse_uda.training.context import TrainContext
from diffuse_uda.training.ema import make_ema_copy, update_ema
from diffuse_uda.training.losses import sigmoid_rampup


class TeacherStudentOptions(StrictModel):
    ema_decay: float | None = Field(None, description="EMA decay of the teacher; None = training.ema_decay.")
    consistency_weight: float = 1.0
    # Fraction of training over which the consistency weight ramps up (sigmoid ramp-up).
    rampup_fraction: float = 0.4
    infer_with: str = Field("teacher", pattern="^(teacher|student)$")


class TeacherStudentMethod(Method):
    """Base for methods with an EMA teacher. Subclasses implement ``training_step``."""

    Options = TeacherStudentOptions
    uses_target_images = True

    def build(self, ctx: TrainContext) -> None:
        super().build(ctx)
        assert self.student is not None
        self.teacher = make_ema_copy(self.student)

    def consistency_weight(self, ctx: TrainContext) -> float:
        ramp = int(self.options.rampup_fraction * ctx.total_steps)
        return self.options.consistency_weight * sigmoid_rampup(ctx.step, ramp)

    def after_optimizer_step(self, ctx: TrainContext) -> None:
        decay = self.options.ema_decay if self.options.ema_decay is not None else ctx.config.training.ema_decay
        assert self.student is not None
        update_ema(self.teacher, self.student, decay, ctx.step)

    def inference_network(self) -> nn.Module:
        return self.teacher if self.options.infer_with == "teacher" else super().inference_network()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.teacher.load_state_dict(state["teacher"])

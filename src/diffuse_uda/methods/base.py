"""The Method interface: a method turns batches into losses; the Trainer owns everything else.

A method never opens files. It receives labelled source batches (and, for UDA methods,
unlabelled target batches) from the trainer, returns a dict of losses whose ``"loss"`` entry is
optimised, and may keep extra networks (an EMA teacher) and per-epoch state (prediction ensembles).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import ValidationError
from torch import nn

from diffuse_uda.config import StrictModel
from diffuse_uda.errors import ConfigError
from diffuse_uda.training.context import Batch, TrainContext

if TYPE_CHECKING:
    from diffuse_uda.data.task import Task


class NoOptions(StrictModel):
    """Methods without options."""


@dataclass
class MethodInfo:
    name: str
    summary: str
    uses_target_images: bool
    uses_target_labels: bool


class Method(ABC):
    """Base class. Subclasses set ``name``/``summary``, optionally an ``Options`` model, and override
    :meth:`training_step` (and the hooks they need)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type[StrictModel]] = NoOptions
    uses_target_images: ClassVar[bool] = False
    # Only the oracle sets this; it is reported as an upper bound, never as a method.
    uses_target_labels: ClassVar[bool] = False

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        try:
            self.options = self.Options.model_validate(options or {})
        except ValidationError as exc:
            raise ConfigError(f"invalid options for method {self.name!r}: {exc}") from exc
        self.student: nn.Module | None = None
        # Step at which the trainer's optimiser starts its learning-rate schedule: a method with an
        # earlier phase of its own (GLUA's style-transfer stage) starts the segmenter's decay after it.
        self.schedule_start_step = 0

    @classmethod
    def task_defaults(cls, options: StrictModel, task: Task) -> dict[str, Any]:
        """Options left unset (None) whose default depends on the task, resolved for ``task``. The run request
        records the resolved values (:func:`pipeline.train.resolve_task_defaults`), so a run made under another
        default is never taken for this one."""
        return {}

    def extra_steps(self, iterations: int) -> int:
        """Steps this method runs before the shared budget of ``iterations`` segmenter updates (the trainer
        runs ``iterations + extra_steps``): a stage that trains only the method's own networks, such as
        GLUA's style transfer, then does not take updates from the segmenter."""
        return 0

    # ----------------------------------------------------------------- hooks
    def build(self, ctx: TrainContext) -> None:
        """Create the networks (called once, before the optimizer is made)."""
        self.student = ctx.new_segmenter()

    def trainable_parameters(self) -> list[nn.Parameter]:
        assert self.student is not None
        return list(self.student.parameters())

    @abstractmethod
    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """Losses for one batch; ``"loss"`` is optimised, the rest are logged."""

    def after_optimizer_step(self, ctx: TrainContext) -> None:
        """E.g. EMA teacher update."""

    def on_epoch_end(self, ctx: TrainContext, epoch: int) -> None:
        """E.g. refresh pseudo-labels or accumulate a prediction ensemble."""

    def inference_network(self) -> nn.Module:
        """The network used by ``predict`` (student by default; mean-teacher methods use the teacher)."""
        assert self.student is not None
        return self.student

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        assert self.student is not None
        return {"student": self.student.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.student is not None
        self.student.load_state_dict(state["student"])

    def extra_outputs(self) -> dict[str, Any]:
        """Things the trainer saves next to the model bundle (e.g. ensembled target predictions)."""
        return {}

    @classmethod
    def info(cls) -> MethodInfo:
        return MethodInfo(cls.name, cls.summary, cls.uses_target_images, cls.uses_target_labels)

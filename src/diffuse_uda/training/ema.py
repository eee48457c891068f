"""Exponential moving average of a network's weights (the mean teacher)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema_copy(network: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(network)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def update_ema(teacher: nn.Module, student: nn.Module, decay: float, step: int | None = None) -> None:
    """theta' <- decay * theta' + (1 - decay) * theta.

    With ``step`` given, the decay is capped at ``1 - 1/(step + 1)`` so the teacher is not stuck at
    its random initialisation early on (the usual mean-teacher warm-up)."""
    if step is not None:
        decay = min(decay, 1.0 - 1.0 / (step + 1))
    t_params = list(teacher.parameters())
    s_params = list(student.parameters())
    torch._foreach_lerp_(t_params, s_params, 1.0 - decay)
    for tb, sb in zip(teacher.buffers(), student.buffers(), strict=True):
        tb.copy_(sb)

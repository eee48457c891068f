"""Gradient checkpointing of chosen sub-modules, for networks (MONAI's) that have no such option.

A checkpointed module keeps only its inputs during a training forward pass and recomputes its
activations in the backward pass (``torch.utils.checkpoint``, non-reentrant): much less activation
memory for about one more forward pass of compute, with the same outputs and gradients. Only the
module's ``forward`` is rebound, so parameter names, state dicts and bundles are unchanged; in eval
mode or without gradients the module runs as usual. Residual blocks are the right grain: each holds
several feature maps internally but passes on one.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["checkpoint_modules"]


def _checkpointed_forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = type(self).forward
    if self.training and torch.is_grad_enabled():
        return checkpoint(forward, self, *args, use_reentrant=False, **kwargs)
    return forward(self, *args, **kwargs)


def checkpoint_modules(modules: Iterable[nn.Module]) -> int:
    """Checkpoint each of ``modules``; returns how many. (A bound method on the instance, so
    ``copy.deepcopy``, e.g. an EMA copy, rebinds it to the copy.)"""
    count = 0
    for module in modules:
        module.forward = types.MethodType(_checkpointed_forward, module)  # type: ignore[method-assign]
        count += 1
    return count

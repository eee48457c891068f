"""Deterministic random draws shared by the transforms.

Every draw goes through the caller's ``torch.Generator`` (on whatever device that generator lives)
and is then moved to the target device with a non-blocking copy, so results are reproducible for a
given generator and never force a host synchronisation on the compute device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    # A generator can only feed tensors on its own device; without one, draw directly on the target.
    return generator.device if generator is not None else device


def rand(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str | None
) -> Tensor:
    """U[0, 1) float32 samples of ``shape`` drawn with ``generator``, placed on ``device``."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    out = torch.rand(tuple(shape), generator=generator, device=_draw_device(generator, device))
    return out.to(device, non_blocking=True)


def randn(
    shape: Sequence[int], generator: torch.Generator | None, device: torch.device | str | None
) -> Tensor:
    """N(0, 1) float32 samples of ``shape`` drawn with ``generator``, placed on ``device``."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    out = torch.randn(tuple(shape), generator=generator, device=_draw_device(generator, device))
    return out.to(device, non_blocking=True)


def uniform(
    shape: Sequence[int],
    low: float,
    high: float,
    generator: torch.Generator | None,
    device: torch.device | str | None,
) -> Tensor:
    """U[low, high) float32 samples of ``shape`` drawn with ``generator``, placed on ``device``."""
    return low + (high - low) * rand(shape, generator, device)

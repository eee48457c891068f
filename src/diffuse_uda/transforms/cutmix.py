"""Batched CutMix: paste a random axis-aligned box of one batch into another.

Boxes are built with broadcast comparisons of coordinate ranges, so one call produces a different box
per sample without a Python loop over the batch and without host synchronisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from diffuse_uda.transforms import _random

__all__ = ["cutmix", "random_box_mask"]


def random_box_mask(
    batch: int,
    spatial_shape: Sequence[int],
    proportion_range: tuple[float, float] = (0.25, 0.5),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random per-sample box masks of shape (B, 1, *spatial_shape), float with values in {0, 1}.

    ``proportion`` (one draw per sample from ``U(proportion_range)``) is the *side-length* fraction
    applied along every axis: the box spans ``round(proportion * size)`` voxels (at least 1) on each
    axis, so its volume fraction is about ``proportion ** spatial_dims``. The box lies fully inside the
    image at a uniformly random position.
    """
    lo, hi = proportion_range
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"proportion_range must satisfy 0 <= low <= high <= 1, got {proportion_range}")
    spatial = tuple(int(s) for s in spatial_shape)
    d = len(spatial)
    device = torch.device(device) if device is not None else torch.device("cpu")
    # One draw for proportion and per-axis positions, so the sequence is fixed for a given generator.
    u = _random.rand((batch, 1 + d), generator, device)
    proportion = lo + (hi - lo) * u[:, :1]  # (B, 1)
    sizes = torch.tensor(spatial, device=device, dtype=torch.float32)  # (d,)
    side = (proportion * sizes).round().clamp(min=1.0).minimum(sizes)  # (B, d)
    # Start uniform over the valid integer positions 0..size-side.
    start = (u[:, 1:] * (sizes - side + 1.0)).floor().minimum(sizes - side)  # (B, d)
    mask = torch.ones((batch, 1) + (1,) * d, device=device, dtype=torch.bool)
    for axis, n in enumerate(spatial):
        view = [batch, 1] + [1] * d
        view[2 + axis] = n
        coord = torch.arange(n, device=device, dtype=torch.float32).view([1, 1] + view[2:])
        s = start[:, axis].view(batch, *([1] * (d + 1)))
        e = s + side[:, axis].view(batch, *([1] * (d + 1)))
        mask = mask & (coord >= s) & (coord < e)
    return mask.float()


def cutmix(a: Tensor, b: Tensor, box: Tensor) -> Tensor:
    """Take ``b`` inside ``box`` and ``a`` elsewhere: ``a * (1 - box) + b * box``.

    ``box`` is (B, 1, *spatial) and broadcasts over the channel dim, so images, soft predictions and
    one-hot labels all work. Integer/bool tensors (label maps) are selected with ``where`` to keep their
    dtype.
    """
    box = box.to(a.device)
    if a.is_floating_point():
        return a * (1.0 - box.to(a.dtype)) + b.to(a.dtype) * box.to(a.dtype)
    return torch.where(box > 0.5, b.to(a.dtype), a)

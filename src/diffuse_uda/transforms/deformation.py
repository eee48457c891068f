"""Batched random affine + elastic deformation of an image and its label map ("Algorithm 1").

One sampling grid per sample is built from

1. an affine map: rotation (2D: an angle; 3D: a random axis and angle, Rodrigues' formula), a scale
   per axis and a shift, applied in *voxel-proportional* coordinates so that rotations stay rigid on
   non-cubic images, turned into a grid equal to ``F.affine_grid(align_corners=False)``;
2. a smooth elastic displacement: coarse Gaussian noise (``field_size`` nodes per axis plus a margin),
   smoothed ``smooth_passes`` times with a ``smooth_window`` box filter in valid mode (which crops the
   margin back to ``field_size ** d`` nodes), rescaled, then upsampled (bi/trilinear) to the image size.

The same grid resamples the image (bilinear) and the mask (one-hot bilinear + argmax when
``num_classes`` is given, nearest otherwise), so they move together. Everything runs batched on the
input's device with no host synchronisation; all randomness comes from the caller's generator.

Units:

* ``rotation_degrees``: maximum absolute rotation angle; angle ~ U(-r, r).
* ``scale_range``: per-axis grid scale ~ U(range); values > 1 sample a larger field of view (the
  content shrinks), values < 1 zoom in.
* ``shift_fraction``: maximum shift as a fraction of the image extent along each axis
  (shift ~ U(-f, f) * extent).
* ``alpha``: standard deviation of the smoothed elastic displacement at the coarse nodes, in
  normalised ``[-1, 1]`` grid units (1.0 = half the image extent). The raw N(0, 1) noise is rescaled
  by the known attenuation of the box smoothing, so ``alpha`` keeps its meaning whatever
  ``smooth_passes``/``smooth_window`` are. Example: 0.03 on a 128-voxel axis is about 1.9 voxels.

Out-of-image samples use ``padding_mode="border"`` for both image and mask: intensity-normalised
medical images rarely have a zero background (z-scored MRI backgrounds are negative), so zero padding
would paint artificial edges, and using the same padding for the mask keeps the two consistent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from diffuse_uda.transforms import _random

__all__ = ["DeformationParams", "RandomDeformation"]

_INTERP_MODE = {2: "bilinear", 3: "trilinear"}


@dataclass
class DeformationParams:
    """Ranges of the random deformation (see the module docstring for units)."""

    rotation_degrees: float = 5.0
    scale_range: tuple[float, float] = (0.95, 1.05)
    shift_fraction: float = 0.05
    field_size: int = 10
    alpha: float = 0.03
    smooth_passes: int = 3
    smooth_window: int = 3

    def __post_init__(self) -> None:
        if self.rotation_degrees < 0 or self.shift_fraction < 0 or self.alpha < 0:
            raise ValueError("rotation_degrees, shift_fraction and alpha must be non-negative")
        if not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"scale_range must satisfy 0 < low <= high, got {self.scale_range}")
        if self.field_size < 2:
            raise ValueError(f"field_size must be >= 2, got {self.field_size}")
        if self.smooth_passes < 0 or self.smooth_window < 1:
            raise ValueError("smooth_passes must be >= 0 and smooth_window >= 1")


def _box_smoothing_gain(window: int, passes: int) -> float:
    """Std gain (per axis) of ``passes`` box filters of ``window`` on white noise: sqrt(sum w_i^2)."""
    kernel = [1.0]
    for _ in range(passes):
        out = [0.0] * (len(kernel) + window - 1)
        for i, k in enumerate(kernel):
            for j in range(window):
                out[i + j] += k / window
        kernel = out
    return math.sqrt(sum(k * k for k in kernel))


def _box_filter_valid(x: Tensor, window: int) -> Tensor:
    """Valid-mode box mean over every spatial axis of (B, C, *spatial), as separable shifted sums.

    Equivalent to ``avg_poolNd(x, window, stride=1)`` without forking on the dimension, and much faster
    than ``avg_pool3d`` on CPU for these small coarse fields.
    """
    for axis in range(2, x.ndim):
        n = x.shape[axis] - window + 1
        acc = x.narrow(axis, 0, n)
        for i in range(1, window):
            acc = acc + x.narrow(axis, i, n)
        x = acc / window
    return x


def _rotation_matrices(angles: Tensor, axes: Tensor | None, d: int) -> Tensor:
    """(B, d, d) rotations ``I + sin(t) K + (1 - cos(t)) K^2`` (Rodrigues; also exact in 2D)."""
    b = angles.shape[0]
    if d == 2:
        # The 2D generator [[0, -1], [1, 0]] satisfies K^2 = -I, so the same formula gives cos/sin.
        # Built from the angles' own tensors (no host-to-device copy of a constant on CUDA).
        one, zero = torch.ones_like(angles), torch.zeros_like(angles)
        k = torch.stack([torch.stack([zero, -one], -1), torch.stack([one, zero], -1)], -2)
    else:
        assert axes is not None
        x, y, z = axes.unbind(-1)
        zero = torch.zeros_like(x)
        k = torch.stack(
            [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)],
            dim=-2,
        )
    eye = torch.eye(d, device=angles.device, dtype=angles.dtype).expand(b, d, d)
    s = angles.sin().view(b, 1, 1)
    c = angles.cos().view(b, 1, 1)
    return eye + s * k + (1.0 - c) * (k @ k)


def _affine_grid(theta: Tensor, spatial: tuple[int, ...]) -> Tensor:
    """``F.affine_grid(theta, (B, 1, *spatial), align_corners=False)`` as a sum of broadcast 1-D terms.

    Same result, but builds the grid from d rank-1 contributions instead of a (B, N, d+1) x (d+1, d)
    matmul over a materialised base grid, which is an order of magnitude faster on CPU for volumes.
    """
    b, d = theta.shape[0], len(spatial)
    grid = theta[:, :, d].view(b, *([1] * d), d)
    for j in range(d):
        axis = d - 1 - j  # grid coordinate j (x, y, z) runs along spatial axis d-1-j
        n = spatial[axis]
        # Voxel centres in normalised coordinates for align_corners=False.
        coord = (torch.arange(n, device=theta.device, dtype=theta.dtype) * 2.0 + 1.0) / n - 1.0
        shape = [1] * d
        shape[axis] = n
        grid = grid + coord.view(1, *shape, 1) * theta[:, :, j].view(b, *([1] * d), d)
    return grid


def _first_argmax(x: Tensor) -> Tensor:
    """``x.argmax(dim=1, keepdim=True)`` (first index on ties) as K-1 elementwise steps.

    For the few classes of a label map this is much faster than the strided reduction of argmax.
    """
    best = x[:, :1]
    idx = torch.zeros_like(best, dtype=torch.long)
    for k in range(1, x.shape[1]):
        xk = x[:, k : k + 1]
        idx = torch.where(xk > best, k, idx)  # strict '>' keeps the first maximum, like argmax
        best = torch.maximum(best, xk)
    return idx


class RandomDeformation:
    """Random affine + elastic deformation applied jointly to an image and its mask.

    Args:
        params: deformation ranges.
        num_classes: if given, masks are resampled as one-hot channels (bilinear) and re-labelled with
            argmax, which gives smoother boundaries than nearest-neighbour; labels outside
            ``0..num_classes-1`` then become background 0. If ``None``, nearest-neighbour sampling is
            used, which only ever outputs label values already present in the mask.
    """

    def __init__(self, params: DeformationParams | None = None, num_classes: int | None = None) -> None:
        self.params = params if params is not None else DeformationParams()
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes

    def __repr__(self) -> str:
        return f"{type(self).__name__}(params={self.params!r}, num_classes={self.num_classes})"

    # ------------------------------------------------------------------ sampling
    def sample_grid(
        self,
        batch: int,
        spatial_shape: Sequence[int],
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """A (B, *spatial_shape, d) sampling grid in ``grid_sample`` convention (last dim = x, y[, z])."""
        spatial = tuple(int(s) for s in spatial_shape)
        d = len(spatial)
        if d not in (2, 3):
            raise ValueError(f"spatial_shape must have 2 or 3 dims, got {spatial}")
        device = torch.device(device) if device is not None else torch.device("cpu")
        p = self.params
        f = p.field_size

        # Draw order is fixed (affine uniforms, rotation axis, elastic noise) for reproducibility.
        u = _random.rand((batch, 1 + 2 * d), generator, device)
        axes = _random.randn((batch, 3), generator, device) if d == 3 else None
        # The coarse noise is drawn with a margin of the total shrink of the valid-mode smoothing passes
        # ("pad, smooth, crop back" with the padding filled by fresh noise), so the smoothed field is
        # statistically stationary up to its edges and its per-node std is exactly ``alpha``.
        margin = p.smooth_passes * (p.smooth_window - 1)
        noise = _random.randn((batch, d) + (f + margin,) * d, generator, device)

        angles = (2.0 * u[:, 0] - 1.0) * math.radians(p.rotation_degrees)
        if axes is not None:
            axes = axes / axes.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        scales = p.scale_range[0] + (p.scale_range[1] - p.scale_range[0]) * u[:, 1 : 1 + d]
        # Normalised coordinates span 2 units per axis, so a fraction f of the extent is 2f units.
        shifts = (2.0 * u[:, 1 + d :] - 1.0) * (2.0 * p.shift_fraction)

        # Grid coordinates are ordered (x, y[, z]) = reversed spatial dims. Rotate in coordinates
        # proportional to voxels: A = D^-1 R D with D = diag(half extents), so that rotations stay rigid
        # on non-cubic images; the scale is applied in normalised units.
        half = [s / 2.0 for s in spatial[::-1]]
        rot = _rotation_matrices(angles, axes, d)
        # D^-1 R D element by element with Python scalars: no constant tensor copied to the device.
        lin = torch.stack([torch.stack([rot[:, i, j] * (half[j] / half[i]) for j in range(d)], -1)
                           for i in range(d)], -2)
        lin = lin * scales.view(batch, 1, d)
        theta = torch.cat([lin, shifts.view(batch, d, 1)], dim=2)  # (B, d, d+1)
        grid = _affine_grid(theta, spatial)

        if p.alpha > 0:
            grid = grid + self._elastic_field(noise, spatial).movedim(1, -1)
        return grid

    def _elastic_field(self, noise: Tensor, spatial: tuple[int, ...]) -> Tensor:
        """Smooth (B, d, f + margin, ...) white noise to (B, d, f, ...) and upsample to (B, d, *spatial)."""
        p = self.params
        d = len(spatial)
        field = noise
        # Each valid-mode pass shrinks every axis by window - 1, bringing the padded noise back to f^d.
        for _ in range(p.smooth_passes):
            field = _box_filter_valid(field, p.smooth_window)
        gain = _box_smoothing_gain(p.smooth_window, p.smooth_passes) ** d
        field = field * (p.alpha / gain)
        return F.interpolate(field, size=spatial, mode=_INTERP_MODE[d], align_corners=True)

    # ------------------------------------------------------------------ applying
    def apply(
        self, grid: Tensor, image: Tensor | None = None, mask: Tensor | None = None
    ) -> tuple[Tensor | None, Tensor | None]:
        """Resample ``image`` (B, C, *S) and ``mask`` ((B, 1, *S) or (B, *S) labels) with ``grid``."""
        out_image = None
        if image is not None:
            dtype = image.dtype if image.is_floating_point() else torch.float32
            out_image = F.grid_sample(
                image.to(dtype), grid.to(dtype), mode="bilinear", padding_mode="border", align_corners=False
            ).to(image.dtype)
        out_mask = None
        if mask is not None:
            out_mask = self._apply_mask(grid, mask)
        return out_image, out_mask

    def _apply_mask(self, grid: Tensor, mask: Tensor) -> Tensor:
        d = grid.shape[-1]
        channelless = mask.ndim == d + 1
        m = mask.unsqueeze(1) if channelless else mask
        if m.ndim != d + 2 or m.shape[1] != 1:
            raise ValueError(f"mask must be (B, 1, *S) or (B, *S) labels, got shape {tuple(mask.shape)}")
        g = grid.float()
        if self.num_classes is not None:
            # One-hot by per-class comparison (F.one_hot would validate values with a host sync).
            onehot = torch.cat([(m == k) for k in range(self.num_classes)], dim=1).float()
            probs = F.grid_sample(onehot, g, mode="bilinear", padding_mode="border", align_corners=False)
            out = _first_argmax(probs)
        else:
            out = F.grid_sample(m.float(), g, mode="nearest", padding_mode="border", align_corners=False)
        out = out.to(mask.dtype)
        return out.squeeze(1) if channelless else out

    def __call__(
        self,
        image: Tensor | None,
        mask: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor | None, Tensor | None]:
        """Deform ``image`` and ``mask`` with one freshly sampled grid per sample.

        When only a mask is given, a 5-D mask is (B, 1, D, H, W); a 4-D mask is (B, 1, H, W) if its
        second dim is 1 and (B, D, H, W) otherwise; a 3-D mask is (B, H, W).
        """
        if image is not None:
            if image.ndim not in (4, 5):
                raise ValueError(f"image must be (B, C, H, W) or (B, C, D, H, W), got {tuple(image.shape)}")
            ref, spatial = image, tuple(image.shape[2:])
        elif mask is not None:
            ref = mask
            has_channel = mask.ndim == 5 or (mask.ndim == 4 and mask.shape[1] == 1)
            spatial = tuple(mask.shape[2:] if has_channel else mask.shape[1:])
        else:
            return None, None
        grid = self.sample_grid(ref.shape[0], spatial, device=ref.device, generator=generator)
        return self.apply(grid, image, mask)

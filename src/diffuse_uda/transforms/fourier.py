"""Fourier domain adaptation (FDA): give a source image the low-frequency amplitude of a target image.

The low-frequency amplitude spectrum carries "style" (intensity distribution, bias field, contrast)
while the phase carries structure, so swapping the former restyles the source without moving its
anatomy. Everything is batched over (B, C, *spatial) tensors with 2 or 3 spatial dims, runs on the
input's device and never reads tensor values back to the host.

Low-frequency box convention (``beta`` in [0, 1]):

* along every full spectral axis of size ``n`` (all spatial axes except the last), the signed
  integer frequency ``k`` is swapped when ``|k| <= beta * n / 2`` (both the positive frequencies and
  the wrapped-around negative ones, so the box is centred on DC);
* along the last axis, halved by ``rfftn``, frequencies ``0 <= k <= beta * n / 2`` are swapped;
* ``beta == 0`` swaps *nothing* (not even DC), so the source comes back unchanged; any ``beta > 0``
  swaps at least the DC term; ``beta == 1`` swaps the whole spectrum.

The test is evaluated as ``2|k| / n <= beta`` (a correctly rounded division compared with beta),
which makes ``beta == 1`` include the Nyquist bin exactly. A size-1 spatial axis only has ``k = 0``,
which always passes, so a (B, C, 1, H, W) volume gives the same result as the (B, C, H, W) image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from diffuse_uda.transforms import _random

__all__ = [
    "HIST_DISTANCE_MAX",
    "FourierStyleTransfer",
    "adaptive_beta",
    "fda_amplitude_swap",
    "histogram_distance",
    "low_frequency_mask",
]

# Maximum Euclidean distance between two normalised histograms p, q (p, q >= 0, sum = 1):
#   ||p - q||^2 = ||p||^2 + ||q||^2 - 2 p.q.
# For a non-negative vector summing to 1, ||p||^2 = sum p_i^2 <= (sum p_i)^2 = 1, with equality iff
# all the mass sits in one bin; and p.q >= 0, with equality iff the supports are disjoint. Hence
# ||p - q||^2 <= 2, attained by two single-bin histograms in different bins: the maximum is sqrt(2).
HIST_DISTANCE_MAX: float = math.sqrt(2.0)


def _spatial_dims(x: Tensor) -> tuple[int, ...]:
    if x.ndim not in (4, 5):
        raise ValueError(
            f"expected a (B, C, *spatial) tensor with 2 or 3 spatial dims, got shape {tuple(x.shape)}"
        )
    return tuple(range(2, x.ndim))


def _per_sample(value: float | Tensor, ndim: int, device: torch.device) -> Tensor:
    """A float or (B,) tensor as a float32 tensor broadcastable against a (B, C, *spatial) tensor."""
    t = torch.as_tensor(value, dtype=torch.float32).to(device, non_blocking=True)
    if t.ndim > 1:
        raise ValueError(f"expected a scalar or a per-sample (B,) tensor, got shape {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (ndim - 1)))


def _chebyshev_radius(spatial_shape: Sequence[int], device: torch.device) -> Tensor:
    """Normalised low-frequency radius max_i 2|k_i|/n_i over the rfftn spectrum grid of ``spatial_shape``.

    A bin is inside the box of half-width ``beta`` iff its radius is <= beta.
    """
    d = len(spatial_shape)
    radius: Tensor | None = None
    for axis, n in enumerate(spatial_shape):
        # Signed integer frequencies: fftfreq(n) * n for full axes, rfftfreq(n) * n for the halved one.
        k = torch.fft.rfftfreq(n, d=1.0 / n, device=device) if axis == d - 1 else torch.fft.fftfreq(
            n, d=1.0 / n, device=device
        )
        r = (2.0 * k.abs().round()) / n
        view = [1] * d
        view[axis] = r.numel()
        r = r.view(view)
        radius = r if radius is None else torch.maximum(radius, r)
    assert radius is not None
    return radius


def low_frequency_mask(
    spatial_shape: Sequence[int], beta: float | Tensor, device: torch.device | str
) -> Tensor:
    """Boolean mask over the ``rfftn`` spectrum of the centred low-frequency box (see module docstring).

    Returns shape (B or 1, 1, *spectrum_shape); ``beta`` may be a float or a per-sample (B,) tensor.
    """
    device = torch.device(device)
    d = len(spatial_shape)
    radius = _chebyshev_radius(spatial_shape, device)[None, None]
    b = _per_sample(beta, d + 2, device)
    # beta > 0 gate: beta == 0 must leave the source untouched, so not even DC is swapped.
    return (radius <= b) & (b > 0)


def fda_amplitude_swap(
    source: Tensor, target: Tensor, beta: float | Tensor, blend: float | Tensor = 1.0
) -> Tensor:
    """Replace the low-frequency amplitude of ``source`` by that of ``target``, keeping the source phase.

    Args:
        source: (B, C, *spatial) images to restyle.
        target: style images with the same spatial shape (batch/channel dims broadcast).
        beta: half-width of the swapped low-frequency box as a fraction of the spectrum, float or (B,).
        blend: amplitude mixing weight in [0, 1] inside the box (1 = full swap), float or (B,).

    Returns:
        The restyled images, same shape, dtype and device as ``source``.
    """
    dims = _spatial_dims(source)
    spatial = tuple(source.shape[2:])
    if tuple(target.shape[2:]) != spatial:
        raise ValueError(f"source and target spatial shapes differ: {spatial} vs {tuple(target.shape[2:])}")
    # FFTs need float32 (half-precision FFTs are restricted to power-of-two sizes and lose accuracy),
    # so step out of autocast and upcast explicitly.
    with torch.autocast(device_type=source.device.type, enabled=False):
        src_f = torch.fft.rfftn(source.float(), dim=dims)
        tgt_f = torch.fft.rfftn(target.to(device=source.device, dtype=torch.float32), dim=dims)
        src_amp, src_phase = src_f.abs(), src_f.angle()
        tgt_amp = tgt_f.abs()
        mask = low_frequency_mask(spatial, beta, source.device)
        w = _per_sample(blend, source.ndim, source.device) * mask
        amp = src_amp + w * (tgt_amp - src_amp)
        # polar() rebuilds the spectrum from the mixed amplitude and the untouched source phase;
        # the phase of a real signal is Hermitian-consistent, so the inverse is real up to rounding.
        out = torch.fft.irfftn(torch.polar(amp, src_phase), s=spatial, dim=dims)
    return out.to(source.dtype)


def histogram_distance(
    a: Tensor, b: Tensor, bins: int = 64, value_range: tuple[float, float] = (0.0, 1.0)
) -> Tensor:
    """Per-sample Euclidean distance between normalised grey-level histograms of ``a`` and ``b``.

    Each sample's histogram pools all its channels and voxels; values outside ``value_range`` are
    clamped into the end bins. Returns a (B,) float32 tensor in [0, HIST_DISTANCE_MAX].
    """
    return torch.linalg.vector_norm(
        _histogram(a, bins, value_range) - _histogram(b, bins, value_range).to(a.device), dim=1
    )


def _histogram(x: Tensor, bins: int, value_range: tuple[float, float]) -> Tensor:
    """(B, bins) normalised histograms, batched with one scatter_add (no per-sample loop)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise ValueError(f"value_range must be increasing, got {value_range}")
    flat = x.detach().reshape(x.shape[0], -1).float()
    idx = ((flat - lo) * (bins / (hi - lo))).floor().clamp_(0, bins - 1).long()
    counts = torch.zeros(x.shape[0], bins, device=x.device, dtype=torch.float32)
    counts.scatter_add_(1, idx, torch.ones_like(flat))
    return counts / flat.shape[1]


def adaptive_beta(
    source: Tensor,
    target: Tensor,
    generator: torch.Generator | None = None,
    alpha_range: tuple[float, float] = (0.5, 1.5),
    min_beta: float = 0.1,
    max_beta: float = 1.0,
    bins: int = 64,
    value_range: tuple[float, float] = (0.0, 1.0),
) -> Tensor:
    """Per-sample beta that grows with the source/target histogram gap.

    ``beta = clamp(max(min_beta, d / HIST_DISTANCE_MAX * alpha), max=max_beta)`` with ``d`` the
    histogram distance and ``alpha ~ U(alpha_range)`` drawn per sample with ``generator``.
    Returns a (B,) float32 tensor on the source's device.
    """
    d = histogram_distance(source, target, bins=bins, value_range=value_range)
    alpha = _random.uniform((source.shape[0],), alpha_range[0], alpha_range[1], generator, source.device)
    return (d / HIST_DISTANCE_MAX * alpha).clamp_min(min_beta).clamp_max(max_beta)


class FourierStyleTransfer:
    """Callable FDA restyler with a fixed or histogram-adaptive beta.

    ``__call__`` returns ``(restyled, beta_used)`` so callers can log the per-sample beta.
    """

    def __init__(
        self,
        mode: str = "adaptive",
        beta: float = 0.1,
        alpha_range: tuple[float, float] = (0.5, 1.5),
        min_beta: float = 0.1,
        max_beta: float = 1.0,
        bins: int = 64,
        blend: float = 1.0,
        value_range: tuple[float, float] = (0.0, 1.0),
    ) -> None:
        if mode not in ("fixed", "adaptive"):
            raise ValueError(f"mode must be 'fixed' or 'adaptive', got {mode!r}")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1], got {beta}")
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"blend must lie in [0, 1], got {blend}")
        if alpha_range[0] > alpha_range[1]:
            raise ValueError(f"alpha_range must be (low, high), got {alpha_range}")
        self.mode = mode
        self.beta = beta
        self.alpha_range = tuple(alpha_range)
        self.min_beta = min_beta
        self.max_beta = max_beta
        self.bins = bins
        self.blend = blend
        self.value_range = tuple(value_range)

    def __call__(
        self, source: Tensor, target: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Restyle ``source`` towards ``target``; returns (restyled, beta_used of shape (B,))."""
        if self.mode == "fixed":
            beta = torch.full((source.shape[0],), self.beta, dtype=torch.float32, device=source.device)
        else:
            beta = adaptive_beta(
                source,
                target,
                generator=generator,
                alpha_range=self.alpha_range,  # type: ignore[arg-type]
                min_beta=self.min_beta,
                max_beta=self.max_beta,
                bins=self.bins,
                value_range=self.value_range,  # type: ignore[arg-type]
            )
        return fda_amplitude_swap(source, target, beta, blend=self.blend), beta

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(mode={self.mode!r}, beta={self.beta}, alpha_range={self.alpha_range}, "
            f"min_beta={self.min_beta}, max_beta={self.max_beta}, bins={self.bins}, blend={self.blend})"
        )

"""Appearance transfer: one interface, several ways to restyle a batch of images, chosen by name.

A member is called as ``transfer(images, reference, generator) -> (restyled, strength)``:
``images`` is a (B, C, *spatial) batch in [0, 1] with 2 or 3 spatial dims and C = 1 (greyscale)
or 3 (RGB); ``reference`` is a paired batch of style images (ignored by target-agnostic members,
``uses_reference = False``); ``restyled`` has the shape, dtype and device of ``images``;
``strength`` is a (B,) float32 tensor for logging. Every member is batched on the images' device
(no host syncs, no loops over samples) and draws its randomness only from ``generator``.

Members (``available_appearance_transfers()``):

* ``fourier`` - FDA: the low-frequency Fourier amplitude of the image is replaced by the
  reference's, the phase is kept (Yang and Soatto, "FDA: Fourier Domain Adaptation for Semantic
  Segmentation", CVPR 2020), with the Diffuse-UDA paper's histogram-adaptive beta. A wrapper of
  :class:`~diffuse_uda.transforms.fourier.FourierStyleTransfer`, unchanged: same options, same
  random draws, same output. It is the one member whose output is not clamped by default (FFT
  ringing can leave [0, 1] slightly), because clamping would change the existing methods' results.
  Strength: the beta used.
* ``fourier-luminance`` - the same amplitude swap on the BT.601 luminance only: RGB -> YCbCr,
  swap the low-frequency amplitude of Y, keep the image's own Cb/Cr, back to RGB, clamp. A swap
  per RGB channel also moves the colour balance, which on photos can be what marks the object
  (a polyp's redness). On greyscale it is ``fourier`` followed by a clamp.
* ``fourier-bounded`` - per-channel FDA with beta bounded to a small value (``max_beta``, default
  0.05, at most 0.1) and an optional amplitude blend < 1: only the global colour/illumination moves.
* ``bezier`` - a random intensity curve per sample built from a cubic Bezier curve, the non-linear
  intensity transformation of Zhou et al., "Models Genesis", Medical Image Analysis 2021, as used
  for single-source domain generalisation by Su et al., "Rethinking Data Augmentation for
  Single-source Domain Generalization in Medical Image Segmentation", AAAI 2023. With random end
  point heights the family holds increasing, decreasing and non-monotonic curves, so it can invert
  a contrast (T1 -> T2) - which no amplitude swap can.
* ``gin`` - global intensity non-linear augmentation (Ouyang et al., "Causality-inspired
  Single-source Domain Generalization for Medical Image Segmentation", IEEE TMI 2022): a shallow
  convolutional network with random Gaussian weights drawn per sample and per call (kernel sizes
  from {1, 3}, LeakyReLU between layers), blended with the input ``alpha * G(x) + (1 - alpha) * x``
  with ``alpha ~ U(0, 1)``, rescaled to the input's Frobenius norm, then min-max mapped to [0, 1]
  per sample because our networks expect [0, 1].
* ``bezier`` and ``gin`` take ``location_scale=True`` to add a random global scale and shift after
  the remapping (the global location-scale augmentation of Su et al.), then clamp to [0, 1]; and
  ``luminance=True`` to remap only the BT.601 luminance of an RGB image and keep its chroma (on
  greyscale it changes nothing). Per-channel curves or a channel-mixing network can turn a red polyp
  green; a luminance-only remap keeps the colour cue and still inverts brightness and contrast.
* ``histogram-matching`` - each image's histogram mapped onto its paired reference's by CDF
  mapping (per channel, or on the luminance only).
* ``random-choice`` - per sample, one member drawn from a list with given probabilities.
* ``identity`` - no restyling: the images come back unchanged (strength 0). In ASCPlus the two views of an image are
  then one, so what is left of adaptation is the structure term (CutMix consistency on target images) and the
  teacher. It is the control of the family: on photos every restyling was measured to cost target Dice
  (BENCHMARKS.md, sessions 14-30).
* ``pseudo-correlation`` - two independent draws of a target-agnostic member blended by a smooth random
  spatial field, ``b * T1(x) + (1 - b) * T2(x)``: the interventional pseudo-correlation augmentation (IPA) of
  Ouyang et al. (IEEE TMI 2022, the GIN paper). One region of an image gets one intensity map and another
  region a different one, so the appearance of one structure no longer predicts that of its neighbours
  (a correlation a scanner or sequence sets, and a model should not rely on). The field ``b`` is a coarse
  grid of U(0, 1) values (``control_points`` per axis) upsampled bicubically (trilinearly in 3D) and
  clamped to [0, 1]: a smooth stand-in for the paper's B-spline field.

The FFT maths stays in :mod:`diffuse_uda.transforms.fourier`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationError, field_validator, model_validator
from torch import Tensor

from diffuse_uda.config import StrictModel
from diffuse_uda.errors import ConfigError
from diffuse_uda.transforms import _random
from diffuse_uda.transforms.fourier import FourierStyleTransfer

__all__ = [
    "APPEARANCE_TRANSFERS",
    "AppearanceTransfer",
    "BezierCurves",
    "BezierOptions",
    "FourierBounded",
    "FourierBoundedOptions",
    "FourierLuminance",
    "FourierLuminanceOptions",
    "FourierOptions",
    "FourierTransfer",
    "GINOptions",
    "GlobalIntensityNonlinear",
    "HistogramMatching",
    "HistogramMatchingOptions",
    "Identity",
    "IdentityOptions",
    "LocationScaleOptions",
    "PseudoCorrelation",
    "PseudoCorrelationOptions",
    "RandomChoice",
    "RandomChoiceOptions",
    "available_appearance_transfers",
    "bezier_curves",
    "build_appearance_transfer",
    "interp_rows",
    "match_histograms",
    "register_appearance_transfer",
    "rgb_to_ycbcr",
    "smooth_random_field",
    "ycbcr_to_rgb",
]

# ITU-R BT.601 luma weights (the JPEG / full-range YCbCr convention).
_KR, _KG, _KB = 0.299, 0.587, 0.114


# --------------------------------------------------------------------------- helpers
def rgb_to_ycbcr(rgb: Tensor) -> Tensor:
    """(B, 3, *spatial) RGB in [0, 1] -> full-range BT.601 YCbCr, Y in [0, 1], Cb/Cr centred on 0.5."""
    r, g, b = rgb.unbind(1)
    y = _KR * r + _KG * g + _KB * b
    cb = 0.5 + (b - y) / (2.0 * (1.0 - _KB))
    cr = 0.5 + (r - y) / (2.0 * (1.0 - _KR))
    return torch.stack([y, cb, cr], dim=1)


def ycbcr_to_rgb(ycc: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (no clamping)."""
    y, cb, cr = ycc.unbind(1)
    r = y + 2.0 * (1.0 - _KR) * (cr - 0.5)
    b = y + 2.0 * (1.0 - _KB) * (cb - 0.5)
    g = (y - _KR * r - _KB * b) / _KG
    return torch.stack([r, g, b], dim=1)


def _luminance(x: Tensor) -> Tensor:
    """(B, 1, *spatial) luminance: the image itself for greyscale (exactly, so grey paths stay bit-equal)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise ValueError(f"luminance needs 1 or 3 channels, got {x.shape[1]}")
    return rgb_to_ycbcr(x)[:, :1]


def _with_luminance(images: Tensor, new_y: Tensor) -> Tensor:
    """Replace the luminance of ``images`` by ``new_y`` keeping its chroma (Cb, Cr), clamped to [0, 1]."""
    if images.shape[1] == 1:
        return new_y.clamp(0.0, 1.0)
    ycc = rgb_to_ycbcr(images)
    return ycbcr_to_rgb(torch.cat([new_y, ycc[:, 1:]], dim=1)).clamp(0.0, 1.0)


def interp_rows(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Batched piecewise-linear interpolation: row ``i`` of ``x`` (N, M) through the knots
    ``(xp[i], fp[i])`` (N, K), ``xp`` non-decreasing along K. Outside the knots the end values hold."""
    k = xp.shape[1]
    hi = torch.searchsorted(xp.contiguous(), x.contiguous(), right=True).clamp_(1, k - 1)
    lo = hi - 1
    x0, x1 = xp.gather(1, lo), xp.gather(1, hi)
    y0, y1 = fp.gather(1, lo), fp.gather(1, hi)
    # Repeated knots (a flat stretch of abscissae) give a zero width: take the left value there.
    w = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp_(0.0, 1.0)
    return y0 + w * (y1 - y0)


def _mean_abs_change(before: Tensor, after: Tensor) -> Tensor:
    return (after - before).abs().flatten(1).mean(1)


def _check_range(value: tuple[float, float], name: str, low: float | None = None) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"{name} must be (low, high), got {value}")
    if low is not None and value[0] < low:
        raise ValueError(f"{name} must not go below {low}, got {value}")
    return value


# --------------------------------------------------------------------------- interface
class AppearanceTransfer(ABC):
    """Restyles a batch; see the module docstring. Subclasses set ``name``, ``Options`` and
    ``uses_reference`` and implement :meth:`restyle` on float32 tensors."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[StrictModel]]
    # Target-agnostic members ignore the reference (and accept None).
    uses_reference: bool = True
    # The key a method logs the mean strength under; "beta" keeps FDA logs comparable with older runs.
    strength_name: ClassVar[str] = "appearance_strength"
    # True when the output takes the reference's whole intensity distribution (histogram matching): a model
    # trained on it labels target intensities by the source's quantiles, so it reproduces the source's class
    # proportions whatever its labels mean, and a class-ratio prior cannot judge it.
    matches_reference_distribution: bool = False

    def __init__(self, options: StrictModel | dict[str, Any] | None = None) -> None:
        if isinstance(options, StrictModel):
            options = options.model_dump()
        try:
            self.options = self.Options.model_validate(options or {})
        except ValidationError as exc:
            raise ConfigError(f"invalid options for appearance transfer {self.name!r}: {exc}") from exc

    def __call__(
        self, images: Tensor, reference: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Restyle ``images`` (toward ``reference`` if the member uses one); returns (restyled, (B,) strength)."""
        if images.ndim not in (4, 5):
            raise ValueError(f"expected a (B, C, *spatial) batch with 2 or 3 spatial dims, got {tuple(images.shape)}")
        if self.uses_reference:
            if reference is None:
                raise ValueError(f"appearance transfer {self.name!r} needs a reference batch")
            reference = reference.to(device=images.device, dtype=torch.float32)
        # Float32 outside autocast: histograms, sorting, FFTs and random kernels lose too much in half precision.
        with torch.autocast(device_type=images.device.type, enabled=False):
            out, strength = self.restyle(images.float(), reference, generator)
        return out.to(images.dtype), strength.float()

    @abstractmethod
    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """The member's work on float32 tensors; returns (restyled, (B,) strength)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"


APPEARANCE_TRANSFERS: dict[str, type[AppearanceTransfer]] = {}


def register_appearance_transfer(cls: type[AppearanceTransfer]) -> type[AppearanceTransfer]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    APPEARANCE_TRANSFERS[cls.name] = cls
    return cls


def available_appearance_transfers() -> dict[str, type[AppearanceTransfer]]:
    """Registered members by name (sorted)."""
    return dict(sorted(APPEARANCE_TRANSFERS.items()))


def build_appearance_transfer(name: str, options: dict[str, Any] | None = None, *,
                              fourier_defaults: dict[str, Any] | None = None) -> AppearanceTransfer:
    """The member called ``name`` with ``options``.

    ``fourier_defaults`` (a method's own beta options: ``mode``, ``beta``, ``alpha_range``,
    ``min_beta``) are applied to the Fourier members only, under ``options`` (which win).
    Raises :class:`ConfigError` for an unknown name or invalid options.
    """
    if name not in APPEARANCE_TRANSFERS:
        raise ConfigError(f"unknown appearance transfer {name!r}; available: "
                          f"{', '.join(available_appearance_transfers())}")
    cls = APPEARANCE_TRANSFERS[name]
    if fourier_defaults and issubclass(cls, FourierTransfer):
        options = {**fourier_defaults, **(options or {})}
    return cls(options)


# --------------------------------------------------------------------------- Fourier family
class FourierOptions(StrictModel):
    mode: Literal["fixed", "adaptive"] = Field("adaptive", description="Fixed beta or the paper's adaptive beta.")
    beta: float = Field(0.1, ge=0.0, le=1.0, description="Fixed beta (box half-width / half the image size).")
    alpha_range: tuple[float, float] = Field((0.5, 1.5), description="Adaptive beta: alpha ~ U(alpha_range).")
    min_beta: float = Field(0.1, ge=0.0, le=1.0, description="Adaptive beta: lower bound.")
    max_beta: float = Field(1.0, ge=0.0, le=1.0, description="Adaptive beta: upper bound.")
    bins: int = Field(64, ge=2, le=4096, description="Histogram bins of the adaptive beta's distance.")
    blend: float = Field(1.0, ge=0.0, le=1.0, description="Amplitude mixing weight inside the box (1 = swap).")
    clamp: bool = Field(False, description="Clamp the output to [0, 1] (off: the paper's FDA, unchanged).")

    @field_validator("alpha_range")
    @classmethod
    def _alpha_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, "alpha_range", low=0.0)


@register_appearance_transfer
class FourierTransfer(AppearanceTransfer):
    """``fourier``: :class:`FourierStyleTransfer` behind the common interface (bit-identical)."""

    name = "fourier"
    Options = FourierOptions
    uses_reference = True
    strength_name = "beta"

    def __init__(self, options: StrictModel | dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        self.fda = FourierStyleTransfer(mode=o.mode, beta=self._fixed_beta(), alpha_range=tuple(o.alpha_range),
                                        min_beta=o.min_beta, max_beta=o.max_beta, bins=o.bins, blend=o.blend)

    def _fixed_beta(self) -> float:
        return self.options.beta

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        assert reference is not None
        out, beta = self.fda(images, reference, generator)
        return (out.clamp(0.0, 1.0) if self.options.clamp else out), beta


class FourierLuminanceOptions(FourierOptions):
    clamp: bool = True


@register_appearance_transfer
class FourierLuminance(FourierTransfer):
    """``fourier-luminance``: FDA on the BT.601 luminance; the image's chroma is kept."""

    name = "fourier-luminance"
    Options = FourierLuminanceOptions

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        assert reference is not None
        y = _luminance(images)
        # The adaptive beta compares luminance histograms, so colour differences alone do not enlarge the box.
        new_y, beta = self.fda(y, _luminance(reference), generator)
        if images.shape[1] == 1:
            return (new_y.clamp(0.0, 1.0) if self.options.clamp else new_y), beta
        if not self.options.clamp:
            return ycbcr_to_rgb(torch.cat([new_y, rgb_to_ycbcr(images)[:, 1:]], dim=1)), beta
        return _with_luminance(images, new_y), beta


class FourierBoundedOptions(FourierOptions):
    min_beta: float = Field(0.01, ge=0.0, le=1.0, description="Adaptive beta: lower bound.")
    # "Bounded": a small box only moves the global colour/illumination, not the texture.
    max_beta: float = Field(0.05, gt=0.0, le=0.1, description="Upper bound of every beta, fixed or adaptive.")
    clamp: bool = True


@register_appearance_transfer
class FourierBounded(FourierTransfer):
    """``fourier-bounded``: per-channel FDA with every beta (fixed or adaptive) at most ``max_beta``."""

    name = "fourier-bounded"
    Options = FourierBoundedOptions

    def _fixed_beta(self) -> float:
        return min(self.options.beta, self.options.max_beta)


# --------------------------------------------------------------------------- location-scale
class LocationScaleOptions(StrictModel):
    location_scale: bool = Field(False, description="Random global scale and shift after the remapping (Su et al.).")
    scale_range: tuple[float, float] = Field((0.8, 1.2), description="x -> s * x + l, s ~ U(scale_range).")
    shift_range: tuple[float, float] = Field((-0.1, 0.1), description="l ~ U(shift_range).")

    @field_validator("scale_range")
    @classmethod
    def _scale_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, "scale_range", low=0.0)

    @field_validator("shift_range")
    @classmethod
    def _shift_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, "shift_range")


def _location_scale(x: Tensor, o: LocationScaleOptions, generator: torch.Generator | None) -> Tensor:
    if not o.location_scale:
        return x
    b, view = x.shape[0], (-1,) + (1,) * (x.ndim - 1)
    scale = _random.uniform((b,), o.scale_range[0], o.scale_range[1], generator, x.device).view(view)
    shift = _random.uniform((b,), o.shift_range[0], o.shift_range[1], generator, x.device).view(view)
    return (scale * x + shift).clamp(0.0, 1.0)


def _on_luminance(transfer: AppearanceTransfer, images: Tensor,
                  generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Apply a target-agnostic ``transfer`` to the luminance of RGB ``images``, keeping their chroma."""
    new_y, _ = transfer.restyle(_luminance(images), None, generator)
    out = _with_luminance(images, new_y)
    return out, _mean_abs_change(images, out)


# --------------------------------------------------------------------------- Bezier curves
class BezierOptions(LocationScaleOptions):
    grid: int = Field(256, ge=8, le=65536, description="Points along the curve parameter t.")
    random_endpoints: bool = Field(
        True, description="End heights y0, y3 ~ U(0, 1) (non-monotonic curves); off: (0, 0)-(1, 1) as Models Genesis.")
    invert_probability: float = Field(0.5, ge=0.0, le=1.0, description="Probability of flipping y -> 1 - y.")
    stretch: bool = Field(True, description="Rescale each curve's output range to [0, 1] (keeps full contrast).")
    per_channel: bool = Field(False, description="RGB: one curve per channel instead of one per sample.")
    luminance: bool = Field(False, description="RGB: remap the BT.601 luminance only and keep the chroma "
                                               "(the colour that can mark the object on photos).")


def bezier_curves(n: int, grid: int, generator: torch.Generator | None, device: torch.device | str,
                  random_endpoints: bool = True, invert_probability: float = 0.5,
                  stretch: bool = True) -> tuple[Tensor, Tensor]:
    """``n`` random intensity curves as knots ``(x, y)``, each (n, grid), x non-decreasing from 0 to 1.

    A cubic Bezier curve with control points (0, y0), (x1, y1), (x2, y2), (1, y3), all random in
    [0, 1] (y0 = 0, y3 = 1 unless ``random_endpoints``), evaluated at ``grid`` values of t.
    """
    u = _random.rand((n, 7), generator, device)
    x1, x2, y1, y2, y0, y3, flip = u.unbind(1)
    if not random_endpoints:
        y0, y3 = torch.zeros_like(y0), torch.ones_like(y3)
    t = torch.linspace(0.0, 1.0, grid, device=u.device)[None]
    s = 1.0 - t
    b0, b1, b2, b3 = s**3, 3.0 * s**2 * t, 3.0 * s * t**2, t**3
    # With x0 = 0, x3 = 1 and x1, x2 in [0, 1], dx/dt >= 0 (bilinear in x1, x2; non-negative at the four
    # corners), so x(t) is already sorted; cummax only removes rounding wiggles so searchsorted is valid.
    x = torch.cummax(b1 * x1[:, None] + b2 * x2[:, None] + b3, dim=1).values
    y = b0 * y0[:, None] + b1 * y1[:, None] + b2 * y2[:, None] + b3 * y3[:, None]
    if stretch:
        lo, hi = y.amin(1, keepdim=True), y.amax(1, keepdim=True)
        # A nearly flat curve is left as is rather than blowing up noise.
        y = torch.where(hi - lo > 1e-3, (y - lo) / (hi - lo).clamp_min(1e-3), y)
    y = torch.where((flip < invert_probability)[:, None], 1.0 - y, y)
    return x, y


@register_appearance_transfer
class BezierCurves(AppearanceTransfer):
    """``bezier``: a random (possibly non-monotonic or inverted) intensity curve per sample."""

    name = "bezier"
    Options = BezierOptions
    uses_reference = False

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        o = self.options
        if o.luminance and images.shape[1] == 3:
            return _on_luminance(self, images, generator)
        b, c = images.shape[:2]
        rows = b * c if o.per_channel and c > 1 else b
        x_knots, y_knots = bezier_curves(rows, o.grid, generator, images.device, o.random_endpoints,
                                         o.invert_probability, o.stretch)
        # The curve as a function of intensity on a uniform grid; then each voxel is an O(1) lookup
        # (4-6x faster on CPU than a binary search of every voxel among the curve's knots).
        levels = torch.linspace(0.0, 1.0, o.grid, device=images.device).expand(rows, o.grid)
        curve = interp_rows(levels, x_knots, y_knots)
        pos = images.clamp(0.0, 1.0).reshape(rows, -1) * (o.grid - 1)
        left = pos.floor().long().clamp_(0, o.grid - 2)
        out = torch.lerp(curve.gather(1, left), curve.gather(1, left + 1), pos - left).view_as(images)
        out = _location_scale(out, o, generator)
        return out, _mean_abs_change(images, out)


# --------------------------------------------------------------------------- GIN
class GINOptions(LocationScaleOptions):
    layers: int = Field(4, ge=1, le=16, description="Random convolution layers.")
    channels: int = Field(2, ge=1, le=64, description="Channels of the hidden layers.")
    kernel_sizes: tuple[int, ...] = Field((1, 3), description="Kernel size per layer and sample drawn from these.")
    negative_slope: float = Field(0.01, ge=0.0, lt=1.0, description="LeakyReLU slope between layers.")
    alpha_range: tuple[float, float] = Field((0.0, 1.0), description="Blend alpha ~ U(alpha_range).")
    luminance: bool = Field(False, description="RGB: remap the BT.601 luminance only (a 1-channel network) and "
                                               "keep the chroma.")

    @field_validator("kernel_sizes")
    @classmethod
    def _kernel_sizes(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k < 1 or k % 2 == 0 for k in v):
            raise ValueError(f"kernel_sizes must be odd positive integers, got {v}")
        return v

    @field_validator("alpha_range")
    @classmethod
    def _alpha_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        _check_range(v, "alpha_range", low=0.0)
        if v[1] > 1.0:
            raise ValueError(f"alpha_range must lie in [0, 1], got {v}")
        return v


def _centre_mask(size: int, kernel: int, dims: int, device: torch.device) -> Tensor:
    """1 on the central ``kernel``^dims block of a ``size``^dims kernel, 0 elsewhere."""
    m = torch.zeros(size, device=device)
    lo = (size - kernel) // 2
    m[lo:lo + kernel] = 1.0
    out = m
    for _ in range(dims - 1):
        out = out[..., None] * m
    return out


@register_appearance_transfer
class GlobalIntensityNonlinear(AppearanceTransfer):
    """``gin``: a random shallow conv net per sample, blended with the input, mapped to [0, 1]."""

    name = "gin"
    Options = GINOptions
    uses_reference = False

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        o = self.options
        if o.luminance and images.shape[1] == 3:
            return _on_luminance(self, images, generator)
        b, c = images.shape[:2]
        spatial = tuple(images.shape[2:])
        d = len(spatial)
        conv = F.conv2d if d == 2 else F.conv3d
        kmax = max(o.kernel_sizes)
        dev = images.device
        # Per-sample kernel sizes without a host-side choice: every kernel is kmax wide and a sample that
        # drew a smaller size has the outside of its central block zeroed.
        masks = torch.stack([_centre_mask(kmax, k, d, dev) for k in o.kernel_sizes])  # (n_sizes, k, .., k)
        h = images.reshape(1, b * c, *spatial)
        c_in = c
        for layer in range(o.layers):
            last = layer == o.layers - 1
            c_out = c if last else o.channels
            w = _random.randn((b, c_out, c_in, *([kmax] * d)), generator, dev)
            pick = (_random.rand((b,), generator, dev) * len(o.kernel_sizes)).long().clamp_max(len(o.kernel_sizes) - 1)
            w = w * masks[pick].view(b, 1, 1, *([kmax] * d))
            bias = _random.randn((b, c_out), generator, dev)
            # Replicate padding: zero padding would draw a frame at the border that no scanner makes.
            padded = F.pad(h, [kmax // 2] * (2 * d), mode="replicate") if kmax > 1 else h
            h = conv(padded, w.reshape(b * c_out, c_in, *([kmax] * d)), bias.reshape(-1), groups=b)
            if not last:
                h = F.leaky_relu(h, o.negative_slope)
            c_in = c_out
        g = h.view_as(images)
        view = (-1,) + (1,) * (images.ndim - 1)
        alpha = _random.uniform((b,), o.alpha_range[0], o.alpha_range[1], generator, dev).view(view)
        mixed = alpha * g + (1.0 - alpha) * images
        # The paper keeps the input's Frobenius norm; the min-max below is scale-free, so this only keeps the
        # intermediate values at the input's magnitude (deep random nets can amplify by orders of magnitude).
        norm_in = torch.linalg.vector_norm(images.flatten(1), dim=1).view(view)
        norm_mixed = torch.linalg.vector_norm(mixed.flatten(1), dim=1).view(view)
        mixed = mixed * (norm_in / norm_mixed.clamp_min(1e-12))
        lo = mixed.flatten(1).amin(1).view(view)
        hi = mixed.flatten(1).amax(1).view(view)
        # A (near-)constant output cannot be rescaled; keep the input there instead of a blank image.
        out = torch.where(hi - lo > 1e-6, (mixed - lo) / (hi - lo).clamp_min(1e-6), images)
        out = _location_scale(out, o, generator)
        return out, _mean_abs_change(images, out)


# --------------------------------------------------------------------------- histogram matching
class HistogramMatchingOptions(StrictModel):
    luminance: bool = Field(False, description="RGB: match the BT.601 luminance only and keep the chroma.")


def match_histograms(images: Tensor, reference: Tensor) -> Tensor:
    """Per sample and channel, map ``images``' values through their CDF onto ``reference``'s quantiles.

    Tied values (a constant background) share one CDF level, the middle of their tie, so they map to
    one value. With the same voxel count and no ties, the sorted output equals the sorted reference.
    ``reference`` may have another spatial size; its batch and channel dims broadcast against ``images``.
    """
    b, c = images.shape[:2]
    reference = reference.expand(b, c, *reference.shape[2:])
    src = images.reshape(b * c, -1)
    ref_sorted = reference.reshape(b * c, -1).sort(dim=1).values
    src_sorted, order = src.sort(dim=1)
    m, m_ref = src.shape[1], ref_sorted.shape[1]
    # CDF spans of the sorted values (queries in sorted order are ~2x faster than in image order); the
    # mapped values are put back in image order at the end.
    below = torch.searchsorted(src_sorted, src_sorted, right=False)
    upto = torch.searchsorted(src_sorted, src_sorted, right=True)
    # Mid-rank CDF level (below + upto) / 2m, read off the reference with sample i at (i + 0.5) / m_ref and
    # linear in between: position (below + upto) * m_ref / 2m - 0.5. Kept in integers so that equal voxel
    # counts give exact reference values (float32 would round positions for large volumes).
    num = ((below + upto) * m_ref - m).clamp_(0, 2 * m * (m_ref - 1))
    lo = torch.div(num, 2 * m, rounding_mode="floor")
    frac = (num - lo * (2 * m)).float() / (2 * m)
    hi = (lo + 1).clamp_max_(m_ref - 1)
    mapped = torch.lerp(ref_sorted.gather(1, lo), ref_sorted.gather(1, hi), frac)
    out = torch.empty_like(mapped).scatter_(1, order, mapped)
    return out.view_as(images)


@register_appearance_transfer
class HistogramMatching(AppearanceTransfer):
    """``histogram-matching``: each image's histogram mapped onto its paired reference image's."""

    name = "histogram-matching"
    Options = HistogramMatchingOptions
    uses_reference = True
    matches_reference_distribution = True

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        assert reference is not None
        if self.options.luminance:
            out = _with_luminance(images, match_histograms(_luminance(images), _luminance(reference)))
        else:
            out = match_histograms(images, reference).clamp(0.0, 1.0)
        return out, _mean_abs_change(images, out)


# --------------------------------------------------------------------------- identity
class IdentityOptions(StrictModel):
    pass


@register_appearance_transfer
class Identity(AppearanceTransfer):
    """``identity``: no restyling (a copy of the images, strength 0)."""

    name = "identity"
    Options = IdentityOptions
    uses_reference = False

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        return images.clone(), images.new_zeros(images.shape[0])


# --------------------------------------------------------------------------- random choice
class RandomChoiceOptions(StrictModel):
    members: tuple[str, ...] = Field(("bezier", "gin"), min_length=1, description="Member names to choose from.")
    probabilities: tuple[float, ...] | None = Field(None, description="Choice probabilities; None = uniform.")
    member_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Options per member name.")

    @model_validator(mode="after")
    def _consistent(self) -> RandomChoiceOptions:
        if self.probabilities is not None:
            p = self.probabilities
            if len(p) != len(self.members) or any(not math.isfinite(v) or v < 0 for v in p) or sum(p) <= 0:
                raise ValueError(f"probabilities {p} must be one non-negative weight per member, not all zero")
        unknown = set(self.member_options) - set(self.members)
        if unknown:
            raise ValueError(f"member_options for members not in the list: {sorted(unknown)}")
        return self


@register_appearance_transfer
class RandomChoice(AppearanceTransfer):
    """``random-choice``: per sample, the output of one member drawn with the given probabilities.

    Every member runs on the whole batch and ``torch.where``-style selection picks per sample: at our
    batch sizes that costs less than splitting the batch by a data-dependent choice (a host sync).
    """

    name = "random-choice"
    Options = RandomChoiceOptions

    def __init__(self, options: StrictModel | dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        self.members = [build_appearance_transfer(n, o.member_options.get(n)) for n in o.members]
        self.uses_reference = any(m.uses_reference for m in self.members)
        weights = o.probabilities or [1.0] * len(o.members)
        # Any drawn member that matches distributions carries its blindness into the mixture's model.
        self.matches_reference_distribution = any(
            m.matches_reference_distribution for m, w in zip(self.members, weights, strict=True) if w > 0)
        p = torch.tensor(weights, dtype=torch.float64)
        # Upper edges of the members' intervals in [0, 1); the last is open so rounding never overflows it.
        self._edges = (p.cumsum(0) / p.sum())[:-1].float()
        self._edges_on: dict[torch.device, Tensor] = {}  # copied to each device once, not on every call

    def _edges_for(self, device: torch.device) -> Tensor:
        if device not in self._edges_on:
            self._edges_on[device] = self._edges.to(device)
        return self._edges_on[device]

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        b = images.shape[0]
        u = _random.rand((b,), generator, images.device)
        choice = (u[:, None] >= self._edges_for(images.device)[None]).sum(1)
        outs, strengths = zip(*(m.restyle(images, reference, generator) for m in self.members), strict=True)
        rows = torch.arange(b, device=images.device)
        return torch.stack(outs)[choice, rows], torch.stack(strengths)[choice, rows]


# --------------------------------------------------------------------------- pseudo-correlation (IPA)
class PseudoCorrelationOptions(StrictModel):
    member: str = Field("gin", description="The target-agnostic member drawn twice per image.")
    member_options: dict[str, Any] = Field(default_factory=dict, description="Its options.")
    control_points: int = Field(4, ge=2, le=64, description="Random field values per spatial axis before "
                                                            "upsampling (fewer: smoother blending field).")


def smooth_random_field(n: int, spatial: tuple[int, ...], control_points: int,
                        generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` smooth random fields (n, 1, *spatial) in [0, 1]: a U(0, 1) grid of ``control_points`` per axis,
    upsampled bicubically (2D) or trilinearly (3D) to ``spatial`` and clamped (bicubic can overshoot)."""
    grid = _random.rand((n, 1, *([control_points] * len(spatial))), generator, device)
    mode = "bicubic" if len(spatial) == 2 else "trilinear"
    return F.interpolate(grid, size=spatial, mode=mode, align_corners=True).clamp_(0.0, 1.0)


@register_appearance_transfer
class PseudoCorrelation(AppearanceTransfer):
    """``pseudo-correlation``: two draws of a target-agnostic member blended by a smooth random field (IPA)."""

    name = "pseudo-correlation"
    Options = PseudoCorrelationOptions
    uses_reference = False

    def __init__(self, options: StrictModel | dict[str, Any] | None = None) -> None:
        super().__init__(options)
        o = self.options
        if o.member == self.name:
            raise ConfigError("pseudo-correlation cannot blend draws of itself")
        self.member = build_appearance_transfer(o.member, o.member_options)
        if self.member.uses_reference:
            # Blending two draws of a reference-driven map would need two references; IPA is target-agnostic.
            raise ConfigError(f"pseudo-correlation needs a target-agnostic member (bezier, gin, random-choice of "
                              f"those), not {o.member!r}, which uses a reference image")

    def restyle(self, images: Tensor, reference: Tensor | None,
                generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        first, _ = self.member.restyle(images, None, generator)
        second, _ = self.member.restyle(images, None, generator)
        field = smooth_random_field(images.shape[0], tuple(images.shape[2:]), self.options.control_points,
                                    generator, images.device)
        out = torch.lerp(second, first, field)  # field * first + (1 - field) * second, per voxel
        return out, _mean_abs_change(images, out)

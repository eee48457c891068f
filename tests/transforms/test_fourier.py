"""Pins the FDA conventions: beta=0 is a no-op, beta=1 swaps the whole amplitude, 2D == 3D with a
singleton axis, batched per-sample beta, and the histogram-distance bounds used by adaptive beta."""

from __future__ import annotations

import math

import pytest
import torch

from diffuse_uda.transforms import (
    HIST_DISTANCE_MAX,
    FourierStyleTransfer,
    adaptive_beta,
    fda_amplitude_swap,
    histogram_distance,
    low_frequency_mask,
)


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(shape, generator=g)
    tgt = 0.3 + 0.5 * torch.rand(shape, generator=g) ** 2  # a different intensity distribution
    return src, tgt


SHAPES = [(2, 1, 12, 10), (2, 2, 6, 8, 7)]


@pytest.mark.parametrize("shape", SHAPES)
def test_beta_zero_returns_source(shape: tuple[int, ...]) -> None:
    src, tgt = _pair(shape)
    out = fda_amplitude_swap(src, tgt, 0.0)
    torch.testing.assert_close(out, src, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_beta_one_swaps_whole_amplitude_keeps_phase(shape: tuple[int, ...]) -> None:
    src, tgt = _pair(shape)
    out = fda_amplitude_swap(src, tgt, 1.0)
    assert out.shape == src.shape and out.dtype == src.dtype and torch.isfinite(out).all()
    dims = tuple(range(2, src.ndim))
    f_out, f_src, f_tgt = (torch.fft.rfftn(t.double(), dim=dims) for t in (out, src, tgt))
    torch.testing.assert_close(f_out.abs(), f_tgt.abs(), atol=1e-3, rtol=1e-4)
    # Phase is only defined where both amplitudes are non-negligible; compare on the unit circle to
    # avoid the +-pi wrap.
    ok = (f_src.abs() > 1e-3) & (f_tgt.abs() > 1e-3)
    assert ok.sum() > 0
    u_out = f_out[ok] / f_out[ok].abs()
    u_src = f_src[ok] / f_src[ok].abs()
    assert (u_out - u_src).abs().max() < 1e-3


def test_intermediate_beta_changes_only_low_frequencies() -> None:
    src, tgt = _pair((1, 1, 16, 16))
    out = fda_amplitude_swap(src, tgt, 0.25)
    f_out, f_src, f_tgt = (torch.fft.rfftn(t, dim=(2, 3)).abs() for t in (out, src, tgt))
    mask = low_frequency_mask((16, 16), 0.25, "cpu")[0, 0]
    # |k| <= 2 on the full axis (both signs), 0..2 on the halved one: 5 x 3 bins.
    assert mask.sum() == 15 and mask[-2, 0] and mask[2, 2] and not mask[3, 0] and not mask[0, 3]
    torch.testing.assert_close(f_out[..., mask], f_tgt[..., mask], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(f_out[..., ~mask], f_src[..., ~mask], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_singleton_axis_3d_matches_2d(beta: float) -> None:
    src, tgt = _pair((2, 1, 9, 12))
    out2 = fda_amplitude_swap(src, tgt, beta)
    out3 = fda_amplitude_swap(src.unsqueeze(2), tgt.unsqueeze(2), beta)
    assert out3.shape == (2, 1, 1, 9, 12)
    torch.testing.assert_close(out3.squeeze(2), out2, atol=1e-5, rtol=0)


def test_per_sample_beta_matches_individual_calls() -> None:
    src, tgt = _pair((3, 1, 8, 10))
    beta = torch.tensor([0.0, 0.2, 1.0])
    out = fda_amplitude_swap(src, tgt, beta, blend=0.7)
    for i in range(3):
        single = fda_amplitude_swap(src[i : i + 1], tgt[i : i + 1], float(beta[i]), blend=0.7)
        torch.testing.assert_close(out[i : i + 1], single, atol=1e-6, rtol=0)
    torch.testing.assert_close(out[0], src[0], atol=1e-5, rtol=0)


def test_histogram_distance_bounds() -> None:
    a = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(histogram_distance(a, a), torch.zeros(2))
    zeros, ones = torch.zeros(2, 1, 5, 5), torch.ones(2, 1, 5, 5)
    torch.testing.assert_close(histogram_distance(zeros, ones), torch.full((2,), math.sqrt(2.0)))
    assert math.isclose(HIST_DISTANCE_MAX, math.sqrt(2.0))
    # Out-of-range values are clamped into the end bins.
    torch.testing.assert_close(histogram_distance(zeros - 5.0, ones + 5.0), torch.full((2,), math.sqrt(2.0)))


def test_adaptive_beta_range_and_determinism() -> None:
    src, tgt = _pair((4, 1, 8, 8))
    tgt = torch.cat([tgt[:2], torch.ones(2, 1, 8, 8)])  # include a maximal-distance pair
    b1 = adaptive_beta(src, tgt, generator=torch.Generator().manual_seed(3))
    b2 = adaptive_beta(src, tgt, generator=torch.Generator().manual_seed(3))
    assert b1.shape == (4,)
    assert ((b1 >= 0.1) & (b1 <= 1.0)).all()
    torch.testing.assert_close(b1, b2, rtol=0, atol=0)
    same = adaptive_beta(src, src, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(same, torch.full((4,), 0.1))


@pytest.mark.parametrize("mode", ["fixed", "adaptive"])
def test_style_transfer_callable(mode: str) -> None:
    src, tgt = _pair((2, 1, 6, 6, 6))
    fst = FourierStyleTransfer(mode=mode, beta=0.2)
    out1, beta1 = fst(src, tgt, torch.Generator().manual_seed(5))
    out2, beta2 = fst(src, tgt, torch.Generator().manual_seed(5))
    assert out1.shape == src.shape and beta1.shape == (2,) and torch.isfinite(out1).all()
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)
    torch.testing.assert_close(beta1, beta2, rtol=0, atol=0)
    if mode == "fixed":
        torch.testing.assert_close(beta1, torch.full((2,), 0.2))
    with pytest.raises(ValueError):
        FourierStyleTransfer(mode="nope")

"""The appearance-transfer family: the common contract (shape, dtype, range, determinism), the Fourier
member's bit-identity with FourierStyleTransfer, contrast inversion by the Bezier and GIN members (and
its impossibility for monotone maps), histogram matching by CDF mapping, chroma kept by the luminance
variant, and the per-sample selection of random-choice."""

from __future__ import annotations

import pytest
import torch

from diffuse_uda.errors import ConfigError
from diffuse_uda.transforms import FourierStyleTransfer, available_appearance_transfers, build_appearance_transfer
from diffuse_uda.transforms.appearance import (
    bezier_curves,
    interp_rows,
    match_histograms,
    rgb_to_ycbcr,
    smooth_random_field,
    ycbcr_to_rgb,
)

MEMBERS = ["bezier", "fourier", "fourier-bounded", "fourier-luminance", "gin", "histogram-matching", "identity",
           "pseudo-correlation", "random-choice"]
RANDOM_MEMBERS = ["bezier", "gin", "pseudo-correlation", "random-choice"]
TARGET_AGNOSTIC = ("bezier", "gin", "identity", "pseudo-correlation", "random-choice")
SHAPES = [(3, 1, 16, 12), (3, 3, 16, 12), (2, 1, 6, 8, 10), (2, 3, 6, 8, 10)]
# The only member allowed to leave [0, 1] by default is the unchanged paper FDA; its clamp option restores it.
CONTRACT_OPTIONS = {"fourier": {"clamp": True}}


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g), 0.2 + 0.6 * torch.rand(shape, generator=g) ** 2


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_registry_and_errors() -> None:
    assert set(available_appearance_transfers()) == set(MEMBERS)
    with pytest.raises(ConfigError, match="unknown appearance transfer"):
        build_appearance_transfer("fourrier")
    bad = [("bezier", {"grid": 2}), ("bezier", {"gridd": 64}), ("fourier", {"beta": 2.0}),
           ("fourier", {"alpha_range": (1.5, 0.5)}), ("fourier-bounded", {"max_beta": 0.3}),
           ("gin", {"kernel_sizes": (2,)}), ("gin", {"alpha_range": (0.0, 2.0)}),
           ("bezier", {"location_scale": True, "scale_range": (1.2, 0.8)}),
           ("random-choice", {"members": ["bezier", "gin"], "probabilities": [1.0]}),
           ("random-choice", {"members": ["bezier", "nope"]}),
           ("random-choice", {"members": ["bezier"], "member_options": {"gin": {}}}),
           ("random-choice", {"members": ["bezier"], "member_options": {"bezier": {"grid": 1}}}),
           ("pseudo-correlation", {"member": "histogram-matching"}),
           ("pseudo-correlation", {"member": "pseudo-correlation"}),
           ("pseudo-correlation", {"control_points": 1}),
           ("pseudo-correlation", {"member": "bezier", "member_options": {"grid": 2}})]
    for name, options in bad:
        with pytest.raises(ConfigError):
            build_appearance_transfer(name, options)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", MEMBERS)
def test_contract_shape_dtype_range(name: str, shape: tuple[int, ...]) -> None:
    images, reference = _pair(shape)
    transfer = build_appearance_transfer(name, CONTRACT_OPTIONS.get(name))
    out, strength = transfer(images, reference, _gen(1))
    assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
    assert torch.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert strength.shape == (shape[0],) and strength.dtype == torch.float32 and torch.isfinite(strength).all()
    assert torch.equal(out, images) == (name == "identity")  # every other member does something on these inputs


def test_identity_returns_an_unchanged_copy_and_zero_strength() -> None:
    images = torch.rand(3, 3, 8, 8, generator=_gen(0))
    out, strength = build_appearance_transfer("identity")(images, None, _gen(0))
    assert torch.equal(out, images) and out.data_ptr() != images.data_ptr()
    assert torch.equal(strength, torch.zeros(3))


@pytest.mark.parametrize("name", MEMBERS)
def test_float64_in_float64_out(name: str) -> None:
    images, reference = _pair((2, 1, 8, 8))
    out, _ = build_appearance_transfer(name, CONTRACT_OPTIONS.get(name))(images.double(), reference.double(), _gen(0))
    assert out.dtype == torch.float64


@pytest.mark.parametrize("name", MEMBERS)
def test_same_seed_same_output_and_random_members_vary_with_seed(name: str) -> None:
    images, reference = _pair((4, 3, 12, 12))
    transfer = build_appearance_transfer(name)
    a, sa = transfer(images, reference, _gen(5))
    b, sb = transfer(images, reference, _gen(5))
    assert torch.equal(a, b) and torch.equal(sa, sb)
    c, _ = transfer(images, reference, _gen(6))
    if name in RANDOM_MEMBERS:
        assert not torch.equal(a, c)
    elif name in ("histogram-matching", "identity"):  # no randomness at all
        assert torch.equal(a, c)
    # The Fourier members draw only the adaptive beta's alpha, which min_beta may clamp away.


@pytest.mark.parametrize("name", ["bezier", "gin"])
def test_draws_are_per_sample(name: str) -> None:
    images = torch.rand(1, 1, 12, 12, generator=_gen(0)).expand(4, 1, 12, 12).contiguous()
    out, _ = build_appearance_transfer(name)(images, None, _gen(0))
    assert not any(torch.equal(out[0], out[i]) for i in range(1, 4))


def test_target_agnostic_members_take_no_reference_and_the_others_require_one() -> None:
    images = torch.rand(2, 1, 8, 8, generator=_gen(0))
    for name in MEMBERS:
        transfer = build_appearance_transfer(name)
        assert transfer.uses_reference == (name not in TARGET_AGNOSTIC)
        if transfer.uses_reference:
            with pytest.raises(ValueError, match="reference"):
                transfer(images, None, _gen(0))
        else:
            transfer(images, None, _gen(0))
    assert build_appearance_transfer("random-choice", {"members": ["bezier", "histogram-matching"]}).uses_reference


# --------------------------------------------------------------------------- fourier
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", [{"mode": "fixed", "beta": 0.2}, {"mode": "adaptive"},
                                     {"mode": "adaptive", "min_beta": 0.0, "alpha_range": (0.2, 3.0), "blend": 0.7}])
def test_fourier_is_bit_identical_to_fourier_style_transfer(shape: tuple[int, ...], options: dict) -> None:
    images, reference = _pair(shape)
    out, beta = build_appearance_transfer("fourier", options)(images, reference, _gen(3))
    expected, expected_beta = FourierStyleTransfer(**options)(images, reference, _gen(3))
    assert torch.equal(out, expected) and torch.equal(beta, expected_beta)


def test_fourier_bounded_caps_every_beta() -> None:
    images, reference = _pair((6, 3, 16, 16))
    reference = 1.0 - reference  # far apart histograms: the unbounded adaptive beta would be large
    adaptive = build_appearance_transfer("fourier-bounded", {"min_beta": 0.0, "max_beta": 0.08})
    out, beta = adaptive(images, reference, _gen(0))
    unbounded = FourierStyleTransfer(min_beta=0.0)(images, reference, _gen(0))[1]
    assert (unbounded > 0.08).any() and torch.equal(beta, unbounded.clamp_max(0.08))
    expected = FourierStyleTransfer(min_beta=0.0, max_beta=0.08)(images, reference, _gen(0))[0].clamp(0, 1)
    assert torch.equal(out, expected)
    _, fixed_beta = build_appearance_transfer("fourier-bounded", {"mode": "fixed", "beta": 0.3})(images, reference)
    assert torch.equal(fixed_beta, torch.full((6,), 0.05))


# --------------------------------------------------------------------------- luminance / chroma
def test_ycbcr_follows_bt601_and_round_trips() -> None:
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(rgb_to_ycbcr(red).flatten(), torch.tensor([0.299, 0.5 - 0.299 / 1.772, 1.0]))
    grey = torch.full((1, 3, 1, 1), 0.4)
    torch.testing.assert_close(rgb_to_ycbcr(grey).flatten(), torch.tensor([0.4, 0.5, 0.5]))
    x = torch.rand(2, 3, 5, 5, generator=_gen(0))
    torch.testing.assert_close(ycbcr_to_rgb(rgb_to_ycbcr(x)), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("options", [{"mode": "fixed", "beta": 0.3}, {"mode": "adaptive"}])
def test_fourier_luminance_keeps_chroma_and_moves_luminance(options: dict) -> None:
    g = _gen(0)
    images = 0.35 + 0.3 * torch.rand(2, 3, 16, 16, generator=g)  # mid-range: no clamping can touch chroma
    reference = 0.4 + 0.2 * torch.rand(2, 3, 16, 16, generator=g) ** 3
    out, beta = build_appearance_transfer("fourier-luminance", options)(images, reference, _gen(1))
    assert out.min() > 0.0 and out.max() < 1.0
    ycc_in, ycc_out = rgb_to_ycbcr(images), rgb_to_ycbcr(out)
    torch.testing.assert_close(ycc_out[:, 1:], ycc_in[:, 1:], atol=1e-5, rtol=0)
    assert (ycc_out[:, 0] - ycc_in[:, 0]).abs().max() > 0.01
    # The luminance is exactly FDA of the luminance toward the reference's luminance.
    expected_y, expected_beta = FourierStyleTransfer(**options)(ycc_in[:, :1], rgb_to_ycbcr(reference)[:, :1], _gen(1))
    torch.testing.assert_close(ycc_out[:, :1], expected_y, atol=1e-5, rtol=0)
    assert torch.equal(beta, expected_beta)
    # A plain per-channel swap moves the chroma: the property the luminance variant exists for.
    per_channel, _ = build_appearance_transfer("fourier", options)(images, reference, _gen(1))
    assert (rgb_to_ycbcr(per_channel)[:, 1:] - ycc_in[:, 1:]).abs().max() > 0.01


@pytest.mark.parametrize("shape", [(3, 1, 16, 12), (2, 1, 6, 8, 10)])
def test_fourier_luminance_on_greyscale_is_clamped_fourier(shape: tuple[int, ...]) -> None:
    images, reference = _pair(shape)
    out, beta = build_appearance_transfer("fourier-luminance")(images, reference, _gen(2))
    expected, expected_beta = build_appearance_transfer("fourier", {"clamp": True})(images, reference, _gen(2))
    assert torch.equal(out, expected) and torch.equal(beta, expected_beta)


# --------------------------------------------------------------------------- contrast inversion
def _three_regions(batch: int, channels: int = 1) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Flat stripes at 0.2 / 0.5 / 0.8, and masks of their interiors (away from any 3x3 kernel's reach)."""
    image = torch.empty(24, 24)
    masks = []
    for i, value in enumerate((0.2, 0.5, 0.8)):
        image[:, 8 * i:8 * (i + 1)] = value
        m = torch.zeros(24, 24, dtype=torch.bool)
        m[4:20, 8 * i + 3:8 * (i + 1) - 3] = True
        masks.append(m)
    return image.expand(batch, channels, 24, 24).contiguous(), masks


def _region_means(out: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """(B, 3) mean of each stripe's interior."""
    return torch.stack([out[:, :, m].mean(dim=(1, 2)) for m in masks], dim=1)


def _order_kept(means: torch.Tensor) -> torch.Tensor:
    """Per sample: dark <= middle <= bright still holds - true for every non-decreasing intensity map."""
    return (means[:, 0] <= means[:, 1] + 1e-6) & (means[:, 1] <= means[:, 2] + 1e-6)


def _draws(name: str, options: dict | None = None, seeds: range = range(4)) -> torch.Tensor:
    images, masks = _three_regions(16)
    transfer = build_appearance_transfer(name, options)
    reference = torch.rand(16, 1, 24, 24, generator=_gen(99)) ** 2
    return torch.cat([_region_means(transfer(images, reference, _gen(s))[0], masks) for s in seeds])


@pytest.mark.parametrize("name", ["bezier", "gin"])
def test_contrast_family_can_invert_and_reorder_intensities(name: str) -> None:
    means = _draws(name)  # 64 draws
    assert not _order_kept(means).all()
    reversed_order = (means[:, 0] > means[:, 1]) & (means[:, 1] > means[:, 2])  # a T1 -> T2 style inversion
    middle_outside = ((means[:, 1] - means[:, 0]) * (means[:, 1] - means[:, 2])) > 0  # non-monotonic
    assert reversed_order.any() and middle_outside.any()


@pytest.mark.parametrize(("name", "options"), [
    ("fourier", {"mode": "fixed", "beta": 0.0}),
    ("histogram-matching", None),
    ("bezier", {"random_endpoints": False, "invert_probability": 0.0}),  # Models Genesis curves: monotone
    ("bezier", {"random_endpoints": False, "invert_probability": 0.0, "location_scale": True}),
])
def test_monotone_maps_never_reorder_the_regions(name: str, options: dict | None) -> None:
    assert _order_kept(_draws(name, options)).all()


def test_order_test_fails_for_any_monotone_increasing_map() -> None:
    images, masks = _three_regions(4)
    gamma = torch.tensor([0.3, 1.0, 2.0, 5.0]).view(4, 1, 1, 1)
    assert _order_kept(_region_means(images**gamma, masks)).all()
    assert _order_kept(_region_means(torch.sigmoid(20 * (images - 0.6)), masks)).all()
    assert not _order_kept(_region_means(1.0 - images, masks)).any()


# --------------------------------------------------------------------------- bezier specifics
def test_bezier_curves_are_valid_knots() -> None:
    x, y = bezier_curves(64, 128, _gen(0), "cpu")
    assert x.shape == y.shape == (64, 128)
    assert (x[:, 0] == 0).all() and (x[:, -1] == 1).all() and (x.diff(dim=1) >= 0).all()
    assert (y.amin(1) == 0).all() and torch.allclose(y.amax(1), torch.ones(64))  # stretched to full range
    mx, my = bezier_curves(64, 128, _gen(0), "cpu", random_endpoints=False, invert_probability=0.0, stretch=False)
    assert (my.diff(dim=1) >= -1e-6).all() and (my[:, 0] == 0).all() and torch.allclose(my[:, -1], torch.ones(64))


def test_bezier_maps_intensities_through_the_drawn_curve() -> None:
    ramp = torch.linspace(0.0, 1.0, 400).view(1, 1, 20, 20).expand(3, 1, 20, 20).contiguous()
    out, _ = build_appearance_transfer("bezier")(ramp, None, _gen(4))
    x, y = bezier_curves(3, 256, _gen(4), "cpu")  # the same first draws
    expected = interp_rows(ramp.reshape(3, -1), x, y).view_as(ramp)
    torch.testing.assert_close(out, expected, atol=0.01, rtol=0)  # up to resampling on a 256-point grid


def test_bezier_rgb_shares_one_curve_unless_per_channel() -> None:
    grey = torch.rand(4, 1, 10, 10, generator=_gen(0))
    rgb = grey.expand(4, 3, 10, 10).contiguous()
    shared, _ = build_appearance_transfer("bezier")(rgb, None, _gen(1))
    assert torch.equal(shared[:, 0], shared[:, 1]) and torch.equal(shared[:, 0], shared[:, 2])
    per_channel, _ = build_appearance_transfer("bezier", {"per_channel": True})(rgb, None, _gen(1))
    assert not torch.equal(per_channel[:, 0], per_channel[:, 1])


@pytest.mark.parametrize("name", ["bezier", "gin"])
def test_location_scale_comes_after_the_remapping(name: str) -> None:
    images = torch.rand(4, 1, 12, 12, generator=_gen(0))
    plain, _ = build_appearance_transfer(name)(images, None, _gen(3))
    identity = {"location_scale": True, "scale_range": (1.0, 1.0), "shift_range": (0.0, 0.0)}
    same, _ = build_appearance_transfer(name, identity)(images, None, _gen(3))
    assert torch.equal(plain, same)  # the remapping draws come first and are the same
    moved, _ = build_appearance_transfer(name, {"location_scale": True, "scale_range": (0.5, 0.6),
                                                "shift_range": (0.3, 0.35)})(images, None, _gen(3))
    # Per sample an affine image of the remapped one, with scale and shift from their ranges (no clamp bites).
    p, m = plain.flatten(1), moved.flatten(1)
    scale = (m.amax(1) - m.amin(1)) / (p.amax(1) - p.amin(1))
    shift = m.amin(1) - scale * p.amin(1)
    assert ((scale >= 0.5 - 1e-5) & (scale <= 0.6 + 1e-5)).all()
    assert ((shift >= 0.3 - 1e-5) & (shift <= 0.35 + 1e-5)).all()
    assert scale.unique().numel() == 4  # drawn per sample
    torch.testing.assert_close(m, scale[:, None] * p + shift[:, None], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- gin specifics
def test_gin_output_spans_unit_range_per_sample() -> None:
    images = 0.3 * torch.rand(4, 3, 12, 12, generator=_gen(0))
    out, _ = build_appearance_transfer("gin")(images, None, _gen(0))
    assert torch.allclose(out.flatten(1).amin(1), torch.zeros(4)) and torch.allclose(out.flatten(1).amax(1),
                                                                                     torch.ones(4))


@pytest.mark.parametrize("spatial", [(12, 12), (6, 8, 8)])
def test_gin_with_1x1_kernels_is_a_pointwise_map_and_3x3_is_not(spatial: tuple[int, ...]) -> None:
    levels = torch.tensor([0.1, 0.4, 0.7, 0.9])
    idx = torch.randint(0, 4, (2, 1, *spatial), generator=_gen(0))
    images = levels[idx]
    pointwise, _ = build_appearance_transfer("gin", {"kernel_sizes": (1,)})(images, None, _gen(1))
    spread = torch.stack([pointwise[idx == k].std() for k in range(4)])
    assert spread.max() < 1e-5  # equal inputs -> equal outputs: no spatial mixing
    spatial_mix, _ = build_appearance_transfer("gin", {"kernel_sizes": (3,)})(images, None, _gen(1))
    assert torch.stack([spatial_mix[idx == k].std() for k in range(4)]).max() > 1e-3


# --------------------------------------------------------------------------- histogram matching
def test_histogram_matching_gives_the_reference_values() -> None:
    images, reference = _pair((3, 3, 16, 16))
    out, strength = build_appearance_transfer("histogram-matching")(images, reference)
    torch.testing.assert_close(out.flatten(2).sort(-1).values, reference.flatten(2).sort(-1).values,
                               atol=1e-6, rtol=0)
    # The map is increasing: the ranks of the voxels are kept.
    assert torch.equal(out.flatten(2).argsort(-1), images.flatten(2).argsort(-1))
    assert (strength > 0.05).all()
    same, zero = build_appearance_transfer("histogram-matching")(images, images)
    assert torch.equal(same, images) and torch.equal(zero, torch.zeros(3))


def test_histogram_matching_interpolates_reference_quantiles_of_another_size() -> None:
    reference = torch.linspace(0.0, 1.0, 1024)[torch.randperm(1024, generator=_gen(0))].view(1, 1, 32, 32)
    images = torch.rand(1, 1, 16, 16, generator=_gen(1))
    out = match_histograms(images, reference)
    level = (torch.arange(256, dtype=torch.float64) + 0.5) / 256
    expected = ((level * 1024 - 0.5) / 1023).float()  # the reference quantile at each source rank's level
    torch.testing.assert_close(out.flatten().sort().values, expected, atol=1e-6, rtol=0)


def test_histogram_matching_maps_a_constant_background_to_one_value() -> None:
    g = _gen(0)
    images = 0.2 + 0.8 * torch.rand(2, 1, 20, 20, generator=g)
    background = torch.zeros(2, 1, 20, 20, dtype=torch.bool)
    background[:, :, :, :12] = True  # 60 % of the voxels tie at 0
    images[background] = 0.0
    reference = torch.rand(2, 1, 20, 20, generator=g) ** 2
    out, _ = build_appearance_transfer("histogram-matching")(images, reference)
    for i in range(2):
        values = out[i][background[i]]
        assert values.unique().numel() == 1  # no salt noise inside the tie
        # The middle of the tie's CDF span (level 0.3) read off the reference's quantiles.
        ref_sorted = reference[i].flatten().sort().values
        torch.testing.assert_close(values[0], torch.lerp(ref_sorted[119], ref_sorted[120], torch.tensor(0.5)))
        assert out[i][~background[i]].unique().numel() == (~background[i]).sum()


def test_histogram_matching_on_luminance_keeps_chroma() -> None:
    g = _gen(0)
    images = 0.3 + 0.4 * torch.rand(2, 3, 16, 16, generator=g)
    reference = 0.35 + 0.3 * torch.rand(2, 3, 16, 16, generator=g) ** 2
    out, _ = build_appearance_transfer("histogram-matching", {"luminance": True})(images, reference)
    assert out.min() > 0.0 and out.max() < 1.0
    ycc_out, ycc_in, ycc_ref = rgb_to_ycbcr(out), rgb_to_ycbcr(images), rgb_to_ycbcr(reference)
    torch.testing.assert_close(ycc_out[:, 1:], ycc_in[:, 1:], atol=1e-5, rtol=0)
    torch.testing.assert_close(ycc_out[:, 0].flatten(1).sort(-1).values, ycc_ref[:, 0].flatten(1).sort(-1).values,
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["bezier", "gin"])
def test_luminance_option_remaps_luminance_and_keeps_chroma(name: str) -> None:
    g = _gen(0)
    images = 0.4 + 0.2 * torch.rand(4, 3, 16, 16, generator=g)
    out, _ = build_appearance_transfer(name, {"luminance": True})(images, None, _gen(3))
    ycc_in, ycc_out = rgb_to_ycbcr(images), rgb_to_ycbcr(out)
    # The luminance is the 1-channel member applied to the image's luminance (same random draws) ...
    grey, _ = build_appearance_transfer(name)(ycc_in[:, :1], None, _gen(3))
    unclamped = ((out > 1e-6) & (out < 1 - 1e-6)).all(1)
    assert unclamped.float().mean() > 0.3
    torch.testing.assert_close(ycc_out[:, 0][unclamped], grey[:, 0][unclamped], atol=1e-5, rtol=0)
    # ... and the chroma is the input's wherever no channel was clamped.
    torch.testing.assert_close(ycc_out[:, 1:].movedim(1, -1)[unclamped], ycc_in[:, 1:].movedim(1, -1)[unclamped],
                               atol=1e-5, rtol=0)
    # Without the option the chroma moves: what the option exists for.
    mixed, _ = build_appearance_transfer(name)(images, None, _gen(3))
    assert (rgb_to_ycbcr(mixed)[:, 1:] - ycc_in[:, 1:]).abs().max() > 0.05
    # On greyscale the option changes nothing.
    grey_in = images[:, :1]
    assert torch.equal(build_appearance_transfer(name, {"luminance": True})(grey_in, None, _gen(4))[0],
                       build_appearance_transfer(name)(grey_in, None, _gen(4))[0])


# --------------------------------------------------------------------------- random choice
def test_random_choice_selects_one_member_per_sample() -> None:
    images, reference = _pair((32, 1, 8, 8))
    members = {"members": ["histogram-matching", "fourier"], "member_options": {"fourier": {"mode": "fixed"}}}
    matched, _ = build_appearance_transfer("histogram-matching")(images, reference)
    fda, beta = build_appearance_transfer("fourier", {"mode": "fixed"})(images, reference)
    out, strength = build_appearance_transfer("random-choice", members)(images, reference, _gen(0))
    is_matched = (out == matched).flatten(1).all(1)
    is_fda = (out == fda).flatten(1).all(1)
    assert (is_matched ^ is_fda).all() and is_matched.any() and is_fda.any()
    assert torch.equal(strength[is_fda], beta[is_fda])
    only_first, _ = build_appearance_transfer("random-choice", {**members, "probabilities": [1.0, 0.0]})(
        images, reference, _gen(0))
    assert torch.equal(only_first, matched)


# --------------------------------------------------------------------------- pseudo-correlation (IPA)
@pytest.mark.parametrize("spatial", [(32, 24), (12, 16, 20)])
def test_smooth_random_field_is_in_unit_range_smooth_and_varies(spatial: tuple[int, ...]) -> None:
    field = smooth_random_field(8, spatial, 4, _gen(0), torch.device("cpu"))
    assert field.shape == (8, 1, *spatial) and field.min() >= 0.0 and field.max() <= 1.0
    assert (field.flatten(1).amax(1) - field.flatten(1).amin(1) > 0.2).all()  # every sample varies in space
    noise = torch.rand(field.shape, generator=_gen(1))
    step = field.diff(dim=2).abs().mean()
    assert step < 0.25 * noise.diff(dim=2).abs().mean()  # neighbours nearly agree: smooth, not noise


@pytest.mark.parametrize("member", ["bezier", "gin"])
def test_pseudo_correlation_gives_regions_of_one_image_different_maps(member: str) -> None:
    # Two flat regions: a global intensity map (GIN's 3x3 kernels act only near the edge, 4 layers = 4 px)
    # keeps the left one flat; two maps blended in space cannot.
    images = torch.full((16, 1, 32, 32), 0.2)
    images[..., 16:] = 0.7

    def spread_left(x: torch.Tensor) -> torch.Tensor:
        left = x[..., :10].flatten(1)
        return left.amax(1) - left.amin(1)

    plain, _ = build_appearance_transfer(member)(images, None, _gen(0))
    assert (spread_left(plain) < 1e-5).all()
    blended, _ = build_appearance_transfer("pseudo-correlation", {"member": member})(images, None, _gen(0))
    # GIN's min-max mapping can send the dark half to 0 in both draws; most samples still vary.
    assert (spread_left(blended) > 1e-3).sum() >= 8


def test_pseudo_correlation_lies_between_its_two_draws_per_voxel() -> None:
    images = torch.rand(4, 1, 20, 20, generator=_gen(3))
    ipa = build_appearance_transfer("pseudo-correlation", {"member": "bezier", "control_points": 3})
    out, _ = ipa(images, None, _gen(7))
    g = _gen(7)  # the same draws, in the member's order: two restylings, then the field
    first, _ = ipa.member(images, None, g)
    second, _ = ipa.member(images, None, g)
    lo, hi = torch.minimum(first, second), torch.maximum(first, second)
    assert ((out >= lo - 1e-6) & (out <= hi + 1e-6)).all()
    assert not torch.equal(out, first) and not torch.equal(out, second)

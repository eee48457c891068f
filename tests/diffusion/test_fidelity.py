"""Label-free generator fidelity: mask fidelity, domain classifier / style fidelity, Frechet distance, report."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.metrics import FIDMetric
from torch import Tensor, nn

from diffuse_uda.config import NetworkConfig
from diffuse_uda.diffusion.fidelity import (
    MIN_HELDOUT_ACCURACY,
    DomainClassifier,
    fidelity_report,
    frechet_distance,
    mask_fidelity,
    mean_foreground_dice,
    real_image_features,
    style_fidelity,
    train_domain_classifier,
)
from diffuse_uda.networks.ensemble import SnapshotEnsemble
from diffuse_uda.networks.segmenter import build_segmenter

K = 3


class DecodingSegmenter(nn.Module):
    """"Segments" images that encode their mask as intensity ``mask / (K - 1)``: logits peak at the
    class whose code is nearest. Records the input sizes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, ...]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(tuple(x.shape[2:]))
        codes = torch.arange(K, dtype=x.dtype, device=x.device).view(1, K, *([1] * (x.ndim - 2)))
        return -((x[:, :1] * (K - 1) - codes) ** 2) * 10


def _masks(n: int, dims: int, size: int = 16, seed: int = 0) -> Tensor:
    """Random boxes of class 1 with a class-2 box inside, at random places."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros((n, *([size] * dims)), dtype=torch.long)
    for i in range(n):
        lo = torch.randint(0, size // 2, (dims,), generator=g).tolist()
        box = tuple(slice(a, a + size // 2) for a in lo)
        core = tuple(slice(a + 1, a + size // 4) for a in lo)
        masks[(i, *box)] = 1
        masks[(i, *core)] = 2
    return masks


def _encode(masks: Tensor, channels: int = 1) -> Tensor:
    return (masks.float() / (K - 1)).unsqueeze(1).repeat(1, channels, *([1] * (masks.ndim - 1)))


def _domain(n: int, contrast: float, dims: int, seed: int, size: int = 16, channels: int = 1) -> Tensor:
    """Smooth random textures around mid-grey; the domains differ only in contrast (same mean)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand((n, channels, *([size] * dims)), generator=g)
    smooth = (F.avg_pool2d if dims == 2 else F.avg_pool3d)(noise, 3, 1, 1)
    smooth = (smooth - smooth.mean()) / smooth.std()
    return (0.5 + 0.15 * contrast * smooth).clamp(0, 1)


def _tiny_segresnet(dims: int, channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return build_segmenter(dims, channels, K, NetworkConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,)))


# ---------------------------------------------------------------------- mask fidelity
def test_mean_foreground_dice_values_and_empty_maps() -> None:
    ref = torch.tensor([[0, 1, 1, 2], [0, 1, 1, 0], [0, 0, 0, 0], [1, 1, 0, 0]])
    pred = torch.tensor([[0, 1, 1, 2], [0, 1, 0, 0], [0, 0, 0, 0], [2, 2, 0, 0]])
    d = mean_foreground_dice(pred, ref, K)
    # perfect; class 1 only: 2*1/(1+2); both empty: NaN; class 1 and 2 swapped: 0
    assert d[0] == 1 and d[1] == pytest.approx(2 / 3) and d[2].isnan() and d[3] == 0
    with pytest.raises(ValueError, match="num_classes"):
        mean_foreground_dice(pred, ref, 1)


@pytest.mark.parametrize("dims", [2, 3])
def test_mask_fidelity_is_one_for_matching_masks_and_lower_when_shuffled(dims: int) -> None:
    size = 16 if dims == 2 else 8
    masks = _masks(6, dims, size)
    images = _encode(masks)
    seg = DecodingSegmenter()
    exact = mask_fidelity(seg, images, masks, K, batch_size=4)
    assert exact.shape == (6,) and torch.equal(exact, torch.ones(6))
    shuffled = mask_fidelity(seg, images, masks.roll(1, 0), K)
    assert shuffled.mean() < 0.8
    # (N, 1, *S) masks are accepted as well
    assert torch.equal(mask_fidelity(seg, images, masks[:, None], K), exact)


def test_mask_fidelity_resizes_to_the_segmenter_input_and_skips_empty_images() -> None:
    masks = _masks(3, 2)
    masks[2] = 0  # empty mask; the decoding segmenter predicts nothing either -> NaN
    seg = DecodingSegmenter().train()
    scores = mask_fidelity(seg, _encode(masks), masks, K, input_size=(32, 32))
    assert seg.seen == [(32, 32)] and seg.training  # resized, and its mode restored
    assert scores[:2].min() > 0.9 and scores[2].isnan()
    with pytest.raises(TypeError, match="integer"):
        mask_fidelity(seg, _encode(masks), masks.float(), K)
    with pytest.raises(ValueError, match="do not match"):
        mask_fidelity(seg, _encode(masks), masks[:2], K)


# ---------------------------------------------------------------------- style fidelity
@pytest.mark.parametrize(("dims", "channels"), [(2, 1), (2, 3), (3, 1)])
def test_domain_classifier_separates_contrast_domains(dims: int, channels: int) -> None:
    size = 16 if dims == 2 else 8
    source = _domain(30, 0.5, dims, 0, size, channels)
    target = _domain(30, 1.5, dims, 1, size, channels)
    clf = train_domain_classifier(source, target, dims, steps=150, seed=0)
    assert clf.heldout_accuracy is not None and clf.heldout_accuracy >= 0.9
    assert style_fidelity(clf, _domain(20, 1.5, dims, 5, size, channels)) >= 0.9
    assert style_fidelity(clf, _domain(20, 0.5, dims, 6, size, channels)) <= 0.1


def test_domain_classifier_is_deterministic_from_the_seed() -> None:
    source, target = _domain(20, 0.5, 2, 0), _domain(20, 1.5, 2, 1)
    a = train_domain_classifier(source, target, 2, steps=20, seed=3)
    b = train_domain_classifier(source, target, 2, steps=20, seed=3)
    c = train_domain_classifier(source, target, 2, steps=20, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.heldout_accuracy == b.heldout_accuracy


def test_domain_classifier_input_checks() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        train_domain_classifier(_domain(1, 0.5, 2, 0), _domain(5, 1.5, 2, 1), 2, steps=1)
    with pytest.raises(ValueError, match="differ"):
        train_domain_classifier(_domain(5, 0.5, 2, 0), _domain(5, 1.5, 2, 1, size=8), 2, steps=1)
    with pytest.raises(ValueError, match="spatial dims"):
        train_domain_classifier(_domain(5, 0.5, 2, 0), _domain(5, 1.5, 2, 1), 3, steps=1)
    with pytest.raises(ValueError, match="do not fit"):
        style_fidelity(DomainClassifier(2, 1), _domain(2, 1.0, 2, 0, channels=3))


# ---------------------------------------------------------------------- Frechet distance
def _scipy_frechet(a: Tensor, b: Tensor) -> float:
    """The textbook formula with scipy's matrix square root (an independent reference)."""
    import numpy as np
    from scipy.linalg import sqrtm

    a64, b64 = a.double().numpy(), b.double().numpy()
    cov_a, cov_b = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    root = sqrtm(cov_a @ cov_b).real
    return float(((a64.mean(0) - b64.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated:DeprecationWarning")  # MONAI calling scipy
def test_frechet_distance_zero_for_identical_sets_and_grows_with_a_mean_shift() -> None:
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(200, 8, generator=g)
    assert frechet_distance(feats, feats) == pytest.approx(0.0, abs=1e-6)
    # equal covariances: the distance is the squared mean shift (8 dims shifted by s -> 8 s^2)
    assert frechet_distance(feats, feats + 1.0) == pytest.approx(8.0, rel=1e-4)
    assert frechet_distance(feats, feats + 2.0) == pytest.approx(32.0, rel=1e-4)
    # agrees with scipy's matrix square root, and with MONAI's FIDMetric where that runs (MONAI 1.6.1
    # passes sqrtm an argument newer scipy releases removed), where the covariances are well conditioned
    other = torch.randn(300, 8, generator=g) * 1.5 + 0.3
    assert frechet_distance(feats, other) == pytest.approx(_scipy_frechet(feats, other), rel=1e-4)
    try:
        monai_value = float(FIDMetric()(feats, other))
    except TypeError as exc:
        assert "disp" in str(exc)
    else:
        assert frechet_distance(feats, other) == pytest.approx(monai_value, rel=1e-4)


def test_frechet_distance_with_fewer_samples_than_features_and_guards() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 32, generator=g), torch.randn(6, 32, generator=g)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-4)
    d, shifted = frechet_distance(a, b), frechet_distance(a, b + 3.0)
    assert math.isfinite(d) and d > 0 and shifted > d
    # one feature: the squared mean difference plus the squared difference of the standard deviations
    one = (a[:, 0].mean() - b[:, 0].mean()) ** 2 + (a[:, 0].std() - b[:, 0].std()) ** 2
    assert frechet_distance(a[:, :1], b[:, :1]) == pytest.approx(float(one), rel=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(a, b[:, :4])
    with pytest.raises(ValueError, match="finite"):
        frechet_distance(a, torch.full_like(b, float("nan")))


@pytest.mark.parametrize("dims", [2, 3])
def test_real_image_features_of_segresnet_and_ensemble(dims: int) -> None:
    size = 16 if dims == 2 else 8
    net = _tiny_segresnet(dims)
    images = _domain(5, 1.0, dims, 0, size)
    feats = real_image_features(net, images, batch_size=2)
    assert feats.shape == (5, 16)  # init_filters 8, one downsampling -> 16 channels
    ensemble = SnapshotEnsemble([net, _tiny_segresnet(dims)])
    torch.testing.assert_close(real_image_features(ensemble, images), feats)  # identical members
    with pytest.raises(TypeError, match="SegResNet"):
        real_image_features(DecodingSegmenter(), images)


# ---------------------------------------------------------------------- report
def test_fidelity_report_collects_every_measure() -> None:
    masks = _masks(6, 2)
    synth = _encode(masks)
    source, target = _domain(20, 0.5, 2, 0), _domain(20, 1.5, 2, 1)
    net = _tiny_segresnet(2)
    clf = train_domain_classifier(source, target, 2, steps=60, seed=0)
    tgt_feats = real_image_features(net, target, input_size=(32, 32))
    src_feats = real_image_features(net, source, input_size=(32, 32))
    report = fidelity_report(synth, masks, net, clf, tgt_feats, src_feats, K, seconds_per_image=0.5,
                             input_size=(32, 32))
    assert report.n_images == 6 and report.seconds_per_image == 0.5
    assert report.mask_fidelity_mean is not None and 0 <= report.mask_fidelity_mean <= 1
    assert report.classifier_heldout_accuracy == clf.heldout_accuracy and report.style_fidelity_meaningful
    assert report.style_fidelity is not None and 0 <= report.style_fidelity <= 1
    assert report.frechet_distance_target is not None and report.frechet_distance_target > 0
    assert report.frechet_distance_source is not None and report.frechet_distance_source > 0
    assert any("regularised" in n for n in report.notes)  # 6 images, 16 feature dims
    assert report.model_dump(mode="json")["n_images"] == 6


def test_fidelity_report_flags_a_classifier_that_cannot_separate_the_domains() -> None:
    masks = _masks(4, 2)
    masks[3] = 0
    same = _domain(120, 1.0, 2, 0)  # one distribution split in two "domains"
    clf = train_domain_classifier(same[:60], same[60:], 2, steps=60, seed=0)
    assert clf.heldout_accuracy is not None and clf.heldout_accuracy < MIN_HELDOUT_ACCURACY
    report = fidelity_report(_encode(masks), masks, DecodingSegmenter(), clf, None, None, K)
    assert report.style_fidelity_meaningful is False and any("meaningless" in n for n in report.notes)
    # the empty image is excluded: the other three are decoded exactly
    assert report.n_mask_scored == 3 and report.mask_fidelity_mean == 1.0 and report.mask_fidelity_std == 0.0
    assert report.frechet_distance_target is None and report.frechet_distance_source is None

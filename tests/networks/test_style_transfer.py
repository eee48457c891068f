import pytest
import torch

from diffuse_uda.networks.glua import LocalAlignmentSegmenter, OutputDiscriminator, bottleneck_channels
from diffuse_uda.networks.segmenter import build_segmenter
from diffuse_uda.networks.style_transfer import (
    SOURCE,
    TARGET,
    PatchDiscriminator,
    StyleTransferNet,
    fitting_downsamplings,
)

torch.set_num_threads(1)


def _net(**kwargs) -> StyleTransferNet:
    torch.manual_seed(0)
    return StyleTransferNet(in_channels=1, base=4, n_res=1, mlp_hidden=8, **kwargs).eval()


def test_encoder_decoder_shapes_and_range() -> None:
    net = _net()
    x = torch.rand(2, 1, 16, 16)
    content = net.encode(x, SOURCE)
    assert content.shape == (2, 16, 4, 4)  # base * 2^2 channels at 1/4 resolution
    out = net.translate(x, SOURCE, TARGET)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1


def test_domain_style_code_changes_the_output() -> None:
    net = _net()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        content = net.encode(x, SOURCE)
        as_source, as_target = net.decode(content, SOURCE), net.decode(content, TARGET)
        per_sample = net.decode(content, torch.tensor([SOURCE, TARGET]))
    assert not torch.allclose(as_source, as_target)
    # A per-sample label tensor gives each sample its own domain's style.
    assert torch.allclose(per_sample[0], as_source[0]) and torch.allclose(per_sample[1], as_target[1])


def test_unconditional_encoder_ignores_the_domain() -> None:
    net = _net(conditional_encoder=False)
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(net.encode(x, SOURCE), net.encode(x, TARGET))


def test_patch_discriminator_picks_each_samples_domain_branch() -> None:
    torch.manual_seed(0)
    disc = PatchDiscriminator(1, base=4, n_down=fitting_downsamplings(16, 3))
    x = torch.rand(2, 1, 16, 16)
    both = disc.all_domains(x)
    assert both.shape == (2, 2, 2, 2)
    picked = disc(x, torch.tensor([TARGET, SOURCE]))
    assert picked.shape == (2, 1, 2, 2)
    assert torch.equal(picked[0, 0], both[0, TARGET]) and torch.equal(picked[1, 0], both[1, SOURCE])
    assert torch.equal(disc(x, SOURCE), both[:, :1])


@pytest.mark.parametrize(("size", "limit", "expected"), [(16, 3, 3), (256, 3, 3), (8, 4, 2), (2, 3, 1)])
def test_fitting_downsamplings(size: int, limit: int, expected: int) -> None:
    assert fitting_downsamplings(size, limit) == expected


def test_output_discriminator_shape() -> None:
    d2 = OutputDiscriminator.for_image_size(3, 16, base=4)
    assert d2(torch.rand(2, 3, 16, 16).softmax(1)).shape == (2, 1, 2, 2)


def _segmenter():
    from diffuse_uda.config import NetworkConfig

    torch.manual_seed(0)
    return build_segmenter(2, 1, 3, NetworkConfig(init_filters=8, blocks_down=(1, 1, 1), blocks_up=(1, 1)))


def test_local_alignment_segmenter_shapes_and_reweighting() -> None:
    seg = _segmenter()
    net = LocalAlignmentSegmenter(seg, d1_channels=4).eval()
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        features, _ = net.encode(x)
        assert features.shape == (2, bottleneck_channels(seg), 4, 4)
        assert net.d1(features).shape == (2, 1, 4, 4)
        plain, reweighted = net(x, reweight=False), net(x)
        assert plain.shape == reweighted.shape == (2, 3, 16, 16)
        # Without the mask the wrapper is exactly the SegResNet; with it, the output changes.
        assert torch.allclose(plain, seg(x), atol=1e-6)
        assert not torch.allclose(plain, reweighted)


def test_reweight_is_f_plus_f_tanh_abs_mask() -> None:
    f = torch.randn(1, 3, 2, 2)
    m = torch.randn(1, 1, 2, 2)
    assert torch.allclose(LocalAlignmentSegmenter.reweight(f, m), f * (1 + torch.tanh(m.abs())))

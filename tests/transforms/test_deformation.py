"""Identity is a no-op, masks stay valid labels and move with the image, sampling is reproducible."""

from __future__ import annotations

import pytest
import torch

from diffuse_uda.transforms import DeformationParams, RandomDeformation

IDENTITY = DeformationParams(rotation_degrees=0.0, scale_range=(1.0, 1.0), shift_fraction=0.0, alpha=0.0)
STRONG = DeformationParams(rotation_degrees=15.0, scale_range=(0.9, 1.1), shift_fraction=0.05, alpha=0.05)


def _blob_mask(batch: int, spatial: tuple[int, ...]) -> torch.Tensor:
    """Nested boxes labelled 1 and 2 on a background of 0."""
    m = torch.zeros(batch, 1, *spatial, dtype=torch.long)
    outer = tuple(slice(n // 4, 3 * n // 4) for n in spatial)
    inner = tuple(slice(3 * n // 8, 5 * n // 8) for n in spatial)
    m[(slice(None), slice(None), *outer)] = 1
    m[(slice(None), slice(None), *inner)] = 2
    return m


SPATIAL = [(24, 20), (12, 14, 10)]


@pytest.mark.parametrize("spatial", SPATIAL)
@pytest.mark.parametrize("num_classes", [None, 3])
def test_identity_returns_input(spatial: tuple[int, ...], num_classes: int | None) -> None:
    img = torch.rand(2, 2, *spatial, generator=torch.Generator().manual_seed(0))
    mask = _blob_mask(2, spatial)
    out_img, out_mask = RandomDeformation(IDENTITY, num_classes)(img, mask, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out_img, img, atol=1e-4, rtol=0)
    assert torch.equal(out_mask, mask)


@pytest.mark.parametrize("spatial", SPATIAL)
@pytest.mark.parametrize("num_classes", [None, 3])
def test_mask_labels_valid_and_moves_with_image(spatial: tuple[int, ...], num_classes: int | None) -> None:
    mask = _blob_mask(4, spatial)
    fg = (mask > 0).float()
    deform = RandomDeformation(STRONG, num_classes)
    out_img, out_mask = deform(fg, mask, torch.Generator().manual_seed(3))
    assert out_mask.dtype == mask.dtype and out_mask.shape == mask.shape
    assert set(out_mask.unique().tolist()) <= {0, 1, 2}
    assert out_img.shape == fg.shape and torch.isfinite(out_img).all()
    pred, ref = out_img > 0.5, out_mask > 0
    dice = 2 * (pred & ref).sum() / (pred.sum() + ref.sum())
    assert dice > 0.95
    # Batch of 4 gets 4 different deformations, and it actually deformed something.
    assert not any(torch.equal(out_mask[0], out_mask[i]) for i in range(1, 4))
    assert not torch.equal(out_mask, mask)


def test_same_seed_same_output_and_grid_reuse() -> None:
    img = torch.rand(2, 1, 10, 12, 8, generator=torch.Generator().manual_seed(0))
    mask = _blob_mask(2, (10, 12, 8))
    deform = RandomDeformation(STRONG, num_classes=3)
    a = deform(img, mask, torch.Generator().manual_seed(9))
    b = deform(img, mask, torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    grid = deform.sample_grid(2, (10, 12, 8), "cpu", torch.Generator().manual_seed(9))
    assert grid.shape == (2, 10, 12, 8, 3)
    c = deform.apply(grid, img, mask)
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])


def test_mask_only_and_channelless_mask() -> None:
    mask = _blob_mask(2, (16, 16))
    deform = RandomDeformation(STRONG)
    img_none, with_channel = deform(None, mask, torch.Generator().manual_seed(4))
    _, without_channel = deform(None, mask.squeeze(1), torch.Generator().manual_seed(4))
    assert img_none is None
    assert torch.equal(with_channel.squeeze(1), without_channel)


@pytest.mark.parametrize("spatial", [(5, 7), (4, 6, 3)])
def test_fast_affine_grid_matches_torch(spatial: tuple[int, ...]) -> None:
    from diffuse_uda.transforms.deformation import _affine_grid

    d = len(spatial)
    g = torch.Generator().manual_seed(0)
    theta = torch.eye(d, d + 1) + 0.3 * torch.randn(3, d, d + 1, generator=g)
    ref = torch.nn.functional.affine_grid(theta, [3, 1, *spatial], align_corners=False)
    torch.testing.assert_close(_affine_grid(theta, spatial), ref, atol=1e-6, rtol=0)


def test_first_argmax_matches_argmax_with_ties() -> None:
    from diffuse_uda.transforms.deformation import _first_argmax

    x = torch.randint(0, 3, (2, 4, 5, 6), generator=torch.Generator().manual_seed(0)).float()  # many ties
    assert torch.equal(_first_argmax(x), x.argmax(dim=1, keepdim=True))


def test_box_filter_matches_avg_pool() -> None:
    from diffuse_uda.transforms.deformation import _box_filter_valid

    x = torch.randn(2, 3, 7, 8, 6, generator=torch.Generator().manual_seed(0))
    ref = torch.nn.functional.avg_pool3d(x, kernel_size=3, stride=1)
    torch.testing.assert_close(_box_filter_valid(x, 3), ref, atol=1e-6, rtol=0)

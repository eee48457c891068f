"""Box masks are per-sample, the right size, inside the image and reproducible; cutmix selects."""

from __future__ import annotations

import torch

from diffuse_uda.transforms import cutmix, random_box_mask


def test_box_sizes_within_range_and_binary() -> None:
    shape = (20, 16, 12)
    box = random_box_mask(6, shape, (0.25, 0.5), generator=torch.Generator().manual_seed(0))
    assert box.shape == (6, 1, *shape) and box.dtype == torch.float32
    assert set(box.unique().tolist()) <= {0.0, 1.0}
    for axis, n in enumerate(shape):
        other = tuple(d for d in range(2, 5) if d != 2 + axis)
        extent = box.amax(dim=other).sum(dim=-1).squeeze(1)  # side length along this axis
        frac = extent / n
        assert ((frac >= 0.25 - 0.5 / n) & (frac <= 0.5 + 0.5 / n)).all()
    # Volume is the product of the sides: it is one box, not a union.
    assert (box.sum(dim=(1, 2, 3, 4)) > 0).all()


def test_box_deterministic_and_varies_over_batch() -> None:
    b1 = random_box_mask(4, (16, 16), generator=torch.Generator().manual_seed(7))
    b2 = random_box_mask(4, (16, 16), generator=torch.Generator().manual_seed(7))
    assert torch.equal(b1, b2)
    assert not all(torch.equal(b1[0], b1[i]) for i in range(1, 4))


def test_cutmix_mixes_and_identity() -> None:
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 8, 8, generator=g), torch.rand(2, 3, 8, 8, generator=g)
    box = random_box_mask(2, (8, 8), generator=g)
    out = cutmix(a, b, box)
    inside = box.bool().expand_as(a)
    assert torch.equal(out[inside], b[inside]) and torch.equal(out[~inside], a[~inside])
    assert torch.equal(cutmix(a, a, box), a)
    labels_a, labels_b = torch.zeros(2, 1, 8, 8, dtype=torch.long), torch.ones(2, 1, 8, 8, dtype=torch.long)
    mixed = cutmix(labels_a, labels_b, box)
    assert mixed.dtype == torch.long and torch.equal(mixed, box.long())

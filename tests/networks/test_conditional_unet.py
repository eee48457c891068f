"""ConditionalDiffusionUNet: shapes in 2D/3D and that the mask really conditions the output."""

from __future__ import annotations

import pytest
import torch

from diffuse_uda.networks.conditional_unet import ConditionalDiffusionUNet, one_hot


def _model(spatial_dims: int, image_channels: int = 1, num_classes: int = 3) -> ConditionalDiffusionUNet:
    torch.manual_seed(0)
    return ConditionalDiffusionUNet(
        spatial_dims, image_channels, num_classes, embed_channels=4, channels=(8, 16), norm_num_groups=4
    )


def test_one_hot_accepts_channel_axis() -> None:
    mask = torch.tensor([[[0, 1], [2, 1]]])
    a = one_hot(mask, 3)
    b = one_hot(mask[:, None], 3)
    assert a.shape == (1, 3, 2, 2) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert torch.equal(a.argmax(1), mask)
    with pytest.raises(TypeError):
        one_hot(mask.float(), 3)


@pytest.mark.parametrize(("spatial_dims", "image_channels"), [(2, 1), (2, 3), (3, 1)])
def test_output_shape_equals_image_shape(spatial_dims: int, image_channels: int) -> None:
    model = _model(spatial_dims, image_channels)
    size = (8,) * spatial_dims
    x = torch.randn(2, image_channels, *size)
    mask = torch.randint(0, 3, (2, *size))
    out = model(x, one_hot(mask, 3), torch.tensor([0, 5]))
    assert out.shape == x.shape
    assert model.unet.in_channels == image_channels + 4


def test_condition_changes_the_prediction() -> None:
    model = _model(2)
    # MONAI zero-initialises the output convolution (the untrained net predicts 0 for any input),
    # so perturb all weights to look at a "trained" network.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(1, 1, 8, 8)
    t = torch.tensor([3])
    m1 = torch.zeros(1, 8, 8, dtype=torch.long)
    m2 = m1.clone()
    m2[:, 2:6, 2:6] = 2
    with torch.no_grad():
        a = model(x, one_hot(m1, 3), t)
        b = model(x, one_hot(m2, 3), t)
        a2 = model(x, one_hot(m1, 3), t)
    assert torch.equal(a, a2)
    assert (a - b).abs().max() > 1e-4


def test_rejects_wrong_mask_channels() -> None:
    model = _model(2)
    with pytest.raises(ValueError, match="channels"):
        model(torch.randn(1, 1, 8, 8), torch.zeros(1, 2, 8, 8), torch.tensor([0]))


def _saved_bytes(fn) -> tuple[int, torch.Tensor]:
    """Bytes of the tensors autograd keeps for the backward pass while ``fn`` runs (the activation
    memory that gradient checkpointing trades for recomputation)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


@pytest.mark.parametrize(("spatial_dims", "domains"), [(2, 0), (2, 2), (3, 0)])
def test_gradient_checkpointing_gives_the_same_outputs_and_gradients_for_far_less_saved_memory(
        spatial_dims: int, domains: int) -> None:
    def build(checkpointing: bool) -> ConditionalDiffusionUNet:
        torch.manual_seed(0)
        return ConditionalDiffusionUNet(spatial_dims, 1, 3, embed_channels=4, channels=(8, 16, 16), norm_num_groups=4,
                                        attention_levels=(False, False, True), num_domains=domains,
                                        gradient_checkpointing=checkpointing)

    size = (16,) * spatial_dims
    g = torch.Generator().manual_seed(1)
    x, mask = torch.randn(2, 1, *size, generator=g), torch.randint(0, 3, (2, *size), generator=g)
    t, domain = torch.tensor([3, 7]), torch.tensor([1, 2]) if domains else None
    runs = []
    for checkpointing in (False, True):
        model = build(checkpointing)
        saved, out = _saved_bytes(lambda m=model: m(x, one_hot(mask, 3), t, domain))
        out.square().mean().backward()
        runs.append((saved, out, [p.grad for p in model.parameters()]))
    (plain_saved, plain_out, plain_grads), (ckpt_saved, ckpt_out, ckpt_grads) = runs
    assert torch.equal(plain_out, ckpt_out)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, ckpt_grads, strict=True))
    assert ckpt_saved < 0.3 * plain_saved
    # Inference never checkpoints (nothing to save): the plain MONAI forward.
    model = build(True).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x, one_hot(mask, 3), t, domain), plain_out, rtol=0, atol=0)

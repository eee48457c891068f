"""The segmentation network factory: SegResNet with and without gradient checkpointing."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SegResNet

from diffuse_uda.config import NetworkConfig
from diffuse_uda.networks.segmenter import build_segmenter, encoder_features, segmenter_from_spec, segmenter_spec


def _saved_bytes(fn) -> tuple[int, torch.Tensor]:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return sum(storages.values()), out


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_checkpointed_segresnet_has_the_same_weights_outputs_and_gradients_for_less_saved_memory(
        spatial_dims: int) -> None:
    config = NetworkConfig(init_filters=8, blocks_down=(1, 2, 2), blocks_up=(1, 1), dropout=0.2)
    runs = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        net = build_segmenter(spatial_dims, 1, 3, config.model_copy(update={"gradient_checkpointing": checkpointing}))
        torch.manual_seed(1)  # the same dropout masks
        saved, out = _saved_bytes(lambda n=net: n(torch.rand(2, 1, *(16,) * spatial_dims,
                                                             generator=torch.Generator().manual_seed(2))))
        out.square().mean().backward()
        runs.append((net, saved, out))
    (plain, plain_saved, plain_out), (ckpt, ckpt_saved, ckpt_out) = runs
    assert type(plain) is type(ckpt) is SegResNet
    assert plain.state_dict().keys() == ckpt.state_dict().keys()  # bundles load into either
    assert torch.equal(plain_out, ckpt_out)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), ckpt.parameters(), strict=True))
    assert ckpt_saved < 0.5 * plain_saved


def test_a_checkpointed_bundle_loads_and_an_ema_copy_recomputes_its_own_blocks() -> None:
    import copy

    config = NetworkConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,), gradient_checkpointing=True)
    net = segmenter_from_spec(segmenter_spec(2, 1, 2, config))
    plain = build_segmenter(2, 1, 2, config.model_copy(update={"gradient_checkpointing": False}))
    net.load_state_dict(plain.state_dict())
    x = torch.rand(3, 1, 16, 16)
    assert encoder_features(net.eval(), x).shape == (3, 16)
    torch.testing.assert_close(net(x), plain.eval()(x), rtol=0, atol=0)
    # A deep copy (the EMA teacher) runs its own weights, not the original's.
    teacher = copy.deepcopy(net).train()
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(0.5)
    x.requires_grad_(True)
    assert not torch.equal(teacher(x), net.train()(x))

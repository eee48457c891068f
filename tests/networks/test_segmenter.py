"""The segmentation network factory: SegResNet with and without gradient checkpointing."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SegResNet

from diffuse_uda.config import NetworkConfig
from diffuse_uda.networks.segmenter import (
    CheckpointedSegResNet,
    build_segmenter,
    encoder_features,
    segmenter_from_spec,
    segmenter_spec,
)


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
    assert type(plain) is SegResNet and isinstance(ckpt, CheckpointedSegResNet)
    assert plain.state_dict().keys() == ckpt.state_dict().keys()  # bundles load into either
    assert torch.equal(plain_out, ckpt_out)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(plain.parameters(), ckpt.parameters(), strict=True))
    assert ckpt_saved < 0.5 * plain_saved


def test_a_bundle_spec_with_checkpointing_rebuilds_it_and_serves_the_feature_embedding() -> None:
    config = NetworkConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,), gradient_checkpointing=True)
    net = segmenter_from_spec(segmenter_spec(2, 1, 2, config))
    assert isinstance(net, CheckpointedSegResNet)
    assert encoder_features(net.eval(), torch.rand(3, 1, 16, 16)).shape == (3, 16)

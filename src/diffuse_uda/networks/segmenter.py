"""Segmentation network factory (MONAI SegResNet, 2D or 3D), optionally with gradient checkpointing."""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.blocks.segresnet_block import ResBlock
from monai.networks.nets import SegResNet
from torch import nn

from diffuse_uda.config import NetworkConfig
from diffuse_uda.networks.checkpointing import checkpoint_modules


def build_segmenter(spatial_dims: int, in_channels: int, num_classes: int, config: NetworkConfig) -> nn.Module:
    net = SegResNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=num_classes,
        init_filters=config.init_filters,
        blocks_down=tuple(config.blocks_down),
        blocks_up=tuple(config.blocks_up),
        dropout_prob=config.dropout,
    )
    if config.gradient_checkpointing:
        # Each residual block recomputes its activations in the backward pass; so does the full-resolution head.
        checkpoint_modules([m for m in net.modules() if isinstance(m, ResBlock)]
                           + ([net.conv_final] if net.use_conv_final else []))
    return net


def segmenter_spec(spatial_dims: int, in_channels: int, num_classes: int, config: NetworkConfig) -> dict[str, Any]:
    """Everything needed to rebuild the network from a bundle."""
    return {"spatial_dims": spatial_dims, "in_channels": in_channels, "num_classes": num_classes,
            "network": config.model_dump(mode="json")}


def segmenter_from_spec(spec: dict[str, Any]) -> nn.Module:
    """Rebuild a (possibly ensembled: ``spec["ensemble"] = N``) network; weights are loaded by the caller."""
    if spec.get("architecture") == "ad":
        # A&D predicts with its diffusion encoder + unlabelled-data decoder, not a SegResNet.
        from diffuse_uda.networks.ad_network import ADInferenceNetwork

        return ADInferenceNetwork(spec["spatial_dims"], spec["in_channels"], spec["num_classes"], **spec.get("ad", {}))
    net = build_segmenter(spec["spatial_dims"], spec["in_channels"], spec["num_classes"],
                          NetworkConfig.model_validate(spec["network"]))
    if spec.get("architecture") == "glua":
        # GLUA's segmenter keeps its feature discriminator D1: its mask reweights features at inference.
        from diffuse_uda.networks.glua import LocalAlignmentSegmenter

        return LocalAlignmentSegmenter(net, **spec.get("glua", {}))
    n = int(spec.get("ensemble", 0))
    if n:
        from diffuse_uda.networks.ensemble import SnapshotEnsemble

        return SnapshotEnsemble([build_segmenter(spec["spatial_dims"], spec["in_channels"], spec["num_classes"],
                                                 NetworkConfig.model_validate(spec["network"])) for _ in range(n)])
    return net


@torch.no_grad()
def encoder_features(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Bottleneck features globally pooled to (B, F) (for t-SNE plots): of a SegResNet, or the
    mean over the members of a snapshot ensemble of SegResNets."""
    from diffuse_uda.networks.ensemble import SnapshotEnsemble

    if isinstance(network, SnapshotEnsemble):
        return torch.stack([encoder_features(m, images) for m in network.members]).mean(0)
    if not isinstance(network, SegResNet):
        raise TypeError(f"encoder_features supports SegResNet (or an ensemble of them), not "
                        f"{type(network).__name__}")
    x, _ = network.encode(images)
    return x.flatten(2).mean(-1)

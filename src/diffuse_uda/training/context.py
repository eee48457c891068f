"""What the trainer hands to a method: the batch, the device, generators, data and settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from diffuse_uda.config import RunConfig
from diffuse_uda.networks.segmenter import build_segmenter
from diffuse_uda.training import distributed


@dataclass
class TrainingData:
    """Preprocessed training tensors (kept on the training device: sampling is an index lookup).

    ``target_labels`` is filled only for the target-supervised oracle; ``target_images`` only for
    methods that use unlabelled target images.
    """

    source_images: torch.Tensor  # (N, C, *S) in [0, 1]
    source_labels: torch.Tensor  # (N, *S) long; IGNORE_INDEX (255) marks voxels not to supervise
    target_images: torch.Tensor | None = None  # (M, C, *S)
    target_labels: torch.Tensor | None = None  # oracle only

    def to(self, device: torch.device) -> TrainingData:
        def mv(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return TrainingData(mv(self.source_images), mv(self.source_labels), mv(self.target_images),
                            mv(self.target_labels))


@dataclass
class Batch:
    source_image: torch.Tensor  # (B, C, *S)
    source_label: torch.Tensor  # (B, *S)
    target_image: torch.Tensor | None = None
    target_index: torch.Tensor | None = None  # rows of TrainingData.target_images (for pseudo-label lookup)


@dataclass
class TrainContext:
    config: RunConfig
    device: torch.device
    spatial_dims: int
    in_channels: int
    num_classes: int
    data: TrainingData
    generator: torch.Generator  # on ``device``: noise, boxes, deformations; each rank its own stream
    # Indices and per-step choices: the same stream on every rank (draw from it the same way on each).
    cpu_generator: torch.Generator
    step: int = 0
    total_steps: int = 1
    epoch_length: int = 1
    rank: int = 0
    world_size: int = 1

    def local_indices(self, n: int, global_batch: int, what: str) -> torch.Tensor:
        """This rank's share of ``global_batch`` indices drawn uniformly from ``range(n)`` (all of them in
        one process); ``what`` names the batch setting in the error when it does not split evenly."""
        idx = torch.randint(0, n, (global_batch,), generator=self.cpu_generator)
        if self.world_size > 1:
            idx = idx[distributed.shard(global_batch, what)]
        return idx.to(self.device, non_blocking=True)

    def all_reduce_gradients(self, params: Iterable[nn.Parameter]) -> None:
        """Average these parameters' gradients over the ranks before an optimizer steps them (nothing in
        one process). The trainer does it for ``Method.trainable_parameters``; a method that steps an
        optimizer of its own calls it first."""
        if self.world_size > 1:
            distributed.all_reduce_gradients(params)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the ranks, in place (itself in one process): for statistics of the
        global batch."""
        return distributed.all_reduce_(tensor) if self.world_size > 1 else tensor

    @property
    def use_amp(self) -> bool:
        return self.config.training.amp and self.device.type == "cuda"

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def new_segmenter(self) -> nn.Module:
        return build_segmenter(self.spatial_dims, self.in_channels, self.num_classes,
                               self.config.network).to(self.device)

    @contextlib.contextmanager
    def eval_mode(self, *networks: nn.Module) -> Iterator[None]:
        states = [n.training for n in networks]
        for n in networks:
            n.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for n, s in zip(networks, states, strict=True):
                n.train(s)

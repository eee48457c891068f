"""Tiny image-mask pairs and a session-wide smoke-trained checkpoint for the diffusion tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.trainer import PairSample, train_diffusion

NUM_CLASSES = 3


def make_pairs(n_source: int = 4, n_target: int = 2, size: int = 16, channels: int = 1) -> list[PairSample]:
    """Rectangles (class 1) with a square core (class 2); intensity follows the label."""
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(n_source + n_target):
        mask = np.zeros((size, size), np.int64)
        mask[3 + i % 3 : size - 4, 2 + i % 4 : size - 5] = 1
        mask[6:10, 6 + i % 2 : 10 + i % 2] = 2
        base = 0.15 + 0.35 * mask + (0.1 if i >= n_source else 0.0)
        image = np.stack([base + 0.03 * rng.standard_normal((size, size)) for _ in range(channels)])
        pairs.append(
            PairSample(
                image=image.clip(0, 1).astype(np.float32),
                mask=mask,
                domain="source" if i < n_source else "target",
                case_id=f"case{i}",
            )
        )
    return pairs


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> Iterator[None]:
    # These 16 px models are far too small to gain from intra-op threads, and on a shared, busy
    # machine two OpenMP threads were measured ~10x slower than one.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_pairs() -> list[PairSample]:
    return make_pairs()


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_pairs: list[PairSample]) -> Path:
    out = tmp_path_factory.mktemp("diffusion_run")
    return train_diffusion(tiny_pairs, NUM_CLASSES, DiffusionConfig.smoke(iterations=4), out, progress=False)

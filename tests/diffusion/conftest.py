"""Tiny image-mask pairs and a session-wide smoke-trained checkpoint for the diffusion tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusion_helpers import NUM_CLASSES, make_pairs

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.trainer import PairSample, train_diffusion


@pytest.fixture(autouse=True, scope="module")
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

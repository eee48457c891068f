"""Tiny image-mask pairs shared by the diffusion tests (a uniquely named module, importable from tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.trainer import PairSample, load_diffusion, train_diffusion

NUM_CLASSES = 3
# A fixed clean image in [-1, 1] that the exact ("oracle") models of the sampler tests point to.
CLEAN = torch.linspace(-0.8, 0.8, 256).view(1, 16, 16)


def square_masks(batch: int = 2) -> torch.Tensor:
    """``batch`` 16 x 16 label maps with one foreground square."""
    m = torch.zeros(batch, 16, 16, dtype=torch.long)
    m[:, 4:12, 4:12] = 1
    return m


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


def assert_resumes_exactly(pairs: list[PairSample], cfg: DiffusionConfig, tmp_path: Path) -> Path:
    """Train ``cfg`` straight through (``tmp_path/a``) and stopped half way then resumed (``tmp_path/b``); assert
    both runs end with identical weights of the configured kind, and return the straight run's checkpoint."""
    straight = train_diffusion(pairs, NUM_CLASSES, cfg, tmp_path / "a", progress=False)
    train_diffusion(pairs, NUM_CLASSES, cfg.replace(iterations=cfg.iterations // 2), tmp_path / "b", progress=False)
    resumed = train_diffusion(pairs, NUM_CLASSES, cfg, tmp_path / "b", progress=False)
    a, _, _ = load_diffusion(straight)
    b, cfg_b, _ = load_diffusion(resumed)
    assert cfg_b.prediction_type == cfg.prediction_type and b.prediction_type == cfg.prediction_type
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(va, vb), ka
    return straight

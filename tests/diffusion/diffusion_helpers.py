"""Tiny image-mask pairs shared by the diffusion tests (a uniquely named module, importable from tests)."""

from __future__ import annotations

import numpy as np

from diffuse_uda.diffusion.trainer import PairSample

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

"""DDPM / DDIM sampling: shapes, range, determinism and per-sample independence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusion_helpers import NUM_CLASSES

from diffuse_uda.diffusion.samplers import ddim_timesteps, sample_images
from diffuse_uda.diffusion.trainer import load_diffusion


def _masks(batch: int = 2) -> torch.Tensor:
    m = torch.zeros(batch, 16, 16, dtype=torch.long)
    m[:, 4:12, 4:12] = 1
    m[:, 6:10, 6:10] = 2
    return m


@pytest.mark.parametrize(("sampler", "steps"), [("ddpm", None), ("ddim", 5), ("ddim", 3)])
def test_shape_range_and_determinism(trained_checkpoint: Path, sampler: str, steps: int | None) -> None:
    model, cfg, info = load_diffusion(trained_checkpoint)
    kw = dict(sampler=sampler, steps=steps, num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule)
    a = sample_images(model, _masks(), NUM_CLASSES, 1, generator=torch.Generator().manual_seed(1), **kw)
    b = sample_images(model, _masks(), NUM_CLASSES, 1, generator=torch.Generator().manual_seed(1), **kw)
    c = sample_images(model, _masks(), NUM_CLASSES, 1, generator=torch.Generator().manual_seed(2), **kw)
    assert a.shape == (2, 1, 16, 16) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_ddim_eta_and_channel_mask(trained_checkpoint: Path) -> None:
    model, cfg, _ = load_diffusion(trained_checkpoint)
    out = sample_images(model, _masks()[:, None], NUM_CLASSES, 1, sampler="ddim", steps=4, eta=1.0,
                        num_train_timesteps=cfg.num_train_timesteps, generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 1, 16, 16)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_per_sample_generators_make_samples_batch_independent(trained_checkpoint: Path, sampler: str) -> None:
    model, cfg, _ = load_diffusion(trained_checkpoint)
    kw = dict(sampler=sampler, steps=None, num_train_timesteps=cfg.num_train_timesteps, eta=0.5)
    both = sample_images(model, _masks(2), NUM_CLASSES, 1,
                         generator=[torch.Generator().manual_seed(s) for s in (10, 11)], **kw)
    second = sample_images(model, _masks(1), NUM_CLASSES, 1, generator=[torch.Generator().manual_seed(11)], **kw)
    torch.testing.assert_close(both[1:], second, atol=1e-5, rtol=0)


def test_ddpm_requires_all_steps(trained_checkpoint: Path) -> None:
    model, cfg, _ = load_diffusion(trained_checkpoint)
    with pytest.raises(ValueError, match="DDPM"):
        sample_images(model, _masks(), NUM_CLASSES, 1, sampler="ddpm", steps=3,
                      num_train_timesteps=cfg.num_train_timesteps)
    with pytest.raises(ValueError, match="sampler"):
        sample_images(model, _masks(), NUM_CLASSES, 1, sampler="euler", num_train_timesteps=10)


@pytest.mark.parametrize(("T", "steps"), [(250, 50), (250, 60), (10, 10), (10, 3)])
def test_ddim_timesteps_match_monai_stride(T: int, steps: int) -> None:
    ts = ddim_timesteps(T, steps)
    assert len(ts) == steps and int(ts[0]) == T - 1 and int(ts[-1]) >= 0
    assert torch.all(ts[:-1] - ts[1:] == T // steps)  # the stride DDIMScheduler.step assumes

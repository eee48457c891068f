"""DDPM / DDIM sampling: shapes, range, determinism and per-sample independence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusion_helpers import NUM_CLASSES

from diffuse_uda.diffusion.samplers import ddim_timesteps, sample_images, starting_timesteps
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


def test_starting_timesteps_begin_at_the_strength() -> None:
    steps = [9, 7, 5, 3, 1]
    assert starting_timesteps(steps, None) == steps
    assert starting_timesteps(steps, 5) == [5, 3, 1]
    assert starting_timesteps(steps, 4) == [3, 1]
    assert starting_timesteps(steps, 0) == [1]  # never empty: at least the last step


class _CountingModel(torch.nn.Module):
    """Wraps a model and counts its forward calls (one per reverse step without guidance)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.calls = model, 0
        self.prediction_type = getattr(model, "prediction_type", "epsilon")

    def forward(self, *args):  # noqa: ANN202
        self.calls += 1
        return self.model(*args)


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++2m"])
def test_a_start_image_is_kept_more_the_lower_the_strength(trained_checkpoint: Path, sampler: str) -> None:
    """SDEdit: from ``init`` noised to a fraction of the schedule, fewer steps run and the sample stays near ``init``
    (the model here is barely trained, so only the kept signal can bring it close)."""
    model, cfg, _ = load_diffusion(trained_checkpoint)
    T = cfg.num_train_timesteps
    init = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    counting = _CountingModel(model)
    kw = dict(sampler=sampler, steps=None if sampler == "ddpm" else T, num_train_timesteps=T, schedule=cfg.schedule)

    def distance(strength: float) -> float:
        counting.calls = 0
        out = sample_images(counting, _masks(), NUM_CLASSES, 1, generator=torch.Generator().manual_seed(1),
                            init=init, strength=strength, **kw)
        assert out.shape == init.shape and out.dtype == torch.float32
        return float((out - init).abs().mean())

    near = distance(0.05)
    assert counting.calls == 1  # round(0.05 * (T - 1)) = 0: one step, from t = 0
    far = distance(1.0)
    assert counting.calls == T
    assert near < far / 3, (near, far)
    distance(0.5)
    assert counting.calls == round(0.5 * (T - 1)) + 1


def test_a_start_image_is_checked(trained_checkpoint: Path) -> None:
    model, cfg, _ = load_diffusion(trained_checkpoint)
    kw = dict(sampler="ddim", steps=3, num_train_timesteps=cfg.num_train_timesteps)
    with pytest.raises(ValueError, match="needs init"):
        sample_images(model, _masks(), NUM_CLASSES, 1, strength=0.5, **kw)
    with pytest.raises(ValueError, match="init must be"):
        sample_images(model, _masks(), NUM_CLASSES, 1, strength=0.5, init=torch.zeros(2, 3, 16, 16), **kw)
    with pytest.raises(ValueError, match="strength"):
        sample_images(model, _masks(), NUM_CLASSES, 1, strength=0.0, init=torch.zeros(2, 1, 16, 16), **kw)

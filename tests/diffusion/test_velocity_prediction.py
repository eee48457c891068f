"""Velocity prediction (``prediction_type="v"``): its training target, its samplers, its checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusion_helpers import CLEAN, NUM_CLASSES, assert_resumes_exactly, make_pairs, square_masks
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.samplers import make_scheduler, sample_images
from diffuse_uda.diffusion.trainer import load_diffusion, regression_target, train_diffusion
from diffuse_uda.errors import ConfigError
from diffuse_uda.networks.conditional_unet import ConditionalDiffusionUNet


class _OracleVelocity(nn.Module):
    """Outputs exactly the velocity of x_t with respect to a fixed clean image."""

    def __init__(self, alphas_cumprod: torch.Tensor, prediction_type: str) -> None:
        super().__init__()
        self.abar, self.prediction_type = alphas_cumprod, prediction_type

    def forward(self, x, cond, t, domain=None):  # noqa: ANN001, ANN201
        a = self.abar[t].float().view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * CLEAN) / (1 - a).sqrt()
        return a.sqrt() * eps - (1 - a).sqrt() * CLEAN


@pytest.mark.parametrize("sampler,steps,eta", [("ddpm", 250, 0.0), ("ddim", 25, 0.0), ("ddim", 25, 1.0),
                                               ("ddim", 2, 0.0), ("dpm++2m", 20, 0.0), ("dpm++2m-sde", 25, 0.0)])
def test_every_sampler_recovers_the_clean_image_from_an_exact_velocity(sampler: str, steps: int, eta: float) -> None:
    abar = make_scheduler(sampler, 250, "cosine").alphas_cumprod
    out = sample_images(_OracleVelocity(abar, "v"), square_masks(), NUM_CLASSES, 1, sampler=sampler, steps=steps,
                        num_train_timesteps=250, eta=eta, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out * 2 - 1, CLEAN.expand(2, 1, 16, 16), atol=2e-3)


def test_a_velocity_read_as_noise_does_not_recover_the_image() -> None:
    # The samplers must read the model's prediction type: the same outputs taken as noise estimates fail.
    # Two DDIM steps end at t = 124, where velocity and noise differ (near t = 0 they coincide).
    abar = make_scheduler("ddim", 250, "cosine").alphas_cumprod
    out = sample_images(_OracleVelocity(abar, "epsilon"), square_masks(), NUM_CLASSES, 1, sampler="ddim", steps=2,
                        num_train_timesteps=250, generator=torch.Generator().manual_seed(0))
    assert (out * 2 - 1 - CLEAN).abs().mean() > 0.1


def test_the_velocity_target_gives_back_the_clean_image_and_the_noise() -> None:
    scheduler = DDPMScheduler(num_train_timesteps=250, schedule="cosine")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    t = torch.tensor([0, 60, 180, 249])
    x_t = scheduler.add_noise(x0, noise, t)
    v = regression_target(scheduler, x0, noise, t, "v")
    a = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(a.sqrt() * x_t - (1 - a).sqrt() * v, x0, atol=1e-5)
    assert torch.allclose(a.sqrt() * v + (1 - a).sqrt() * x_t, noise, atol=1e-5)
    assert regression_target(scheduler, x0, noise, t, "epsilon") is noise


def test_velocity_training_resumes_exactly_and_its_checkpoint_is_not_mistaken_for_a_noise_model(
        tmp_path: Path) -> None:
    pairs = make_pairs()
    cfg = DiffusionConfig.smoke(iterations=6, checkpoint_every=3, prediction_type="v")
    straight = assert_resumes_exactly(pairs, cfg, tmp_path)
    a, _, _ = load_diffusion(straight)
    # Another target from the same start: different weights, and no resuming one run as the other.
    eps = train_diffusion(pairs, NUM_CLASSES, cfg.replace(prediction_type="epsilon"), tmp_path / "c", progress=False)
    c, _, _ = load_diffusion(eps)
    assert c.prediction_type == "epsilon"
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values(), strict=True))
    with pytest.raises(ConfigError, match="different diffusion settings"):
        train_diffusion(pairs, NUM_CLASSES, cfg.replace(iterations=9), tmp_path / "c", progress=False)


def test_an_unknown_prediction_type_is_refused() -> None:
    with pytest.raises(ValueError, match="prediction_type"):
        ConditionalDiffusionUNet(2, 1, NUM_CLASSES, channels=(8, 16), norm_num_groups=4, prediction_type="x0")
    with pytest.raises(ValueError):
        DiffusionConfig.smoke(prediction_type="x0")

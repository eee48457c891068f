"""Rectified flow (``prediction_type="flow"``): its noisy input and target, its Euler sampler, its checkpoints,
and the refusal to sample it (or anything else) with the wrong sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_helpers import CLEAN, NUM_CLASSES, assert_resumes_exactly, make_pairs, square_masks
from pydantic import ValidationError
from torch import nn

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.samplers import check_sampler, default_sampler, sample_images
from diffuse_uda.diffusion.synthesize import synthesize_dataset
from diffuse_uda.diffusion.trainer import (
    load_diffusion,
    noisy_input,
    regression_target,
    train_diffusion,
    training_scheduler,
)
from diffuse_uda.errors import ConfigError
from diffuse_uda.pipeline.run import PipelineConfig

T = 250


class _OracleFlow(nn.Module):
    """Outputs exactly the rectified-flow velocity ``x0 - eps`` of x_t toward a fixed clean image."""

    def __init__(self, prediction_type: str = "flow") -> None:
        super().__init__()
        self.prediction_type = prediction_type
        self.seen_t: list[int] = []

    def forward(self, x, cond, t, domain=None):  # noqa: ANN001, ANN201
        self.seen_t.append(int(t[0]))
        s = (t.float() / T).view(-1, 1, 1, 1)
        eps = (x - (1 - s) * CLEAN) / s
        return CLEAN - eps


@pytest.mark.parametrize("steps", [1, 4, 25, 250])
def test_euler_steps_recover_the_clean_image_from_an_exact_flow_velocity(steps: int) -> None:
    model = _OracleFlow()
    out = sample_images(model, square_masks(), NUM_CLASSES, 1, sampler="euler", steps=steps, num_train_timesteps=T,
                        generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out * 2 - 1, CLEAN.expand(2, 1, 16, 16), atol=1e-4)
    # Sampling starts at pure noise (t = T) and makes one network evaluation per step.
    assert model.seen_t[0] == T and len(model.seen_t) == steps and min(model.seen_t) >= 1


def test_the_flow_input_lies_on_the_straight_path_and_its_target_is_the_velocity() -> None:
    config = DiffusionConfig.smoke(num_train_timesteps=T, prediction_type="flow")
    scheduler = training_scheduler(config)
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1, torch.randn(4, 1, 8, 8, generator=g)
    x_t, t = noisy_input(scheduler, x0, noise, torch.tensor([0, 60, 180, T - 1]))
    assert t.tolist() == [1, 61, 181, T]  # never the clean image itself; pure noise at the top
    assert torch.equal(x_t[-1], noise[-1])
    v = regression_target(scheduler, x0, noise, t, "flow")
    s = (t.float() / T).view(-1, 1, 1, 1)
    assert torch.allclose(x_t + s * v, x0, atol=1e-5)  # one exact Euler step to t = 0
    assert torch.allclose(x_t - (1 - s) * v, noise, atol=1e-5)
    # The DDPM kinds keep their schedule and their timesteps.
    ddpm = training_scheduler(config.replace(prediction_type="epsilon"))
    _, t_eps = noisy_input(ddpm, x0, noise, torch.tensor([0, 60, 180, T - 1]))
    assert t_eps.tolist() == [0, 60, 180, T - 1]


def test_a_sampler_that_does_not_fit_the_model_is_refused() -> None:
    with pytest.raises(ValueError, match="sampler=euler"):
        sample_images(_OracleFlow(), square_masks(), NUM_CLASSES, 1, sampler="ddim", steps=5, num_train_timesteps=T)
    with pytest.raises(ValueError, match="ddpm, ddim"):
        sample_images(_OracleFlow("epsilon"), square_masks(), NUM_CLASSES, 1, sampler="euler", steps=5,
                      num_train_timesteps=T)
    check_sampler("v", "dpm++2m")
    assert default_sampler("flow") == "euler" and default_sampler("v") == "ddim"
    # The pipeline refuses the combination before it trains anything.
    with pytest.raises(ValidationError, match="sampler=euler"):
        PipelineConfig.model_validate({"diffusion": {"prediction_type": "flow"}})
    assert PipelineConfig.model_validate({"diffusion": {"prediction_type": "flow"},
                                          "synthesis": {"sampler": "euler"}}).synthesis.sampler == "euler"


def test_flow_training_resumes_exactly_and_synthesis_names_a_wrong_sampler(tmp_path: Path) -> None:
    pairs = make_pairs()
    cfg = DiffusionConfig.smoke(iterations=6, checkpoint_every=3, sample_every=3, prediction_type="flow")
    straight = assert_resumes_exactly(pairs, cfg, tmp_path)
    assert list((tmp_path / "a").rglob("*.png"))  # the previews sample with the flow's own sampler
    with pytest.raises(ConfigError, match="different diffusion settings"):
        train_diffusion(pairs, NUM_CLASSES, cfg.replace(prediction_type="v"), tmp_path / "a", progress=False)
    masks = [("m0", pairs[0].mask)]
    with pytest.raises(ConfigError, match=r"diffusion_last\.pt.*sampler=euler"):
        synthesize_dataset(straight, masks, tmp_path / "synth", labels={"background": 0, "a": 1, "b": 2},
                           channel_names={"0": "img"}, sampler="ddim", steps=2)
    assert not (tmp_path / "synth").exists()


def test_a_flow_model_learns_a_single_pair(tmp_path: Path) -> None:
    """Sanity, as for the noise model: trained on one pair, 25 Euler steps reproduce its layout."""
    pair = make_pairs(n_source=1, n_target=0)[0]
    cfg = DiffusionConfig.smoke(iterations=100, batch_size=2, lr=3e-3, deform="none", checkpoint_every=1000,
                                log_every=50, num_train_timesteps=T, prediction_type="flow")
    model, cfg, _ = load_diffusion(train_diffusion([pair], NUM_CLASSES, cfg, tmp_path, progress=False), use_ema=False)
    masks = torch.from_numpy(pair.mask)[None].repeat(3, 1, 1)
    out = sample_images(model, masks, NUM_CLASSES, 1, sampler="euler", steps=25, num_train_timesteps=T,
                        generator=torch.Generator().manual_seed(0))
    corr = [np.corrcoef(o[0].numpy().ravel(), pair.image[0].ravel())[0, 1] for o in out]
    assert np.mean(corr) > 0.6, corr  # an untrained model gives ~0

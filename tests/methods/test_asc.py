"""ASC / ASCPlus with a choice of appearance transfer: the default is the paper's FDA with bit-identical
losses to the FourierStyleTransfer code it replaced, and every other member trains through the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.asc import ASC, ASCPlus, asc_appearance
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import create_method
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.log import read_training_log
from diffuse_uda.training.trainer import Trainer
from diffuse_uda.transforms import FourierStyleTransfer


def _data(channels: int = 1) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (5, 16, 16), generator=g)
    images = torch.rand(5, channels, 16, 16, generator=g)
    return TrainingData(images, labels, target_images=torch.rand(7, channels, 16, 16, generator=g))


def _losses(method: Method, tmp_path: Path, channels: int = 1, iterations: int = 3) -> list[dict[str, torch.Tensor]]:
    """Train through the shared trainer and return every step's loss dict (exact tensors, not the rounded log)."""
    cfg = build_run_config("smoke", 2, {"training": {"iterations": iterations, "device": "cpu", "epoch_length": 1}})
    steps: list[dict[str, torch.Tensor]] = []
    step = method.training_step

    def recording(batch, ctx):  # type: ignore[no-untyped-def]
        losses = step(batch, ctx)
        steps.append({k: v.detach().clone() for k, v in losses.items()})
        return losses

    method.training_step = recording  # type: ignore[method-assign]
    Trainer(method, _data(channels), cfg, tmp_path, 2, 3, progress=False).fit()
    return steps


def _legacy(cls: type[ASC]) -> type[ASC]:
    """``cls`` restyling with FourierStyleTransfer exactly as before the appearance option existed."""

    class Legacy(cls):  # type: ignore[valid-type, misc]
        def build(self, ctx):  # type: ignore[no-untyped-def]
            super().build(ctx)
            o = self.options
            self.restyle = FourierStyleTransfer(mode="adaptive" if o.adaptive_beta else "fixed", beta=o.beta,
                                                alpha_range=tuple(o.alpha_range), min_beta=o.min_beta)

    return Legacy


@pytest.mark.parametrize(("cls", "options", "channels"), [
    (ASC, {}, 1), (ASCPlus, {}, 1), (ASCPlus, {}, 3), (ASCPlus, {"adaptive_beta": False, "beta": 0.25}, 1),
    (ASCPlus, {"min_beta": 0.05, "alpha_range": (1.0, 2.0)}, 1),
])
def test_fourier_appearance_gives_the_losses_of_fourier_style_transfer(
        cls: type[ASC], options: dict[str, Any], channels: int, tmp_path: Path) -> None:
    """ASC's default and ascplus-paper (appearance "fourier") are the paper's FDA, bit for bit."""
    if cls is ASCPlus:
        options = {**options, "appearance": "fourier"}
    new = _losses(cls(options), tmp_path / "new", channels)
    old = _losses(_legacy(cls)(options), tmp_path / "old", channels)
    assert [list(s) for s in new] == [list(s) for s in old] and "beta" in new[0]
    for a, b in zip(new, old, strict=True):
        for key in a:
            assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize(("appearance", "strength_key"), [
    ("bezier", "appearance_strength"), ("gin", "appearance_strength"), ("histogram-matching", "appearance_strength"),
    ("fourier-luminance", "beta"), ("fourier-bounded", "beta"), ("random-choice", "appearance_strength"),
])
def test_ascplus_trains_with_each_appearance_member(appearance: str, strength_key: str, tmp_path: Path) -> None:
    steps = _losses(create_method("ascplus", {"appearance": appearance}), tmp_path, channels=3)
    for losses in steps:
        assert strength_key in losses and all(torch.isfinite(v) for v in losses.values())
    assert "consistency" in steps[0]
    assert strength_key in read_training_log(tmp_path / "training_log.csv")


def test_fourier_members_take_the_methods_beta_options_unless_overridden() -> None:
    o = create_method("ascplus", {"appearance": "fourier-luminance", "adaptive_beta": False, "beta": 0.25}).options
    restyle = asc_appearance(o)
    assert restyle.options.mode == "fixed" and restyle.options.beta == 0.25
    overridden = asc_appearance(o.model_copy(update={"appearance_options": {"beta": 0.3, "mode": "adaptive"}}))
    assert overridden.options.mode == "adaptive" and overridden.options.beta == 0.3


def test_bad_appearance_is_rejected_when_the_options_are_read() -> None:
    with pytest.raises(ConfigError, match="fourrier"):
        create_method("ascplus", {"appearance": "fourrier"})
    with pytest.raises(ConfigError, match="grid"):
        create_method("asc", {"appearance": "bezier", "appearance_options": {"grid": 1}})

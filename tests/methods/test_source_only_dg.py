"""source-only-dg: no target images, each source batch doubled with a target-agnostic restyled copy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.registry import create_method
from diffuse_uda.methods.source_only_dg import dg_appearance
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.log import read_training_log
from diffuse_uda.training.trainer import Trainer
from diffuse_uda.transforms.appearance import BezierCurves, GlobalIntensityNonlinear, RandomChoice


def _fit(options: dict, tmp_path: Path, iterations: int = 3) -> tuple[Trainer, list[torch.Tensor]]:
    cfg = build_run_config("smoke", 2, {"training": {"iterations": iterations, "device": "cpu", "batch_size": 2}})
    g = torch.Generator().manual_seed(0)
    # No target images at all: the method must not need them.
    data = TrainingData(torch.rand(5, 1, 16, 16, generator=g), torch.randint(0, 3, (5, 16, 16), generator=g))
    trainer = Trainer(create_method("source-only-dg", options), data, cfg, tmp_path, 2, 3, progress=False)
    inputs: list[torch.Tensor] = []
    assert trainer.method.student is not None
    trainer.method.student.register_forward_hook(lambda _m, args, _out: inputs.append(args[0].detach().clone()))
    trainer.fit()
    return trainer, inputs


def test_trains_without_target_images_on_doubled_batches(tmp_path: Path) -> None:
    trainer, inputs = _fit({}, tmp_path)
    assert not trainer.method.uses_target_images
    assert len(inputs) == 3
    for x in inputs:
        assert x.shape == (4, 1, 16, 16)  # batch_size 2, doubled
        assert not torch.equal(x[:2], x[2:]) and x[2:].min() >= 0 and x[2:].max() <= 1
    strengths = read_training_log(tmp_path / "training_log.csv")["appearance_strength"]
    assert strengths and all(v > 0 for _, v in strengths)


def test_default_is_bezier_or_gin_with_location_scale() -> None:
    default = dg_appearance(create_method("source-only-dg").options)
    assert isinstance(default, RandomChoice) and not default.uses_reference
    assert [type(m) for m in default.members] == [BezierCurves, GlobalIntensityNonlinear]
    assert all(m.options.location_scale for m in default.members)
    # Another member without options gets its own defaults, not the random-choice preset.
    assert isinstance(dg_appearance(create_method("source-only-dg", {"appearance": "bezier"}).options), BezierCurves)


@pytest.mark.parametrize("options", [{"appearance": "histogram-matching"}, {"appearance": "fourier"},
                                     {"appearance_options": {"members": ["bezier", "histogram-matching"]}}])
def test_members_that_need_a_target_image_are_rejected(options: dict) -> None:
    with pytest.raises(ConfigError, match="target-agnostic"):
        create_method("source-only-dg", options)


def test_gin_only_trains(tmp_path: Path) -> None:
    _, inputs = _fit({"appearance": "gin", "appearance_options": {"location_scale": True}}, tmp_path, iterations=2)
    assert len(inputs) == 2

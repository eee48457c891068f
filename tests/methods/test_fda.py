"""FDA with a choice of appearance transfer: the default keeps the old losses bit for bit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.methods.fda import FDA
from diffuse_uda.methods.registry import create_method
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.trainer import Trainer
from diffuse_uda.transforms import FourierStyleTransfer


class LegacyFDA(FDA):
    """FDA as it was before the appearance option: FourierStyleTransfer with a fixed beta."""

    def build(self, ctx):  # type: ignore[no-untyped-def]
        super().build(ctx)
        self.restyle = FourierStyleTransfer(mode="fixed", beta=self.options.beta)


def _losses(method: FDA, tmp_path: Path) -> list[torch.Tensor]:
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 3, "device": "cpu"}})
    g = torch.Generator().manual_seed(0)
    data = TrainingData(torch.rand(5, 1, 16, 16, generator=g), torch.randint(0, 3, (5, 16, 16), generator=g),
                        target_images=torch.rand(7, 1, 16, 16, generator=g))
    seen: list[torch.Tensor] = []
    step = method.training_step

    def recording(batch, ctx):  # type: ignore[no-untyped-def]
        losses = step(batch, ctx)
        seen.append(losses["loss"].detach().clone())
        return losses

    method.training_step = recording  # type: ignore[method-assign]
    Trainer(method, data, cfg, tmp_path, 2, 3, progress=False).fit()
    return seen


@pytest.mark.parametrize("options", [{}, {"beta": 0.3, "include_source": False}])
def test_default_appearance_gives_the_old_losses(options: dict, tmp_path: Path) -> None:
    new = _losses(FDA(options), tmp_path / "new")
    old = _losses(LegacyFDA(options), tmp_path / "old")
    assert len(new) == 3 and all(torch.equal(a, b) for a, b in zip(new, old, strict=True))


def test_fda_with_another_member_trains(tmp_path: Path) -> None:
    method = create_method("fda", {"appearance": "histogram-matching"})
    losses = _losses(method, tmp_path)  # type: ignore[arg-type]
    assert all(torch.isfinite(v) for v in losses)
    assert type(method.restyle).__name__ == "HistogramMatching"

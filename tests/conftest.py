"""Shared fixtures: a tiny generated cross-contrast task (seconds to build, reused per session)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.data.demo_brain import DemoBrainConfig, generate_demo_brain
from diffuse_uda.data.task import Task, TaskConfig

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# One thread: tiny models gain nothing from more, and OpenMP spin-waits hurt badly on a busy machine.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tiny_data")
    generate_demo_brain(root, DemoBrainConfig(n_source=2, n_target_train=2, n_target_test=2, shape=(24, 24, 10),
                                              seed=0), progress=False)
    return root


def make_task(root: Path) -> Task:
    config = TaskConfig(name="tiny", source="Dataset901_DemoBrainT1", target="Dataset902_DemoBrainT2",
                        labels={"background": 0, "CSF": 1, "GM": 2, "WM": 3},
                        preprocessing={"spatial_dims": 2, "size": (16, 16)})
    return Task(config, root / config.source, root / config.target)


@pytest.fixture()
def tiny_task(tiny_data_root: Path, tmp_path: Path) -> Task:
    """A private copy per test, so tests may damage files freely."""
    root = tmp_path / "data"
    shutil.copytree(tiny_data_root, root)
    return make_task(root)


@pytest.fixture()
def smoke_config():
    return build_run_config("smoke", 2, {"training": {"iterations": 4, "device": "cpu"}})


class Interrupted(Exception):
    """Raised by :func:`crash_at` to simulate a crash in the middle of training."""


def _fit_until_crash(trainer, step: int) -> None:
    """Run ``trainer.fit()`` and crash right after optimizer step ``step`` (its hooks have run)."""
    original = trainer.method.after_optimizer_step

    def crash(ctx):
        original(ctx)
        if ctx.step == step:
            raise Interrupted

    trainer.method.after_optimizer_step = crash
    with pytest.raises(Interrupted):
        trainer.fit()


@pytest.fixture()
def fit_until_crash():
    """``fit_until_crash(trainer, step)``: a training run interrupted after ``step``."""
    return _fit_until_crash


@pytest.fixture()
def check_keeps_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pipeline's synthetic check (a default stage) keeps the synthetic pairs, so stage 3 trains: for tests of the
    stages' mechanics, where untrained smoke models make the check's outcome arbitrary. The check's own outcomes are
    tested in tests/pipeline/test_synthetic_check.py."""
    from diffuse_uda.pipeline import synthetic_check

    monkeypatch.setattr(synthetic_check, "agreement",
                        lambda run_dir, *a, **k: 60.0 if Path(run_dir).name == "synthetic-only" else 50.0)

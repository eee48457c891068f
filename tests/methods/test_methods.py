import math
from pathlib import Path

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.methods.asc import ASCPLUS_ABLATION
from diffuse_uda.methods.registry import available_methods, create_method
from diffuse_uda.networks.ensemble import SnapshotEnsemble
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.log import read_training_log
from diffuse_uda.training.trainer import Trainer

UDA_METHODS = [n for n, cls in available_methods().items() if not cls.uses_target_labels]


def _data() -> TrainingData:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (5, 16, 16), generator=g)
    images = torch.rand(5, 1, 16, 16, generator=g)
    return TrainingData(images, labels, target_images=torch.rand(7, 1, 16, 16, generator=g),
                        target_labels=None)


def _fit(method_name: str, options: dict, tmp_path: Path, iterations: int = 4) -> Trainer:
    if method_name == "ascplus":  # a Method needs a concrete transfer; "auto" is resolved by train_method
        options = {"appearance": "fourier", **options}
    cfg = build_run_config("smoke", 2, {"training": {"iterations": iterations, "device": "cpu", "epoch_length": 1},
                                        "method": options})
    trainer = Trainer(create_method(method_name, options), _data(), cfg, tmp_path, 2, 3, progress=False)
    trainer.fit()
    return trainer


def test_registry_lists_every_stage1_method() -> None:
    assert {"source-only", "target-supervised", "fda", "pseudo-label", "mean-teacher", "cutmix", "asc",
            "ascplus"} <= set(available_methods())
    assert available_methods()["target-supervised"].uses_target_labels
    assert sum(cls.uses_target_labels for cls in available_methods().values()) == 1


@pytest.mark.parametrize("name", UDA_METHODS)
def test_method_trains_and_logs_finite_losses(name: str, tmp_path: Path) -> None:
    trainer = _fit(name, {}, tmp_path)
    log = read_training_log(tmp_path / "training_log.csv")
    assert "loss" in log
    assert all(math.isfinite(v) for points in log.values() for _, v in points)
    out = trainer.method.inference_network()(torch.rand(2, 1, 16, 16))
    assert out.shape == (2, 3, 16, 16)


def test_ascplus_predicts_with_a_snapshot_ensemble(tmp_path: Path) -> None:
    trainer = _fit("ascplus", {"ensemble_epochs": 3}, tmp_path, iterations=6)
    net = trainer.method.inference_network()
    assert isinstance(net, SnapshotEnsemble) and len(net.members) == 3
    probs = net(torch.rand(1, 1, 16, 16)).softmax(1)
    assert torch.allclose(probs.sum(1), torch.ones(1, 16, 16), atol=1e-5)


def test_asc_consistency_terms_follow_the_flags(tmp_path: Path) -> None:
    off = {k: False for k in ("app_target", "app_restyled", "structure", "ensemble")}
    def keys(t):
        return set(read_training_log(t / "training_log.csv"))
    _fit("ascplus", off, tmp_path / "a")
    assert "consistency" not in keys(tmp_path / "a")
    _fit("ascplus", {}, tmp_path / "b")
    assert "consistency" in keys(tmp_path / "b")


@pytest.mark.parametrize("row", sorted(ASCPLUS_ABLATION))
def test_ablation_presets_are_valid(row: str) -> None:
    method, options = ASCPLUS_ABLATION[row]
    create_method(method, options)


def test_unknown_option_is_rejected() -> None:
    from diffuse_uda.errors import ConfigError

    with pytest.raises(ConfigError, match="ascplus"):
        create_method("ascplus", {"betaa": 0.3})

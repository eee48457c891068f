from pathlib import Path

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.methods.registry import create_method
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.log import read_training_log
from diffuse_uda.training.losses import IGNORE_INDEX, dice_ce_loss, sigmoid_rampup
from diffuse_uda.training.trainer import CHECKPOINT_NAME, LOG_NAME, Trainer


def _data(n: int = 6, size: int = 16) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, 4:12, 4:12] = 1
    images = (labels[:, None].float() * 0.6 + 0.2 + 0.05 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 1)
    return TrainingData(images, labels, target_images=1 - images)


def _train(method: str, out: Path, iterations: int, **training) -> Trainer:
    options = {"appearance": "fourier"} if method == "ascplus" else {}
    cfg = build_run_config("smoke", 2, {"training": {"iterations": iterations, "device": "cpu", **training},
                                        "method": options})
    trainer = Trainer(create_method(method, options), _data(), cfg, out, spatial_dims=2, num_classes=2, progress=False)
    trainer.fit()
    return trainer


@pytest.mark.parametrize("method", ["source-only", "ascplus"])
def test_resume_gives_the_same_weights_as_one_run(tmp_path: Path, method: str, fit_until_crash) -> None:
    straight = _train(method, tmp_path / "a", 6, checkpoint_every=3)
    # A run interrupted after step 5 (last checkpoint at step 3) is resumed by a fresh trainer.
    options = {"appearance": "fourier"} if method == "ascplus" else {}
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 6, "device": "cpu", "checkpoint_every": 3},
                                        "method": options})
    broken = Trainer(create_method(method, options), _data(), cfg, tmp_path / "b", 2, 2, progress=False)
    fit_until_crash(broken, 4)
    assert torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=True)["step"] == 3
    resumed = _train(method, tmp_path / "b", 6, checkpoint_every=3)
    for a, b in zip(straight.method.inference_network().state_dict().values(),
                    resumed.method.inference_network().state_dict().values(), strict=True):
        assert torch.equal(a, b)
    # Rows logged after the checkpoint were dropped and logged again: each step once.
    assert [step for step, _ in read_training_log(tmp_path / "b" / LOG_NAME)["loss"]] == [1, 2, 3, 4, 5, 6]


def test_same_seed_same_result_and_different_seed_differs(tmp_path: Path) -> None:
    a = _train("source-only", tmp_path / "a", 3).method.student.state_dict()
    b = _train("source-only", tmp_path / "b", 3).method.student.state_dict()
    c = _train("source-only", tmp_path / "c", 3, seed=1).method.student.state_dict()
    key = next(iter(a))
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])


def test_training_reduces_the_loss(tmp_path: Path) -> None:
    trainer = _train("source-only", tmp_path / "a", 30, lr=3e-3, log_every=1, augment=False)
    losses = [v for _, v in read_training_log(tmp_path / "a" / LOG_NAME)["loss"]]
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert trainer.ctx.step == 29


def test_ignored_voxels_do_not_contribute() -> None:
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8))
    ignored = labels.clone()
    ignored[:, :4] = IGNORE_INDEX
    dice_ce_loss(logits, ignored).backward()
    assert logits.grad is not None and logits.grad[:, :, :4].abs().max() == 0
    assert torch.isfinite(dice_ce_loss(logits, torch.full_like(labels, IGNORE_INDEX)))


def test_sigmoid_rampup() -> None:
    assert sigmoid_rampup(0, 10) == pytest.approx(0.006737947)
    assert sigmoid_rampup(10, 10) == 1.0 and sigmoid_rampup(5, 0) == 1.0


def test_dice_ignores_classes_absent_from_the_batch() -> None:
    from diffuse_uda.training.losses import soft_dice_loss

    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:6, 2:6] = 1  # class 2 absent
    perfect = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float() * 20
    assert float(soft_dice_loss(perfect, labels)) < 1e-3
    # Predicting some class-2 voxels is not rewarded or punished by Dice (CE handles it).
    noisy = perfect.clone()
    noisy[:, 2, 0, 0] = 40
    assert float(soft_dice_loss(noisy, labels)) < 1e-3


def test_gradient_checkpointing_trains_to_the_same_weights(tmp_path: Path) -> None:
    plain = _train("ascplus", tmp_path / "a", 3).method
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 3, "device": "cpu"},
                                        "network": {"gradient_checkpointing": True},
                                        "method": {"appearance": "fourier"}})
    checkpointed = Trainer(create_method("ascplus", {"appearance": "fourier"}), _data(), cfg, tmp_path / "b", 2, 2,
                           progress=False)
    checkpointed.fit()
    for key in ("student", "teacher"):
        a, b = getattr(plain, key).state_dict(), getattr(checkpointed.method, key).state_dict()
        assert all(torch.equal(a[n], b[n]) for n in a)

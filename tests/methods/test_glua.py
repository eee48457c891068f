import math
from pathlib import Path

import pytest
import torch
from monai.networks.nets import SegResNet

from diffuse_uda.config import build_run_config
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.glua import GLUA, LOSS_KEYS
from diffuse_uda.methods.registry import available_methods, create_method
from diffuse_uda.networks.glua import LocalAlignmentSegmenter
from diffuse_uda.networks.segmenter import segmenter_from_spec, segmenter_spec
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.log import read_training_log
from diffuse_uda.training.trainer import CHECKPOINT_NAME, LOG_NAME, Trainer

torch.set_num_threads(1)

# Narrow networks so every test stays well under a second per step on one CPU thread.
TINY = {"style_channels": 4, "style_res_blocks": 1, "style_mlp_hidden": 8, "style_disc_channels": 4,
        "style_batch_size": 2, "d1_channels": 4, "d2_channels": 4}


def _data(size: int = 16) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (4, size, size), generator=g)
    images = torch.rand(4, 1, size, size, generator=g)
    return TrainingData(images, labels, target_images=torch.rand(5, 1, size, size, generator=g))


def _trainer(tmp_path: Path, iterations: int = 4, data: TrainingData | None = None, spatial_dims: int = 2,
             **options) -> Trainer:
    training = {"iterations": iterations, "device": "cpu", "epoch_length": 1, "checkpoint_every": 2}
    cfg = build_run_config("smoke", 2, {"training": training, "method": {**TINY, **options}})
    return Trainer(create_method("glua", cfg.method), data or _data(), cfg, tmp_path, spatial_dims, 3,
                   progress=False)


def test_registered_as_a_uda_comparator() -> None:
    cls = available_methods()["glua"]
    assert cls is GLUA and cls.uses_target_images and not cls.uses_target_labels
    assert "style transfer + local alignment (comparator)" in cls.summary


def test_3d_tasks_are_rejected(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    data = TrainingData(torch.rand(2, 1, 16, 16, 16, generator=g), torch.zeros(2, 16, 16, 16, dtype=torch.long),
                        target_images=torch.rand(2, 1, 16, 16, 16, generator=g))
    with pytest.raises(ConfigError, match="2D"):
        _trainer(tmp_path, data=data, spatial_dims=3)


def test_image_size_must_suit_the_autoencoder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="multiple of 4"):
        _trainer(tmp_path, data=_data(size=18))


def _moved(before: list[torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_stage_switch_and_frozen_autoencoder(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, iterations=5, style_fraction=0.4)
    method, ctx = trainer.method, trainer.ctx
    # Stage 1 runs 0.4 / 0.6 * 5 = 3 steps before the segmenter's 5.
    assert method.style_steps == 3 and trainer.total_steps == 8
    seg_before = [p.detach().clone() for p in method.trainable_parameters()]
    for step, stage in [(0, 1), (2, 1), (3, 2), (7, 2)]:
        ctx.step = step
        style_before = [p.detach().clone() for p in method.style_net.parameters()]
        d1_before = [p.detach().clone() for p in method.net.d1.parameters()]
        losses = method.training_step(trainer.next_batch(), ctx)
        assert set(losses) == set(LOSS_KEYS)  # one fixed set of log columns in both stages
        assert float(losses["stage"]) == stage
        style_moved = _moved(style_before, method.style_net)
        d1_moved = _moved(d1_before, method.net.d1)
        if stage == 1:
            # Stage 1 trains only the autoencoder (own optimizer): no gradient reaches the trainer.
            assert not losses["loss"].requires_grad and style_moved and not d1_moved
            assert float(losses["style_rec_im"]) > 0 and float(losses["seg"]) == 0
        else:
            assert losses["loss"].requires_grad and not style_moved and d1_moved
            assert float(losses["seg"]) > 0 and float(losses["style_rec_im"]) == 0
            losses["loss"].backward()
            assert all(p.grad is not None for p in method.trainable_parameters())
            method.after_optimizer_step(ctx)
            assert all(p.grad is None for p in method.net.d1.parameters())
    # The method itself never steps the segmenter (the trainer does, through "loss").
    assert all(torch.equal(a, b) for a, b in zip(seg_before, method.trainable_parameters(), strict=True))


def test_d1_is_in_the_inference_network_but_not_in_the_trainers_optimizer(tmp_path: Path) -> None:
    method = _trainer(tmp_path).method
    trainable = {id(p) for p in method.trainable_parameters()}
    assert not trainable & {id(p) for p in method.net.d1.parameters()}
    assert isinstance(method.inference_network(), LocalAlignmentSegmenter)


def test_training_across_both_stages(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, iterations=4, style_fraction=0.5)
    stats = trainer.fit()
    log = read_training_log(tmp_path / LOG_NAME)
    assert list(log) == ["lr", *LOSS_KEYS]
    # The style stage comes on top: the segmenter gets training.iterations updates, as in every method.
    assert [v for _, v in log["stage"]] == [1, 1, 1, 1, 2, 2, 2, 2]
    assert stats["iterations"] == 8
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=False)["step"] == 8
    # The segmenter's poly schedule starts with stage 2, at the full learning rate, and decays over its 4 steps.
    lrs = [v for _, v in log["lr"]]
    assert lrs[4] == pytest.approx(trainer.config.training.lr) and lrs[7] < lrs[6] < lrs[5] < lrs[4]
    assert lrs[7] == pytest.approx(trainer.config.training.lr * (1 - 3 / 4) ** trainer.config.training.poly_power,
                                    rel=1e-5)
    assert all(math.isfinite(v) for points in log.values() for _, v in points)
    net = trainer.method.inference_network().eval()
    with torch.no_grad():
        assert net(torch.rand(2, 1, 16, 16)).shape == (2, 3, 16, 16)


def test_shared_budget_takes_the_style_stage_out_of_the_segmenters_updates(tmp_path: Path) -> None:
    # The rows benched before session 10: stage 1 is style_fraction of training.iterations.
    trainer = _trainer(tmp_path, iterations=4, style_fraction=0.5, style_budget="shared")
    assert trainer.method.style_steps == 2 and trainer.total_steps == 4
    trainer.fit()
    log = read_training_log(tmp_path / LOG_NAME)
    assert [v for _, v in log["stage"]] == [1, 1, 2, 2]
    lrs = [v for _, v in log["lr"]]
    assert lrs[2] == pytest.approx(trainer.config.training.lr) and lrs[3] < lrs[2]


def test_no_style_stage_no_extra_steps(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, iterations=3, style_transfer=False)
    assert trainer.total_steps == 3 and trainer.method.schedule_start_step == 0


@pytest.mark.parametrize("flags", [
    {"style_transfer": False},
    {"local_alignment": False},
    {"output_adversarial": False},
    {"style_transfer": False, "local_alignment": False, "output_adversarial": False},
])
def test_ablations_train(tmp_path: Path, flags: dict) -> None:
    trainer = _trainer(tmp_path, iterations=2, **flags)
    trainer.fit()
    method = trainer.method
    if not flags.get("style_transfer", True):
        assert method.style_steps == 0 and not hasattr(method, "style_net")
    if not flags.get("output_adversarial", True):
        assert not hasattr(method, "d2")
    if not flags.get("local_alignment", True):
        # No mask: the bundle is a plain SegResNet and the spec is left alone.
        assert isinstance(method.inference_network(), SegResNet)
        assert method.bundle_spec({"a": 1}) == {"a": 1}
    with torch.no_grad():
        assert method.inference_network()(torch.rand(1, 1, 16, 16)).shape == (1, 3, 16, 16)


def test_bundle_round_trip(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, iterations=3)
    trainer.fit()
    method = trainer.method
    spec = method.bundle_spec(segmenter_spec(2, 1, 3, trainer.config.network))
    assert spec["architecture"] == "glua"
    saved = method.inference_network()
    rebuilt = segmenter_from_spec(spec)
    assert isinstance(rebuilt, LocalAlignmentSegmenter)
    rebuilt.load_state_dict({k: v.detach().cpu() for k, v in saved.state_dict().items()})
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), saved.eval()(x))


def test_state_dict_restores_discriminator_optimizers(tmp_path: Path) -> None:
    trained = _trainer(tmp_path / "a", iterations=4, style_fraction=0.5)
    trained.fit()
    state = trained.method.state_dict()
    assert {"network", "style_net", "style_disc", "style_opt", "style_disc_opt", "d1_opt", "d2", "d2_opt"} <= set(state)
    fresh = _trainer(tmp_path / "b", iterations=4, style_fraction=0.5).method
    fresh.load_state_dict(state)
    for name in ("d1_opt", "d2_opt", "style_opt", "style_disc_opt"):
        a, b = getattr(trained.method, name).state_dict(), getattr(fresh, name).state_dict()
        assert a["state"], f"{name} has no state after training"
        for idx, s in a["state"].items():
            for key, value in s.items():
                assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][idx][key]))
    for a, b in zip(trained.method.d2.parameters(), fresh.d2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_interrupted_run_resumes_to_the_same_weights(tmp_path: Path, fit_until_crash) -> None:
    # Stage 1 = steps 0-2 (0.34 / 0.66 * 6 = 3), stage 2 = steps 3-8; checkpoints every 2 steps; the
    # crash comes after step 4, inside stage 2.
    straight = _trainer(tmp_path / "a", iterations=6, style_fraction=0.34)
    straight.fit()
    broken = _trainer(tmp_path / "b", iterations=6, style_fraction=0.34)
    fit_until_crash(broken, 4)
    assert torch.load(tmp_path / "b" / CHECKPOINT_NAME, weights_only=False)["step"] == 4
    resumed = _trainer(tmp_path / "b", iterations=6, style_fraction=0.34)
    resumed.fit()
    a, b = straight.method.state_dict(), resumed.method.state_dict()
    for part in ("network", "d2", "style_net"):
        for (k, va), vb in zip(a[part].items(), b[part].values(), strict=True):
            assert torch.equal(va, vb), f"{part}.{k}"


def test_train_method_writes_a_glua_bundle(tiny_task, tmp_path: Path) -> None:
    from diffuse_uda.pipeline.train import train_method
    from diffuse_uda.training.bundle import load_bundle

    cfg = build_run_config("smoke", 2, {"training": {"iterations": 2, "device": "cpu"}, "method": TINY})
    run = train_method(tiny_task, "glua", cfg, tmp_path / "run", cache_dir=tmp_path / "cache", progress=False)
    bundle = load_bundle(run)
    assert bundle.spec["architecture"] == "glua"
    assert isinstance(bundle.network, LocalAlignmentSegmenter)
    with torch.no_grad():
        assert bundle.network(torch.rand(1, 1, 16, 16)).shape == (1, 4, 16, 16)

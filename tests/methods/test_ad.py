import math
from pathlib import Path

import pytest
import torch

from diffuse_uda.config import build_run_config
from diffuse_uda.methods.ad import (
    LOSS_KEYS,
    SVDA,
    AggregatingDecoupling,
    class_dice,
    dice_ce,
    difficulty_weights,
    normalise_weights,
    push_history,
    rs_pseudo_label,
)
from diffuse_uda.methods.registry import available_methods, create_method
from diffuse_uda.networks.ad_network import ADInferenceNetwork, ADNetwork
from diffuse_uda.networks.segmenter import segmenter_from_spec, segmenter_spec
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.log import read_training_log
from diffuse_uda.training.losses import IGNORE_INDEX
from diffuse_uda.training.trainer import LOG_NAME, Trainer

torch.set_num_threads(1)

# Few DDIM steps and a short diffusion so every test stays tiny on one CPU thread.
FAST = {"ddim_steps": 2, "timesteps": 20}


def _data(dims: int = 2, size: int = 16) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    shape = (size,) * dims
    return TrainingData(torch.rand(4, 1, *shape, generator=g), torch.randint(0, 3, (4, *shape), generator=g),
                        target_images=torch.rand(5, 1, *shape, generator=g))


def _trainer(tmp_path: Path, iterations: int = 3, dims: int = 2, **options) -> Trainer:
    training = {"iterations": iterations, "device": "cpu", "epoch_length": 1, "checkpoint_every": 2}
    cfg = build_run_config("smoke", dims, {"training": training, "method": {**FAST, **options}})
    return Trainer(create_method("ad", cfg.method), _data(dims), cfg, tmp_path, dims, 3, progress=False)


def test_registered_as_a_uda_comparator() -> None:
    cls = available_methods()["ad"]
    assert cls is AggregatingDecoupling and cls.uses_target_images and not cls.uses_target_labels
    assert "A&D (GenericSSL) comparator" in cls.summary
    o = cls().options
    assert (o.tau, o.alpha, o.mu, o.n_aug, o.timesteps, o.transfer_decay) == (50, 0.2, 10.0, 3, 1000, 0.99)
    assert o.svda and o.diffusion and o.drs and o.rs


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("dims", [2, 3])
def test_every_decoder_gives_full_resolution_logits(dims: int) -> None:
    net = ADNetwork(dims, in_channels=2, num_classes=4, features=4, levels=3)
    x = torch.rand(2, 2, *(16,) * dims)
    feats = net.encoder(x)
    assert [f.shape[1] for f in feats] == [4, 8, 16]
    assert [f.shape[2] for f in feats] == [16, 8, 4]
    noisy_feats = net.encoder(x, torch.randn(2, 4, *(16,) * dims), torch.tensor([0, 7]))
    assert [f.shape for f in noisy_feats] == [f.shape for f in feats]  # same shapes, different features
    assert not torch.allclose(noisy_feats[-1], feats[-1])
    want = (2, 4, *(16,) * dims)
    assert net.psi(feats).shape == want and net.theta(feats).shape == want
    assert net.denoise(x, torch.randn(want), torch.tensor([3, 999])).shape == want
    assert net.core(x).shape == want
    # Odd sizes work too (the decoder upsamples to each skip's size).
    assert net.core(torch.rand(1, 2, *(13,) * dims)).shape == (1, 4, *(13,) * dims)


def test_time_step_changes_the_denoising_output() -> None:
    net = ADNetwork(2, 1, 3, features=4, levels=2)
    x, y = torch.rand(1, 1, 8, 8), torch.randn(1, 3, 8, 8)
    assert not torch.allclose(net.denoise(x, y, torch.tensor([1])), net.denoise(x, y, torch.tensor([900])))


def test_no_denoising_decoder_without_diffusion() -> None:
    net = ADNetwork(2, 1, 3, features=4, levels=2, diffusion=False)
    assert net.xi is None
    with pytest.raises(AssertionError):
        net.denoise(torch.rand(1, 1, 8, 8), torch.randn(1, 3, 8, 8), torch.tensor([1]))


def test_decoders_share_one_initialisation_so_their_mean_is_a_decoder() -> None:
    torch.manual_seed(0)
    shared = ADNetwork(2, 1, 3, features=4, levels=2)
    for name, p in shared.psi.named_parameters():
        assert torch.equal(p, dict(shared.xi.named_parameters())[name])  # type: ignore[union-attr]
        assert torch.equal(p, dict(shared.theta.named_parameters())[name])
    torch.manual_seed(0)
    independent = ADNetwork(2, 1, 3, features=4, levels=2, shared_init=False)
    assert independent.xi is not None
    assert not torch.equal(next(independent.xi.parameters()), next(independent.psi.parameters()))
    # Same encoder and psi either way (loading a state draws no random numbers).
    assert torch.equal(next(independent.psi.parameters()), next(shared.psi.parameters()))


# --------------------------------------------------------------------------- DRS (Eq. 3-5)


def test_difficulty_weights_follow_the_paper_on_a_hand_made_history() -> None:
    fast = [0.2, 0.4, 0.6, 0.8, 0.9]  # learned quickly, never forgets
    slow = [0.2, 0.25, 0.22, 0.3, 0.32]  # slow, with a dip
    flat = [0.5] * 5  # nothing learned or un-learned: d = 1
    history = torch.tensor([fast, slow, flat], dtype=torch.float64).T  # (tau + 1, K), oldest first
    d, w_lambda, w = difficulty_weights(history, alpha=0.2)

    du_slow = (0.22 - 0.25) * math.log(0.22 / 0.25)  # min(delta, 0) * ln(ratio), only the dip
    dl_slow = 0.05 * math.log(0.25 / 0.2) + 0.08 * math.log(0.3 / 0.22) + 0.02 * math.log(0.32 / 0.3)
    assert d[1].item() == pytest.approx(du_slow / dl_slow, rel=1e-5)
    assert d[0] < d[1]  # the class whose Dice rises faster is less difficult
    assert d[2].item() == pytest.approx(1.0)
    # Reversed Dice: mean of 1 - lambda over the last tau iterations; lower Dice -> larger weight.
    assert w_lambda[0].item() == pytest.approx(1 - sum(fast[1:]) / 4)
    assert w_lambda[1] > w_lambda[2] > w_lambda[0]
    assert torch.allclose(w, w_lambda * d.pow(0.2))
    assert w[1] > w[0]
    n = normalise_weights(w)
    assert n.mean().item() == pytest.approx(1.0) and torch.equal(n.argsort(), w.argsort())


def test_difficulty_history_tolerates_absent_classes() -> None:
    probs = torch.zeros(1, 3, 4, 4)
    probs[:, 0] = 1.0
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, 0, 0] = IGNORE_INDEX
    dice = class_dice(probs, labels)
    assert dice[0].item() == pytest.approx(1.0) and dice[1:].isnan().all()  # classes 1, 2 absent
    history = torch.full((4, 3), math.nan)
    for row in ([0.5, 0.1, math.nan], [0.6, math.nan, math.nan], [0.7, 0.3, math.nan]):
        history = push_history(history, torch.tensor(row))
    d, w_lambda, w = difficulty_weights(history, alpha=0.2)
    assert torch.isfinite(d).all() and torch.isfinite(w).all()
    assert w_lambda[2].item() == 1.0 and d[2].item() == pytest.approx(1.0)  # never seen: neutral
    assert w_lambda[1].item() == pytest.approx(0.8)  # mean of 1 - {0.1, 0.3}


@pytest.mark.parametrize("drs", [True, False])
def test_class_weights_switch_on_after_tau_iterations(tmp_path: Path, drs: bool) -> None:
    method = _trainer(tmp_path, tau=3, drs=drs).method
    labels = torch.randint(0, 3, (2, 8, 8))
    for i in range(4):
        assert torch.equal(method.class_weights, torch.ones(3))  # uniform until the window is full
        probs = torch.softmax(torch.randn(2, 3, 8, 8) * (i + 1), 1)
        method.update_difficulty(probs, labels)
    assert method.dice_updates == 4
    if drs:
        assert not torch.allclose(method.class_weights, torch.ones(3))
        assert method.class_weights.mean().item() == pytest.approx(1.0)
    else:
        assert torch.equal(method.class_weights, torch.ones(3))


def test_weighted_dice_ce() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    labels = torch.randint(0, 3, (2, 8, 8), generator=g)
    plain = dice_ce(logits, labels)
    assert plain.item() == pytest.approx(dice_ce(logits, labels, torch.ones(3)).item())
    ce = torch.nn.functional.cross_entropy(logits, labels)
    dice = 1 - (2 * (logits.softmax(1) * torch.nn.functional.one_hot(labels, 3).movedim(-1, 1)).sum((0, 2, 3))
                + 1e-5) / (logits.softmax(1).sum((0, 2, 3)) + torch.bincount(labels.flatten(), minlength=3) + 1e-5)
    assert plain.item() == pytest.approx(0.5 * (ce + dice.mean()).item(), rel=1e-5)
    # A class absent from the labels leaves the Dice average (cross-entropy still covers it).
    no_two = labels.clamp(max=1)
    p = logits.softmax(1)[:, :2]
    onehot = torch.nn.functional.one_hot(no_two, 2).movedim(-1, 1)
    dice2 = 1 - (2 * (p * onehot).sum((0, 2, 3)) + 1e-5) / (p.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1e-5)
    ce2 = torch.nn.functional.cross_entropy(logits, no_two)
    assert dice_ce(logits, no_two).item() == pytest.approx(0.5 * (ce2 + dice2.mean()).item(), rel=1e-5)
    # Weights act per class; ignored voxels do not count.
    assert dice_ce(logits, labels, torch.tensor([0.0, 1.0, 1.0])) < plain
    ignored = labels.clone()
    ignored[:, :4] = IGNORE_INDEX
    assert dice_ce(logits, ignored).item() == pytest.approx(
        dice_ce(logits[:, :, 4:], labels[:, 4:]).item(), rel=1e-5)


# --------------------------------------------------------------------------- SVDA


def test_svda_draws_exactly_three_distinct_operations() -> None:
    svda = SVDA(num_classes=3)
    cpu = torch.Generator().manual_seed(0)
    seen: set[str] = set()
    for _ in range(50):
        ops = svda.sample_ops(cpu)
        assert len(ops) == 3 and len(set(ops)) == 3 and set(ops) <= set(SVDA.OPS)
        seen |= set(ops)
    assert seen == set(SVDA.OPS)  # both sets are sampled from


@pytest.mark.parametrize("dims", [2, 3])
def test_svda_keeps_image_and_label_aligned(dims: int) -> None:
    """Image = one-hot of the label: after any spatial operations the label is still argmax(image)."""
    g = torch.Generator().manual_seed(1)
    size = (16,) * dims
    label = torch.zeros(2, *size, dtype=torch.long)
    label[(slice(None), *(slice(3, 9),) * dims)] = 1
    label[(slice(None), *(slice(8, 14),) * dims)] = 2
    image = torch.nn.functional.one_hot(label, 3).movedim(-1, 1).float()
    svda = SVDA(num_classes=3)
    for ops in [("crop",), ("rotation",), ("scaling",), SVDA.SPATIAL]:
        out_image, out_label = svda(image, label, g, ops)
        assert out_label is not None and out_label.shape == label.shape and out_image.shape == image.shape
        assert torch.equal(out_label, out_image.argmax(1)), ops
        assert not torch.equal(out_label, label), ops  # something moved
    # Intensity operations change the image only.
    out_image, out_label = svda(image * 0.5 + 0.25, label, g, ("blur", "brightness", "gamma"))
    assert torch.equal(out_label, label) and out_image.min() >= 0 and out_image.max() <= 1
    # Ignored voxels stay ignored (not turned into background).
    ignored = label.clone()
    ignored[(slice(None), *(slice(0, 16),) * (dims - 1), slice(0, 4))] = IGNORE_INDEX
    _, out_label = svda(image, ignored, g, ("scaling",))
    assert (out_label == IGNORE_INDEX).any() and set(out_label.unique().tolist()) <= {0, 1, 2, IGNORE_INDEX}


def test_svda_rejects_unknown_operations() -> None:
    with pytest.raises(ValueError, match="unknown SVDA"):
        SVDA(3)(torch.rand(1, 1, 8, 8), None, torch.Generator(), ("flip",))


# --------------------------------------------------------------------------- pseudo-labels (Eq. 7)


def test_rs_pseudo_labels() -> None:
    g = torch.Generator().manual_seed(0)
    xi = torch.randn(2, 3, 8, 8, generator=g)
    psi = torch.randn(2, 3, 8, 8, generator=g)
    assert torch.equal(rs_pseudo_label(None, psi, g), psi.argmax(1))
    assert torch.equal(rs_pseudo_label(xi, psi, g, rs=False), (xi.softmax(1) + psi.softmax(1)).argmax(1))
    a = rs_pseudo_label(xi, psi, torch.Generator().manual_seed(3))
    b = rs_pseudo_label(xi, psi, torch.Generator().manual_seed(3))
    assert a.dtype == torch.long and a.shape == (2, 8, 8) and torch.equal(a, b)  # reproducible per generator
    # Where both maps agree confidently, the Gumbel noise cannot flip the label.
    agree = torch.zeros(1, 3, 8, 8)
    agree[:, 2] = 20.0
    assert (rs_pseudo_label(agree, agree, g) == 2).all()


def test_rs_lets_a_confident_difficulty_map_override_an_over_confident_diffusion_map() -> None:
    # Diffusion map 99.9 % class 0, difficulty-aware map 90 % class 1: the point of RS (Eq. 7) is that
    # the over-confident diffusion map does not always win; without RS it always does.
    xi = torch.log(torch.tensor([0.999, 0.0005, 0.0005])).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    psi = torch.log(torch.tensor([0.05, 0.9, 0.05])).view(1, 3, 1, 1).expand(1, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert (rs_pseudo_label(xi, psi, g, rs=False) == 0).all()
    for sigma in (0.0, 1.0):
        share = (rs_pseudo_label(xi, psi, g, sigma=sigma) == 1).float().mean().item()
        assert share > 0.3, (sigma, share)


# --------------------------------------------------------------------------- training


@pytest.mark.parametrize("dims", [2, 3])
def test_short_training_run_logs_finite_losses(tmp_path: Path, dims: int) -> None:
    trainer = _trainer(tmp_path, iterations=3, dims=dims)
    trainer.fit()
    log = read_training_log(tmp_path / LOG_NAME)
    assert list(log) == ["lr", *LOSS_KEYS]
    assert all([s for s, _ in points] == [1, 2, 3] for points in log.values())
    assert all(math.isfinite(v) for points in log.values() for _, v in points)
    assert all(v > 0 for _, v in log["deno"]) and all(v > 0 for _, v in log["unsup"])
    net = trainer.method.inference_network().eval()
    assert isinstance(net, ADInferenceNetwork)
    with torch.no_grad():
        assert net(torch.rand(2, 1, *(16,) * dims)).shape == (2, 3, *(16,) * dims)


@pytest.mark.parametrize("flags", [{"svda": False}, {"diffusion": False}, {"drs": False}, {"rs": False},
                                   {"svda": False, "diffusion": False, "drs": False, "rs": False}])
def test_ablations_train(tmp_path: Path, flags: dict) -> None:
    trainer = _trainer(tmp_path, iterations=2, **flags)
    trainer.fit()
    assert list(read_training_log(tmp_path / LOG_NAME)) == ["lr", *LOSS_KEYS]  # same keys whatever the flags
    if not flags.get("diffusion", True):
        assert trainer.method.net.xi is None


def test_ddim_sampling_and_noisy_labels(tmp_path: Path) -> None:
    method = _trainer(tmp_path, ddim_steps=3, timesteps=10).method
    g = torch.Generator().manual_seed(0)
    logits = method.ddim_sample(torch.rand(2, 1, 16, 16), g)
    assert logits.shape == (2, 3, 16, 16) and torch.isfinite(logits).all()
    labels = torch.randint(0, 3, (2, 16, 16))
    clean = method.noisy_label(labels, torch.tensor([0, 0]), g)  # abar_0 ~ 1: almost the one-hot label
    assert torch.equal(clean.argmax(1), labels)


def test_ema_transfer_blends_the_labelled_decoders_into_theta(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, transfer_decay=0.75)
    method = trainer.method
    net = method.net
    theta = [p.detach().clone() for p in net.theta.parameters()]
    for p in list(net.xi.parameters()) + list(net.psi.parameters()):
        p.data.add_(torch.randn_like(p))
    method.after_optimizer_step(trainer.ctx)
    for before, p, px, pp in zip(theta, net.theta.parameters(), net.xi.parameters(), net.psi.parameters(),
                                 strict=True):
        assert torch.allclose(p, 0.75 * before + 0.25 * (px + pp) / 2, atol=1e-6)


def test_inference_network_round_trips_through_the_bundle_spec(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path, iterations=2)
    trainer.fit()
    method = trainer.method
    spec = method.bundle_spec(segmenter_spec(2, 1, 3, trainer.config.network))
    assert spec["architecture"] == "ad"
    rebuilt = segmenter_from_spec(spec)
    assert isinstance(rebuilt, ADInferenceNetwork)
    state = {k: v.clone() for k, v in method.inference_network().state_dict().items()}
    torch.save(state, tmp_path / "net.pt")
    rebuilt.load_state_dict(torch.load(tmp_path / "net.pt"))
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), method.inference_network().eval()(x))


def test_state_dict_restores_the_difficulty_statistics(tmp_path: Path) -> None:
    trainer = _trainer(tmp_path / "a", iterations=4, tau=2)
    trainer.fit()
    method = trainer.method
    assert method.dice_updates == 4 and torch.isfinite(method.dice_history).any()
    assert not torch.allclose(method.class_weights, torch.ones(3))  # DRS active after tau + 1 rows
    state = method.state_dict()
    fresh = _trainer(tmp_path / "b", iterations=4, tau=2).method
    assert fresh.dice_updates == 0 and fresh.dice_history.isnan().all()
    fresh.load_state_dict(state)
    assert fresh.dice_updates == 4
    assert torch.equal(fresh.dice_history.nan_to_num(-1), method.dice_history.nan_to_num(-1))
    assert torch.equal(fresh.class_weights, method.class_weights)
    for a, b in zip(fresh.net.parameters(), method.net.parameters(), strict=True):
        assert torch.equal(a, b)

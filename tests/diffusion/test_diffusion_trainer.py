"""Diffusion training: outputs, resume equivalence, domain-selective deformation, errors, overfitting."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusion_helpers import NUM_CLASSES, make_pairs

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.samplers import sample_images
from diffuse_uda.diffusion.trainer import (
    CHECKPOINT_NAME,
    LOG_NAME,
    PairSample,
    _augmented_batch,
    _DeviceData,
    load_diffusion,
    train_diffusion,
)
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.transforms.deformation import RandomDeformation


def _log(path: Path) -> list[list[str]]:
    with open(path / LOG_NAME, newline="") as fh:
        return list(csv.reader(fh))


def test_training_writes_checkpoint_and_log(tmp_path: Path, tiny_pairs: list[PairSample]) -> None:
    cfg = DiffusionConfig.smoke(iterations=5, log_every=2, checkpoint_every=3, sample_every=5)
    ckpt = train_diffusion(tiny_pairs, NUM_CLASSES, cfg, tmp_path, progress=False)
    assert ckpt == tmp_path / CHECKPOINT_NAME and ckpt.is_file()
    rows = _log(tmp_path)
    assert rows[0] == ["step", "loss"]
    assert [int(r[0]) for r in rows[1:]] == [2, 4, 5]
    assert all(np.isfinite(float(r[1])) for r in rows[1:])
    assert (tmp_path / "samples" / "step_0000005.png").is_file()
    model, loaded_cfg, info = load_diffusion(ckpt)
    assert loaded_cfg == cfg
    assert info["iteration"] == 5 and info["num_classes"] == NUM_CLASSES and info["image_channels"] == 1
    assert not any(p.requires_grad for p in model.parameters())
    # weights moved away from MONAI's zero-initialised output layer
    raw, _, _ = load_diffusion(ckpt, use_ema=False)
    assert any(p.abs().sum() > 0 for p in raw.unet.out.parameters())
    # a finished run is not retrained
    mtime = ckpt.stat().st_mtime_ns
    train_diffusion(tiny_pairs, NUM_CLASSES, cfg, tmp_path, progress=False)
    assert ckpt.stat().st_mtime_ns == mtime


def test_resume_equals_uninterrupted_run(tmp_path: Path, tiny_pairs: list[PairSample]) -> None:
    # checkpoint_every=3 and log_every=2 leave a partial logging window in the step-4 checkpoint;
    # accumulation 2, a domain ratio and deformation exercise every stateful part of the loop.
    cfg8 = DiffusionConfig.smoke(iterations=8, checkpoint_every=3, log_every=3, grad_accumulation=2,
                                 source_target_ratio=0.5, deform="both", ema_start=3)
    full = train_diffusion(tiny_pairs, NUM_CLASSES, cfg8, tmp_path / "full", progress=False)

    part = tmp_path / "part"
    train_diffusion(tiny_pairs, NUM_CLASSES, cfg8.replace(iterations=4), part, progress=False)
    # a row logged after the last checkpoint by a crashed run must disappear on resume
    with open(part / LOG_NAME, "a") as fh:
        fh.write("6,123.0\n")
    resumed = train_diffusion(tiny_pairs, NUM_CLASSES, cfg8, part, progress=False)

    a = torch.load(full, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["iteration"] == b["iteration"] == 8
    for key in ("model", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs"
    assert torch.equal(a["rng"]["generator"], b["rng"]["generator"])
    assert _log(tmp_path / "full") == _log(part)


def test_gradient_checkpointing_trains_to_the_same_weights(tmp_path: Path, tiny_pairs: list[PairSample]) -> None:
    cfg = DiffusionConfig.smoke(iterations=3, grad_accumulation=2, deform="both")
    plain = torch.load(train_diffusion(tiny_pairs, NUM_CLASSES, cfg, tmp_path / "a", progress=False),
                       weights_only=True)
    ckpt = torch.load(train_diffusion(tiny_pairs, NUM_CLASSES, cfg.replace(gradient_checkpointing=True), tmp_path / "b",
                                      progress=False), weights_only=True)
    assert ckpt["config"]["gradient_checkpointing"] and not plain["config"]["gradient_checkpointing"]
    for key in ("model", "ema"):
        assert all(torch.equal(plain[key][n], ckpt[key][n]) for n in plain[key]), key
    assert _log(tmp_path / "a") == _log(tmp_path / "b")


def test_resume_rejects_other_architecture(tmp_path: Path, tiny_pairs: list[PairSample]) -> None:
    train_diffusion(tiny_pairs, NUM_CLASSES, DiffusionConfig.smoke(iterations=1), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="different diffusion settings"):
        train_diffusion(tiny_pairs, NUM_CLASSES, DiffusionConfig.smoke(iterations=2, embed_channels=2), tmp_path,
                        progress=False)
    with pytest.raises(ConfigError, match="classes"):
        train_diffusion(tiny_pairs, NUM_CLASSES + 1, DiffusionConfig.smoke(iterations=2), tmp_path, progress=False)


@pytest.mark.parametrize("deform", ["source", "target", "both", "none"])
def test_deformation_only_touches_chosen_domain(tiny_pairs: list[PairSample], deform: str) -> None:
    cfg = DiffusionConfig.smoke(deform=deform)
    data = _DeviceData(tiny_pairs, NUM_CLASSES, cfg, torch.device("cpu"))
    idx = torch.arange(len(tiny_pairs))
    deformer = RandomDeformation(cfg.deformation, num_classes=NUM_CLASSES)
    x, m = _augmented_batch(data, idx, deformer, deform, torch.Generator().manual_seed(0))
    assert x.shape == data.images.shape and m.shape == data.masks.shape and m.dtype == torch.long
    changed = (x != data.images).flatten(1).any(1)
    src = data.is_source
    expected = {"source": src, "target": ~src, "both": torch.ones_like(src), "none": torch.zeros_like(src)}[deform]
    assert torch.equal(changed, expected)
    # image and mask move together: where the mask changed, so did the image
    mask_changed = (m != data.masks.long()).flatten(1).any(1)
    assert not torch.any(mask_changed & ~changed)


@pytest.mark.parametrize(("ratio", "domain"), [(1.0, "source"), (0.0, "target")])
def test_source_target_ratio(tiny_pairs: list[PairSample], ratio: float, domain: str) -> None:
    data = _DeviceData(tiny_pairs, NUM_CLASSES, DiffusionConfig.smoke(source_target_ratio=ratio), torch.device("cpu"))
    idx = data.draw(64, torch.Generator().manual_seed(0))
    assert {tiny_pairs[i].domain for i in idx.tolist()} == {domain}
    half = _DeviceData(tiny_pairs, NUM_CLASSES, DiffusionConfig.smoke(source_target_ratio=0.5), torch.device("cpu"))
    frac = half.is_source[half.draw(2000, torch.Generator().manual_seed(0))].float().mean().item()
    assert 0.45 < frac < 0.55  # 4 source vs 2 target pairs, yet balanced draws


def test_bad_pairs_raise(tmp_path: Path, tiny_pairs: list[PairSample]) -> None:
    cfg = DiffusionConfig.smoke(iterations=1)
    bad_shape = [*tiny_pairs, PairSample(np.zeros((1, 8, 8), np.float32), np.zeros((8, 8), np.int64), "source", "x")]
    with pytest.raises(DataError, match="shape"):
        train_diffusion(bad_shape, NUM_CLASSES, cfg, tmp_path, progress=False)
    bad_label = [PairSample(p.image, p.mask * 5, p.domain, p.case_id) for p in tiny_pairs]
    with pytest.raises(DataError, match="outside"):
        train_diffusion(bad_label, NUM_CLASSES, cfg, tmp_path, progress=False)
    with pytest.raises(ConfigError, match="no target"):
        train_diffusion(tiny_pairs[:2], NUM_CLASSES, cfg.replace(source_target_ratio=0.5), tmp_path, progress=False)
    with pytest.raises(DataError, match="no image-mask pairs"):
        train_diffusion([], NUM_CLASSES, cfg, tmp_path, progress=False)


def test_overfits_a_single_pair(tmp_path: Path) -> None:
    """Sanity: trained on one pair (~2 s), DDPM samples reproduce the training image's layout."""
    pair = make_pairs(n_source=1, n_target=0)[0]
    cfg = DiffusionConfig.smoke(iterations=100, batch_size=2, lr=3e-3, deform="none", checkpoint_every=1000,
                                log_every=50)
    ckpt = train_diffusion([pair], NUM_CLASSES, cfg, tmp_path, progress=False)
    model, cfg, _ = load_diffusion(ckpt, use_ema=False)
    masks = torch.from_numpy(pair.mask)[None].repeat(3, 1, 1)
    out = sample_images(model, masks, NUM_CLASSES, 1, sampler="ddpm", num_train_timesteps=cfg.num_train_timesteps,
                        generator=torch.Generator().manual_seed(0))
    corr = [np.corrcoef(o[0].numpy().ravel(), pair.image[0].ravel())[0, 1] for o in out]
    assert np.mean(corr) > 0.6, corr  # an untrained model gives ~0

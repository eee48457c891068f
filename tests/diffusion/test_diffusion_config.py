"""DiffusionConfig: profiles, validation and (de)serialisation."""

from __future__ import annotations

import pytest

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.errors import ConfigError
from diffuse_uda.transforms.deformation import DeformationParams


@pytest.mark.parametrize("profile", ["smoke", "quick", "paper"])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_profiles_are_valid(profile: str, spatial_dims: int) -> None:
    cfg = getattr(DiffusionConfig, profile)(spatial_dims=spatial_dims)
    assert len(cfg.image_size) == spatial_dims


def test_paper_profile_matches_the_paper() -> None:
    cfg = DiffusionConfig.paper(spatial_dims=3)
    assert cfg.image_size == (128, 128, 128)
    assert cfg.channels[0] == 64 and cfg.num_res_blocks == 1
    assert cfg.num_train_timesteps == 250 and cfg.schedule == "cosine"
    assert (cfg.lr, cfg.batch_size, cfg.grad_accumulation) == (1e-5, 1, 2)
    assert (cfg.ema_decay, cfg.iterations, cfg.sample_every) == (0.995, 100_000, 1000)
    assert cfg.deform == "source"


def test_round_trip_and_overrides() -> None:
    cfg = DiffusionConfig.smoke(deform="both", source_target_ratio=0.5,
                                deformation=DeformationParams(rotation_degrees=10.0, scale_range=(0.9, 1.1)))
    d = cfg.to_dict()
    assert isinstance(d["image_size"], list) and isinstance(d["deformation"]["scale_range"], list)
    back = DiffusionConfig.from_dict(d)
    assert back == cfg
    assert back.architecture() == cfg.architecture()
    with pytest.raises(ConfigError, match="bogus: Extra inputs are not permitted"):
        DiffusionConfig.from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError, match="lr: Input should be a finite number"):
        DiffusionConfig.from_dict({**d, "lr": float("nan")})


@pytest.mark.parametrize(
    "changes",
    [
        {"image_size": (18, 18)},  # not divisible by 2 ** (levels - 1)... with 2 levels: 18 is fine, use 3 levels
        {"norm_num_groups": 3},
        {"deform": "sideways"},
        {"source_target_ratio": 1.5},
        {"schedule": "nope"},
        {"iterations": 0},
        {"checkpoint_every": 0},
        {"log_every": 0},
        {"ema_decay": 1.0},
        {"image_size": (16,)},
    ],
)
def test_invalid_settings_raise(changes: dict) -> None:
    if changes.get("image_size") == (18, 18):
        changes = {**changes, "channels": (8, 16, 16)}
    with pytest.raises(ConfigError):
        DiffusionConfig.smoke(**changes)

import pytest

from diffuse_uda.config import PROFILES, build_run_config, parse_overrides
from diffuse_uda.errors import ConfigError


@pytest.mark.parametrize("profile", PROFILES)
def test_profiles_build(profile: str) -> None:
    cfg = build_run_config(profile)
    assert cfg.profile == profile
    assert cfg.training.iterations > 0


def test_profile_sizes_are_ordered() -> None:
    its = [build_run_config(p).training.iterations for p in ("smoke", "quick", "paper")]
    assert its == sorted(its) and len(set(its)) == 3


def test_overrides_win_and_parse_yaml_values() -> None:
    ov = parse_overrides(["training.lr=0.5", "method.box_proportion=[0.1, 0.2]", "training.amp=false"])
    cfg = build_run_config("quick", 2, ov)
    assert cfg.training.lr == 0.5 and cfg.training.amp is False
    assert cfg.method["box_proportion"] == [0.1, 0.2]


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(ConfigError, match="trainig"):
        build_run_config("quick", 2, parse_overrides(["trainig.lr=1"]))
    with pytest.raises(ConfigError):
        parse_overrides(["no_equals_sign"])
    with pytest.raises(ConfigError, match="profile"):
        build_run_config("huge")


def test_quick3d_profile_turns_any_task_into_volumes_for_both_networks() -> None:
    from diffuse_uda.pipeline.run import diffusion_config

    cfg = build_run_config("quick3d", 2)  # a 2D task file
    assert cfg.preprocessing["spatial_dims"] == 3 and tuple(cfg.preprocessing["size"]) == (64, 64, 32)
    generator = diffusion_config("quick3d", 3, {}, seed=0)
    assert generator.spatial_dims == 3 and generator.image_size == (64, 64, 32)

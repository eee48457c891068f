"""Domain conditioning, classifier-free guidance, pseudo-pair weights and DPM-Solver++(2M)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusion_helpers import NUM_CLASSES, assert_resumes_exactly, make_pairs, square_masks
from torch import nn

from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.samplers import dpm_timesteps, make_scheduler, sample_images
from diffuse_uda.diffusion.trainer import load_diffusion, train_diffusion
from diffuse_uda.networks.conditional_unet import DOMAIN_INDEX, ConditionalDiffusionUNet, one_hot


def test_domain_embedding_changes_the_prediction_and_the_paper_network_has_none() -> None:
    torch.manual_seed(0)
    net = ConditionalDiffusionUNet(2, 1, NUM_CLASSES, channels=(8, 16), norm_num_groups=4, num_domains=2)
    for p in net.parameters():  # MONAI zero-initialises the output layers: make every path visible
        if not p.detach().abs().sum():
            nn.init.normal_(p, std=0.1)
    x, c, t = torch.randn(2, 1, 16, 16), one_hot(square_masks(), NUM_CLASSES), torch.tensor([5, 5])
    source = net(x, c, t, torch.full((2,), DOMAIN_INDEX["source"]))
    target = net(x, c, t, torch.full((2,), DOMAIN_INDEX["target"]))
    assert source.shape == (2, 1, 16, 16) and not torch.allclose(source, target)
    paper = ConditionalDiffusionUNet(2, 1, NUM_CLASSES, channels=(8, 16), norm_num_groups=4)
    with pytest.raises(ValueError, match="no domain input"):
        paper(x, c, t, torch.full((2,), 2))


class _OracleEps(nn.Module):
    """Predicts exactly the noise that separates x_t from a fixed clean image (per domain)."""

    def __init__(self, alphas_cumprod: torch.Tensor, clean: dict[int, torch.Tensor]) -> None:
        super().__init__()
        self.abar, self.clean = alphas_cumprod, clean

    def forward(self, x, cond, t, domain=None):  # noqa: ANN001, ANN201
        a = self.abar[t].float().view(-1, 1, 1, 1)
        keys = domain if domain is not None else torch.zeros_like(t)
        x0 = torch.stack([self.clean[int(k)] for k in keys])
        return (x - a.sqrt() * x0) / (1 - a).sqrt()


@pytest.mark.parametrize("sampler", ["dpm++2m", "dpm++2m-sde"])
@pytest.mark.parametrize("steps", [5, 10, 25])
def test_dpm_solver_recovers_the_clean_image_of_an_exact_model(sampler: str, steps: int) -> None:
    abar = make_scheduler(sampler, 250, "cosine").alphas_cumprod
    clean = {0: torch.linspace(-0.8, 0.8, 256).view(1, 16, 16)}
    out = sample_images(_OracleEps(abar, clean), square_masks(), NUM_CLASSES, 1, sampler=sampler, steps=steps,
                        num_train_timesteps=250, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out * 2 - 1, clean[0].expand(2, 1, 16, 16), atol=1e-3)
    assert dpm_timesteps(250, steps)[0] == 249 and dpm_timesteps(250, steps)[-1] == 0
    assert len(dpm_timesteps(250, steps)) == steps


def test_guidance_extrapolates_from_the_unknown_toward_the_requested_domain() -> None:
    abar = make_scheduler("dpm++2m", 250, "cosine").alphas_cumprod
    clean = {0: torch.full((1, 16, 16), -0.2), 2: torch.full((1, 16, 16), 0.2)}
    model = _OracleEps(abar, clean)
    kw = dict(sampler="dpm++2m", steps=10, num_train_timesteps=250, domain=2)
    plain = sample_images(model, square_masks(), NUM_CLASSES, 1, generator=torch.Generator().manual_seed(0), **kw)
    guided = sample_images(model, square_masks(), NUM_CLASSES, 1, generator=torch.Generator().manual_seed(0),
                           guidance_scale=2.0, **kw)
    assert torch.allclose(plain * 2 - 1, torch.full_like(plain, 0.2), atol=1e-3)
    assert (guided * 2 - 1).mean() > 0.3  # pushed past the target image, away from the unknown one
    with pytest.raises(ValueError, match="needs a domain"):
        sample_images(model, square_masks(), NUM_CLASSES, 1, sampler="dpm++2m", steps=3, guidance_scale=2.0)


def test_domain_conditioned_training_with_dropout_and_weights_resumes_exactly(tmp_path: Path) -> None:
    pairs = make_pairs()
    for p in pairs:
        if p.domain == "target":
            p.weight = 0.25
    cfg = DiffusionConfig.smoke(iterations=6, checkpoint_every=3, domain_conditioning=True, domain_dropout=0.5,
                                mask_dropout=0.2, pair_weighting="confidence")
    # Interrupted after the checkpoint at 3, then resumed: the same weights as straight through.
    straight = assert_resumes_exactly(pairs, cfg, tmp_path)
    a, cfg_a, _ = load_diffusion(straight)
    assert cfg_a.domain_conditioning and a.num_domains == 2
    images = sample_images(a, square_masks(), NUM_CLASSES, 1, sampler="dpm++2m", steps=4, num_train_timesteps=10,
                           domain=DOMAIN_INDEX["target"], guidance_scale=1.5,
                           generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 1, 16, 16) and images.min() >= 0 and images.max() <= 1


def test_pair_weights_scale_the_loss() -> None:
    from diffuse_uda.diffusion.trainer import _loss

    pred, noise = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    noise[1] = 3.0
    assert float(_loss(pred, noise, None)) == pytest.approx(2.0)
    assert float(_loss(pred, noise, torch.tensor([1.0, 0.0]))) == pytest.approx(1.0)
    assert float(_loss(pred, noise, torch.tensor([1.0, 1.0]))) == pytest.approx(2.0)


def test_a_zero_initialised_domain_embedding_starts_domain_blind_and_learns_the_domains(tmp_path: Path) -> None:
    x, c, t = torch.randn(2, 1, 16, 16), one_hot(square_masks(), NUM_CLASSES), torch.tensor([3, 7])
    nets = {}
    for init in ("normal", "zero"):
        torch.manual_seed(0)
        nets[init] = ConditionalDiffusionUNet(2, 1, NUM_CLASSES, channels=(8, 16), norm_num_groups=4, num_domains=2,
                                              domain_embedding_init=init)
    normal, zero = nets["normal"].unet.class_embedding.weight, nets["zero"].unet.class_embedding.weight
    assert torch.equal(zero, torch.zeros_like(zero)) and normal.norm(dim=1).min() > 2  # N(0, 1) over 32 entries
    # Every other weight is the same draw.
    for (k, a), (_, b) in zip(nets["normal"].state_dict().items(), nets["zero"].state_dict().items(), strict=True):
        assert k == "unet.class_embedding.weight" or torch.equal(a, b), k
    for net in nets.values():  # MONAI zero-initialises the output layers: make the outputs visible
        for p in net.parameters():
            if not p.detach().abs().sum() and p is not net.unet.class_embedding.weight:
                nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(1))
    outs = {init: [net(x, c, t, torch.full((2,), d)) for d in (0, 1, 2)] for init, net in nets.items()}
    assert all(torch.equal(outs["zero"][0], o) for o in outs["zero"][1:])  # domain-blind at the start
    assert not torch.allclose(outs["normal"][0], outs["normal"][2])
    # Training separates the domains from zero.
    cfg = DiffusionConfig.smoke(iterations=4, domain_conditioning=True, domain_embedding_init="zero")
    trained, _, _ = load_diffusion(train_diffusion(make_pairs(), NUM_CLASSES, cfg, tmp_path / "z", progress=False))
    emb = trained.unet.class_embedding.weight
    assert not torch.allclose(emb[DOMAIN_INDEX["source"]], emb[DOMAIN_INDEX["target"]])
    with pytest.raises(ValueError, match="domain_embedding_init"):
        ConditionalDiffusionUNet(2, 1, NUM_CLASSES, channels=(8, 16), norm_num_groups=4, num_domains=2,
                                 domain_embedding_init="uniform")


@pytest.mark.parametrize("domain_conditioning", [True, False])
def test_target_mask_dropout_empties_only_target_masks_and_lifts_their_weights(domain_conditioning: bool) -> None:
    from diffuse_uda.diffusion.trainer import _conditions, _DeviceData

    pairs = make_pairs()
    for p in pairs:
        if p.domain == "target":
            p.weight = 0.25
    base = DiffusionConfig.smoke(domain_conditioning=domain_conditioning, domain_dropout=0.0,
                                 pair_weighting="confidence")
    data = _DeviceData(pairs, NUM_CLASSES, base, torch.device("cpu"))
    idx = torch.arange(len(pairs))
    is_target = data.domain[idx] == DOMAIN_INDEX["target"]
    assert 0 < int(is_target.sum()) < len(pairs)

    def conditions(cfg: DiffusionConfig) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, tuple]:
        gen = torch.Generator().manual_seed(0)
        cond, domain, weight = _conditions(data, idx, data.masks[idx].long(), NUM_CLASSES, cfg, gen)
        return cond, domain, weight, tuple(gen.get_state().tolist())

    cond, domain, weight, state = conditions(base.replace(target_mask_dropout=1.0))
    present = cond.flatten(1).sum(1) > 0
    assert torch.equal(present, ~is_target)  # every target mask empty, every source mask kept
    assert torch.equal(weight, torch.ones(len(pairs)))  # a mask-free target pair is not down-weighted
    # Off (the default): the masks and weights are untouched and no random number is drawn for it.
    cond0, _, weight0, state0 = conditions(base)
    assert bool((cond0.flatten(1).sum(1) > 0).all())
    assert torch.allclose(weight0[is_target], torch.full((int(is_target.sum()),), 0.25))
    assert state0 == tuple(torch.Generator().manual_seed(0).get_state().tolist()) != state
    # The domain stays the pair's own: the mask-free target pairs still teach the target's appearance.
    if domain_conditioning:
        assert torch.equal(domain, data.domain[idx])
    else:
        assert domain is None

"""Reverse-diffusion sampling: DDPM (paper Eq. 12) and DDIM with MONAI's schedulers, and DPM-Solver++(2M).

Every sampler steps with a noise estimate; a model trained to predict the velocity
(``prediction_type == "v"``, Salimans & Ho 2022) has its output turned into one first.

DPM-Solver++(2M) (Lu et al., "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models", 2022, Algorithm 2) integrates the probability-flow ODE in the data-prediction form with a
second-order multistep update in log-SNR time, which needs far fewer network evaluations than DDIM for
the same fidelity and stays stable under classifier-free guidance; it is written here from that
description on the model's own discrete noise schedule (time-uniform steps from ``T - 1`` to 0, a
first-order last step when fewer than 15 steps are taken, as the paper recommends).

A rectified-flow model (``prediction_type == "flow"``; Liu et al., "Flow Straight and Fast", 2023) predicts
the velocity of the straight path from noise to data and is sampled by Euler steps of that ODE with
MONAI's ``RFlowScheduler`` (sampler ``"euler"``, which serves no other model).

Starting from a real image (SDEdit: Meng et al., "SDEdit: Guided Image Synthesis and Editing with Stochastic
Differential Equations", ICLR 2022): with ``init`` and ``strength < 1`` the reverse process starts at the timestep
``strength * (T - 1)`` from that image noised to it (``sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``) and runs only the
remaining steps, so the image's layout survives and the model redraws what the noise covered.

Classifier-free guidance (Ho & Salimans, "Classifier-Free Diffusion Guidance", 2021): for a
domain-conditioned generator, ``eps = eps(x, c, unknown) + w * (eps(x, c, d) - eps(x, c, unknown))``
pushes samples toward domain ``d`` (``w = 1``: plain conditional sampling; ``w > 1``: stronger).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler
from torch import Tensor, nn
from tqdm.auto import tqdm

from diffuse_uda.networks.conditional_unet import one_hot

__all__ = [
    "SAMPLERS", "autocast_context", "check_sampler", "ddim_timesteps", "default_sampler", "dpm_timesteps",
    "make_scheduler", "sample_images", "starting_timesteps",
]

SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm++2m", "dpm++2m-sde", "euler")
DEFAULT_DDIM_STEPS = 50

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


def autocast_context(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when supported, fp16 otherwise; a no-op on CPU or when disabled."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def check_sampler(prediction_type: str, sampler: str) -> None:
    """Raise ``ValueError`` unless ``sampler`` can sample a model of ``prediction_type``: Euler steps serve
    rectified flow alone, and rectified flow nothing else."""
    if (prediction_type == "flow") != (sampler == "euler"):
        wanted = "sampler=euler" if prediction_type == "flow" else "sampler ddpm, ddim, dpm++2m or dpm++2m-sde"
        kind = "rectified-flow" if prediction_type == "flow" else "diffusion"
        raise ValueError(f"a {kind} model (prediction_type={prediction_type!r}) samples with {wanted}, "
                         f"got sampler={sampler!r}")


def default_sampler(prediction_type: str) -> str:
    """The few-step sampler a model of this kind previews with: Euler for rectified flow, DDIM otherwise."""
    return "euler" if prediction_type == "flow" else "ddim"


def make_scheduler(sampler: str, num_train_timesteps: int,
                   schedule: str = "cosine") -> DDPMScheduler | DDIMScheduler | RFlowScheduler:
    """MONAI scheduler for ``sampler``; predicted x0 is clipped to the [-1, 1] data range."""
    if sampler == "euler":
        return RFlowScheduler(num_train_timesteps=num_train_timesteps, use_discrete_timesteps=True)
    if sampler == "ddpm":
        return DDPMScheduler(num_train_timesteps=num_train_timesteps, schedule=schedule, clip_sample=True)
    if sampler == "ddim":
        return DDIMScheduler(
            num_train_timesteps=num_train_timesteps, schedule=schedule, clip_sample=True, set_alpha_to_one=True
        )
    if sampler.startswith("dpm++"):  # only its noise schedule is used
        return DDPMScheduler(num_train_timesteps=num_train_timesteps, schedule=schedule)
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


def ddim_timesteps(num_train_timesteps: int, steps: int) -> Tensor:
    """Evenly strided, descending DDIM timesteps that start at ``T - 1``.

    MONAI's ``DDIMScheduler.step`` assumes the previous timestep is ``t - T // steps``, but its
    ``set_timesteps`` rounds a linspace, so the two disagree whenever ``steps`` does not divide
    ``T`` (e.g. 250 / 50 steps is fine, 250 / 60 is not). Using the same stride here keeps every
    update consistent; starting at ``T - 1`` makes the first step see pure noise.
    """
    stride = num_train_timesteps // steps
    return (num_train_timesteps - 1) - stride * torch.arange(steps, dtype=torch.long)


def _per_sample_generators(
    generator: GeneratorArg, batch: int, device: torch.device
) -> torch.Generator | list[torch.Generator] | None:
    """Normalise ``generator`` to generators living on ``device``.

    A generator on another device (e.g. a CPU generator for CUDA sampling) is replaced by a
    device generator seeded from it, so the result stays a deterministic function of the seed.
    """

    def on_device(g: torch.Generator) -> torch.Generator:
        if g.device.type == device.type:
            return g
        seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device).item())
        return torch.Generator(device=device).manual_seed(seed)

    if generator is None:
        return None
    if isinstance(generator, torch.Generator):
        return on_device(generator)
    gens = list(generator)
    if len(gens) != batch:
        raise ValueError(f"got {len(gens)} generators for a batch of {batch}")
    return [on_device(g) for g in gens]


@torch.no_grad()
def sample_images(
    model: nn.Module,
    masks: Tensor,
    num_classes: int,
    image_channels: int,
    sampler: str = "ddpm",
    steps: int | None = None,
    num_train_timesteps: int = 250,
    schedule: str = "cosine",
    generator: GeneratorArg = None,
    eta: float = 0.0,
    progress: bool = False,
    amp: bool = True,
    domain: int | None = None,
    guidance_scale: float = 1.0,
    init: Tensor | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Generate images conditioned on label maps (and, for a domain-conditioned model, a domain).

    Args:
        model: a :class:`~diffuse_uda.networks.conditional_unet.ConditionalDiffusionUNet` on the
            masks' device.
        masks: ``(B, *S)`` or ``(B, 1, *S)`` integer label maps (class indices).
        num_classes: classes of the model's condition.
        image_channels: channels of the generated image.
        sampler: ``"ddpm"`` (ancestral, all ``num_train_timesteps`` steps), ``"ddim"``,
            ``"dpm++2m"`` (DPM-Solver++(2M), deterministic, few steps), ``"dpm++2m-sde"``, or ``"euler"``
            (the only sampler of a rectified-flow model, and only of one).
        steps: reverse steps = network evaluations (twice as many forward samples under guidance);
            DDPM must use all training steps, DDIM and DPM-Solver++ default to 50 (capped at ``T``).
        num_train_timesteps: ``T`` the model was trained with.
        schedule: noise schedule the model was trained with.
        generator: one generator for the batch, or one per sample. Per-sample generators make
            each sample independent of what else is in the batch (used for sharded synthesis).
        eta: DDIM stochasticity (0 = deterministic given the initial noise).
        progress: show a progress bar over the reverse steps.
        amp: autocast on CUDA (ignored on CPU).
        domain: domain id to generate (:data:`~diffuse_uda.networks.conditional_unet.DOMAIN_INDEX`),
            for a domain-conditioned model; ``None`` = unknown domain (or a model without domains).
        guidance_scale: classifier-free guidance toward ``domain`` (1 = none).
        init: ``(B, image_channels, *S)`` images in ``[0, 1]`` to start from (SDEdit); used when ``strength < 1``.
        strength: fraction of the noise schedule the start is noised to: 1 = pure noise (``init`` unused); smaller
            keeps more of ``init`` and takes about ``strength * steps`` steps. Not for rectified flow.

    Returns:
        ``(B, image_channels, *S)`` float32 images in ``[0, 1]``.
    """
    if masks.is_floating_point():
        raise TypeError(f"masks must be integer label maps, got dtype {masks.dtype}")
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    if guidance_scale != 1.0 and domain is None:
        raise ValueError("guidance_scale needs a domain to guide toward")
    kind = getattr(model, "prediction_type", "epsilon")
    check_sampler(kind, sampler)
    spatial = tuple(masks.shape[2:]) if masks.ndim >= 3 and masks.shape[1] == 1 else tuple(masks.shape[1:])
    batch = masks.shape[0]
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    partial = strength < 1.0
    if partial:
        if kind == "flow":
            raise ValueError("starting from an image (strength < 1) is for diffusion models, not rectified flow")
        if init is None:
            raise ValueError("strength < 1 needs init images to start from")
        if tuple(init.shape) != (batch, image_channels, *spatial):
            raise ValueError(f"init must be {(batch, image_channels, *spatial)}, got {tuple(init.shape)}")
    device = masks.device
    T = int(num_train_timesteps)
    if sampler == "ddpm":
        steps = T if steps is None else int(steps)
        if steps != T:
            raise ValueError(
                f"DDPM sampling runs all {T} training steps (got steps={steps}); "
                "use sampler='ddim' or 'dpm++2m' for fewer steps"
            )
    else:
        steps = min(DEFAULT_DDIM_STEPS, T) if steps is None else int(steps)
        if not 1 <= steps <= T:
            raise ValueError(f"{sampler} steps must be in [1, {T}], got {steps}")
    scheduler = make_scheduler(sampler, T, schedule)

    gens = _per_sample_generators(generator, batch, device)
    shape = (image_channels, *spatial)
    if isinstance(gens, list):
        x = torch.stack([torch.randn(shape, generator=g, device=device) for g in gens])
    else:
        x = torch.randn((batch, *shape), generator=gens, device=device)
    cond = one_hot(masks, num_classes)
    dom = None if domain is None else torch.full((batch,), int(domain), dtype=torch.long, device=device)
    guided = guidance_scale != 1.0
    # A velocity-predicting model: eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t (affine in v, so guidance
    # can combine velocities). Python floats from a CPU copy of the schedule: no device sync per step.
    abar = None if kind == "flow" else scheduler.alphas_cumprod.detach().double().cpu()
    velocity = kind == "v"
    start = round(strength * (T - 1)) if partial else None

    def begin(t: int) -> Tensor:
        """The first sample: the drawn noise, or (SDEdit) ``init`` noised to ``t`` with that noise."""
        if start is None:
            return x
        assert init is not None and abar is not None
        x0 = init.to(device=device, dtype=x.dtype) * 2.0 - 1.0
        return float(abar[t].sqrt()) * x0 + float((1 - abar[t]).sqrt()) * x

    def predict(x_t: Tensor, t: int) -> Tensor:
        t_batch = torch.full((batch,), t, dtype=torch.long, device=device)
        with autocast_context(device, amp):
            if not guided:
                return model(x_t, cond, t_batch, dom).float()
            # One forward for the conditional and the "unknown domain" prediction.
            out = model(torch.cat([x_t, x_t]), torch.cat([cond, cond]), torch.cat([t_batch, t_batch]),
                        torch.cat([dom, torch.zeros_like(dom)])).float()
        out_c, out_u = out[:batch], out[batch:]
        return out_u + guidance_scale * (out_c - out_u)

    def eps_of(x_t: Tensor, t: int) -> Tensor:
        out = predict(x_t, t)
        if not velocity:
            return out
        return float(abar[t].sqrt()) * out + float((1 - abar[t]).sqrt()) * x_t

    was_training = model.training
    model.eval()
    try:
        if sampler == "euler":
            x0 = _rectified_flow_euler(predict, scheduler, x, steps, progress)
        elif sampler.startswith("dpm++"):
            x0 = _dpm_solver_pp_2m(eps_of, begin, scheduler.alphas_cumprod, T, steps, progress,
                                   gens if sampler == "dpm++2m-sde" else None, start)
        else:
            x0 = _scheduler_loop(eps_of, scheduler, sampler, begin, T, steps, eta, gens, progress, start)
    finally:
        model.train(was_training)
    return ((x0 + 1.0) / 2.0).clamp_(0.0, 1.0)


def starting_timesteps(timesteps: list[int], start: int | None) -> list[int]:
    """The descending ``timesteps`` from ``start`` on (all when ``None``; at least the last one)."""
    if start is None:
        return timesteps
    return [t for t in timesteps if t <= start] or timesteps[-1:]


def _scheduler_loop(eps_of, scheduler, sampler: str, begin, T: int, steps: int, eta: float,
                    gens: torch.Generator | list[torch.Generator] | None, progress: bool,
                    start: int | None = None) -> Tensor:
    """DDPM / DDIM through MONAI's schedulers from ``begin(first timestep)``; returns the last clipped x0
    prediction."""
    scheduler.set_timesteps(steps)
    if sampler == "ddim":
        scheduler.timesteps = ddim_timesteps(T, steps)
    # Python ints: indexing the (CPU) schedule with them never synchronises with the device.
    timesteps = starting_timesteps([int(t) for t in scheduler.timesteps.tolist()], start)
    x = x0 = begin(timesteps[0])
    for t in tqdm(timesteps, desc=f"{sampler} sampling", disable=not progress, leave=False):
        eps = eps_of(x, t)
        if isinstance(gens, list):
            # Per-sample noise: the scheduler update is cheap, so run it sample by sample.
            outs = [_step(scheduler, sampler, eps[i : i + 1], t, x[i : i + 1], eta, g) for i, g in enumerate(gens)]
            x = torch.cat([o[0] for o in outs])
            x0 = torch.cat([o[1] for o in outs])
        else:
            x, x0 = _step(scheduler, sampler, eps, t, x, eta, gens)
    # The last step's clipped x0 prediction is the sample (for DDPM at t = 0 and for DDIM ending at
    # alpha = 1 it equals the returned x_{t-1}; it is also right when the strided DDIM stops at t > 0).
    return x0


def _rectified_flow_euler(predict, scheduler: RFlowScheduler, x: Tensor, steps: int, progress: bool) -> Tensor:
    """Euler steps of the rectified-flow ODE from pure noise (``t = T``) to the data (``t = 0``) with MONAI's
    ``RFlowScheduler``: ``x <- x + v (t - t_next) / T`` on its evenly spaced integer timesteps."""
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps.tolist()]
    for i, t in enumerate(tqdm(timesteps, desc="euler sampling", disable=not progress, leave=False)):
        x, _ = scheduler.step(predict(x, t), t, x, timesteps[i + 1] if i + 1 < len(timesteps) else 0)
    return x.clamp(-1.0, 1.0)


def dpm_timesteps(num_train_timesteps: int, steps: int) -> list[int]:
    """``steps`` descending integer timesteps, time-uniform from ``T - 1`` to 0 (distinct)."""
    if steps == 1:
        return [num_train_timesteps - 1]
    grid = torch.linspace(num_train_timesteps - 1, 0, steps).round().long().tolist()
    return [int(t) for t in dict.fromkeys(grid)]


def _noise_like(x: Tensor, gens: torch.Generator | list[torch.Generator] | None) -> Tensor:
    if isinstance(gens, list):
        return torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device) for g in gens])
    return torch.randn(x.shape, generator=gens, device=x.device)


def _dpm_solver_pp_2m(eps_of, begin, alphas_cumprod: Tensor, T: int, steps: int, progress: bool,
                      sde_gens: torch.Generator | list[torch.Generator] | None = None,
                      start: int | None = None) -> Tensor:
    """DPM-Solver++(2M) on the discrete schedule; returns the final (clipped) data prediction.

    With ``sde_gens`` (``dpm++2m-sde``), the stochastic variant: the variance-preserving SDE solved in
    the same data-prediction form (each step decays the current sample by e^{-2h} instead of e^{-h}
    and adds fresh noise of variance sigma_s^2 (1 - e^{-2h})), whose noise corrects part of the
    model's error the way ancestral DDPM sampling does."""
    ts = starting_timesteps(dpm_timesteps(T, steps), start)
    x = begin(ts[0])
    abar = alphas_cumprod.double()
    # Python floats per timestep: the update coefficients never touch the device.
    alpha = {t: float(abar[t].sqrt()) for t in ts}
    sigma = {t: float((1 - abar[t]).sqrt()) for t in ts}
    lam = {t: float(torch.log(abar[t].sqrt()) - torch.log((1 - abar[t]).sqrt())) for t in ts}
    x0_prev: Tensor | None = None
    h_prev = 0.0
    lower_order_final = len(ts) < 15
    for i, t in enumerate(tqdm(ts, desc="dpm++2m sampling", disable=not progress, leave=False)):
        eps = eps_of(x, t)
        x0 = ((x - sigma[t] * eps) / alpha[t]).clamp(-1.0, 1.0)
        if i == len(ts) - 1:
            return x0
        s = ts[i + 1]
        h = lam[s] - lam[t]
        first_order = x0_prev is None or (lower_order_final and i == len(ts) - 2)
        if sde_gens is None:
            if first_order:
                d = x0
            else:
                r = h_prev / h
                d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * x0_prev
            x = (sigma[s] / sigma[t]) * x - alpha[s] * math.expm1(-h) * d
        else:
            gain = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
            x = (sigma[s] / sigma[t]) * math.exp(-h) * x + alpha[s] * gain * x0
            if not first_order:
                r = h_prev / h
                x = x + 0.5 * alpha[s] * gain * (1.0 / r) * (x0 - x0_prev)
            x = x + sigma[s] * math.sqrt(gain) * _noise_like(x, sde_gens)
        x0_prev, h_prev = x0, h
    raise AssertionError("unreachable")


def _step(
    scheduler: DDPMScheduler | DDIMScheduler,
    sampler: str,
    eps: Tensor,
    t: int,
    x: Tensor,
    eta: float,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    if sampler == "ddpm":
        return scheduler.step(eps, t, x, generator=generator)
    return scheduler.step(eps, t, x, eta=eta, generator=generator)

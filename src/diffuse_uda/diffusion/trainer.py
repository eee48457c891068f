"""Training of the mask-conditioned DDPM (paper Sec. 4.3, Eqs. 10, 13, 15, 16).

Each micro-batch draws image-mask pairs (source labels and target pseudo-labels), deforms the
pairs of the configured domain(s) (image and mask together), maps the image to ``[-1, 1]``, noises
it at a uniform random timestep with MONAI's scheduler and regresses the noise with an L1 loss
(or a velocity: ``DiffusionConfig.prediction_type``).
The whole data set lives on the training device and every random draw comes from one device
``torch.Generator`` seeded from ``config.seed``, so the loop never reads values back to the host
except to log and checkpoint. Checkpoints hold everything needed to resume bit-for-bit on the
same device type.

Distributed (``torchrun``, see :mod:`diffuse_uda.training.distributed`): the network is wrapped in
``DistributedDataParallel`` (gradients averaged during ``backward``). An update still sees
``batch_size * grad_accumulation`` pairs in all: the ranks share its micro-batches (or, when there
are fewer micro-batches than ranks, split them), each drawing its pairs, timesteps, noise and
deformations from its own stream seeded from ``config.seed`` and its rank. The EMA is updated from
identical weights on every rank. Rank 0 writes the checkpoint (with every rank's generator state, so
a resume with as many ranks is exact), the log (losses averaged over the ranks) and the previews.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import os
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDPMScheduler, RFlowScheduler
from torch import Tensor, nn
from tqdm.auto import tqdm

from diffuse_uda.data.io import atomic_torch_save, safe_torch_load
from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.samplers import autocast_context, default_sampler, sample_images
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.networks.conditional_unet import DOMAIN_INDEX, ConditionalDiffusionUNet, one_hot
from diffuse_uda.training import distributed
from diffuse_uda.training.ema import update_ema
from diffuse_uda.transforms.deformation import RandomDeformation

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "PairSample",
    "build_model",
    "load_diffusion",
    "train_diffusion",
]

CHECKPOINT_NAME = "diffusion_last.pt"
LOG_NAME = "diffusion_log.csv"
CHECKPOINT_FORMAT = "diffuse-uda/diffusion-checkpoint/1"
DOMAINS: tuple[str, ...] = ("source", "target")


@dataclass
class PairSample:
    """One training pair.

    Attributes:
        image: ``(C, *S)`` float32 image scaled to ``[0, 1]``.
        mask: ``(*S)`` integer label map (class indices ``0..K-1``): a label or a pseudo-label.
        domain: ``"source"`` or ``"target"``.
        case_id: identifier used in messages and previews.
        weight: loss weight with ``pair_weighting="confidence"`` (a target pseudo-pair: stage 1's
            confidence in its pseudo-label, in [0, 1]; source pairs: 1).
    """

    image: np.ndarray
    mask: np.ndarray
    domain: str
    case_id: str
    weight: float = 1.0


def build_model(config: DiffusionConfig, num_classes: int, image_channels: int) -> ConditionalDiffusionUNet:
    """The conditional UNet described by ``config``."""
    return ConditionalDiffusionUNet(
        spatial_dims=config.spatial_dims,
        image_channels=image_channels,
        num_classes=num_classes,
        embed_channels=config.embed_channels,
        channels=config.channels,
        attention_levels=config.attention_levels,
        num_res_blocks=config.num_res_blocks,
        norm_num_groups=config.norm_num_groups,
        num_domains=len(DOMAINS) if config.domain_conditioning else 0,
        gradient_checkpointing=config.gradient_checkpointing,
        prediction_type=config.prediction_type,
        domain_embedding_init=config.domain_embedding_init,
    )


# ---------------------------------------------------------------------- data on the device
class _DeviceData:
    """All pairs stacked on the training device, plus sync-free batch drawing."""

    def __init__(self, pairs: Sequence[PairSample], num_classes: int, config: DiffusionConfig, device: torch.device):
        if not pairs:
            raise DataError(None, "no image-mask pairs to train the diffusion model on")
        size = config.image_size
        channels = None
        for p in pairs:
            image, mask = np.asarray(p.image), np.asarray(p.mask)
            where = f"pair {p.case_id!r} ({p.domain})"
            if p.domain not in DOMAINS:
                raise DataError(None, f"{where}: domain must be one of {DOMAINS}")
            if image.ndim != config.spatial_dims + 1 or tuple(image.shape[1:]) != size:
                raise DataError(None, f"{where}: image shape {image.shape}, expected (C, {', '.join(map(str, size))})")
            if tuple(mask.shape) != size:
                raise DataError(None, f"{where}: mask shape {mask.shape}, expected {size}")
            if channels is None:
                channels = image.shape[0]
            elif image.shape[0] != channels:
                raise DataError(None, f"{where}: {image.shape[0]} image channels, other pairs have {channels}")
            if not np.issubdtype(mask.dtype, np.integer):
                raise DataError(None, f"{where}: mask must hold integers, got {mask.dtype}")
            if mask.size and (mask.min() < 0 or mask.max() >= num_classes):
                raise DataError(None, f"{where}: mask values outside 0..{num_classes - 1}")
            if not np.isfinite(image).all():
                raise DataError(None, f"{where}: image has non-finite values")
            if not 0.0 <= p.weight <= 1.0:
                raise DataError(None, f"{where}: weight {p.weight} outside [0, 1]")
        assert channels is not None
        self.image_channels = int(channels)
        mask_dtype = torch.uint8 if num_classes <= 256 else torch.int32  # compact storage on the device
        self.images = torch.from_numpy(np.stack([np.asarray(p.image, dtype=np.float32) for p in pairs])).to(device)
        self.masks = torch.from_numpy(np.stack([np.asarray(p.mask) for p in pairs]).astype(np.int64)).to(
            device=device, dtype=mask_dtype
        )
        is_source = np.array([p.domain == "source" for p in pairs])
        self.is_source = torch.from_numpy(is_source).to(device)
        self.domain = torch.tensor([DOMAIN_INDEX[p.domain] for p in pairs], dtype=torch.long, device=device)
        self.weight = torch.tensor([float(p.weight) for p in pairs], dtype=torch.float32, device=device)
        self.source_idx = torch.from_numpy(np.flatnonzero(is_source)).to(device)
        self.target_idx = torch.from_numpy(np.flatnonzero(~is_source)).to(device)
        self.num_source = int(is_source.sum())
        self.num_target = len(pairs) - self.num_source
        self.ratio = config.source_target_ratio
        if self.ratio is not None:
            if self.ratio > 0 and self.num_source == 0:
                raise ConfigError(f"source_target_ratio={self.ratio} but there are no source pairs")
            if self.ratio < 1 and self.num_target == 0:
                raise ConfigError(f"source_target_ratio={self.ratio} but there are no target pairs")
        self.device = device

    def __len__(self) -> int:
        return self.images.shape[0]

    def draw(self, batch: int, generator: torch.Generator) -> Tensor:
        """Indices of a batch drawn with replacement (uniformly, or by domain ratio)."""
        dev = self.device
        if self.ratio is None:
            return torch.randint(0, len(self), (batch,), generator=generator, device=dev)
        # Draw both candidates and pick per sample: no data-dependent shapes, so no host sync.
        pick_source = torch.rand((batch,), generator=generator, device=dev) < self.ratio
        src = self.source_idx[torch.randint(0, max(self.num_source, 1), (batch,), generator=generator, device=dev)] \
            if self.num_source else None
        tgt = self.target_idx[torch.randint(0, max(self.num_target, 1), (batch,), generator=generator, device=dev)] \
            if self.num_target else None
        if src is None:
            assert tgt is not None
            return tgt
        if tgt is None:
            return src
        return torch.where(pick_source, src, tgt)


def _augmented_batch(
    data: _DeviceData,
    idx: Tensor,
    deformer: RandomDeformation | None,
    deform: str,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Images ``(B, C, *S)`` in [0, 1] and long masks ``(B, *S)`` of ``idx``, with the pairs of the
    domain(s) selected by ``deform`` deformed (image and mask with the same random grid)."""
    x0 = data.images[idx]
    mask = data.masks[idx].long()
    if deformer is None or deform == "none":
        return x0, mask
    # Deform the whole batch (cheap next to the UNet) and keep the result only for the chosen
    # domain(s): no boolean indexing, hence no host sync.
    x_def, m_def = deformer(x0, mask.unsqueeze(1), generator=generator)
    assert x_def is not None and m_def is not None
    m_def = m_def.squeeze(1)
    if deform == "both":
        return x_def, m_def
    chosen = data.is_source[idx] if deform == "source" else ~data.is_source[idx]
    sel = chosen.view(-1, *([1] * (mask.ndim - 1)))
    return torch.where(sel.unsqueeze(1), x_def, x0), torch.where(sel, m_def, mask)


# ---------------------------------------------------------------------- checkpoints and logs
def _load_checkpoint(path: Path) -> dict[str, Any]:
    """Load onto the CPU: ``load_state_dict`` then moves each tensor to its parameter's device, and
    Adam's ``step`` counters must stay on the CPU (on CUDA they would cost a host sync per step)."""
    state = safe_torch_load(path, "diffusion checkpoint")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise DataError(path, "not a diffuse-uda diffusion checkpoint")
    return state


def _reset_log(log_path: Path, keep_until: int, log_every: int) -> None:
    """Rewrite the CSV log for a run resumed at step ``keep_until``.

    Drops rows a crash left after the last checkpoint and the end-of-run line of a partial
    logging window at ``keep_until`` (that window continues), so resuming appends exactly what an
    uninterrupted run would have written.
    """
    rows: list[list[str]] = []
    if keep_until > 0 and log_path.exists():
        with open(log_path, newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if len(row) != 2 or not row[0].isdigit():
                    continue
                step = int(row[0])
                if step < keep_until or (step == keep_until and step % log_every == 0):
                    rows.append(row)
    tmp = log_path.parent / f".{log_path.name}.{uuid.uuid4().hex[:12]}.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss"])
        writer.writerows(rows)
    os.replace(tmp, log_path)


# ---------------------------------------------------------------------- preview
def _save_preview(
    model: nn.Module, data: _DeviceData, num_classes: int, config: DiffusionConfig, path: Path
) -> None:
    """Grid of masks / EMA samples / real images for a few fixed pairs (seeded, off the training RNG)."""
    from matplotlib.figure import Figure

    n = min(4, len(data))
    # Prefer source pairs: their masks are real labels.
    order = torch.cat([data.source_idx, data.target_idx])[:n]
    masks = data.masks[order].long()
    gen = torch.Generator(device=data.device).manual_seed(config.seed)
    images = sample_images(
        model, masks, num_classes, data.image_channels, sampler=default_sampler(config.prediction_type),
        steps=min(50, config.num_train_timesteps), num_train_timesteps=config.num_train_timesteps,
        schedule=config.schedule, generator=gen, amp=config.amp,
    )
    real = data.images[order]

    def view(a: Tensor) -> np.ndarray:
        a = a.detach().float().cpu()
        # 3D: the middle slice along the last axis
        return (a[..., a.shape[-1] // 2] if a.ndim == 3 else a).numpy()

    fig = Figure(figsize=(3 * n, 9))
    axes = fig.subplots(3, n, squeeze=False)
    for j in range(n):
        for i, (img, kw) in enumerate(
            [(view(masks[j]), {"cmap": "tab10", "vmin": 0, "vmax": max(num_classes - 1, 1)}),
             (view(images[j, 0]), {"cmap": "gray", "vmin": 0, "vmax": 1}),
             (view(real[j, 0]), {"cmap": "gray", "vmin": 0, "vmax": 1})]
        ):
            axes[i, j].imshow(img, interpolation="nearest", **kw)
            axes[i, j].set_axis_off()
    for i, title in enumerate(["mask", "sample (EMA)", "real"]):
        axes[i, 0].set_title(title, loc="left", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp.png"
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, path)


def _conditions(data: _DeviceData, idx: Tensor, mask: Tensor, num_classes: int, config: DiffusionConfig,
                generator: torch.Generator) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The one-hot mask and the domain ids of a batch, each dropped (to "empty" / "unknown") with its
    probability, and the loss weights of the pairs (``None`` without pair weighting). No draw happens
    for a dropout that is off, so the paper's configuration keeps its exact random stream."""
    cond = one_hot(mask, num_classes)
    b, dev = idx.shape[0], idx.device
    weight = data.weight[idx] if config.pair_weighting == "confidence" else None
    if config.mask_dropout > 0:
        keep = torch.rand((b,), generator=generator, device=dev) >= config.mask_dropout
        cond = cond * keep.view(-1, *([1] * (cond.ndim - 1)))
    if config.target_mask_dropout > 0:
        drawn = torch.rand((b,), generator=generator, device=dev) < config.target_mask_dropout
        drop = drawn & (data.domain[idx] == DOMAIN_INDEX["target"])
        cond = cond * (~drop).view(-1, *([1] * (cond.ndim - 1)))
        if weight is not None:
            # The weight measures trust in the pseudo-label; without its mask the pair only shows the
            # target's appearance, which is real.
            weight = torch.where(drop, torch.ones_like(weight), weight)
    if not config.domain_conditioning:
        return cond, None, weight
    domain = data.domain[idx]
    if config.domain_dropout > 0:
        drop = torch.rand((b,), generator=generator, device=dev) < config.domain_dropout
        domain = torch.where(drop, torch.zeros_like(domain), domain)
    return cond, domain, weight


def training_scheduler(config: DiffusionConfig) -> DDPMScheduler | RFlowScheduler:
    """The noise process of ``config``: the DDPM schedule, or rectified flow's straight path."""
    if config.prediction_type == "flow":
        return RFlowScheduler(num_train_timesteps=config.num_train_timesteps, use_discrete_timesteps=True)
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule)


def noisy_input(scheduler: DDPMScheduler | RFlowScheduler, x0: Tensor, noise: Tensor,
                t: Tensor) -> tuple[Tensor, Tensor]:
    """``(x_t, t)`` for a uniform draw ``t`` in ``0..T-1``. Rectified flow shifts it to ``1..T``: its noise
    level is ``t / T``, so ``t = 0`` would be the clean image and ``t = T``, where sampling starts, pure noise."""
    if isinstance(scheduler, RFlowScheduler):
        t = t + 1
    return scheduler.add_noise(x0, noise, t), t


def regression_target(scheduler: DDPMScheduler | RFlowScheduler, x0: Tensor, noise: Tensor, t: Tensor,
                      prediction_type: str) -> Tensor:
    """What the network learns to output for its noisy input: the noise (the paper), the velocity
    ``sqrt(abar_t) noise - sqrt(1 - abar_t) x0`` (``"v"``), or rectified flow's velocity ``x0 - noise``
    (``"flow"``, MONAI's sign: Euler steps toward the data add it)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "flow":
        return x0 - noise
    return scheduler.get_velocity(x0, noise, t)


def _loss(pred: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
    """L1 on the regression target (paper Eq. 13: the noise); with per-pair weights, their weighted mean."""
    if weight is None:
        return F.l1_loss(pred, target)
    per_pair = (pred - target).abs().flatten(1).mean(1)
    return (per_pair * weight).sum() / weight.sum().clamp_min(1e-6)


# ---------------------------------------------------------------------- training
def train_diffusion(
    pairs: Sequence[PairSample],
    num_classes: int,
    config: DiffusionConfig,
    out_dir: Path,
    device: torch.device | str = "cpu",
    progress: bool = True,
) -> Path:
    """Train (or resume training) the conditional diffusion model.

    Resumes from ``out_dir/diffusion_last.pt`` when it exists (the architecture settings, class
    count and image channels must match). On the same device type a resumed run reproduces the
    uninterrupted run exactly: model, EMA, optimizer, loss scaler and generator states are all
    restored, and checkpoints are only taken at optimizer-update boundaries.

    Returns:
        Path of the final checkpoint.
    """
    config.checked()
    device = torch.device(device)
    out_dir = Path(out_dir)
    world, rank = distributed.world_size(), distributed.rank()
    main = rank == 0
    progress = progress and main
    # This rank's share of an update: `accum` micro-batches of `micro_batch` pairs (one process: all of it).
    accum, micro_batch = distributed.split_micro_batches(config.batch_size, config.grad_accumulation,
                                                         "diffusion batch_size x grad_accumulation")
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME
    log_path = out_dir / LOG_NAME

    data = _DeviceData(pairs, num_classes, config, device)
    use_amp = config.amp and device.type == "cuda"
    # fp16 needs loss scaling (whose inf check syncs each step); bf16 does not.
    use_scaler = use_amp and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)

    # Initial weights from the seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = build_model(config, num_classes, data.image_channels)
    model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator(device=device).manual_seed(distributed.rank_seed(config.seed, rank))
    # loss sum of the current logging window (kept on the device: no per-step sync) and its length
    running = torch.zeros((), device=device)
    window = 0
    start = 0

    if distributed.on_main(ckpt_path.exists):  # every rank resumes from what rank 0 sees
        state = _load_checkpoint(ckpt_path)
        stored = DiffusionConfig.from_dict(state["config"])
        if stored.architecture() != config.architecture():
            raise ConfigError(
                f"{ckpt_path}: checkpoint was trained with different diffusion settings "
                f"({stored.architecture()} vs {config.architecture()}); use another output folder"
            )
        if state["num_classes"] != num_classes or state["image_channels"] != data.image_channels:
            raise ConfigError(
                f"{ckpt_path}: checkpoint has {state['num_classes']} classes / {state['image_channels']} "
                f"channels, data has {num_classes} / {data.image_channels}; use another output folder"
            )
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler") and use_scaler:
            scaler.load_state_dict(state["scaler"])
        start = int(state["iteration"])
        rng = state["rng"]
        per_rank = rng.get("rank_generators")
        if world > 1 and per_rank is not None and len(per_rank) == world and rng["device_type"] == device.type:
            generator.set_state(per_rank[rank])
        elif world > 1 and rank > 0:
            # Written by another number of ranks: continue this rank's stream reproducibly anyway.
            if rank == 1:
                warnings.warn(f"{ckpt_path}: resumed by {world} processes, not by the number that wrote it: the "
                              "other ranks' random streams are re-seeded", stacklevel=2)
            generator.manual_seed(distributed.rank_seed(config.seed * 1_000_003 + start, rank))
        elif rng["device_type"] == device.type:
            generator.set_state(rng["generator"])
        else:
            # Generator states do not transfer between device types: continue reproducibly anyway.
            warnings.warn(
                f"resuming a {rng['device_type']} run on {device.type}: random stream re-seeded",
                stacklevel=2,
            )
            generator.manual_seed(config.seed * 1_000_003 + start)
        running.fill_(float(state["log"]["sum"]))
        window = int(state["log"]["count"])
        distributed.barrier()  # every rank has read it before rank 0 may write the next one
    if start >= config.iterations:
        return ckpt_path
    if main:
        _reset_log(log_path, start, config.log_every)
    # One process trains `model` itself, so its numbers stay exactly what they always were.
    net: nn.Module = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda" else None)

    deformer = RandomDeformation(config.deformation, num_classes=num_classes) if config.deform != "none" else None
    scheduler = training_scheduler(config)
    T = config.num_train_timesteps

    def global_mean(value: Tensor) -> float:
        """A per-rank running sum averaged over the ranks (a host sync: only when logging or saving)."""
        return float(distributed.all_reduce_(value.detach().clone(), mean=True).item()) if world > 1 \
            else float(value.item())

    def save(step: int) -> None:
        # Several ranks: each one's generator state (a collective, so every rank calls save).
        rank_generators = distributed.all_gather_object(generator.get_state()) if world > 1 else None
        log_sum = global_mean(running)
        if not main:
            return
        rng: dict[str, Any] = {"device_type": device.type, "generator": generator.get_state()}
        if rank_generators is not None:
            rng["rank_generators"] = rank_generators
        state = {
            "format": CHECKPOINT_FORMAT,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if use_scaler else None,
            "iteration": step,
            "config": config.to_dict(),
            "num_classes": num_classes,
            "image_channels": data.image_channels,
            "rng": rng,
            # the partially filled logging window, so a resumed run logs the same means
            "log": {"sum": log_sum, "count": window},
            "num_pairs": {"source": data.num_source, "target": data.num_target},
            "torch_version": str(torch.__version__),
        }
        atomic_torch_save(state, ckpt_path)

    model.train()
    bar = tqdm(total=config.iterations, initial=start, desc="diffusion", disable=not progress, dynamic_ncols=True)
    with contextlib.ExitStack() as stack:
        # Rank 0 writes the log; the other ranks only take part in the averaging.
        log_fh = stack.enter_context(open(log_path, "a", newline="", encoding="utf-8")) if main else None
        log_writer = csv.writer(log_fh) if log_fh is not None else None
        for it in range(start, config.iterations):
            for micro in range(accum):
                idx = data.draw(micro_batch, generator)
                x0, mask = _augmented_batch(data, idx, deformer, config.deform, generator)
                x0 = x0 * 2.0 - 1.0
                noise = torch.randn(x0.shape, generator=generator, device=device)
                t = torch.randint(0, T, (x0.shape[0],), generator=generator, device=device)
                x_t, t = noisy_input(scheduler, x0, noise, t)
                cond, domain, weight = _conditions(data, idx, mask, num_classes, config, generator)
                # DDP averages the gradients once per update: at the last micro-batch's backward.
                sync = net.no_sync() if world > 1 and micro < accum - 1 else contextlib.nullcontext()
                with sync:
                    with autocast_context(device, use_amp):
                        pred = net(x_t, cond, t, domain)
                    loss = _loss(pred.float(), regression_target(scheduler, x0, noise, t, config.prediction_type),
                                 weight)
                    scaler.scale(loss / accum).backward()
                running += loss.detach() / accum
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            update_ema(ema, model, config.ema_decay if it >= config.ema_start else 0.0)

            step = it + 1
            window += 1
            bar.update(1)
            if step % config.log_every == 0 or step == config.iterations:
                mean = global_mean(running) / window  # the only routine host sync
                if log_writer is not None:
                    log_writer.writerow([step, f"{mean:.6g}"])
                    log_fh.flush()
                bar.set_postfix(loss=f"{mean:.4f}")
                if step % config.log_every == 0:
                    running.zero_()
                    window = 0
                # else: the end-of-run line of a partial window; the window stays open in the
                # checkpoint so a resumed run logs exactly the lines of an uninterrupted one
            if main and config.sample_every and step % config.sample_every == 0:
                _save_preview(ema, data, num_classes, config, out_dir / "samples" / f"step_{step:07d}.png")
            if step % config.checkpoint_every == 0 or step == config.iterations:
                save(step)
    bar.close()
    distributed.barrier()  # nobody moves on before the last checkpoint exists
    return ckpt_path


def load_diffusion(
    checkpoint: str | Path, device: torch.device | str = "cpu", use_ema: bool = True
) -> tuple[ConditionalDiffusionUNet, DiffusionConfig, dict[str, Any]]:
    """Load a trained model for sampling.

    Returns:
        ``(model in eval mode on device, config, info)`` where ``info`` holds ``num_classes``,
        ``image_channels``, ``iteration``, ``weights`` ("ema" or "model") and ``checkpoint``.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DataError(checkpoint, "diffusion checkpoint does not exist")
    state = _load_checkpoint(checkpoint)
    config = DiffusionConfig.from_dict(state["config"])
    model = build_model(config, int(state["num_classes"]), int(state["image_channels"]))
    model.load_state_dict(state["ema" if use_ema else "model"])
    model.to(device).eval().requires_grad_(False)
    info = {
        "num_classes": int(state["num_classes"]),
        "image_channels": int(state["image_channels"]),
        "iteration": int(state["iteration"]),
        "weights": "ema" if use_ema else "model",
        "checkpoint": str(checkpoint),
    }
    return model, config, info

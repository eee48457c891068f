"""The one segmentation training loop every method runs on.

It owns devices, seeding, batch sampling, augmentation, the optimizer and LR schedule, AMP,
checkpoints with resume, loss logging and progress. Methods only turn batches into losses
(see :mod:`diffuse_uda.methods.base`).

Resume: ``checkpoint_last.pt`` in the run folder holds the step, all method state, optimizer,
schedule and random-generator states; written atomically every ``checkpoint_every`` steps.
Model selection never uses target labels: the bundle is the last step's inference network.

Distributed (``torchrun``, see :mod:`diffuse_uda.training.distributed`): ``training.batch_size`` is
the global batch. Every rank draws the same global batch indices from the shared index stream
(``cpu_generator``, seeded from the run seed) and keeps its equal share, so the data seen per step does
not depend on the number of processes; augmentation and noise come from each rank's own stream
(seeded from the run seed and the rank). After ``backward`` the trainer averages the gradients of the
method's trainable parameters over the ranks (one flat all-reduce; methods that step optimizers of
their own average those through :meth:`TrainContext.all_reduce_gradients`), so every rank takes the
same optimizer step and holds the same weights, hence the same EMA teacher and snapshot ensemble.
Batch statistics inside a loss (the soft Dice pools over the batch) are per rank. Rank 0 writes the
checkpoint (with every rank's random-generator state, so a resume with as many ranks is exact) and
the log (losses averaged over the ranks).
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from diffuse_uda.config import RunConfig, TrainingConfig
from diffuse_uda.data.io import atomic_torch_save, safe_torch_load
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.base import Method
from diffuse_uda.training import distributed
from diffuse_uda.training.augmentation import LabelledAugmentation
from diffuse_uda.training.context import Batch, TrainContext, TrainingData
from diffuse_uda.training.log import TrainingLog
from diffuse_uda.training.losses import IGNORE_INDEX

CHECKPOINT_NAME = "checkpoint_last.pt"
LOG_NAME = "training_log.csv"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU; under torchrun, the GPU of this process's local rank."""
    return distributed.local_device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def poly_lr(base_lr: float, step: int, total: int, power: float) -> float:
    return base_lr * (1.0 - min(step, total - 1) / total) ** power


def scheduled_lr(base_lr: float, step: int, tc: TrainingConfig, start: int, total: int) -> float:
    """The learning rate at ``step`` under the run's schedule, for a schedule that begins at ``start``
    (before it: the base rate) and ends at ``total`` steps (the trainer's ``total_steps``)."""
    if tc.lr_schedule != "poly":
        return base_lr
    start = min(start, total - 1)
    return poly_lr(base_lr, max(0, step - start), total - start, tc.poly_power)


class Trainer:
    def __init__(self, method: Method, data: TrainingData, config: RunConfig, out_dir: Path,
                 spatial_dims: int, num_classes: int, progress: bool = True) -> None:
        self.method = method
        self.config = config
        self.out_dir = Path(out_dir)
        tc = config.training
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        self.device = resolve_device(tc.device)
        distributed.shard(tc.batch_size, "training.batch_size")  # a batch that does not split fails here
        # The same seed on every rank: identical initial weights.
        seed_everything(tc.seed)
        if method.uses_target_images and data.target_images is None:
            raise ValueError(f"method {method.name!r} needs target images")
        data = data.to(self.device)
        # Each rank's own stream (noise, augmentation); the index stream is shared by all ranks.
        generator = torch.Generator(device=self.device).manual_seed(distributed.rank_seed(tc.seed, self.rank))
        cpu_generator = torch.Generator().manual_seed(tc.seed + 1)
        epoch_length = tc.epoch_length or max(1, tc.iterations // 20)
        # The segmenter's budget is training.iterations for every method; a stage of the method's own
        # (GLUA's style transfer) runs before it, on top.
        self.total_steps = tc.iterations + method.extra_steps(tc.iterations)
        self.ctx = TrainContext(config=config, device=self.device, spatial_dims=spatial_dims,
                                in_channels=int(data.source_images.shape[1]), num_classes=num_classes,
                                data=data, generator=generator, cpu_generator=cpu_generator,
                                total_steps=self.total_steps, epoch_length=epoch_length,
                                rank=self.rank, world_size=self.world_size)
        # One extra class carries IGNORE voxels through the spatial augmentation unchanged.
        self.augment = LabelledAugmentation(num_classes + 1) if tc.augment else None
        method.build(self.ctx)
        if self.world_size > 1:
            # Rank 0's weights are the truth (as DistributedDataParallel does); then each rank's global
            # random stream (e.g. dropout) becomes its own.
            distributed.broadcast_modules_(m for m in vars(method).values() if isinstance(m, torch.nn.Module))
            if self.rank > 0:
                seed_everything(distributed.rank_seed(tc.seed, self.rank))
        params = method.trainable_parameters()
        self.trainable = params
        if tc.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, nesterov=True,
                                             weight_decay=tc.weight_decay)

    # ------------------------------------------------------------------ batches
    def next_batch(self) -> Batch:
        """This rank's share of the step's global batch (all of it in one process)."""
        data, bs = self.ctx.data, self.config.training.batch_size
        idx = self.ctx.local_indices(data.source_images.shape[0], bs, "training.batch_size")
        image, label = data.source_images[idx], data.source_labels[idx]
        if self.augment is not None:
            nc = self.ctx.num_classes
            label = torch.where(label == IGNORE_INDEX, nc, label)
            image, label = self.augment(image, label, self.ctx.generator)
            label = torch.where(label == nc, IGNORE_INDEX, label)
        target = target_idx = None
        if self.method.uses_target_images:
            assert data.target_images is not None
            target_idx = self.ctx.local_indices(data.target_images.shape[0], bs, "training.batch_size")
            target = data.target_images[target_idx]
            if self.augment is not None:
                target = self.augment.intensity(target, self.ctx.generator)
        return Batch(image, label, target, target_idx)

    # ------------------------------------------------------------------ state
    def _rank_rng(self) -> dict[str, torch.Tensor]:
        return {"generator": self.ctx.generator.get_state(), "torch_rng": torch.get_rng_state()}

    def _state(self, step: int, rank_rng: list[dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
        state = {"step": step, "method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "generator": self.ctx.generator.get_state(), "cpu_generator": self.ctx.cpu_generator.get_state(),
                 "torch_rng": torch.get_rng_state(), "config": self.config.model_dump(mode="json"),
                 "method_name": self.method.name}
        if rank_rng is not None:  # several ranks: each one's own streams, in rank order
            state["rank_rng"] = rank_rng
        return state

    def _save(self, step: int, path: Path) -> None:
        """Rank 0 writes the checkpoint; with several ranks, every rank contributes its random streams."""
        rank_rng = distributed.all_gather_object(self._rank_rng()) if self.world_size > 1 else None
        if self.is_main:
            atomic_torch_save(self._state(step, rank_rng), path)

    def _load(self, state: dict[str, Any], path: Path) -> int:
        # A checkpoint of another method or other settings must never be continued as if it were this run.
        if state.get("method_name") != self.method.name or state.get("config") != self.config.model_dump(mode="json"):
            raise ConfigError(f"{path}: checkpoint was written by method {state.get('method_name')!r} with other "
                              f"settings than this run ({self.method.name!r}); remove it or use another run folder")
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        step = int(state["step"])
        self.ctx.cpu_generator.set_state(state["cpu_generator"])
        rank_rng = state.get("rank_rng")
        if self.world_size > 1 and rank_rng is not None and len(rank_rng) == self.world_size:
            own = rank_rng[self.rank]
        elif self.rank == 0:
            own = {"generator": state["generator"], "torch_rng": state["torch_rng"]}
        else:
            # Written by another number of ranks: this rank's stream cannot be restored; continue it
            # reproducibly from (seed, rank, step) instead.
            if self.rank == 1:
                warnings.warn(f"{path}: written by {len(rank_rng) if rank_rng else 1} process(es), resumed by "
                              f"{self.world_size}: the other ranks' random streams are re-seeded", stacklevel=2)
            seed = distributed.rank_seed(self.config.training.seed * 1_000_003 + step, self.rank)
            self.ctx.generator.manual_seed(seed)
            torch.manual_seed(seed)
            return step
        self.ctx.generator.set_state(own["generator"])
        torch.set_rng_state(own["torch_rng"])
        return step

    def _mean_over_ranks(self, running: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The logged sums averaged over the ranks (one all-reduce at log time; as is in one process)."""
        if self.world_size == 1 or not running:
            return running
        keys = sorted(running)
        stacked = distributed.all_reduce_(torch.stack([running[k] for k in keys]), mean=True)
        return dict(zip(keys, stacked, strict=True))

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train to ``iterations`` plus the method's extra steps (resuming if a checkpoint exists).
        Returns timing/memory stats."""
        tc, total = self.config.training, self.total_steps
        ckpt_path, log_path = self.out_dir / CHECKPOINT_NAME, self.out_dir / LOG_NAME
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        start = 0
        # Every rank resumes from the checkpoint rank 0 sees (the run folder is shared by the ranks).
        if distributed.on_main(ckpt_path.exists):
            state = safe_torch_load(ckpt_path, "checkpoint", map_location=self.device)
            start = self._load(state, ckpt_path)
            distributed.barrier()  # every rank has read it before rank 0 may write the next one
        if torch.cuda.is_available() and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        running: dict[str, torch.Tensor] = {}
        log = TrainingLog(log_path, start) if self.is_main else None
        bar = tqdm(range(start, total), initial=start, total=total,
                   desc=f"train {self.method.name}", disable=not self.progress, leave=False)
        try:
            for step in bar:
                self.ctx.step = step
                lr = scheduled_lr(tc.lr, step, tc, self.method.schedule_start_step, total)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                batch = self.next_batch()
                with self.ctx.autocast():
                    losses = self.method.training_step(batch, self.ctx)
                self.optimizer.zero_grad(set_to_none=True)
                # A method may spend a phase training only networks it optimises itself (e.g. GLUA's
                # style-transfer stage); its "loss" then carries no gradient and the step is skipped.
                if losses["loss"].requires_grad:
                    losses["loss"].backward()
                    self.ctx.all_reduce_gradients(self.trainable)
                    self.optimizer.step()
                self.method.after_optimizer_step(self.ctx)
                for k, v in losses.items():  # accumulate on device; synced only when logged
                    running[k] = running.get(k, 0.0) + v.detach().float()
                done = step + 1
                if done % tc.log_every == 0 or done == total:
                    n = tc.log_every if done % tc.log_every == 0 else done % tc.log_every
                    values = {k: float(v) / n for k, v in self._mean_over_ranks(running).items()}
                    running = {}
                    if log is not None:
                        log.write(done, {"lr": lr, **values})
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                if done % self.ctx.epoch_length == 0:
                    self.method.on_epoch_end(self.ctx, done // self.ctx.epoch_length - 1)
                if done % tc.checkpoint_every == 0 or done == total:
                    self._save(done, ckpt_path)
        finally:
            if log is not None:
                log.close()
            bar.close()
        distributed.barrier()  # nobody moves on before the last checkpoint exists
        stats: dict[str, Any] = {"train_seconds": time.perf_counter() - t0, "resumed_from_step": start,
                                 "iterations": total, "device": str(self.device),
                                 "world_size": self.world_size}
        if self.device.type == "cuda":
            stats["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return stats

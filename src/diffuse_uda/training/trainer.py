"""The one segmentation training loop every method runs on.

It owns devices, seeding, batch sampling, augmentation, the optimizer and LR schedule, AMP,
checkpoints with resume, loss logging and progress. Methods only turn batches into losses
(see :mod:`diffuse_uda.methods.base`).

Resume: ``checkpoint_last.pt`` in the run folder holds the step, all method state, optimizer,
schedule and random-generator states; written atomically every ``checkpoint_every`` steps.
Model selection never uses target labels: the bundle is the last step's inference network.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from diffuse_uda.config import RunConfig, TrainingConfig
from diffuse_uda.data.io import atomic_torch_save, safe_torch_load
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.base import Method
from diffuse_uda.training.augmentation import LabelledAugmentation
from diffuse_uda.training.context import Batch, TrainContext, TrainingData
from diffuse_uda.training.log import TrainingLog
from diffuse_uda.training.losses import IGNORE_INDEX

CHECKPOINT_NAME = "checkpoint_last.pt"
LOG_NAME = "training_log.csv"


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def poly_lr(base_lr: float, step: int, total: int, power: float) -> float:
    return base_lr * (1.0 - min(step, total - 1) / total) ** power


def scheduled_lr(base_lr: float, step: int, tc: TrainingConfig, start: int = 0) -> float:
    """The learning rate at ``step`` under the run's schedule, for a schedule that begins at ``start``
    (before it: the base rate)."""
    if tc.lr_schedule != "poly":
        return base_lr
    start = min(start, tc.iterations - 1)
    return poly_lr(base_lr, max(0, step - start), tc.iterations - start, tc.poly_power)


class Trainer:
    def __init__(self, method: Method, data: TrainingData, config: RunConfig, out_dir: Path,
                 spatial_dims: int, num_classes: int, progress: bool = True) -> None:
        self.method = method
        self.config = config
        self.out_dir = Path(out_dir)
        self.progress = progress
        tc = config.training
        self.device = resolve_device(tc.device)
        seed_everything(tc.seed)
        if method.uses_target_images and data.target_images is None:
            raise ValueError(f"method {method.name!r} needs target images")
        data = data.to(self.device)
        generator = torch.Generator(device=self.device).manual_seed(tc.seed)
        cpu_generator = torch.Generator().manual_seed(tc.seed + 1)
        epoch_length = tc.epoch_length or max(1, tc.iterations // 20)
        self.ctx = TrainContext(config=config, device=self.device, spatial_dims=spatial_dims,
                                in_channels=int(data.source_images.shape[1]), num_classes=num_classes,
                                data=data, generator=generator, cpu_generator=cpu_generator,
                                total_steps=tc.iterations, epoch_length=epoch_length)
        # One extra class carries IGNORE voxels through the spatial augmentation unchanged.
        self.augment = LabelledAugmentation(num_classes + 1) if tc.augment else None
        method.build(self.ctx)
        params = method.trainable_parameters()
        if tc.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, nesterov=True,
                                             weight_decay=tc.weight_decay)

    # ------------------------------------------------------------------ batches
    def _indices(self, n: int, batch: int) -> torch.Tensor:
        return torch.randint(0, n, (batch,), generator=self.ctx.cpu_generator).to(self.device, non_blocking=True)

    def next_batch(self) -> Batch:
        data, bs = self.ctx.data, self.config.training.batch_size
        idx = self._indices(data.source_images.shape[0], bs)
        image, label = data.source_images[idx], data.source_labels[idx]
        if self.augment is not None:
            nc = self.ctx.num_classes
            label = torch.where(label == IGNORE_INDEX, nc, label)
            image, label = self.augment(image, label, self.ctx.generator)
            label = torch.where(label == nc, IGNORE_INDEX, label)
        target = target_idx = None
        if self.method.uses_target_images:
            assert data.target_images is not None
            target_idx = self._indices(data.target_images.shape[0], bs)
            target = data.target_images[target_idx]
            if self.augment is not None:
                target = self.augment.intensity(target, self.ctx.generator)
        return Batch(image, label, target, target_idx)

    # ------------------------------------------------------------------ state
    def _state(self, step: int) -> dict[str, Any]:
        return {"step": step, "method": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.ctx.generator.get_state(), "cpu_generator": self.ctx.cpu_generator.get_state(),
                "torch_rng": torch.get_rng_state(), "config": self.config.model_dump(mode="json"),
                "method_name": self.method.name}

    def _load(self, state: dict[str, Any], path: Path) -> int:
        # A checkpoint of another method or other settings must never be continued as if it were this run.
        if state.get("method_name") != self.method.name or state.get("config") != self.config.model_dump(mode="json"):
            raise ConfigError(f"{path}: checkpoint was written by method {state.get('method_name')!r} with other "
                              f"settings than this run ({self.method.name!r}); remove it or use another run folder")
        self.method.load_state_dict(state["method"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ctx.generator.set_state(state["generator"])
        self.ctx.cpu_generator.set_state(state["cpu_generator"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"])

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train to ``iterations`` (resuming if a checkpoint exists). Returns timing/memory stats."""
        tc = self.config.training
        ckpt_path, log_path = self.out_dir / CHECKPOINT_NAME, self.out_dir / LOG_NAME
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start = 0
        if ckpt_path.exists():
            state = safe_torch_load(ckpt_path, "checkpoint", map_location=self.device)
            start = self._load(state, ckpt_path)
        if torch.cuda.is_available() and self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        running: dict[str, torch.Tensor] = {}
        log = TrainingLog(log_path, start)
        bar = tqdm(range(start, tc.iterations), initial=start, total=tc.iterations,
                   desc=f"train {self.method.name}", disable=not self.progress, leave=False)
        try:
            for step in bar:
                self.ctx.step = step
                lr = scheduled_lr(tc.lr, step, tc, self.method.schedule_start_step)
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
                    self.optimizer.step()
                self.method.after_optimizer_step(self.ctx)
                for k, v in losses.items():  # accumulate on device; synced only when logged
                    running[k] = running.get(k, 0.0) + v.detach().float()
                done = step + 1
                if done % tc.log_every == 0 or done == tc.iterations:
                    n = tc.log_every if done % tc.log_every == 0 else done % tc.log_every
                    values = {k: float(v) / n for k, v in running.items()}
                    running = {}
                    log.write(done, {"lr": lr, **values})
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                if done % self.ctx.epoch_length == 0:
                    self.method.on_epoch_end(self.ctx, done // self.ctx.epoch_length - 1)
                if done % tc.checkpoint_every == 0 or done == tc.iterations:
                    atomic_torch_save(self._state(done), ckpt_path)
        finally:
            log.close()
            bar.close()
        stats: dict[str, Any] = {"train_seconds": time.perf_counter() - t0, "resumed_from_step": start,
                                 "iterations": tc.iterations, "device": str(self.device)}
        if self.device.type == "cuda":
            stats["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        return stats

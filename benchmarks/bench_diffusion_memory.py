"""Peak memory (and time) of the generator: one training update, one training step's activations and
one sampling step, with and without gradient checkpointing.

Each measurement runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is that of the
measured work plus the interpreter and libraries (the "baseline" row: imports and model construction
only). On CUDA the peak allocated GPU memory is reported as well.

* ``train``: :func:`diffuse_uda.diffusion.trainer.train_diffusion` itself, one update (deformation,
  Adam, EMA and a checkpoint write included).
* ``step``: one forward + backward pass of the UNet on one micro-batch (``batch_size`` pairs), AMP on
  CUDA as in training, after a warm-up pass on a small input. ``step_mb`` is what the step adds on top
  of the built model and its inputs: the activations kept for the backward pass, the gradients and the
  temporaries at the peak. CPU (fp32, Linux): the high-water mark of the resident memory during the
  step (reset before it through /proc/self/clear_refs) minus the resident memory before it; the
  subprocess runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so freed tensors go back to the system at once
  and the resident memory follows the live tensors. CUDA: peak allocated minus allocated before.
* ``sample``: :func:`diffuse_uda.diffusion.samplers.sample_images`, one DDIM step.

A profile is ``profile:dims`` or ``profile:dims@size`` (a cube/square of that size instead of the
profile's): sizes too big for the machine are extrapolated from smaller ones with ``--extrapolate-to``,
fitting ``memory = a + b * voxels`` per (profile, what, checkpointing) over the measured sizes
(activations of a fully convolutional UNet grow linearly with the voxels).

    python benchmarks/bench_diffusion_memory.py --profiles quick:2 paper:2 paper:3 --out memory.json
    python benchmarks/bench_diffusion_memory.py --profiles paper:3@32 paper:3@48 paper:3@64 --what step \\
        --extrapolate-to 128 --out memory_3d.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _proc_status_mb(key: str) -> float:
    """VmRSS (resident now) or VmHWM (its high-water mark) of this process, from Linux's /proc."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{key} not in /proc/self/status")


def _reset_high_water() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # Linux: "5" resets VmHWM to the current RSS
        fh.write("5")


def _config(profile: str, dims: int, size: int | None, checkpointing: bool, amp: bool = True):
    from diffuse_uda.diffusion.config import DiffusionConfig

    factory = {"quick": DiffusionConfig.quick, "paper": DiffusionConfig.paper}[profile]
    overrides = {"iterations": 1, "checkpoint_every": 1, "sample_every": 0, "seed": 0,
                 "gradient_checkpointing": checkpointing, "amp": amp}
    if size is not None:
        overrides["image_size"] = (size,) * dims
    return factory(dims, **overrides)


def _step(cfg, dev, num_classes: int, channels: int, cpu_amp: bool = False) -> dict:
    """One forward + backward pass on one micro-batch; what it adds on top of model and inputs."""
    import torch

    from diffuse_uda.diffusion.samplers import autocast_context
    from diffuse_uda.diffusion.trainer import build_model
    from diffuse_uda.networks.conditional_unet import one_hot

    torch.manual_seed(0)
    model = build_model(cfg, num_classes, channels).to(dev).train()
    b = cfg.batch_size

    def inputs(size: tuple[int, ...]) -> tuple:
        return (torch.randn(b, channels, *size, device=dev),
                one_hot(torch.randint(0, num_classes, (b, *size), device=dev), num_classes),
                torch.randint(0, cfg.num_train_timesteps, (b,), device=dev))

    def step(x, cond, t) -> None:
        # --cpu-amp: bf16 autocast on the CPU, to estimate what CUDA's autocast saves (its op lists differ a little).
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if cpu_amp and dev.type == "cpu" else \
            autocast_context(dev, cfg.amp)
        with amp:
            pred = model(x, cond, t)
        torch.nn.functional.l1_loss(pred.float(), x).backward()

    # Warm-up on a small input: libraries allocate once on their first pass (thread pools, kernels);
    # that is not the step's memory and would not grow with the volume.
    step(*inputs((2 ** len(cfg.channels),) * cfg.spatial_dims))
    model.zero_grad(set_to_none=True)
    x, cond, t = inputs(tuple(cfg.image_size))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before_gpu = torch.cuda.memory_allocated(dev)
    _reset_high_water()
    before = _proc_status_mb("VmRSS")
    t0 = time.perf_counter()
    step(x, cond, t)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    row = {"seconds": round(time.perf_counter() - t0, 2), "batch": b,
           "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
           "step_mb": round(_proc_status_mb("VmHWM") - before)}
    if dev.type == "cuda":
        row["step_gpu_mb"] = round((torch.cuda.max_memory_allocated(dev) - before_gpu) / 2**20)
    return row


def _measure(profile: str, dims: int, size: int | None, what: str, checkpointing: bool, device: str,
             num_classes: int, channels: int, cpu_amp: bool = False, amp: bool = True) -> dict:
    import resource

    import numpy as np
    import torch

    from diffuse_uda.diffusion.samplers import sample_images
    from diffuse_uda.diffusion.trainer import PairSample, build_model, train_diffusion
    from diffuse_uda.training.trainer import resolve_device

    dev = resolve_device(device)
    cfg = _config(profile, dims, size, checkpointing, amp)
    size_t = tuple(cfg.image_size)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    extra: dict = {}
    if what == "train":
        pairs = [PairSample(rng.random((channels, *size_t), dtype=np.float32),
                            rng.integers(0, num_classes, size_t).astype(np.uint8), "source", f"s{i}")
                 for i in range(cfg.batch_size)]
        with tempfile.TemporaryDirectory() as tmp:
            train_diffusion(pairs, num_classes, cfg, Path(tmp), device=dev, progress=False)
        batch = cfg.batch_size * cfg.grad_accumulation
    elif what == "step":
        extra = {**_step(cfg, dev, num_classes, channels, cpu_amp), "cpu_amp": cpu_amp}
        batch = extra.pop("batch")
    else:
        model = build_model(cfg, num_classes, channels).to(dev).eval()
        batch = 1 if profile == "paper" else 16
        if what == "sample":
            masks = torch.from_numpy(rng.integers(0, num_classes, (batch, *size_t))).to(dev)
            with torch.no_grad():
                sample_images(model, masks, num_classes, channels, sampler="ddim", steps=1,
                              num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule)
    seconds = time.perf_counter() - t0
    row = {"profile": profile, "dims": dims, "size": list(size_t), "channels": list(cfg.channels), "what": what,
           "gradient_checkpointing": checkpointing, "amp": cfg.amp and dev.type == "cuda", "batch": batch,
           "seconds": round(seconds, 2),
           "device": str(dev), "torch_threads": torch.get_num_threads(),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0), **extra}
    if dev.type == "cuda":
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
        row["gpu"] = torch.cuda.get_device_name(dev)
    return row


def extrapolate(rows: list[dict], to: int) -> list[dict]:
    """Rows at ``to`` per side, from a least-squares line ``a + b * voxels`` through the measured sizes
    of each (profile, dims, what, checkpointing); needs two sizes or more."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "error" not in r:
            groups.setdefault((r["profile"], r["dims"], r["what"], r["gradient_checkpointing"]), []).append(r)
    out = []
    for (profile, dims, what, ckpt), rs in groups.items():
        sizes = sorted({int(np.prod(r["size"])) for r in rs})
        if len(sizes) < 2:
            continue
        target = to ** dims
        row = {"profile": profile, "dims": dims, "size": [to] * dims, "what": what, "gradient_checkpointing": ckpt,
               "extrapolated_from": sorted({r["size"][0] for r in rs})}
        for key in ("peak_rss_mb", "step_mb", "step_gpu_mb", "peak_gpu_mb", "seconds"):
            pts = [(int(np.prod(r["size"])), r[key]) for r in rs if key in r]
            if len(pts) >= 2:
                b, a = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
                row[key] = round(float(a + b * target), 1)
                row[f"{key}_per_mvoxel"] = round(float(b * 1e6), 1)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", nargs="+", default=["quick:2", "paper:2", "paper:3"],
                    help="profile:spatial_dims[@size] entries")
    ap.add_argument("--what", nargs="+", default=["baseline", "train", "step", "sample"])
    ap.add_argument("--checkpointing", nargs="+", choices=["off", "on"], default=["off", "on"],
                    help="gradient checkpointing settings to measure (baseline and sample rows: off only)")
    ap.add_argument("--extrapolate-to", type=int, default=None, help="side length to extrapolate to")
    ap.add_argument("--num-classes", type=int, default=4, help="classes incl. background (MS-CMRSeg: 4)")
    ap.add_argument("--channels", type=int, default=1, help="image channels")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--cpu-amp", action="store_true", help="step rows on the CPU under bf16 autocast")
    ap.add_argument("--amp", nargs="+", choices=["on", "off"], default=["on"],
                    help="CUDA autocast (bf16 where supported) settings to measure; the profiles train with it on")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per measurement")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--_one", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        profile, dims, size, what, ckpt = args._one
        print(json.dumps(_measure(profile, int(dims), None if size == "-" else int(size), what, ckpt == "on",
                                  args.device, args.num_classes, args.channels, args.cpu_amp,
                                  args.amp[0] == "on")))
        return
    rows = []
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # freed tensors leave RSS at once
    for spec in args.profiles:
        profile, _, rest = spec.partition(":")
        dims, _, size = rest.partition("@")
        for what in args.what:
            for ckpt, amp in [(c, a) for c in (args.checkpointing if what in ("train", "step") else ["off"])
                              for a in args.amp]:
                cmd = [sys.executable, __file__, "--_one", profile, dims, size or "-", what, ckpt,
                       "--device", args.device, "--num-classes", str(args.num_classes), "--channels",
                       str(args.channels), "--amp", amp, *(["--cpu-amp"] if args.cpu_amp else [])]
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
                    if proc.returncode != 0:
                        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
                    row = json.loads(proc.stdout.strip().splitlines()[-1])
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    row = {"profile": profile, "dims": int(dims), "size": size or None, "what": what,
                           "gradient_checkpointing": ckpt == "on", "amp": amp == "on", "error": str(exc)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.extrapolate_to:
        for row in extrapolate(rows, args.extrapolate_to):
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

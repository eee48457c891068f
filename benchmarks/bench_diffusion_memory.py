"""Peak memory (and time) of one training update and one sampling step of the generator.

Each measurement runs in a fresh subprocess, so its peak resident memory (``ru_maxrss``) is that
of the measured work plus the interpreter and libraries (the "baseline" row: imports and model
construction only). On CUDA the peak allocated GPU memory is reported as well. Training uses
:func:`diffuse_uda.diffusion.trainer.train_diffusion` itself (one update, deformation included);
sampling uses :func:`diffuse_uda.diffusion.samplers.sample_images` with one DDIM step.

    python benchmarks/bench_diffusion_memory.py --profiles quick:2 paper:2 paper:3 --out memory.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _measure(profile: str, dims: int, what: str, device: str, num_classes: int, channels: int) -> dict:
    import resource

    import numpy as np
    import torch

    from diffuse_uda.diffusion.config import DiffusionConfig
    from diffuse_uda.diffusion.samplers import sample_images
    from diffuse_uda.diffusion.trainer import PairSample, build_model, train_diffusion
    from diffuse_uda.training.trainer import resolve_device

    dev = resolve_device(device)
    factory = {"quick": DiffusionConfig.quick, "paper": DiffusionConfig.paper}[profile]
    cfg = factory(dims, iterations=1, checkpoint_every=1, sample_every=0, seed=0)
    size = tuple(cfg.image_size)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    if what == "train":
        n = cfg.batch_size
        pairs = [PairSample(rng.random((channels, *size), dtype=np.float32),
                            rng.integers(0, num_classes, size).astype(np.uint8), "source", f"s{i}") for i in range(n)]
        with tempfile.TemporaryDirectory() as tmp:
            train_diffusion(pairs, num_classes, cfg, Path(tmp), device=dev, progress=False)
        batch = cfg.batch_size * cfg.grad_accumulation
    else:
        model = build_model(cfg, num_classes, channels).to(dev).eval()
        batch = 1 if profile == "paper" else 16
        if what == "sample":
            masks = torch.from_numpy(rng.integers(0, num_classes, (batch, *size))).to(dev)
            with torch.no_grad():
                sample_images(model, masks, num_classes, channels, sampler="ddim", steps=1,
                              num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule)
    seconds = time.perf_counter() - t0
    row = {"profile": profile, "dims": dims, "size": list(size), "channels": list(cfg.channels), "what": what,
           "batch": batch, "seconds": round(seconds, 2), "device": str(dev),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)}
    if dev.type == "cuda":
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(dev) / 2**20)
        row["gpu"] = torch.cuda.get_device_name(dev)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", nargs="+", default=["quick:2", "paper:2", "paper:3"],
                    help="profile:spatial_dims pairs")
    ap.add_argument("--what", nargs="+", default=["baseline", "train", "sample"])
    ap.add_argument("--num-classes", type=int, default=4, help="classes incl. background (MS-CMRSeg: 4)")
    ap.add_argument("--channels", type=int, default=1, help="image channels")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--_one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._one:
        profile, dims, what = args._one
        print(json.dumps(_measure(profile, int(dims), what, args.device, args.num_classes, args.channels)))
        return
    rows = []
    for spec in args.profiles:
        profile, dims = spec.split(":")
        for what in args.what:
            cmd = [sys.executable, __file__, "--_one", profile, dims, what, "--device", args.device,
                   "--num-classes", str(args.num_classes), "--channels", str(args.channels)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                row = {"profile": profile, "dims": int(dims), "what": what,
                       "error": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
            else:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

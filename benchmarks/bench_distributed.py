"""Wall time of the same training on one process and on N gloo processes (CPU, torchrun), for a fixed
number of samples: the segmenter (source-only, ascplus) and the generator.

Each run is a fresh command: one process is plain ``python``, N processes are ``python -m
torch.distributed.run --standalone --nproc-per-node N``. Every process uses ``--threads`` torch
threads, so "1 x 2" (one process, two threads) and "2 x 1" (two processes, one thread each) use the
same cores. Reported: the training loop's seconds (rank 0's ``train_seconds``; the generator: its
loop), samples per second, and the whole command's wall time (start-up, data, process group
included). The workload is synthetic (random 2D images and blob labels), sized like the quick
profile: 64 px, the quick segmenter (8 filters) or the quick generator (16, 32, 64 channels).

    python benchmarks/bench_distributed.py --modes 1x1 1x2 2x1 --out ddp_wall.json
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

WORKLOADS = ("source-only", "ascplus", "generator")


def _worker(workload: str, steps: int, batch: int, size: int, threads: int, out: Path) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from diffuse_uda.training import distributed

    g = torch.Generator().manual_seed(0)
    n = 64
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centres = torch.randint(size // 4, 3 * size // 4, (n, 2), generator=g)
    radius = torch.randint(size // 8, size // 4, (n, 1, 1), generator=g)
    dist2 = (yy[None] - centres[:, 0, None, None]) ** 2 + (xx[None] - centres[:, 1, None, None]) ** 2
    labels = (dist2 < radius**2).long() + (dist2 < (radius // 2) ** 2).long()
    images = (labels[:, None].float() * 0.3 + 0.1 + 0.1 * torch.rand(n, 1, size, size, generator=g)).clamp(0, 1)
    t0 = time.perf_counter()
    if workload == "generator":
        from diffuse_uda.diffusion.config import DiffusionConfig
        from diffuse_uda.diffusion.trainer import PairSample, train_diffusion

        cfg = DiffusionConfig.quick(2, iterations=steps, batch_size=batch, checkpoint_every=steps, log_every=steps,
                                    image_size=(size, size))
        pairs = [PairSample(images[i].numpy(), labels[i].numpy().astype(np.uint8), "source", f"c{i}")
                 for i in range(n)]
        t0 = time.perf_counter()
        train_diffusion(pairs, 3, cfg, out, device="cpu", progress=False)
        seconds = time.perf_counter() - t0
    else:
        from diffuse_uda.config import build_run_config
        from diffuse_uda.methods.registry import create_method
        from diffuse_uda.training.context import TrainingData
        from diffuse_uda.training.trainer import Trainer

        options = {"appearance": "fourier"} if workload == "ascplus" else {}
        cfg = build_run_config("quick", 2, {"training": {"iterations": steps, "batch_size": batch, "device": "cpu",
                                                         "checkpoint_every": steps, "log_every": steps},
                                            "method": options})
        trainer = Trainer(create_method(workload, options), TrainingData(images, labels, 1 - images), cfg, out, 2, 3,
                          progress=False)
        seconds = trainer.fit()["train_seconds"]
    if distributed.is_main():
        print(json.dumps({"train_seconds": round(seconds, 2), "world_size": distributed.world_size()}))
    distributed.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    ap.add_argument("--modes", nargs="+", default=["1x1", "1x2", "2x1"], help="PROCESSESxTHREADS")
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps (the generator: updates)")
    ap.add_argument("--batch", type=int, default=8, help="global batch (samples per step, all processes)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--_worker", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        workload, steps, batch, size, threads, out = args._worker
        _worker(workload, int(steps), int(batch), int(size), int(threads), Path(out))
        return
    rows = []
    for workload in args.workloads:
        for mode in args.modes:
            procs, threads = (int(x) for x in mode.split("x"))
            with tempfile.TemporaryDirectory() as tmp:
                worker = [__file__, "--_worker", workload, str(args.steps), str(args.batch), str(args.size),
                          str(threads), tmp]
                launcher = [sys.executable] if procs == 1 else [
                    sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                t0 = time.perf_counter()
                proc = subprocess.run([*launcher, *worker], capture_output=True, text=True, env=env)
                wall = time.perf_counter() - t0
            if proc.returncode != 0:
                row = {"workload": workload, "mode": mode, "error": proc.stderr.strip().splitlines()[-3:]}
            else:
                stats = json.loads(proc.stdout.strip().splitlines()[-1])
                samples = args.steps * args.batch
                row = {"workload": workload, "mode": mode, "processes": procs, "threads": threads,
                       "samples": samples, "train_seconds": stats["train_seconds"],
                       "samples_per_s": round(samples / stats["train_seconds"], 1), "wall_seconds": round(wall, 1),
                       "load_avg_1min": round(os.getloadavg()[0], 2)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

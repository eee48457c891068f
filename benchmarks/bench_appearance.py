"""Time per call of each appearance-transfer member (transforms/appearance.py) on batches of given shapes.

Each member runs with its default options on uniform random images and references; the median of
``--repeats`` timed calls after one warm-up call is reported in milliseconds (CUDA timings are
synchronised around each call). One CPU thread by default, as in the trainer's tests.

Example::

    python benchmarks/bench_appearance.py --shapes 8,1,64,64 8,3,64,64 --repeats 20 --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from diffuse_uda.transforms.appearance import available_appearance_transfers, build_appearance_transfer


def _time_ms(fn, device: torch.device, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up: kernel selection, first allocations
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["8,1,64,64", "8,3,64,64"],
                        help="batch shapes B,C,H,W or B,C,D,H,W")
    parser.add_argument("--members", nargs="*", default=None, help="default: all registered members")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    members = args.members or list(available_appearance_transfers())
    results: dict[str, dict[str, float]] = {}
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split(","))
        g = torch.Generator(device=device).manual_seed(0)
        images = torch.rand(shape, generator=g, device=device)
        reference = torch.rand(shape, generator=g, device=device) ** 2
        for name in members:
            transfer = build_appearance_transfer(name)
            ms = _time_ms(lambda t=transfer, x=images, r=reference, g=g: t(x, r, g), device, args.repeats)
            results.setdefault(name, {})[text] = ms
    if args.json:
        print(json.dumps({"device": str(device), "threads": args.threads, "torch": torch.__version__,
                          "cpu": platform.processor() or platform.machine(), "ms_per_call": results}, indent=1))
        return
    print(f"ms per call (median of {args.repeats}), device {device}, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print("| member | " + " | ".join(args.shapes) + " |")
    print("|---|" + "---|" * len(args.shapes))
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[s]:.2f}" for s in args.shapes) + " |")


if __name__ == "__main__":
    main()

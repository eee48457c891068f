"""Throughput of diffuse_uda's batched RandomDeformation vs MONAI's Rand3DElasticd / Rand2DElasticd.

Both deform a single-channel image (bilinear) plus a 3-class label map on the same inputs. MONAI's
dictionary transforms handle one sample at a time, so they are looped over the batch; ours processes
the whole batch in one call. Settings are matched as closely as the two parameterisations allow:

* rotation: ours U(-5, 5) degrees about a random axis; MONAI U(-5, 5) degrees about each of x, y, z;
* scale: ours U(0.95, 1.05) per axis; MONAI scale_range 0.05 (1 + U(-0.05, 0.05));
* shift: ours U(-5 %, 5 %) of the extent; MONAI translate_range of 5 % of the size in voxels;
* elastic: ours ``field_size`` coarse nodes with a displacement std of ``alpha`` (normalised units);
  MONAI 3D uses a Gaussian-smoothed full-resolution field with sigma = size / field_size and a
  magnitude chosen so its displacement std matches ours; MONAI 2D uses control points every
  size / field_size pixels with magnitude = our displacement std in pixels.

Example::

    python benchmarks/bench_deformation.py --sizes 64 128 --batches 1 4 --repeats 3 --device auto
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.transforms import Rand2DElasticd, Rand3DElasticd

from diffuse_uda.transforms import DeformationParams, RandomDeformation

NUM_CLASSES = 3


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU {line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(batch: int, spatial: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A smooth random image and nested-box labels 0/1/2, shapes (B, 1, *spatial)."""
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 1, *(max(2, n // 8) for n in spatial), generator=g)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    image = torch.nn.functional.interpolate(coarse, size=spatial, mode=mode, align_corners=False)
    label = torch.zeros(batch, 1, *spatial, dtype=torch.long)
    label[(slice(None), slice(None), *(slice(n // 4, 3 * n // 4) for n in spatial))] = 1
    label[(slice(None), slice(None), *(slice(3 * n // 8, 5 * n // 8) for n in spatial))] = 2
    return image.to(device), label.to(device)


def _time(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _monai_transform(spatial: tuple[int, ...], params: DeformationParams, device: torch.device):
    d = len(spatial)
    n = float(max(spatial))
    rot = math.radians(params.rotation_degrees)
    scale = (params.scale_range[1] - params.scale_range[0]) / 2.0
    common = {
        "keys": ["image", "label"],
        "prob": 1.0,
        "rotate_range": rot if d == 2 else (rot, rot, rot),
        "scale_range": (scale,) * d,
        "translate_range": tuple(params.shift_fraction * s for s in spatial),
        "mode": ("bilinear", "nearest"),
        "padding_mode": "border",
        "device": device,
    }
    disp_vox = params.alpha * n / 2.0  # our displacement std in voxels
    if d == 2:
        return Rand2DElasticd(spacing=n / params.field_size, magnitude_range=(disp_vox, disp_vox), **common)
    sigma = n / params.field_size
    # MONAI: offset = GaussianFilter(sigma)(U(-1, 1) noise) * magnitude. U(-1, 1) has std 1/sqrt(3) and a
    # normalised 3D Gaussian of width sigma scales white-noise std by (2 sqrt(pi) sigma)^(-3/2).
    unit_std = (1.0 / math.sqrt(3.0)) * (2.0 * math.sqrt(math.pi) * sigma) ** -1.5
    magnitude = disp_vox / unit_std
    return Rand3DElasticd(
        sigma_range=(sigma, sigma), magnitude_range=(magnitude, magnitude), **common
    )


def run(args: argparse.Namespace) -> list[dict[str, object]]:
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    params = DeformationParams()
    ours_onehot = RandomDeformation(params, num_classes=NUM_CLASSES)
    ours_nearest = RandomDeformation(params, num_classes=None)
    name = _device_name(device)
    cases = [(3, s) for s in args.sizes] + [(2, s) for s in args.sizes2d]
    rows: list[dict[str, object]] = []
    for dims, size in cases:
        spatial = (size,) * dims
        monai_t = _monai_transform(spatial, params, device)
        monai_t.set_random_state(seed=0)
        for batch in args.batches:
            image, label = _inputs(batch, spatial, device)
            gen = torch.Generator(device=device).manual_seed(0)

            def ours(deform: RandomDeformation = ours_onehot) -> object:
                return deform(image, label, gen)  # noqa: B023 (timed immediately, inside the loop)

            def monai() -> object:
                return [monai_t({"image": image[i], "label": label[i]}) for i in range(batch)]  # noqa: B023

            t_ours = _time(ours, args.repeats, device)
            t_near = _time(lambda: ours(ours_nearest), args.repeats, device)
            t_monai = _time(monai, args.monai_repeats or args.repeats, device)
            row = {
                "device": name,
                "dims": dims,
                "size": size,
                "batch": batch,
                "ours_vol_per_s": batch / t_ours,
                "ours_nearest_vol_per_s": batch / t_near,
                "monai_vol_per_s": batch / t_monai,
                "speedup": t_monai / t_ours,
            }
            rows.append(row)
            print(f"# done {dims}D {size} batch {batch}", flush=True)
    return rows


def to_markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| device | dims | size | batch | ours vol/s (one-hot) | ours vol/s (nearest) | MONAI vol/s "
        "| speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['device']} | {r['dims']}D | {r['size']} | {r['batch']} | {r['ours_vol_per_s']:.2f} | "
            f"{r['ours_nearest_vol_per_s']:.2f} | {r['monai_vol_per_s']:.2f} | {r['speedup']:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 128], help="3D cube edge lengths")
    parser.add_argument("--sizes2d", type=int, nargs="*", default=[256], help="2D square edge lengths")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--monai-repeats", type=int, default=None, help="repeats for MONAI (default: --repeats)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = run(args)
    print(to_markdown(rows))
    if args.out is not None:
        args.out.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""HEAL's hierarchical denoising (HD) alone, with the paper's fixed thresholds and the label-free calibrated ones.

For each bench folder, the ``source-only`` run of each seed is the frozen source model. HD needs no
diffusion model, so this isolates the thresholds: the paper's ``tau_1 = tau_2 = 0.2`` against
``HEALConfig(entropy_quantile=0.9)`` (q fixed before this was measured). The target *test* labels are
read afterwards, for this table only; nothing is chosen from them. Also reported: the share of the
predicted foreground each stage removes (from heal.json; label-free), and source-only itself.

    python benchmarks/heal_thresholds.py bench/mscmr-bssfp2lge bench/polyp-kvasir2cvc \
        --out heal-thresholds --json benchmarks/results/heal-thresholds/hd_seed0.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from diffuse_uda.evaluation.evaluate import evaluate_predictions, load_summary
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.methods.heal import HEAL_JSON, HEALConfig, adapt_source_free
from diffuse_uda.pipeline.bench_entries import HEAL_ENTRIES
from diffuse_uda.training.bundle import load_bundle

# The bench's own HD rows, so this table and `bench --methods heal-HD,heal-HD-calibrated` use one setting.
VARIANTS = {"paper": HEALConfig(**HEAL_ENTRIES["heal-HD"]),
            "calibrated": HEALConfig(**HEAL_ENTRIES["heal-HD-calibrated"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("benches", type=Path, nargs="+", help="bench folders holding source-only/seedN")
    ap.add_argument("--out", type=Path, required=True, help="where the HD predictions are written")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rows = []
    for bench in args.benches:
        for seed in args.seeds:
            run = bench / "source-only" / f"seed{seed}"
            if not (run / "model.pt").is_file():
                continue
            bundle = load_bundle(run)
            target = bundle.task.target_dir
            base = load_summary(run / "evaluation" / "summary.json")
            row: dict[str, object] = {"task": bench.name, "seed": seed, "source_only": base.mean("dice")}
            for name, config in VARIANTS.items():
                out = args.out / bench.name / f"seed{seed}" / name
                # HD alone never loads the diffusion model: no checkpoint is needed.
                adapt_source_free(run, Path("unused"), target, out, split="Ts", config=config, device=args.device,
                                  progress=False)
                reference = ReferenceLabels(target, "Ts", purpose="evaluation")
                summary = evaluate_predictions(out, reference, out / "evaluation", progress=False)
                cases = json.loads((out / HEAL_JSON).read_text())["cases"]
                row[name] = {"dice_mean": summary.mean("dice"),
                             "per_class": {c: summary.mean("dice", c) for c in summary.class_names},
                             "removed_by_entropy": float(np.mean([c["removed_by_entropy"] for c in cases])),
                             "removed_by_nig": float(np.mean([c["removed_by_nig"] for c in cases]))}
            rows.append(row)
            cells = []
            for name in VARIANTS:
                r = row[name]
                assert isinstance(r, dict)
                removed = 100 * (r["removed_by_entropy"] + r["removed_by_nig"])
                cells.append(f"{100 * r['dice_mean']:.1f} ({removed:.0f} % removed)")
            print(f"| {bench.name} | {seed} | {100 * base.mean('dice'):.1f} | " + " | ".join(cells) + " |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows}, indent=2,
                                        default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
                             + "\n")


if __name__ == "__main__":
    main()

"""Post-hoc quality of the target pseudo-labels each stage-1 model would hand to the generator.

For every run of a bench folder whose entry matches ``--entries`` (default: the ascplus rows), write
the pseudo-labels of the target *training* images (``diffuse-uda pseudolabel``) and score them
against the target training labels through the evaluation module's reader (purpose
"pseudo-label-quality": read after training, never fed back). One table per bench:

    python benchmarks/pseudolabel_quality.py bench/abdominal-ct2mr --out pseudolabels/abdominal-ct2mr \
        --json benchmarks/results/abdominal-ct2mr/pseudolabel_quality.json
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
from pathlib import Path

from diffuse_uda.evaluation.evaluate import evaluate_predictions
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.pipeline.pseudolabel import write_pseudolabels
from diffuse_uda.pipeline.run_folder import RunFolder
from diffuse_uda.training.bundle import load_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", type=Path, help="bench folder (ENTRY/seedN run folders)")
    ap.add_argument("--out", type=Path, required=True, help="where the pseudo-label datasets are written")
    ap.add_argument("--entries", nargs="+", default=["ascplus*", "source-only"], help="entry name patterns")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    rows = []
    for entry in sorted(p.name for p in args.bench.iterdir() if p.is_dir()):
        if not any(fnmatch.fnmatch(entry, pat) for pat in args.entries):
            continue
        for seed in args.seeds:
            run = args.bench / entry / f"seed{seed}"
            if not RunFolder(run).is_complete() or not (run / "model.pt").is_file():
                continue
            target = load_bundle(run).task.target_dir
            out = write_pseudolabels(run, args.out / entry / f"seed{seed}", device=args.device, progress=False)
            reference = ReferenceLabels(target, "Tr", purpose="pseudo-label-quality")
            summary = evaluate_predictions(out / "labelsTr", reference, out / "quality", progress=False)
            details = RunFolder(run).manifest().details
            rows.append({"entry": entry, "seed": seed, "appearance": details.get("appearance"),
                         "dice_mean": summary.mean("dice"), "dice_std": summary.mean_foreground["dice"]["std"],
                         "per_class": {c: summary.mean("dice", c) for c in summary.class_names}})
            print(f"| {entry} | {seed} | {100 * rows[-1]['dice_mean']:.1f} ± {100 * rows[-1]['dice_std']:.1f} |",
                  flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"bench": str(args.bench), "rows": rows}, indent=2,
                                        default=lambda v: None if isinstance(v, float) and math.isnan(v) else v)
                             + "\n")


if __name__ == "__main__":
    main()

"""Diagnostic (BENCHMARKS.md, session 30; for the report only, never for a choice): where the foreground Dice of a
run's target-test predictions is lost, as precision and recall against the test labels.

    python benchmarks/photo_precision.py --labels DATA/Dataset512_CVCClinicDB/labelsTs \\
        --run NAME=BENCH_RUN_FOLDER [--run ...] [--out record.json]
    python benchmarks/photo_precision.py --record record.json   # print a committed record

Each run folder holds ``predictions_target_test/<case>.nii.gz`` (what ``diffuse-uda bench`` writes). Per run: the
precision and recall of the foreground pooled over all test cases, their means over cases (a case with an empty
prediction has no precision and is left out of that mean, and counted), and the median ratio of predicted to
reference foreground area.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from diffuse_uda.data.io import read_nifti


def foreground(path: Path) -> np.ndarray:
    return read_nifti(path)[0] > 0


def run_record(run: Path, labels: Path) -> dict:
    predictions = sorted((run / "predictions_target_test").glob("*.nii.gz"))
    if not predictions:
        raise SystemExit(f"{run}: no predictions_target_test/*.nii.gz")
    tp = fp = fn = 0
    recall, precision, area = [], [], []
    for path in predictions:
        pred, ref = foreground(path), foreground(labels / path.name)
        hit = int((pred & ref).sum())
        tp, fp, fn = tp + hit, fp + int((pred & ~ref).sum()), fn + int((~pred & ref).sum())
        recall.append(hit / max(int(ref.sum()), 1))
        precision.append(hit / int(pred.sum()) if pred.any() else float("nan"))
        area.append(int(pred.sum()) / max(int(ref.sum()), 1))
    return {"cases": len(predictions), "pooled_precision": tp / max(tp + fp, 1), "pooled_recall": tp / max(tp + fn, 1),
            "case_precision": float(np.nanmean(precision)), "case_recall": float(np.mean(recall)),
            "median_area_ratio": float(np.median(area)), "empty_predictions": int(np.isnan(precision).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels", type=Path, help="the target test labels (labelsTs)")
    ap.add_argument("--run", action="append", default=[], metavar="NAME=FOLDER")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--record", type=Path, default=None, help="print this committed record instead")
    args = ap.parse_args()
    if args.record:
        record = json.loads(args.record.read_text())
    else:
        if args.labels is None or not args.run:
            ap.error("--labels and at least one --run are needed (or --record)")
        record = {name: run_record(Path(folder), args.labels)
                  for name, folder in (item.split("=", 1) for item in args.run)}
    print("| run | pooled precision | pooled recall | case precision | case recall | median area ratio | empty |\n"
          "|---|---|---|---|---|---|---|")
    for name, r in record.items():
        print(f"| {name} | {r['pooled_precision']:.3f} | {r['pooled_recall']:.3f} | {r['case_precision']:.3f} | "
              f"{r['case_recall']:.3f} | {r['median_area_ratio']:.2f} | {r['empty_predictions']} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()

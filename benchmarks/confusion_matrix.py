"""Post hoc, for reports only: which class each true class is predicted as, pooled over the target test
cases of evaluated runs (rows: true class, columns: predicted class, each row sums to 1).

    python benchmarks/confusion_matrix.py --reference data/Dataset902_DemoBrainT2 \
        bench/s12/demo-brain-t1t2/ascplus-*/seed0 --out confusion_seed0.json

Reads each run's ``predictions_target_test`` and the reference test labels through the evaluation
module's reader (the only place that reads them). Shows whether a model's errors are swaps between
classes (e.g. labelling by the source's intensity order) rather than missed structures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from diffuse_uda.data.dataset_json import load_dataset_json
from diffuse_uda.data.io import atomic_write_json, read_nifti
from diffuse_uda.evaluation.reference import ReferenceLabels


def confusion(predictions: Path, reference: ReferenceLabels, n_classes: int) -> np.ndarray:
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    for case_id in reference.case_ids:
        truth, _ = reference.load(case_id)
        predicted, _ = read_nifti(predictions / f"{case_id}.nii.gz")
        pair = truth.astype(np.int64).ravel() * n_classes + predicted.astype(np.int64).ravel()
        counts += np.bincount(pair, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+", help="evaluated run folders (with predictions_target_test)")
    ap.add_argument("--reference", type=Path, required=True, help="target dataset holding labelsTs")
    ap.add_argument("--out", type=Path, help="write the row-normalised matrices here (JSON)")
    args = ap.parse_args()
    reference = ReferenceLabels(args.reference, split="Ts")
    labels = load_dataset_json(args.reference).labels
    names = [n for n, _ in sorted(labels.items(), key=lambda kv: int(kv[1]))]
    out = {"rows": "true class", "columns": "predicted class", "classes": names, "runs": {}}
    for run in args.runs:
        counts = confusion(run / "predictions_target_test", reference, len(names))
        rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        out["runs"][str(run)] = np.round(rates, 3).tolist()
        print(f"{run}  (rows: true {', '.join(names)}; columns: predicted)")
        for name, row in zip(names, rates, strict=True):
            print(f"  {name:>14}: " + "  ".join(f"{v:.2f}" for v in row))
    if args.out:
        atomic_write_json(args.out, out)


if __name__ == "__main__":
    main()

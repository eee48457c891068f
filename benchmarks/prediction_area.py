"""Predicted vs reference foreground area per test case (is a method under-/over-segmenting?).

    python benchmarks/prediction_area.py data/Dataset512_CVCClinicDB bench/polyp/*/seed0

Reads reference labels through the evaluation module's reader (held-out test split only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from diffuse_uda.data.io import read_nifti
from diffuse_uda.evaluation.reference import ReferenceLabels
from diffuse_uda.pipeline.experiment import PREDICTIONS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference", type=Path, help="target dataset with labelsTs")
    ap.add_argument("runs", type=Path, nargs="+", help="evaluated run folders")
    args = ap.parse_args()
    reference = ReferenceLabels(args.reference, split="Ts")
    ref_area = {c: int((reference.load(c)[0] > 0).sum()) for c in reference.case_ids}
    for run in args.runs:
        pred = np.array([int((read_nifti(run / PREDICTIONS / f"{c}.nii.gz")[0] > 0).sum()) for c in ref_area])
        ref = np.array(list(ref_area.values()))
        ratio = pred[ref > 0] / ref[ref > 0]
        print(f"{run}: median predicted/reference area {np.median(ratio):.2f}, "
              f"empty predictions {int((pred == 0).sum())}/{len(pred)}")


if __name__ == "__main__":
    main()

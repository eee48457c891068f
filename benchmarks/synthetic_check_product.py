"""The product's synthetic check (``diffuse_uda.pipeline.synthetic_check``, the pipeline's opt-in stage) on a finished
pipeline run, against the benchmark script's ``--masks source`` record of the same run (session 35, BENCHMARKS.md):

    python benchmarks/synthetic_check_product.py --pipeline bench/s35/demo-brain-t1t2/default/seed0 \\
        -o bench/s35/product-check --reference bench/s35/check-source-masks/demo-brain-t1t2/seed0

Prints both pairs of agreements and whether they are equal: the stage the pipeline runs is the check that rule X
measured. Settings as ``synthetic_check_runs.py`` reads them (the run's record and its stage 3's request).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from synthetic_check_runs import check_inputs  # this folder

from diffuse_uda.pipeline.synthetic_check import CHECK_FILE, check_synthetic_pairs
from diffuse_uda.training.trainer import resolve_device


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", type=Path, required=True, help="a finished `diffuse-uda run` folder")
    ap.add_argument("-o", "--out", type=Path, required=True, help="folder for the product check's runs")
    ap.add_argument("--reference", type=Path, required=True, help="synthetic_check_runs.py --masks source folder")
    args = ap.parse_args()
    task, stage3, _, target = check_inputs(args.pipeline)
    product = check_synthetic_pairs(task, args.pipeline / "4_synthetic", target, stage3, args.out,
                                    resolve_device(stage3.training.device), progress=False)
    measured = json.loads((args.reference / CHECK_FILE).read_text())
    same = (product.synthetic_agreement == measured["synthetic_agreement"]
            and product.source_agreement == measured["source_agreement"])
    print(f"product: {product.synthetic_agreement!r} / {product.source_agreement!r}; measured: "
          f"{measured['synthetic_agreement']!r} / {measured['source_agreement']!r}; equal: {same}")


if __name__ == "__main__":
    main()

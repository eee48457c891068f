#!/usr/bin/env bash
# Every number in BENCHMARKS.md comes from these commands (CPU, 2 cores; one torch thread per
# process because three benches ran side by side: OMP_NUM_THREADS=1).
# Usage: bash benchmarks/reproduce.sh [path/to/shared/data]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared/data}
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

$BIN/diffuse-uda import mscmrseg "$SHARED/mscmrseg" --out data
$BIN/diffuse-uda import polyp "$SHARED/polyp" --out data

# Issues 2 + 3: every stage-1 method next to the bounds, quick profile, 3 seeds.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --seeds 3 -o bench/mscmr
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --seeds 3 -o bench/polyp

# ASCPlus ablation (paper Table 4), seed 0. M1 (= source-only) and M7 (= ascplus) are the main
# bench's seed-0 runs, linked rather than retrained.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ascplus-M2,ascplus-M3,ascplus-M4,ascplus-M5,ascplus-M6 \
    --seeds 1 -o bench/mscmr-ablation
mkdir -p bench/mscmr-ablation/ascplus-M1 bench/mscmr-ablation/ascplus-M7
ln -sfn "$PWD/bench/mscmr/source-only/seed0" bench/mscmr-ablation/ascplus-M1/seed0
ln -sfn "$PWD/bench/mscmr/ascplus/seed0" bench/mscmr-ablation/ascplus-M7/seed0
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --seeds 1 -o bench/mscmr-ablation \
    --methods ascplus-M1,ascplus-M2,ascplus-M3,ascplus-M4,ascplus-M5,ascplus-M6,ascplus-M7

# Pseudo-label quality of stage 1 (ascplus, each seed), scored after training against the target
# *training* labels by the evaluation module.
for task in mscmr:Dataset502_MSCMR_LGE polyp:Dataset512_CVCClinicDB; do
  name=${task%%:*}; ds=${task##*:}
  for seed in 0 1 2; do
    for m in ascplus pseudo-label; do
      run=bench/$name/$m/seed$seed
      $BIN/diffuse-uda pseudolabel --run "$run" -o "$run/pseudolabels"
      $BIN/diffuse-uda evaluate -p "$run/pseudolabels/labelsTr" -r "data/$ds" --split Tr -o "$run/pseudolabel_quality"
    done
  done
done

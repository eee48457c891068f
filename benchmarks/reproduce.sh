#!/usr/bin/env bash
# Every number in BENCHMARKS.md comes from these commands (CPU, 2 cores; one torch thread per
# process because three benches ran side by side: OMP_NUM_THREADS=1).
# Usage: bash benchmarks/reproduce.sh [path/to/shared/data]
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared/data}
BIN=.venv/bin
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# Before session 10 the entry `glua` trained what `glua-shared-budget` trains now (its style stage inside
# training.iterations); the earlier sessions' commands below name that entry, so they rerun what was measured.

$BIN/diffuse-uda import mscmrseg "$SHARED/mscmrseg" --out data
$BIN/diffuse-uda import polyp "$SHARED/polyp" --out data

# Issues 2 + 3, quick profile (2D 64 px, 2000 steps). Finished runs are always reused (linked), never
# retrained: (1) every stage-1 method, seed 0; (2) the bounds with 3 seeds (bench/NAME-bounds);
# (3) ascplus, fda and pseudo-label with 3 seeds; (4) one table over all runs.
for t in mscmr:mscmr-bssfp2lge polyp:polyp-kvasir2cvc; do
  name=${t%%:*}; task=${t##*:}
  $BIN/diffuse-uda bench -t "$task" --seeds 1 -o "bench/$name"
  for m in source-only target-supervised; do
    mkdir -p "bench/$name-bounds/$m"; ln -sfn "$PWD/bench/$name/$m/seed0" "bench/$name-bounds/$m/seed0"
  done
  $BIN/diffuse-uda bench -t "$task" --methods source-only,target-supervised --seeds 3 -o "bench/$name-bounds"
  for m in source-only target-supervised; do
    for s in 1 2; do ln -sfn "$PWD/bench/$name-bounds/$m/seed$s" "bench/$name/$m/seed$s"; done
  done
  $BIN/diffuse-uda bench -t "$task" --methods source-only,target-supervised,ascplus,fda,pseudo-label --seeds 3 \
      -o "bench/$name"
  $BIN/python benchmarks/collect_bench.py "bench/$name" "$task" --data-root data \
      --methods source-only,target-supervised,fda,pseudo-label,mean-teacher,cutmix,asc,ascplus
done
# Polyp diagnosis: ascplus without the adaptive beta.
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus --seeds 1 -o bench/polyp-diag-fixedbeta \
    --set method.adaptive_beta=false

# ASCPlus ablation (paper Table 4), seed 0. M1 (= source-only) and M7 (= ascplus) are the main
# bench's seed-0 runs, linked rather than retrained.
mkdir -p bench/mscmr-ablation/ascplus-M1 bench/mscmr-ablation/ascplus-M7
ln -sfn "$PWD/bench/mscmr/source-only/seed0" bench/mscmr-ablation/ascplus-M1/seed0
ln -sfn "$PWD/bench/mscmr/ascplus/seed0" bench/mscmr-ablation/ascplus-M7/seed0
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --seeds 1 -o bench/mscmr-ablation \
    --methods ascplus-M2,ascplus-M3,ascplus-M4,ascplus-M5,ascplus-M6
$BIN/python benchmarks/collect_bench.py bench/mscmr-ablation mscmr-bssfp2lge --data-root data \
    --methods ascplus-M1,ascplus-M2,ascplus-M3,ascplus-M4,ascplus-M5,ascplus-M6,ascplus-M7

# Pseudo-label quality (ascplus and pseudo-label, seed 0), scored after training against the target
# *training* labels by the evaluation module.
for t in mscmr:Dataset502_MSCMR_LGE polyp:Dataset512_CVCClinicDB; do
  name=${t%%:*}; ds=${t##*:}
  for m in ascplus pseudo-label source-only; do
    run=bench/$name/$m/seed0
    $BIN/diffuse-uda pseudolabel --run "$run" -o "$run/pseudolabels"
    $BIN/diffuse-uda evaluate -p "$run/pseudolabels/labelsTr" -r "data/$ds" --split Tr -o "$run/pseudolabel_quality"
  done
done

# The demo (wall time on 2 cores, default threads).
/usr/bin/time -v $BIN/diffuse-uda demo --out demo_output

# ---- Session 2 ----------------------------------------------------------------------------------
# Issue 3: the remaining stage-1 methods with 3 seeds (seed 0 is reused).
for t in mscmr:mscmr-bssfp2lge polyp:polyp-kvasir2cvc; do
  name=${t%%:*}; task=${t##*:}
  $BIN/diffuse-uda bench -t "$task" --methods mean-teacher,cutmix,asc --seeds 3 -o "bench/$name"
done

# Issue 4: deformation speed, generator fidelity per sampler (needs the MS-CMRSeg pipeline run below
# for its generator), generator memory.
$BIN/python benchmarks/bench_deformation.py --out bench/deformation.json
$BIN/python benchmarks/bench_diffusion_memory.py --profiles quick:2 paper:2 paper:3 --out bench/diffusion_memory.json

# Issue 5: the pipeline as a bench entry (stage 1 = the bench's ascplus run of the same seed), and
# the Table-3 rows that fitted in the session (rows share identical stages).
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods diffuse-uda --seeds 1 -o bench/mscmr
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods diffuse-uda --seeds 1 -o bench/polyp
$BIN/python benchmarks/bench_synthesis.py --generator bench/mscmr/diffuse-uda/seed0/3_diffusion/diffusion_last.pt \
    --segmenter bench/mscmr/target-supervised/seed0 --masks bench/mscmr/diffuse-uda/seed0/2_pseudolabels \
    --samplers ddpm:250 ddim:50 ddim:25 ddim:10 --n 32 --out bench/synthesis_fidelity.json
$BIN/python benchmarks/bench_synthesis.py --generator bench/polyp/diffuse-uda/seed0/3_diffusion/diffusion_last.pt \
    --segmenter bench/polyp/target-supervised/seed0 --masks bench/polyp/diffuse-uda/seed0/2_pseudolabels \
    --samplers ddim:25 --n 32 --out bench/synthesis_fidelity_polyp.json
for m in M6 M2 M3 M4 M5; do
  $BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods diffuse-uda-$m --seeds 1 -o bench/mscmr
done
$BIN/diffuse-uda report bench/mscmr/source-only/seed0 bench/mscmr/ascplus/seed0 \
    bench/mscmr/diffuse-uda/seed0/5_ascplus_synth bench/mscmr/target-supervised/seed0 -o bench/mscmr-report

# Issue 6: comparators, seed 0 (HEAL reuses the bench's source-only run).
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods heal-HD,heal-HD-EGS,glua-shared-budget,ad --seeds 1 -o bench/polyp
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ad,heal-HD,heal --seeds 1 -o bench/mscmr

# Seed-0 tables over every method (links to the seed-0 runs), then the tables.
for t in mscmr:mscmr-bssfp2lge polyp:polyp-kvasir2cvc; do
  name=${t%%:*}; task=${t##*:}
  rm -rf "bench/$name-seed0"; mkdir -p "bench/$name-seed0"
  for run in bench/$name/*/seed0; do
    m=$(basename "$(dirname "$run")"); [ "$m" = heal-source-generator ] && continue
    mkdir -p "bench/$name-seed0/$m"; ln -sfn "$PWD/$run" "bench/$name-seed0/$m/seed0"
  done
  $BIN/python benchmarks/collect_bench.py "bench/$name-seed0" "$task" --data-root data
done

# ---- Session 3 ----------------------------------------------------------------------------------
# A fresh checkout (no bench/ left from sessions 1-2). Seed 0 of the bounds, ascplus, the pipeline and
# the HEAL rows, then GLUA and A&D (after their fixes: GLUA's segmenter schedule, A&D's Gumbel step),
# HEAL in the reverse polyp direction, then seeds 1-2 of the rows the pipeline claim rests on. Two of
# these ran side by side, one per core (OMP_NUM_THREADS=1). On the one-class polyp tasks `heal` is
# `heal-HD-EGS` (size-aware fusion needs two or more classes), so only the latter is run there.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods source-only,target-supervised,ascplus,diffuse-uda,heal-HD,heal-HD-EGS,heal \
    --seeds 1 -o bench/mscmr
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods source-only,target-supervised,ascplus,diffuse-uda,heal-HD,heal-HD-EGS \
    --seeds 1 -o bench/polyp
for t in mscmr:mscmr-bssfp2lge polyp:polyp-kvasir2cvc; do
  name=${t%%:*}; task=${t##*:}
  $BIN/diffuse-uda bench -t "$task" --methods glua-shared-budget,ad --seeds 1 -o "bench/$name"
done
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods source-only,heal-HD,heal-HD-EGS --seeds 1 -o bench/polyp-cvc2kvasir
# Seeds 1-2 on MS-CMRSeg only (polyp seeds 1-2 did not fit). In the session this ran as seed 1
# (`--methods ascplus,diffuse-uda --seeds 2`, then the bounds) on one core and seed 2 (the same four
# rows through `pipeline.bench.run_bench(..., seeds=[2])`) beside it; runs are deterministic, so the
# one command below gives the same folders.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods source-only,target-supervised,ascplus,diffuse-uda --seeds 3 -o bench/mscmr
$BIN/python benchmarks/collect_bench.py bench/mscmr mscmr-bssfp2lge --data-root data \
    --methods source-only,target-supervised,ascplus,diffuse-uda,heal-HD,heal-HD-EGS,heal,glua-shared-budget,ad
$BIN/python benchmarks/collect_bench.py bench/polyp polyp-kvasir2cvc --data-root data \
    --methods source-only,target-supervised,ascplus,diffuse-uda,heal-HD,heal-HD-EGS,glua-shared-budget,ad
$BIN/python benchmarks/collect_bench.py bench/polyp-cvc2kvasir polyp-cvc2kvasir --data-root data \
    --methods source-only,heal-HD,heal-HD-EGS
# Synthetic fidelity of this session's generators (DDIM-25; the oracle of each task segments them).
for name in mscmr polyp; do
  $BIN/python benchmarks/bench_synthesis.py --generator bench/$name/diffuse-uda/seed0/3_diffusion/diffusion_last.pt \
      --segmenter bench/$name/target-supervised/seed0 --masks bench/$name/diffuse-uda/seed0/2_pseudolabels \
      --samplers ddim:25 --n 32 --out bench/synthesis_fidelity_${name}_s3.json
done
# Fidelity of HEAL's source-only generators (source masks; the source-only segmenter scores them).
$BIN/python benchmarks/bench_synthesis.py --generator bench/polyp/heal-source-generator/seed0/diffusion_last.pt \
    --segmenter bench/polyp/source-only/seed0 --masks data/Dataset511_KvasirSEG --samplers ddim:50 --n 32 \
    --out bench/synthesis_fidelity_polyp_heal_generator.json
$BIN/python benchmarks/bench_synthesis.py --generator bench/mscmr/heal-source-generator/seed0/diffusion_last.pt \
    --segmenter bench/mscmr/source-only/seed0 --masks data/Dataset501_MSCMR_bSSFP --samplers ddim:50 --n 32 \
    --out bench/synthesis_fidelity_mscmr_heal_generator.json
# Predicted / reference area on the test split (HD's effect on the source-only predictions).
$BIN/python benchmarks/prediction_area.py data/Dataset502_MSCMR_LGE bench/mscmr/source-only/seed0 bench/mscmr/heal-HD/seed0
$BIN/python benchmarks/prediction_area.py data/Dataset512_CVCClinicDB bench/polyp/source-only/seed0 bench/polyp/heal-HD/seed0

# ---- Session 4 ----------------------------------------------------------------------------------
# A fresh checkout again: the seed-0 rows the new tables need first (identical to session 3), then
# the Table-3 rows (they share stage 1, the pseudo-labels and, where the settings agree, the
# generator with each other and with `diffuse-uda`), the A&D ablation with 3 seeds, and polyp seeds
# 0-2 of the rows the pipeline claim rests on. In the session two of these ran side by side, one per
# core, with seeds 1 and 2 through `pipeline.bench.run_bench(..., seeds=[1])` / `[2]`; runs are
# deterministic, so `--seeds 3` gives the same folders.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods source-only,target-supervised,ascplus,diffuse-uda --seeds 1 -o bench/mscmr
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --seeds 1 -o bench/mscmr \
    --methods diffuse-uda-M1,diffuse-uda-M2,diffuse-uda-M3,diffuse-uda-M4,diffuse-uda-M5,diffuse-uda-M6
rm -rf bench/mscmr-table3
for m in source-only target-supervised ascplus diffuse-uda diffuse-uda-M1 diffuse-uda-M2 diffuse-uda-M3 \
         diffuse-uda-M4 diffuse-uda-M5 diffuse-uda-M6; do
  mkdir -p "bench/mscmr-table3/$m"; ln -sfn "$PWD/bench/mscmr/$m/seed0" "bench/mscmr-table3/$m/seed0"
done
$BIN/python benchmarks/collect_bench.py bench/mscmr-table3 mscmr-bssfp2lge --data-root data \
    --methods source-only,target-supervised,ascplus,diffuse-uda-M1,diffuse-uda-M2,diffuse-uda-M3,diffuse-uda-M4,diffuse-uda-M5,diffuse-uda-M6,diffuse-uda
$BIN/python benchmarks/paired_test.py bench/mscmr/ascplus/seed0 bench/mscmr/diffuse-uda-M*/seed0/5_ascplus_synth \
    bench/mscmr/diffuse-uda/seed0/5_ascplus_synth
# A&D and its component ablation (paper Table 6), 3 seeds.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ad,ad-no-SVDA,ad-no-diffusion,ad-no-DRS,ad-no-RS --seeds 3 -o bench/mscmr-ad
for s in 0 1 2; do
  $BIN/python benchmarks/paired_test.py bench/mscmr-ad/ad/seed$s bench/mscmr-ad/ad-no-*/seed$s
done
# Kvasir -> CVC, 3 seeds of the bounds, ascplus and the pipeline.
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods source-only,target-supervised,ascplus,diffuse-uda --seeds 3 -o bench/polyp
# GLUA, 3 seeds on MS-CMRSeg.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods glua-shared-budget --seeds 3 -o bench/mscmr-glua

# ---- Session 5 ----------------------------------------------------------------------------------
# A fresh checkout. The new stage 1 (issue 13: appearance transfers, the label-free choice, source-only-dg)
# and the domain-guided generator (issue 14) on the four tasks, seed 0, one bench per task. `ascplus`
# trains the five ascplus-<appearance> candidates (shared with those rows) and keeps the label-free pick.
# In the session two benches ran side by side, one torch thread each, with --data-root on the imported data.
$BIN/diffuse-uda import abdominal "$SHARED/abdominal" --out data
# the embedded demo task's datasets (seed 0) under data/, as `diffuse-uda demo` builds them for itself
$BIN/python -c "from pathlib import Path; from diffuse_uda.data.demo_brain import DemoBrainConfig, generate_demo_brain; generate_demo_brain(Path('data'), DemoBrainConfig(seed=0))"
ROWS=source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus,diffuse-uda
for task in abdominal-ct2mr mscmr-bssfp2lge demo-brain-t1t2 polyp-kvasir2cvc; do
  $BIN/diffuse-uda bench -t "$task" --methods "$ROWS" --seeds 1 -o "bench/$task" --data-root data
  # post hoc, never fed back: the target pseudo-labels of every stage-1 model against the target training labels
  DIFFUSE_UDA_DATA=data $BIN/python benchmarks/pseudolabel_quality.py "bench/$task" --out "pseudolabels/$task" \
      --json "bench/$task/pseudolabel_quality.json"
  $BIN/python benchmarks/export_results.py "bench/$task" "benchmarks/results/$task"
  # the p-values quoted: diffuse-uda against its stage 1 and against source-only-dg
  for ref in ascplus source-only-dg; do
    $BIN/python benchmarks/paired_test.py "bench/$task/$ref/seed0" "bench/$task/diffuse-uda/seed0/5_ascplus_synth"
  done
done
# Few-step sampling of the seed-0 domain-guided generators (issue 14).
for t in mscmr-bssfp2lge:Dataset501_MSCMR_bSSFP:Dataset502_MSCMR_LGE abdominal-ct2mr:Dataset521_AbdomenCT:Dataset522_AbdomenMR; do
  IFS=: read -r task src tgt <<< "$t"
  $BIN/python benchmarks/bench_synthesis.py --generator "bench/$task/diffuse-uda/seed0/3_diffusion/diffusion_last.pt" \
      --segmenter "bench/$task/target-supervised/seed0" --masks "bench/$task/diffuse-uda/seed0/2_pseudolabels" \
      --stage1 "bench/$task/ascplus/seed0" --source "data/$src" --target "data/$tgt" \
      --samplers ddpm:250 ddim:25:1:1 ddim:25:1:0 dpm++2m:20 dpm++2m-sde:25 --n 32 --seed 1 \
      --out "benchmarks/results/synthesis/${task}_seed0_generator.json"
done
# Issue 15: generator step memory with and without gradient checkpointing.
$BIN/python benchmarks/bench_diffusion_memory.py --profiles quick:2 paper:2 paper:3@48 paper:3@64 --what step \
    --out benchmarks/results/generator-memory/step_memory.json

# ---- Session 6 ----------------------------------------------------------------------------------
# Seeds 1 and 2 of the MS-CMRSeg rows of issues 13/14 (seed 0 from session 5 is reused: same settings),
# split over two processes with --seed-list, then one table over the three seeds.
ROWS=source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus,diffuse-uda
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods "$ROWS" --seed-list 1 -o bench/mscmr-bssfp2lge --data-root data &
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods "$ROWS" --seed-list 2 -o bench/mscmr-bssfp2lge --data-root data
wait
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods "$ROWS" --seeds 3 -o bench/mscmr-bssfp2lge --data-root data
DIFFUSE_UDA_DATA=data $BIN/python benchmarks/pseudolabel_quality.py bench/mscmr-bssfp2lge --out pseudolabels/mscmr-bssfp2lge \
    --seeds 0 1 2 --json bench/mscmr-bssfp2lge/pseudolabel_quality.json
$BIN/python benchmarks/export_results.py bench/mscmr-bssfp2lge benchmarks/results/mscmr-bssfp2lge
for seed in 0 1 2; do
  for ref in ascplus source-only-dg; do
    $BIN/python benchmarks/paired_test.py "bench/mscmr-bssfp2lge/$ref/seed$seed" \
        "bench/mscmr-bssfp2lge/diffuse-uda/seed$seed/5_ascplus_synth"
  done
done
# Issue 18. A&D with its decoders from one initialisation, 3 seeds; the old behaviour at the seed that lost the LV;
# what each decoder predicts (label-free).
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ad --seeds 3 -o bench/mscmr-ad --data-root data
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ad-independent-init --seed-list 2 -o bench/mscmr-ad --data-root data
$BIN/python benchmarks/export_results.py bench/mscmr-ad benchmarks/results/mscmr-ad
$BIN/python benchmarks/ad_decoders.py bench/mscmr-ad/ad/seed2 bench/mscmr-ad/ad-independent-init/seed2 \
    --json benchmarks/results/ad-decoders/mscmr_seed2.json
# HEAL: the HD stage alone with the paper's and the calibrated thresholds (seed-0 source-only models), then the
# calibrated rows end to end.
$BIN/python benchmarks/heal_thresholds.py bench/mscmr-bssfp2lge bench/polyp-kvasir2cvc bench/abdominal-ct2mr \
    bench/demo-brain-t1t2 --out heal-thresholds --json benchmarks/results/heal-thresholds/hd_seed0.json
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods heal-HD-calibrated,heal-calibrated --seeds 1 -o bench/mscmr-heal --data-root data
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods heal-HD-calibrated,heal-HD-EGS-calibrated --seeds 1 -o bench/polyp-heal --data-root data
# The luminance-only remap for photos (tested, not adopted): source-only-dg on Kvasir -> CVC.
$BIN/diffuse-uda train -m source-only-dg -t polyp-kvasir2cvc --seed 0 -o bench/polyp-exp/dg-luminance/seed0 --data-root data \
    --set 'method.appearance_options={"members": ["bezier", "gin"], "member_options": {"bezier": {"location_scale": true, "luminance": true}, "gin": {"location_scale": true, "luminance": true}}}'
$BIN/diffuse-uda predict --model bench/polyp-exp/dg-luminance/seed0 -o bench/polyp-exp/dg-luminance/seed0/predictions_target_test
$BIN/diffuse-uda evaluate -p bench/polyp-exp/dg-luminance/seed0/predictions_target_test -r data/Dataset512_CVCClinicDB \
    -o bench/polyp-exp/dg-luminance/seed0/evaluation
# Issue 15: one process against two gloo processes (run on an idle machine).
$BIN/python benchmarks/bench_distributed.py --modes 1x1 2x1 1x2 --steps 40 --batch 8 --out benchmarks/results/distributed/wall.json

# ---------------------------------------------------------------- Session 7
# GPU check (on a CUDA machine, from the repository root; see the script's header).
# OUT=gpu-check bash benchmarks/gpu_check.sh
# Issue 13/14: seeds 1 and 2 of the session-5 rows on abdominal CT -> MR and the demo (one process per seed).
ROWS=source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus,diffuse-uda
for task in abdominal-ct2mr demo-brain-t1t2; do
  for seed in 1 2; do
    $BIN/diffuse-uda bench -t $task --methods $ROWS --seed-list $seed -o bench/$task --data-root data
  done
  $BIN/diffuse-uda bench -t $task --methods $ROWS --seeds 3 -o bench/$task --data-root data  # the 3-seed table (reuses)
  DIFFUSE_UDA_DATA=data $BIN/python benchmarks/pseudolabel_quality.py bench/$task --out pseudolabels/$task \
      --seeds 0 1 2 --json bench/$task/pseudolabel_quality.json
  $BIN/python benchmarks/export_results.py bench/$task benchmarks/results/$task
done
# Issue 15: the same task in 2D and 3D (seed 0). The 3D rows ran at 400 updates (quick3d's value then).
$BIN/diffuse-uda bench -t abdominal-ct2mr --profile quick3d --set training.iterations=400 --set training.checkpoint_every=100 \
    --methods source-only,target-supervised,ascplus-paper --seed-list 0 -o bench/abdominal-ct2mr-3d --data-root data
$BIN/diffuse-uda run -t abdominal-ct2mr --profile quick -o bench/abdominal-ct2mr-2d-fourier/diffuse-uda-fourier/seed0 \
    --data-root data --set segmentation.method.appearance=fourier --set stage1_run=bench/abdominal-ct2mr/ascplus-paper/seed0
# quick3d at its current length (1200 updates): the oracle (train + predict + evaluate) and source-only.
$BIN/diffuse-uda train -m target-supervised -t abdominal-ct2mr --profile quick3d --seed 0 -o bench/exp3d/oracle-1200 --data-root data
$BIN/diffuse-uda predict --model bench/exp3d/oracle-1200 -o bench/exp3d/oracle-1200/predictions_target_test
$BIN/diffuse-uda evaluate -p bench/exp3d/oracle-1200/predictions_target_test -r data/Dataset522_AbdomenMR \
    -o bench/exp3d/oracle-1200/evaluation
$BIN/diffuse-uda bench -t abdominal-ct2mr --profile quick3d --methods source-only --seed-list 0 -o bench/abdominal-ct2mr-3d-1200 --data-root data
for d in abdominal-ct2mr-3d abdominal-ct2mr-2d-fourier; do $BIN/python benchmarks/export_results.py bench/$d benchmarks/results/$d; done
R=benchmarks/results
$BIN/python benchmarks/dims_table.py --2d $R/abdominal-ct2mr $R/abdominal-ct2mr-2d-fourier/diffuse-uda-fourier/seed0 --3d $R/abdominal-ct2mr-3d
# Issue 18: A&D and GLUA on abdominal CT -> MR, seed 0 (copy bench.md/json to comparators_seed0.*, then re-tabulate the
# 3-seed rows above before exporting, since a bench call's table covers that call's rows only).
$BIN/diffuse-uda bench -t abdominal-ct2mr --methods source-only,ad,glua-shared-budget --seed-list 0 -o bench/abdominal-ct2mr --data-root data
# Which classes those models predict on their own training images (the left-kidney statements).
$BIN/diffuse-uda train -m target-supervised -t abdominal-ct2mr --set training.iterations=400 -o bench/exp3d/oracle2d-400 --data-root data
$BIN/python benchmarks/class_presence.py bench/abdominal-ct2mr-3d/target-supervised/seed0 data/Dataset522_AbdomenMR --split Tr
$BIN/python benchmarks/class_presence.py bench/abdominal-ct2mr-3d-1200/source-only/seed0 data/Dataset521_AbdomenCT --split Tr
$BIN/python benchmarks/class_presence.py bench/exp3d/oracle2d-400 data/Dataset522_AbdomenMR --split Tr

# ---------------------------------------------------------------- Session 8
# Issues 13/14: seeds 1-2 of the embedded demo (seed 0 and the seed-1 bounds reused from earlier sessions),
# two processes side by side, then the 3-seed table, pseudo-label quality and the paired tests.
ROWS=source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus,diffuse-uda
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods $ROWS --seed-list 1 -o bench/demo-brain-t1t2 --data-root data &
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods $ROWS --seed-list 2 -o bench/demo-brain-t1t2 --data-root data
wait
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods $ROWS --seeds 3 -o bench/demo-brain-t1t2 --data-root data
DIFFUSE_UDA_DATA=data $BIN/python benchmarks/pseudolabel_quality.py bench/demo-brain-t1t2 --out pseudolabels/demo-brain-t1t2 \
    --seeds 0 1 2 --json bench/demo-brain-t1t2/pseudolabel_quality.json
for seed in 0 1 2; do
  for ref in ascplus source-only-dg ascplus-bezier; do
    $BIN/python benchmarks/paired_test.py bench/demo-brain-t1t2/$ref/seed$seed bench/demo-brain-t1t2/diffuse-uda/seed$seed/5_ascplus_synth
  done
  $BIN/python benchmarks/paired_test.py bench/demo-brain-t1t2/source-only-dg/seed$seed bench/demo-brain-t1t2/ascplus/seed$seed
done
# Post hoc: ascplus's candidates averaged instead of one chosen, and the agreement vote without `mix`.
for t in abdominal-ct2mr:"0 1 2" mscmr-bssfp2lge:"0 1 2" demo-brain-t1t2:"0 1 2" polyp-kvasir2cvc:"0 1 2"; do
  IFS=: read -r task seeds <<< "$t"
  $BIN/python benchmarks/candidate_ensemble.py bench/$task --seeds $seeds --json bench/$task/candidate_ensemble.json
done
$BIN/python benchmarks/export_results.py bench/demo-brain-t1t2 benchmarks/results/demo-brain-t1t2
# Issues 13/14: seeds 1-2 of the Kvasir -> CVC rows; the 3-seed table is saved as three_seeds.* so that bench.*
# keeps session 5's seed-0 table that its section quotes.
ROWS=source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus-fourier-luminance,ascplus,diffuse-uda
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods $ROWS --seed-list 1 -o bench/polyp-kvasir2cvc --data-root data &
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods $ROWS --seed-list 2 -o bench/polyp-kvasir2cvc --data-root data
wait
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods $ROWS --seeds 3 -o bench/polyp-kvasir2cvc --data-root data
DIFFUSE_UDA_DATA=data $BIN/python benchmarks/pseudolabel_quality.py bench/polyp-kvasir2cvc --out pseudolabels/polyp-kvasir2cvc \
    --seeds 0 1 2 --json bench/polyp-kvasir2cvc/pseudolabel_quality.json
$BIN/python benchmarks/candidate_ensemble.py bench/polyp-kvasir2cvc --seeds 0 1 2 --json bench/polyp-kvasir2cvc/candidate_ensemble.json
for seed in 0 1 2; do
  for ref in source-only source-only-dg; do
    $BIN/python benchmarks/paired_test.py bench/polyp-kvasir2cvc/$ref/seed$seed bench/polyp-kvasir2cvc/ascplus/seed$seed
  done
  for ref in ascplus source-only source-only-dg; do
    $BIN/python benchmarks/paired_test.py bench/polyp-kvasir2cvc/$ref/seed$seed bench/polyp-kvasir2cvc/diffuse-uda/seed$seed/5_ascplus_synth
  done
done
for e in md json csv; do cp bench/polyp-kvasir2cvc/bench.$e bench/polyp-kvasir2cvc/three_seeds.$e; done
$BIN/python benchmarks/export_results.py bench/polyp-kvasir2cvc benchmarks/results/polyp-kvasir2cvc
# ---------------------------------------------------------------- Session 9
# Issue 18: A&D and GLUA seeds 1-2 on abdominal CT -> MR and Kvasir -> CVC, GLUA seed 0 on polyps (A&D's seed 0
# on polyps is session 6's, results/polyp-ad). The rows join each task's 3-seed table through collect_bench.
$BIN/diffuse-uda bench -t abdominal-ct2mr --methods ad,glua-shared-budget --seed-list 1,2 -o bench/abdominal-ct2mr --data-root data
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ad,glua-shared-budget --seed-list 1,2 -o bench/polyp-kvasir2cvc --data-root data
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods glua-shared-budget --seed-list 0 -o bench/polyp-kvasir2cvc --data-root data
$BIN/python benchmarks/export_results.py bench/abdominal-ct2mr benchmarks/results/abdominal-ct2mr
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus,diffuse-uda,ad,glua-shared-budget
# (polyps: session 5's seed-0 bench.* were renamed seed0_session5.*; the 3-seed table becomes bench.*)
$BIN/python benchmarks/export_results.py bench/polyp-kvasir2cvc benchmarks/results/polyp-kvasir2cvc
cp -r benchmarks/results/polyp-ad/ad/seed0 benchmarks/results/polyp-kvasir2cvc/ad/
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus-fourier-luminance,ascplus,diffuse-uda,ad,glua-shared-budget
for t in abdominal-ct2mr polyp-kvasir2cvc; do for m in ad glua-shared-budget; do for s in 0 1 2; do for ref in source-only source-only-dg; do
  $BIN/python benchmarks/paired_test.py benchmarks/results/$t/$ref/seed$s benchmarks/results/$t/$m/seed$s
done; done; done; done
$BIN/python benchmarks/class_presence.py bench/abdominal-ct2mr/glua-shared-budget/seed1 data/Dataset521_AbdomenCT --split Tr
$BIN/python benchmarks/class_presence.py bench/abdominal-ct2mr/ad/seed1 data/Dataset521_AbdomenCT --split Tr
# MS-CMRSeg: GLUA's 3 seeds (not committed in session 4) and A&D's from session 6 into the task's table.
for s in 0 1 2; do $BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods glua-shared-budget --seed-list $s -o bench/mscmr-bssfp2lge --data-root data & done; wait
$BIN/python benchmarks/export_results.py bench/mscmr-bssfp2lge benchmarks/results/mscmr-bssfp2lge
cp -r benchmarks/results/mscmr-ad/ad benchmarks/results/mscmr-bssfp2lge/
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix,ascplus,diffuse-uda,ad,glua-shared-budget
# GLUA with the segmentation updates of the other rows (2000 after 1333 style-transfer updates), seed 0.
$BIN/diffuse-uda bench -t abdominal-ct2mr --methods glua-shared-budget --seed-list 0 --set training.iterations=3334 \
    -o bench/abdominal-glua-seg2000 --data-root data
$BIN/python benchmarks/export_results.py bench/abdominal-glua-seg2000 benchmarks/results/abdominal-glua-seg2000
# Issue 14: the polyp generator for 6000 updates; its checkpoints at 2000 / 4000 / 6000 updates were copied aside
# while it trained (diffusion_last.pt is rewritten every checkpoint_every updates).
$BIN/diffuse-uda train -m target-supervised -t polyp-kvasir2cvc --seed 0 -o bench/polyp-kvasir2cvc/target-supervised/seed0 --data-root data
$BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/polyp-gen/long6000/seed0 --data-root data \
    --set segmentation.method.appearance=gin --set diffusion.iterations=6000 --set diffusion.checkpoint_every=1000
for n in 2000 4000 6000; do
  $BIN/python benchmarks/bench_synthesis.py --generator bench/polyp-gen/snapshots/step$n.pt \
      --segmenter bench/polyp-kvasir2cvc/target-supervised/seed0 --masks bench/polyp-gen/long6000/seed0/2_pseudolabels \
      --stage1 bench/polyp-gen/long6000/seed0/1_ascplus --source data/Dataset511_KvasirSEG --target data/Dataset512_CVCClinicDB \
      --samplers ddim:25:1:1 ddim:25:2:1 --n 32 --seed 1 --out benchmarks/results/synthesis/polyp-generator-updates/step$n.json
done
$BIN/python benchmarks/export_results.py bench/polyp-gen/long6000 benchmarks/results/polyp-generator-6000
$BIN/python benchmarks/paired_test.py benchmarks/results/polyp-generator-6000/seed0/1_ascplus benchmarks/results/polyp-generator-6000/seed0/5_ascplus_synth
# The README's main command, timed: /usr/bin/time -v make demo (from a clean clone).
# Issue 15: the 3D pipeline on real data (stage 1 = the paper's ASCPlus at 400 updates, as the 3D table's rows;
# guidance fixed at 1: the label-free choice over 32 volumes ran for over an hour and was stopped, and now scores 8).
$BIN/diffuse-uda run -t abdominal-ct2mr --profile quick3d -o bench/abdominal-ct2mr-3d/diffuse-uda-fourier/seed0 --data-root data \
    --set segmentation.training.iterations=400 --set segmentation.training.checkpoint_every=100 \
    --set segmentation.method.appearance=fourier --set synthesis.guidance_scale=1.0
# One guided DDIM step of 16 volumes with the 3D generator (the cost that made the 3D guidance choice too slow):
$BIN/python -c "
import time, torch
from diffuse_uda.diffusion.trainer import load_diffusion
from diffuse_uda.diffusion.samplers import sample_images
m, cfg, info = load_diffusion('bench/abdominal-ct2mr-3d/diffuse-uda-fourier/seed0/3_diffusion/diffusion_last.pt', torch.device('cpu'))
t = time.perf_counter()
sample_images(m, torch.zeros((16, *cfg.image_size), dtype=torch.long), 5, info['image_channels'], sampler='ddim', steps=1,
              num_train_timesteps=cfg.num_train_timesteps, schedule=cfg.schedule, domain=1, guidance_scale=2.0, eta=1.0)
print('one guided step, 16 volumes:', time.perf_counter() - t, 's')"
$BIN/python benchmarks/export_results.py bench/abdominal-ct2mr-3d/diffuse-uda-fourier benchmarks/results/abdominal-ct2mr-3d/diffuse-uda-fourier
R=benchmarks/results
$BIN/python benchmarks/dims_table.py --2d $R/abdominal-ct2mr $R/abdominal-ct2mr-2d-fourier/diffuse-uda-fourier/seed0 \
    --3d $R/abdominal-ct2mr-3d $R/abdominal-ct2mr-3d/diffuse-uda-fourier/seed0
# ---------------------------------------------------------------- Session 10
# Issue 18: GLUA with its style stage on top of the segmenter's 2000 updates (the new default `glua`), 3 seeds on
# four tasks; CVC -> Kvasir's comparators and heal-HD-calibrated (which retrains/reuses the bench's source-only)
# with 3 seeds. Seeds ran as separate processes into one folder per task (runs are deterministic).
for t in abdominal-ct2mr mscmr-bssfp2lge polyp-kvasir2cvc; do
  $BIN/diffuse-uda bench -t $t --methods glua --seed-list 0,1,2 -o bench/s10/$t --data-root data
done
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods source-only,heal-HD-calibrated --seed-list 0,1,2 -o bench/s10/polyp-kvasir2cvc --data-root data
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods source-only,heal-HD-calibrated,ad,target-supervised,glua,source-only-dg \
    --seed-list 0,1,2 -o bench/s10/polyp-cvc2kvasir --data-root data
$BIN/diffuse-uda bench -t abdominal-ct2mr --methods source-only,heal-HD-calibrated --seed-list 0,1,2 -o bench/s10/abdominal-heal --data-root data
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods source-only,heal-HD-calibrated --seed-list 0,1,2 -o bench/s10/mscmr-heal --data-root data
# glua-shared-budget reproduces the earlier `glua` runs: per-case table identical to the committed seed 0.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods glua-shared-budget --seed-list 0 -o bench/s10/mscmr-shared-check --data-root data
cmp bench/s10/mscmr-shared-check/glua-shared-budget/seed0/evaluation/per_case.csv \
    benchmarks/results/mscmr-bssfp2lge/glua-shared-budget/seed0/evaluation/per_case.csv
# Into the committed tables (the earlier glua runs were moved to <task>/glua-shared-budget with git mv; source-only
# reruns are identical to the committed ones, so only the new rows are copied).
for t in abdominal-ct2mr mscmr-bssfp2lge polyp-kvasir2cvc; do
  $BIN/python benchmarks/export_results.py bench/s10/$t /tmp/s10-$t && cp -r /tmp/s10-$t/glua benchmarks/results/$t/
done
cp -r /tmp/s10-polyp-kvasir2cvc/heal-HD-calibrated benchmarks/results/polyp-kvasir2cvc/
for p in abdominal-heal:abdominal-ct2mr mscmr-heal:mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s10/${p%%:*} /tmp/s10-${p%%:*} && cp -r /tmp/s10-${p%%:*}/heal-HD-calibrated benchmarks/results/${p##*:}/
done
$BIN/python benchmarks/export_results.py bench/s10/polyp-cvc2kvasir benchmarks/results/polyp-cvc2kvasir
ROWS=source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods $ROWS,ascplus,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $ROWS,ascplus,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $ROWS,ascplus-fourier-luminance,ascplus,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-cvc2kvasir polyp-cvc2kvasir --data-root data \
    --methods source-only,source-only-dg,target-supervised,ad,glua,heal-HD-calibrated
for t in abdominal-ct2mr mscmr-bssfp2lge polyp-kvasir2cvc polyp-cvc2kvasir; do for s in 0 1 2; do
  for pair in glua-shared-budget:glua source-only:glua source-only-dg:glua source-only:heal-HD-calibrated source-only:ad source-only-dg:ad; do
    [ -d benchmarks/results/$t/${pair%%:*}/seed$s ] && $BIN/python benchmarks/paired_test.py \
        benchmarks/results/$t/${pair%%:*}/seed$s benchmarks/results/$t/${pair##*:}/seed$s
  done
done; done
# A&D's component ablation with today's A&D (MS-CMRSeg, 3 seeds), joined to session 6's ad runs.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ad-no-SVDA,ad-no-diffusion,ad-no-DRS,ad-no-RS --seed-list 0,1,2 \
    -o bench/s10/mscmr-ad-ablation --data-root data
$BIN/python benchmarks/export_results.py bench/s10/mscmr-ad-ablation /tmp/s10-ad-ablation
for e in ad-no-SVDA ad-no-diffusion ad-no-DRS ad-no-RS; do cp -r /tmp/s10-ad-ablation/$e benchmarks/results/mscmr-ad/; done
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-ad mscmr-bssfp2lge --data-root data \
    --methods ad,ad-no-SVDA,ad-no-diffusion,ad-no-DRS,ad-no-RS,ad-independent-init
for s in 0 1 2; do for e in ad-no-SVDA ad-no-diffusion ad-no-DRS ad-no-RS; do
  $BIN/python benchmarks/paired_test.py benchmarks/results/mscmr-ad/ad/seed$s benchmarks/results/mscmr-ad/$e/seed$s
done; done
# GLUA's ablation row without the style transfer (MS-CMRSeg, 3 seeds), into the task's table.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods glua-no-style-transfer --seed-list 0,1,2 -o bench/s10/mscmr-glua-ablation --data-root data
$BIN/python benchmarks/export_results.py bench/s10/mscmr-glua-ablation /tmp/s10-glua-ablation
cp -r /tmp/s10-glua-ablation/glua-no-style-transfer benchmarks/results/mscmr-bssfp2lge/
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $ROWS,ascplus,diffuse-uda,ad,glua,glua-shared-budget,glua-no-style-transfer,heal-HD-calibrated
for s in 0 1 2; do $BIN/python benchmarks/paired_test.py benchmarks/results/mscmr-bssfp2lge/glua/seed$s \
    benchmarks/results/mscmr-bssfp2lge/glua-no-style-transfer/seed$s; done
# ---------------------------------------------------------------- Session 11
# Issue 18: HEAL in full (label-free thresholds) with 3 seeds on four tasks: `heal-calibrated` on the multi-class
# tasks, `heal-HD-EGS-calibrated` on the one-class polyp tasks (= HEAL there; SAF needs two classes). Each seed ran
# as its own process into the session-10 bench folders (their source-only runs are reused).
for s in 0 1 2; do
  $BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods source-only,heal-calibrated --seed-list $s -o bench/s10/mscmr-heal --data-root data
  $BIN/diffuse-uda bench -t abdominal-ct2mr --methods source-only,heal-calibrated --seed-list $s -o bench/s10/abdominal-heal --data-root data
  $BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods source-only,heal-HD-EGS-calibrated --seed-list $s -o bench/s10/polyp-kvasir2cvc --data-root data
  $BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods source-only,heal-HD-EGS-calibrated --seed-list $s -o bench/s10/polyp-cvc2kvasir --data-root data
done
# seed 0 reruns give per-case tables identical to session 6's committed runs:
cmp bench/s10/mscmr-heal/heal-calibrated/seed0/evaluation/per_case.csv \
    benchmarks/results/mscmr-heal/heal-calibrated/seed0/evaluation/per_case.csv
cmp bench/s10/polyp-kvasir2cvc/heal-HD-EGS-calibrated/seed0/evaluation/per_case.csv \
    benchmarks/results/polyp-heal/heal-HD-EGS-calibrated/seed0/evaluation/per_case.csv
for p in mscmr-heal:mscmr-bssfp2lge:heal-calibrated abdominal-heal:abdominal-ct2mr:heal-calibrated \
         polyp-kvasir2cvc:polyp-kvasir2cvc:heal-HD-EGS-calibrated polyp-cvc2kvasir:polyp-cvc2kvasir:heal-HD-EGS-calibrated; do
  IFS=: read b t e <<< "$p"
  $BIN/python benchmarks/export_results.py bench/s10/$b /tmp/s11-$b && cp -r /tmp/s11-$b/$e benchmarks/results/$t/
done
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods $ROWS,ascplus,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $ROWS,ascplus-fourier-luminance,ascplus,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-cvc2kvasir polyp-cvc2kvasir --data-root data \
    --methods source-only,source-only-dg,target-supervised,ad,glua,heal-HD-calibrated,heal-HD-EGS-calibrated
for p in abdominal-ct2mr:heal-calibrated mscmr-bssfp2lge:heal-calibrated polyp-kvasir2cvc:heal-HD-EGS-calibrated \
         polyp-cvc2kvasir:heal-HD-EGS-calibrated; do for s in 0 1 2; do for ref in source-only heal-HD-calibrated; do
  $BIN/python benchmarks/paired_test.py benchmarks/results/${p%%:*}/$ref/seed$s benchmarks/results/${p%%:*}/${p##*:}/seed$s
done; done; done
# GLUA's other two ablation rows (MS-CMRSeg, 3 seeds), into the task's table.
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods glua-no-local-alignment --seed-list 0,1,2 -o bench/s10/mscmr-glua-ablation --data-root data
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods glua-no-output-adversary --seed-list 0,1,2 -o bench/s10/mscmr-glua-ablation --data-root data
$BIN/python benchmarks/export_results.py bench/s10/mscmr-glua-ablation /tmp/s11-glua-ablation
cp -r /tmp/s11-glua-ablation/glua-no-local-alignment /tmp/s11-glua-ablation/glua-no-output-adversary benchmarks/results/mscmr-bssfp2lge/
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $ROWS,ascplus,diffuse-uda,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated
for e in glua-no-style-transfer glua-no-local-alignment glua-no-output-adversary; do for s in 0 1 2; do
  $BIN/python benchmarks/paired_test.py benchmarks/results/mscmr-bssfp2lge/glua/seed$s benchmarks/results/mscmr-bssfp2lge/$e/seed$s
done; done
# Issue 14: a wider polyp generator (channels 32-64-128 instead of 16-32-64; everything else as session 9's run, whose
# stage 1 and pseudo-labels it shares), scored like session 9's checkpoints, then the pipeline to the end.
$BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/polyp-gen/wide/seed0 --data-root data --set segmentation.method.appearance=gin \
    --set 'diffusion.channels=[32,64,128]' --set 'share_stages_with=[bench/polyp-gen/long6000/seed0]'
$BIN/python benchmarks/bench_synthesis.py --generator bench/polyp-gen/wide/seed0/3_diffusion/diffusion_last.pt \
    --segmenter bench/polyp-kvasir2cvc/target-supervised/seed0 --masks bench/polyp-gen/long6000/seed0/2_pseudolabels \
    --stage1 bench/polyp-gen/long6000/seed0/1_ascplus --source data/Dataset511_KvasirSEG --target data/Dataset512_CVCClinicDB \
    --samplers ddim:25:1:1 ddim:25:2:1 --n 32 --seed 1 \
    --out benchmarks/results/synthesis/polyp-generator-width/channels32-64-128_step2000.json
$BIN/python benchmarks/export_results.py bench/polyp-gen/wide benchmarks/results/polyp-generator-wide
cp bench/polyp-gen/wide/seed0/4_synthetic/gallery.png docs/figures/gallery_polyp-kvasir2cvc_wide-generator_seed0.png
$BIN/python benchmarks/paired_test.py benchmarks/results/polyp-generator-6000/seed0/1_ascplus benchmarks/results/polyp-generator-wide/seed0/5_ascplus_synth
$BIN/python benchmarks/paired_test.py benchmarks/results/polyp-generator-6000/seed0/5_ascplus_synth benchmarks/results/polyp-generator-wide/seed0/5_ascplus_synth

# ---------------------------------------------------------------- Session 12
# Issue 13. (a) Reverse validation as the appearance choice rule, seed 0 (run while it was briefly the default;
# now an option). The candidate rows are the committed ones (identical per_case.csv).
CAND=ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/diffuse-uda bench -t $t --methods $CAND,ascplus --set method.appearance_rule=reverse-validation --seed-list 0 \
      -o bench/s12-reverse/$t --data-root data
  # Committed: the table, the ascplus row (its choice record holds every reverse and agreement score) and the
  # reverse models' score records; the candidate rows are the task's committed ones.
  B=bench/s12-reverse/$t; D=benchmarks/results/$t/reverse_validation_seed0
  mkdir -p $D/ascplus/seed0/evaluation
  cp $B/bench.md $B/bench.json $B/ascplus/seed0/appearance_choice.json $D/
  cp $B/ascplus/seed0/run.json $D/ascplus/seed0/ && cp $B/ascplus/seed0/evaluation/{summary.json,per_case.csv} $D/ascplus/seed0/evaluation/
  for c in $B/ascplus/seed0/reverse_validation/*; do
    mkdir -p $D/reverse_validation/${c##*/} && cp $c/score.json $c/training_log.csv $D/reverse_validation/${c##*/}/
  done
done
$BIN/python benchmarks/confusion_matrix.py --reference data/Dataset902_DemoBrainT2 \
    bench/s12-reverse/demo-brain-t1t2/ascplus-{paper,histogram-matching,bezier,gin,mix}/seed0 \
    --out benchmarks/results/demo-brain-t1t2/reverse_validation_seed0/confusion_seed0.json
# (b) One self-training round after the label-free choice, 3 seeds on four tasks (two processes: abdominal then
# MS-CMRSeg in one, the demo then Kvasir -> CVC in the other). The candidate and ascplus rows come out identical to
# the committed ones (cmp); only the new row is copied.
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do
  C=$CAND; [ $t = polyp-kvasir2cvc ] && C=$CAND,ascplus-fourier-luminance
  for s in 0 1 2; do
    $BIN/diffuse-uda bench -t $t --methods $C,ascplus,ascplus-self-training --seed-list $s -o bench/s12/$t --data-root data
  done
  for m in ${C//,/ } ascplus; do for s in 0 1 2; do
    cmp bench/s12/$t/$m/seed$s/evaluation/per_case.csv benchmarks/results/$t/$m/seed$s/evaluation/per_case.csv
  done; done
  $BIN/python benchmarks/export_results.py bench/s12/$t /tmp/s12-$t && cp -r /tmp/s12-$t/ascplus-self-training benchmarks/results/$t/
done
ROWS=source-only,source-only-dg,target-supervised,fda,$CAND
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods $ROWS,ascplus,ascplus-self-training,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/demo-brain-t1t2 demo-brain-t1t2 --data-root data \
    --methods $ROWS,ascplus,ascplus-self-training,diffuse-uda
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $ROWS,ascplus,ascplus-self-training,diffuse-uda,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $ROWS,ascplus-fourier-luminance,ascplus,ascplus-self-training,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do R=benchmarks/results/$t; for s in 0 1 2; do
  $BIN/python benchmarks/paired_test.py $R/ascplus/seed$s $R/ascplus-self-training/seed$s
  $BIN/python benchmarks/paired_test.py $R/source-only/seed$s $R/ascplus-self-training/seed$s
  $BIN/python benchmarks/paired_test.py $R/source-only-dg/seed$s $R/ascplus-self-training/seed$s
  $BIN/python benchmarks/paired_test.py $R/ascplus-self-training/seed$s $R/diffuse-uda/seed$s/5_ascplus_synth
done; done
# ---------------------------------------------------------------- Session 13
# Issue 13. (a) Post hoc: label-free choice signals of the committed candidates beside their test Dice (needs the
# session-12 bench folders, which hold the candidate models).
CAND=ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix
G=paper,histogram-matching,bezier,gin,mix
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do
  DIFFUSE_UDA_DATA=data $BIN/python benchmarks/choice_signals.py $t bench/s12/$t $G benchmarks/results/$t/choice_signals.json
done
DIFFUSE_UDA_DATA=data $BIN/python benchmarks/choice_signals.py polyp-kvasir2cvc bench/s12/polyp-kvasir2cvc $G,fourier-luminance \
    benchmarks/results/polyp-kvasir2cvc/choice_signals.json
# (b) The class-ratio choice (candidates reused) and one self-training round after it; two self-training rounds after
# the agreement choice (seeds 0-1, abdominal and demo). Two processes, split by task and seed.
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do
  $BIN/diffuse-uda bench -t $t --methods ascplus-class-ratio --seed-list 0,1,2 -o bench/s12/$t --data-root data
done
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do for s in 0 1 2; do
  $BIN/diffuse-uda bench -t $t --methods ascplus-class-ratio-self-training --seed-list $s -o bench/s12/$t --data-root data
done; done
for t in abdominal-ct2mr demo-brain-t1t2; do for s in 0 1 2; do
  $BIN/diffuse-uda bench -t $t --methods ascplus-self-training-2 --seed-list $s -o bench/s12/$t --data-root data
done; done
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do
  $BIN/python benchmarks/export_results.py bench/s12/$t /tmp/s13-$t
  for m in ascplus-class-ratio ascplus-class-ratio-self-training ascplus-self-training-2; do
    [ -d /tmp/s13-$t/$m ] && cp -r /tmp/s13-$t/$m benchmarks/results/$t/
  done
done
ROWS=source-only,source-only-dg,target-supervised,fda,$CAND
ST=ascplus-self-training,ascplus-self-training-2,ascplus-class-ratio,ascplus-class-ratio-self-training
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods $ROWS,ascplus,$ST,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/demo-brain-t1t2 demo-brain-t1t2 --data-root data \
    --methods $ROWS,ascplus,$ST,diffuse-uda
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $ROWS,ascplus,ascplus-self-training,ascplus-class-ratio,ascplus-class-ratio-self-training,diffuse-uda,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $ROWS,ascplus-fourier-luminance,ascplus,ascplus-self-training,ascplus-class-ratio,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do R=benchmarks/results/$t; for s in 0 1 2; do
  for ref in ascplus source-only-dg ascplus-self-training; do
    $BIN/python benchmarks/paired_test.py $R/$ref/seed$s $R/ascplus-class-ratio-self-training/seed$s
  done
done; done
# (c) The pipeline on the class-ratio stage 1, abdominal CT -> MR (the committed candidates copied in first, so that
# only the choice and the pipeline run); the bounds in its table are the task's committed rows.
for c in paper histogram-matching bezier gin mix; do mkdir -p bench/s13/abd-cr/ascplus-$c
  cp -r bench/s12/abdominal-ct2mr/ascplus-$c/seed{0,1,2} bench/s13/abd-cr/ascplus-$c/; done
for s in 0 1 2; do
  $BIN/diffuse-uda bench -t abdominal-ct2mr --methods ascplus,diffuse-uda --seed-list $s -o bench/s13/abd-cr --data-root data \
      --set method.appearance_rule=class-ratio
done
$BIN/diffuse-uda bench -t abdominal-ct2mr --methods ascplus,diffuse-uda --seeds 3 -o bench/s13/abd-cr --data-root data \
    --set method.appearance_rule=class-ratio
cmp bench/s13/abd-cr/diffuse-uda/seed1/5_ascplus_synth/evaluation/per_case.csv \
    benchmarks/results/abdominal-ct2mr/diffuse-uda/seed1/5_ascplus_synth/evaluation/per_case.csv
D=benchmarks/results/abdominal-ct2mr-class-ratio
$BIN/python benchmarks/export_results.py bench/s13/abd-cr $D
for m in source-only source-only-dg target-supervised; do cp -r benchmarks/results/abdominal-ct2mr/$m $D/; done
$BIN/python benchmarks/collect_bench.py $D abdominal-ct2mr --data-root data \
    --methods source-only,source-only-dg,target-supervised,$CAND,ascplus,diffuse-uda
R=benchmarks/results; for s in 0 1 2; do
  for ref in abdominal-ct2mr/diffuse-uda/seed$s/5_ascplus_synth abdominal-ct2mr-class-ratio/ascplus/seed$s \
      abdominal-ct2mr/source-only-dg/seed$s abdominal-ct2mr/ascplus-class-ratio-self-training/seed$s; do
    $BIN/python benchmarks/paired_test.py $R/$ref $D/diffuse-uda/seed$s/5_ascplus_synth
  done
done
# (d) The rules on abdominal MR -> CT (not used to design the class-ratio rule), 3 seeds, its first committed table.
M=source-only,source-only-dg,target-supervised,$CAND,ascplus,ascplus-class-ratio
for s in 0 1 2; do $BIN/diffuse-uda bench -t abdominal-mr2ct --methods $M --seed-list $s -o bench/s13/abdominal-mr2ct --data-root data; done
$BIN/diffuse-uda bench -t abdominal-mr2ct --methods $M --seeds 3 -o bench/s13/abdominal-mr2ct --data-root data
$BIN/python benchmarks/export_results.py bench/s13/abdominal-mr2ct benchmarks/results/abdominal-mr2ct
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-mr2ct abdominal-mr2ct --data-root data --methods $M
for s in 0 1 2; do
  $BIN/python benchmarks/paired_test.py benchmarks/results/abdominal-mr2ct/source-only-dg/seed$s benchmarks/results/abdominal-mr2ct/ascplus/seed$s
done
# (e) The pipeline on the class-ratio stage 1, the demo, 3 seeds (candidates copied in first, as in (c)).
for c in paper histogram-matching bezier gin mix; do mkdir -p bench/s13/demo-cr/ascplus-$c
  cp -r bench/s12/demo-brain-t1t2/ascplus-$c/seed{0,1,2} bench/s13/demo-cr/ascplus-$c/; done
for s in 0 1 2; do
  $BIN/diffuse-uda bench -t demo-brain-t1t2 --methods ascplus,diffuse-uda --seed-list $s -o bench/s13/demo-cr --data-root data \
      --set method.appearance_rule=class-ratio
done
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods ascplus,diffuse-uda --seeds 3 -o bench/s13/demo-cr --data-root data \
    --set method.appearance_rule=class-ratio
D=benchmarks/results/demo-brain-t1t2-class-ratio
$BIN/python benchmarks/export_results.py bench/s13/demo-cr $D
for m in source-only source-only-dg target-supervised; do cp -r benchmarks/results/demo-brain-t1t2/$m $D/; done
$BIN/python benchmarks/collect_bench.py $D demo-brain-t1t2 --data-root data \
    --methods source-only,source-only-dg,target-supervised,$CAND,ascplus,diffuse-uda
for s in 0 1 2; do
  for ref in demo-brain-t1t2/diffuse-uda/seed$s/5_ascplus_synth demo-brain-t1t2-class-ratio/ascplus/seed$s \
      demo-brain-t1t2/source-only-dg/seed$s demo-brain-t1t2/ascplus-class-ratio-self-training/seed$s; do
    $BIN/python benchmarks/paired_test.py benchmarks/results/$ref $D/diffuse-uda/seed$s/5_ascplus_synth
  done
done

# ---------------------------------------------------------------- Session 14
# Issue 13. (a) A second task not used to design the class-ratio rule: MS-CMRSeg LGE -> bSSFP on disjoint patients
# (`diffuse-uda import mscmrseg` writes its two datasets), bounds, the five candidates and both rules, 3 seeds; two
# processes (seeds 0 and 1 side by side, then seed 2 split into its candidates and its bounds).
CAND=ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-gin,ascplus-mix
M=source-only,source-only-dg,target-supervised,$CAND,ascplus,ascplus-class-ratio
$BIN/diffuse-uda import mscmrseg ../shared/data/mscmrseg --out data
for s in 0 1; do $BIN/diffuse-uda bench -t mscmr-lge2bssfp --methods $M --seed-list $s -o bench/s14/mscmr-lge2bssfp --data-root data; done
$BIN/diffuse-uda bench -t mscmr-lge2bssfp --methods $CAND,ascplus,ascplus-class-ratio --seed-list 2 -o bench/s14/mscmr-lge2bssfp --data-root data
$BIN/diffuse-uda bench -t mscmr-lge2bssfp --methods source-only,source-only-dg,target-supervised --seed-list 2 -o bench/s14/mscmr-lge2bssfp --data-root data
$BIN/diffuse-uda bench -t mscmr-lge2bssfp --methods $M --seeds 3 -o bench/s14/mscmr-lge2bssfp --data-root data
$BIN/python benchmarks/export_results.py bench/s14/mscmr-lge2bssfp benchmarks/results/mscmr-lge2bssfp
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-lge2bssfp mscmr-lge2bssfp --data-root data --methods $M
R=benchmarks/results/mscmr-lge2bssfp; for s in 0 1 2; do
  $BIN/python benchmarks/paired_test.py $R/source-only-dg/seed$s $R/ascplus/seed$s
  $BIN/python benchmarks/paired_test.py $R/source-only/seed$s $R/ascplus/seed$s
done
# The class-ratio divergences and agreement scores quoted: each row's seed*/appearance_choice.json (class_ratio_kl,
# agreement_scores) in benchmarks/results/{abdominal-ct2mr,demo-brain-t1t2,abdominal-mr2ct,mscmr-lge2bssfp}/ascplus-class-ratio/.
# (b) Why ascplus is below source-only on Kvasir -> CVC: the paper's Table-4 ablation on the polyp task (M2-M6 at seed 0,
# M4-M5 at seeds 1-2; M1 = the committed source-only runs, M7 = the committed ascplus-paper runs, the same settings).
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus-M2,ascplus-M3,ascplus-M4,ascplus-M5,ascplus-M6 --seed-list 0 -o bench/s14/polyp-ablation --data-root data
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus-M4,ascplus-M5 --seed-list 1,2 -o bench/s14/polyp-ablation --data-root data
D=benchmarks/results/polyp-ascplus-ablation
$BIN/python benchmarks/export_results.py bench/s14/polyp-ablation $D
cp -r benchmarks/results/polyp-kvasir2cvc/source-only $D/ascplus-M1; cp -r benchmarks/results/polyp-kvasir2cvc/ascplus-paper $D/ascplus-M7
$BIN/python benchmarks/collect_bench.py $D polyp-kvasir2cvc --data-root data \
    --methods ascplus-M1,ascplus-M2,ascplus-M3,ascplus-M4,ascplus-M5,ascplus-M6,ascplus-M7
for s in 0 1 2; do $BIN/python benchmarks/paired_test.py $D/ascplus-M4/seed$s $D/ascplus-M5/seed$s; done
# The last-step supervised loss quoted for M4 and M5 at seed 1 (training_log.csv is not committed: it stays in bench/).
for m in ascplus-M4 ascplus-M5; do grep '^2000,supervised,' bench/s14/polyp-ablation/$m/seed1/training_log.csv; done
# (c) ASCPlus without the structure term: every candidate and the agreement choice on Kvasir -> CVC, and ascplus-bezier on
# the demo and abdominal CT -> MR, 3 seeds (bounds in the polyp table: the task's committed rows).
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods $CAND,ascplus-fourier-luminance,ascplus --seeds 3 -o bench/s14/polyp-no-structure \
    --data-root data --set method.structure=false
for t in demo-brain-t1t2 abdominal-ct2mr; do
  $BIN/diffuse-uda bench -t $t --methods ascplus-bezier --seed-list 0,1,2 -o bench/s14/no-structure-$t --data-root data --set method.structure=false
  $BIN/python benchmarks/export_results.py bench/s14/no-structure-$t benchmarks/results/ascplus-no-structure/$t
  for s in 0 1 2; do $BIN/python benchmarks/paired_test.py benchmarks/results/$t/ascplus-bezier/seed$s \
      benchmarks/results/ascplus-no-structure/$t/ascplus-bezier/seed$s; done
done
D=benchmarks/results/ascplus-no-structure/polyp-kvasir2cvc
$BIN/python benchmarks/export_results.py bench/s14/polyp-no-structure $D
for m in source-only source-only-dg target-supervised; do cp -r benchmarks/results/polyp-kvasir2cvc/$m $D/; done
$BIN/python benchmarks/collect_bench.py $D polyp-kvasir2cvc --data-root data \
    --methods source-only,source-only-dg,target-supervised,$CAND,ascplus-fourier-luminance,ascplus
for s in 0 1 2; do for ref in ascplus source-only-dg; do
  $BIN/python benchmarks/paired_test.py benchmarks/results/polyp-kvasir2cvc/$ref/seed$s $D/ascplus/seed$s
done; done
$BIN/python benchmarks/prediction_area.py data/Dataset512_CVCClinicDB bench/s14/polyp-ablation/ascplus-M4/seed1 bench/s14/polyp-ablation/ascplus-M5/seed1
# (d) The bounded-beta photo candidate as a row (in the session-12 polyp bench folder, beside the other candidates).
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus-fourier-bounded --seed-list 0,1,2 -o bench/s12/polyp-kvasir2cvc --data-root data
$BIN/python benchmarks/export_results.py bench/s12/polyp-kvasir2cvc /tmp/s14-polyp
cp -r /tmp/s14-polyp/ascplus-fourier-bounded benchmarks/results/polyp-kvasir2cvc/
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $ROWS,ascplus-fourier-luminance,ascplus-fourier-bounded,ascplus,ascplus-self-training,ascplus-class-ratio,diffuse-uda,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated
for s in 0 1 2; do $BIN/python benchmarks/paired_test.py benchmarks/results/polyp-kvasir2cvc/source-only/seed$s benchmarks/results/polyp-kvasir2cvc/ascplus-fourier-bounded/seed$s; done
# (e) Two self-training rounds on MS-CMRSeg (candidates reused from the session-12 bench folder).
for s in 0 1 2; do
  $BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ascplus-self-training-2 --seed-list $s -o bench/s12/mscmr-bssfp2lge --data-root data
done
$BIN/python benchmarks/export_results.py bench/s12/mscmr-bssfp2lge /tmp/s14-ms
cp -r /tmp/s14-ms/ascplus-self-training-2 benchmarks/results/mscmr-bssfp2lge/
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $ROWS,ascplus,ascplus-self-training,ascplus-self-training-2,ascplus-class-ratio,ascplus-class-ratio-self-training,diffuse-uda,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated
# (f) ascplus-bezier without the structure term on MS-CMRSeg (two processes: seeds 0-1, seed 2 in a second folder).
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ascplus-bezier --seed-list 0,1 -o bench/s14/no-structure-mscmr-bssfp2lge --data-root data --set method.structure=false
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ascplus-bezier --seed-list 2 -o bench/s14/no-structure-mscmr-bssfp2lge-s2 --data-root data --set method.structure=false
D=benchmarks/results/ascplus-no-structure/mscmr-bssfp2lge
$BIN/python benchmarks/export_results.py bench/s14/no-structure-mscmr-bssfp2lge $D   # its bench.json: seeds 0-1
$BIN/python benchmarks/export_results.py bench/s14/no-structure-mscmr-bssfp2lge-s2 /tmp/s14-ms2
cp -r /tmp/s14-ms2/ascplus-bezier/seed2 $D/ascplus-bezier/
for s in 0 1 2; do $BIN/python benchmarks/paired_test.py benchmarks/results/mscmr-bssfp2lge/ascplus-bezier/seed$s $D/ascplus-bezier/seed$s; done
# (g) Every grey candidate and the agreement choice without the structure term on the demo, 3 seeds (two processes:
# seeds 0-1, seed 2; the bezier runs of (c) are reused).
for s in 0 1 2; do
  $BIN/diffuse-uda bench -t demo-brain-t1t2 --methods $CAND,ascplus --seed-list $s -o bench/s14/no-structure-demo-brain-t1t2 \
      --data-root data --set method.structure=false
done
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods $CAND,ascplus --seeds 3 -o bench/s14/no-structure-demo-brain-t1t2 \
    --data-root data --set method.structure=false
D=benchmarks/results/ascplus-no-structure/demo-brain-t1t2
$BIN/python benchmarks/export_results.py bench/s14/no-structure-demo-brain-t1t2 $D
for m in source-only source-only-dg target-supervised; do cp -r benchmarks/results/demo-brain-t1t2/$m $D/; done
$BIN/python benchmarks/collect_bench.py $D demo-brain-t1t2 --data-root data --methods source-only,source-only-dg,target-supervised,$CAND,ascplus
for s in 0 1 2; do $BIN/python benchmarks/paired_test.py benchmarks/results/demo-brain-t1t2/ascplus/seed$s $D/ascplus/seed$s; done

# ---------------------------------------------------------------- Session 15
# Issue 13: IPA (the appearance transfer `pseudo-correlation`). Two processes, one torch thread each.
# Since this session the default candidate set has bezier-ipa in place of bezier. The `ascplus` rows of the sessions
# above (bench/s12/*/ascplus, committed as ascplus-session12) were made with the old set; with today's code add
# --set 'method.appearance_candidates=[paper,histogram-matching,bezier,gin,mix]' (photos: ...,fourier-luminance]) to
# their commands to remake them.
# (a) The new rows on the four design tasks, 3 seeds each.
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do
  $BIN/diffuse-uda bench -t $t --methods source-only-dg-ipa,ascplus-bezier-ipa --seeds 3 -o bench/s15/ipa-$t --data-root data
done
# (b) The held-out tasks (after the rules in BENCHMARKS.md "Session 15" were committed), beside their candidates.
$BIN/diffuse-uda bench -t abdominal-mr2ct --methods ascplus-bezier-ipa --seeds 3 -o bench/s13/abdominal-mr2ct --data-root data
$BIN/diffuse-uda bench -t mscmr-lge2bssfp --methods ascplus-bezier-ipa --seeds 3 -o bench/s14/mscmr-lge2bssfp --data-root data
$BIN/diffuse-uda bench -t abdominal-mr2ct --methods source-only-dg-ipa --seeds 3 -o bench/s13/abdominal-mr2ct --data-root data
$BIN/diffuse-uda bench -t mscmr-lge2bssfp --methods source-only-dg-ipa --seeds 3 -o bench/s14/mscmr-lge2bssfp --data-root data
# (b2) GIN blended the same way (the paper's own IPA), abdominal and the demo; exported beside the other rows.
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/diffuse-uda bench -t $t --methods ascplus-gin-ipa --seeds 3 -o bench/s15/ipa-$t --data-root data
done
# (c) ascplus with the new default candidate set (and the class-ratio option with it) in folders whose candidate rows
# link to the finished runs: design tasks (candidates from session 12) and held-out tasks (sessions 13-14).
default_folder() {  # TASK CANDIDATES_FROM IPA_FROM
  mkdir -p bench/s15/default-$1
  for c in paper histogram-matching gin mix bezier fourier-luminance; do
    [ -d $2/ascplus-$c ] && ln -sfn $(realpath $2/ascplus-$c) bench/s15/default-$1/ascplus-$c
  done
  ln -sfn $(realpath $3/ascplus-bezier-ipa) bench/s15/default-$1/ascplus-bezier-ipa
  $BIN/diffuse-uda bench -t $1 --methods ascplus,ascplus-class-ratio --seeds 3 -o bench/s15/default-$1 --data-root data
}
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do default_folder $t bench/s12/$t bench/s15/ipa-$t; done
default_folder abdominal-mr2ct bench/s13/abdominal-mr2ct bench/s13/abdominal-mr2ct
default_folder mscmr-lge2bssfp bench/s14/mscmr-lge2bssfp bench/s14/mscmr-lge2bssfp
# (d) The pipeline at the three seeds whose stage-1 pick changed with the new set (stage 1 = the folder's ascplus row).
$BIN/diffuse-uda bench -t abdominal-ct2mr --methods diffuse-uda --seed-list 1 -o bench/s15/default-abdominal-ct2mr --data-root data
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods diffuse-uda --seed-list 2 -o bench/s15/default-mscmr-bssfp2lge --data-root data
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods diffuse-uda --seed-list 2 -o bench/s15/default-polyp-kvasir2cvc --data-root data
# (e) Export. The sessions 7-14 rows move aside: ascplus -> ascplus-session12, ascplus-class-ratio ->
# ascplus-class-ratio-session12 (git mv), diffuse-uda copied to diffuse-uda-session12 where a seed changed (the
# unchanged seeds stay in diffuse-uda).
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc abdominal-mr2ct mscmr-lge2bssfp; do
  git mv benchmarks/results/$t/ascplus benchmarks/results/$t/ascplus-session12
  git mv benchmarks/results/$t/ascplus-class-ratio benchmarks/results/$t/ascplus-class-ratio-session12
done
for t in abdominal-ct2mr mscmr-bssfp2lge polyp-kvasir2cvc; do
  cp -r benchmarks/results/$t/diffuse-uda benchmarks/results/$t/diffuse-uda-session12
done
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do
  $BIN/python benchmarks/export_results.py bench/s15/ipa-$t /tmp/s15-ipa-$t
  cp -r /tmp/s15-ipa-$t/ascplus-bezier-ipa /tmp/s15-ipa-$t/source-only-dg-ipa benchmarks/results/$t/
done
for t in abdominal-ct2mr demo-brain-t1t2; do cp -r /tmp/s15-ipa-$t/ascplus-gin-ipa benchmarks/results/$t/; done
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc abdominal-mr2ct mscmr-lge2bssfp; do
  $BIN/python benchmarks/export_results.py bench/s15/default-$t /tmp/s15-default-$t
  cp -r /tmp/s15-default-$t/ascplus /tmp/s15-default-$t/ascplus-class-ratio benchmarks/results/$t/
done
$BIN/python benchmarks/export_results.py bench/s13/abdominal-mr2ct /tmp/s15-amr
cp -r /tmp/s15-amr/ascplus-bezier-ipa /tmp/s15-amr/source-only-dg-ipa benchmarks/results/abdominal-mr2ct/
$BIN/python benchmarks/export_results.py bench/s14/mscmr-lge2bssfp /tmp/s15-lge
cp -r /tmp/s15-lge/ascplus-bezier-ipa /tmp/s15-lge/source-only-dg-ipa benchmarks/results/mscmr-lge2bssfp/
for p in abdominal-ct2mr:1 mscmr-bssfp2lge:2 polyp-kvasir2cvc:2; do t=${p%%:*}; s=${p##*:}
  rm -r benchmarks/results/$t/diffuse-uda/seed$s && cp -r /tmp/s15-default-$t/diffuse-uda/seed$s benchmarks/results/$t/diffuse-uda/
done
# (f) The two pre-registered rules, from the committed files; the tables.
$BIN/python benchmarks/ipa_decision.py
B=source-only,source-only-dg,source-only-dg-ipa,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-bezier-ipa,ascplus-gin,ascplus-mix
OLD=ascplus-session12,ascplus-class-ratio-session12,diffuse-uda-session12
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods $B,ascplus-gin-ipa,ascplus,ascplus-class-ratio,diffuse-uda,$ST,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-calibrated,$OLD
$BIN/python benchmarks/collect_bench.py benchmarks/results/demo-brain-t1t2 demo-brain-t1t2 --data-root data \
    --methods $B,ascplus-gin-ipa,ascplus,ascplus-class-ratio,diffuse-uda,$ST,$OLD
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $B,ascplus,ascplus-class-ratio,diffuse-uda,ascplus-self-training,ascplus-self-training-2,ascplus-class-ratio-self-training,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated,$OLD
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $B,ascplus-fourier-luminance,ascplus-fourier-bounded,ascplus,ascplus-class-ratio,diffuse-uda,ascplus-self-training,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated,$OLD
M=source-only,source-only-dg,source-only-dg-ipa,target-supervised,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-bezier-ipa,ascplus-gin,ascplus-mix,ascplus,ascplus-class-ratio,ascplus-session12,ascplus-class-ratio-session12
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-mr2ct abdominal-mr2ct --data-root data --methods $M
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-lge2bssfp mscmr-lge2bssfp --data-root data --methods $M
# (g) The pipeline against its stage 1 per seed, and at the changed seeds against the sessions 7-14 pipeline.
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do for s in 0 1 2; do R=benchmarks/results/$t
  $BIN/python benchmarks/paired_test.py $R/ascplus/seed$s $R/diffuse-uda/seed$s/5_ascplus_synth
done; done
for p in abdominal-ct2mr:1 mscmr-bssfp2lge:2 polyp-kvasir2cvc:2; do R=benchmarks/results/${p%%:*}; s=${p##*:}
  $BIN/python benchmarks/paired_test.py $R/diffuse-uda-session12/seed$s/5_ascplus_synth $R/diffuse-uda/seed$s/5_ascplus_synth
done
# Issue 14: the wide polyp generator at seed 1 (seed 2 was stopped to free a core), pipeline to the end on the
# committed seed-1 stage 1, then its fidelity like session 11's seed 0.
$BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s15/polyp-wide/seed1 --seed 1 --data-root data \
    --set 'diffusion.channels=[32,64,128]' --set stage1_run=bench/s12/polyp-kvasir2cvc/ascplus/seed1
$BIN/python benchmarks/export_results.py bench/s15/polyp-wide /tmp/s15-wide && cp -r /tmp/s15-wide/seed1 benchmarks/results/polyp-generator-wide/
$BIN/python benchmarks/paired_test.py benchmarks/results/polyp-kvasir2cvc/diffuse-uda-session12/seed1/5_ascplus_synth benchmarks/results/polyp-generator-wide/seed1/5_ascplus_synth
$BIN/python benchmarks/paired_test.py benchmarks/results/polyp-kvasir2cvc/ascplus-session12/seed1 benchmarks/results/polyp-generator-wide/seed1/5_ascplus_synth
$BIN/python benchmarks/bench_synthesis.py --generator bench/s15/polyp-wide/seed1/3_diffusion/diffusion_last.pt \
    --segmenter bench/polyp-kvasir2cvc/target-supervised/seed0 --masks bench/s15/polyp-wide/seed1/2_pseudolabels \
    --stage1 bench/s12/polyp-kvasir2cvc/ascplus/seed1 --source data/Dataset511_KvasirSEG --target data/Dataset512_CVCClinicDB \
    --samplers ddim:25:1:1 ddim:25:2:1 --n 32 --seed 1 \
    --out benchmarks/results/synthesis/polyp-generator-width/channels32-64-128_step2000_seed1.json
# The pseudo-correlation member's time per call (docs/methods.md; median of the three runs).
for i in 1 2 3; do $BIN/python benchmarks/bench_appearance.py --repeats 30 --members pseudo-correlation bezier; done
# (h) The pipeline on the bezier-ipa stage 1 (fixed transfer, not the default), abdominal and the demo.
for t in abdominal-ct2mr demo-brain-t1t2; do for s in 0 1 2; do
  $BIN/diffuse-uda run -t $t -o bench/s15/pipe-bezier-ipa-$t/seed$s --seed $s --data-root data \
      --set segmentation.method.appearance=pseudo-correlation \
      --set 'segmentation.method.appearance_options={member: bezier, member_options: {location_scale: true}}' \
      --set stage1_run=bench/s15/ipa-$t/ascplus-bezier-ipa/seed$s
done
  $BIN/python benchmarks/export_results.py bench/s15/pipe-bezier-ipa-$t benchmarks/results/pipeline-bezier-ipa/$t
  for s in 0 1 2; do
    $BIN/python benchmarks/paired_test.py benchmarks/results/$t/ascplus-bezier-ipa/seed$s benchmarks/results/pipeline-bezier-ipa/$t/seed$s/5_ascplus_synth
  done
done
# ---------------------------------------------------------------- Session 16
# Issue 13: the guarded class-ratio rule (method.appearance_rule=guarded-class-ratio), the default since this
# session. Two processes, one torch thread each.
# (a) The rule on the tasks measured so far (design data for it), in the session-15 folders whose candidate rows
# link to finished runs (see Session 15 (c)):
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc abdominal-mr2ct mscmr-lge2bssfp; do
  $BIN/diffuse-uda bench -t $t --methods ascplus-guarded-class-ratio --seeds 3 -o bench/s15/default-$t --data-root data
done
# (b) The two held-out tasks, made after the decision rule in BENCHMARKS.md "Session 16" was committed.
$BIN/python benchmarks/heldout_demo.py data
for n in t2t1 t1flair; do
  $BIN/diffuse-uda bench -t benchmarks/tasks/demo-brain-$n.yaml --data-root data -o bench/s16/demo-brain-$n --seeds 3 \
      --methods ascplus,ascplus-agreement,ascplus-class-ratio,ascplus-guarded-class-ratio,source-only,source-only-dg,target-supervised
  $BIN/python benchmarks/export_results.py bench/s16/demo-brain-$n benchmarks/results/demo-brain-$n
done
# (The held-out runs were made while the default was still agreement, so their `ascplus` row was the agreement
# rule's; after the default changed it was renamed ascplus-agreement (same request with the rule set explicitly,
# the choice recomputed: same picks, same model files) and `ascplus` made again with the new default.)
# (c) The new default and the previous one (`ascplus-agreement`) on every earlier task, in fresh folders whose
# candidate rows link to the session-15 ones; on the four design tasks the pipeline on the new default too.
default16() {  # TASK METHODS
  mkdir -p bench/s16/default-$1
  for c in paper histogram-matching gin mix bezier bezier-ipa fourier-luminance; do
    [ -e bench/s15/default-$1/ascplus-$c ] && ln -sfn $(realpath bench/s15/default-$1/ascplus-$c) bench/s16/default-$1/ascplus-$c
  done
  $BIN/diffuse-uda bench -t $1 --methods $2 --seeds 3 -o bench/s16/default-$1 --data-root data
}
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do default16 $t ascplus,ascplus-agreement,diffuse-uda; done
for t in polyp-kvasir2cvc abdominal-mr2ct mscmr-lge2bssfp; do default16 $t ascplus,ascplus-agreement; done
# (d) Export: the session-15 `ascplus` rows (agreement) are replaced by the new runs; `diffuse-uda` likewise on the
# three grey design tasks (the session-15 rows kept as diffuse-uda-session15).
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc abdominal-mr2ct mscmr-lge2bssfp; do
  $BIN/python benchmarks/export_results.py bench/s16/default-$t /tmp/s16-$t
  git rm -rq benchmarks/results/$t/ascplus && cp -r /tmp/s16-$t/ascplus /tmp/s16-$t/ascplus-agreement benchmarks/results/$t/
  $BIN/python benchmarks/export_results.py bench/s15/default-$t /tmp/s15g-$t
  cp -r /tmp/s15g-$t/ascplus-guarded-class-ratio benchmarks/results/$t/
done
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do
  git mv benchmarks/results/$t/diffuse-uda benchmarks/results/$t/diffuse-uda-session15
  cp -r /tmp/s16-$t/diffuse-uda benchmarks/results/$t/
done
# (e) The decision and issue 13's marks, from the committed files:
$BIN/python benchmarks/guard_decision.py --out benchmarks/results/guard_decision.json
$BIN/python benchmarks/default_marks.py
# (f) The pipeline against its stage 1 and against source-only-dg per seed; the remade rows against session 15's
# (same per-case Dice where the stage-1 model is the same: abdominal 1-2 and MS-CMRSeg 1-2 against
# diffuse-uda-session15, abdominal 0 and the demo 0-2 against pipeline-bezier-ipa).
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do for s in 0 1 2; do R=benchmarks/results/$t
  $BIN/python benchmarks/paired_test.py $R/ascplus/seed$s $R/diffuse-uda/seed$s/5_ascplus_synth
  $BIN/python benchmarks/paired_test.py $R/source-only-dg/seed$s $R/diffuse-uda/seed$s/5_ascplus_synth
done; done
# The remade rows equal the earlier runs with the same stage-1 model case by case (prints True for each):
for p in abdominal-ct2mr:1:diffuse-uda-session15 abdominal-ct2mr:2:diffuse-uda-session15 mscmr-bssfp2lge:1:diffuse-uda-session15 \
         mscmr-bssfp2lge:2:diffuse-uda-session15; do IFS=: read t s old <<< "$p"
  $BIN/python -c "import sys; sys.path.insert(0, 'benchmarks'); from paired_test import case_mean_dice as d; from pathlib import Path as P; print('$t', $s, d(P('benchmarks/results/$t/diffuse-uda/seed$s/5_ascplus_synth')) == d(P('benchmarks/results/$t/$old/seed$s/5_ascplus_synth')))"
done
for p in abdominal-ct2mr:0 demo-brain-t1t2:0 demo-brain-t1t2:1 demo-brain-t1t2:2; do IFS=: read t s <<< "$p"
  $BIN/python -c "import sys; sys.path.insert(0, 'benchmarks'); from paired_test import case_mean_dice as d; from pathlib import Path as P; print('$t', $s, d(P('benchmarks/results/$t/diffuse-uda/seed$s/5_ascplus_synth')) == d(P('benchmarks/results/pipeline-bezier-ipa/$t/seed$s/5_ascplus_synth')))"
done
# (g) The tables.
B=source-only,source-only-dg,source-only-dg-ipa,target-supervised,fda,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-bezier-ipa,ascplus-gin,ascplus-mix
ST=ascplus-self-training,ascplus-self-training-2,ascplus-class-ratio,ascplus-class-ratio-self-training
OLD=ascplus-session12,ascplus-class-ratio-session12,diffuse-uda-session12,diffuse-uda-session15
N16=ascplus-agreement,ascplus-guarded-class-ratio
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods $B,ascplus-gin-ipa,ascplus,$N16,diffuse-uda,$ST,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-calibrated,$OLD
$BIN/python benchmarks/collect_bench.py benchmarks/results/demo-brain-t1t2 demo-brain-t1t2 --data-root data \
    --methods $B,ascplus-gin-ipa,ascplus,$N16,diffuse-uda,$ST,ascplus-session12,ascplus-class-ratio-session12,diffuse-uda-session15
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $B,ascplus,$N16,diffuse-uda,ascplus-self-training,ascplus-self-training-2,ascplus-class-ratio-self-training,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated,$OLD
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $B,ascplus-fourier-luminance,ascplus-fourier-bounded,ascplus,$N16,ascplus-class-ratio,diffuse-uda,ascplus-self-training,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated,ascplus-session12,ascplus-class-ratio-session12,diffuse-uda-session12
M=source-only,source-only-dg,source-only-dg-ipa,target-supervised,ascplus-paper,ascplus-histogram-matching,ascplus-bezier,ascplus-bezier-ipa,ascplus-gin,ascplus-mix,ascplus,$N16,ascplus-class-ratio,ascplus-session12,ascplus-class-ratio-session12
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-mr2ct abdominal-mr2ct --data-root data --methods $M
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-lge2bssfp mscmr-lge2bssfp --data-root data --methods $M
# (h) Issue 14: the wide polyp generator at seed 2, on the default stage 1 of that seed; its oracle mask fidelity.
$BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s16/polyp-wide/seed2 --seed 2 --data-root data \
    --set 'diffusion.channels=[32,64,128]' --set stage1_run=bench/s16/default-polyp-kvasir2cvc/ascplus/seed2
$BIN/python benchmarks/export_results.py bench/s16/polyp-wide /tmp/s16-wide && cp -r /tmp/s16-wide/seed2 benchmarks/results/polyp-generator-wide/
R=benchmarks/results/polyp-kvasir2cvc; W=benchmarks/results/polyp-generator-wide/seed2/5_ascplus_synth
for ref in $R/diffuse-uda/seed2/5_ascplus_synth $R/ascplus/seed2 $R/source-only-dg/seed2; do $BIN/python benchmarks/paired_test.py $ref $W; done
$BIN/python benchmarks/bench_synthesis.py --generator bench/s16/polyp-wide/seed2/3_diffusion/diffusion_last.pt \
    --segmenter bench/polyp-kvasir2cvc/target-supervised/seed0 --masks bench/s16/polyp-wide/seed2/2_pseudolabels \
    --stage1 bench/s16/default-polyp-kvasir2cvc/ascplus/seed2 --source data/Dataset511_KvasirSEG --target data/Dataset512_CVCClinicDB \
    --samplers ddim:25:1:1 ddim:25:2:1 --n 32 --seed 2 \
    --out benchmarks/results/synthesis/polyp-generator-width/channels32-64-128_step2000_seed2.json

# ---------------------------------------------------------------- Session 17
# Issue 14: the paper's generator beside the domain-guided default (end to end and in fidelity), velocity
# prediction, the generation ablation (Table 3) on the new generator. Two processes, one torch thread each; every
# run below reuses the session-16 stage 1 of its seed (bench/s16/default-TASK, Session 16 (c)).
# (a) The oracle's seed-0 runs (post-hoc reference of the fidelity tables), made again: per_case.csv equals the
# committed one of each task (cmp).
for t in mscmr-bssfp2lge abdominal-ct2mr demo-brain-t1t2; do
  $BIN/diffuse-uda bench -t $t --methods target-supervised --seed-list 0 -o bench/s17/oracle-$t --data-root data
  cmp bench/s17/oracle-$t/target-supervised/seed0/evaluation/per_case.csv benchmarks/results/$t/target-supervised/seed0/evaluation/per_case.csv
done
# (b) The paper's generator end to end, 3 seeds, beside the default pipeline rows (reused, not rerun):
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do
  $BIN/diffuse-uda bench -t $t --methods ascplus,diffuse-uda,diffuse-uda-paper --seeds 3 -o bench/s16/default-$t --data-root data
done
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus,diffuse-uda-paper --seeds 3 -o bench/s16/default-polyp-kvasir2cvc --data-root data
# (c) The generation ablation (paper Table 3) on the domain-guided generator, MS-CMRSeg, seed 0:
$BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ascplus,diffuse-uda,diffuse-uda-M1,diffuse-uda-M2,diffuse-uda-M3,diffuse-uda-M4,diffuse-uda-M5,diffuse-uda-M6 \
    --seed-list 0 -o bench/s16/default-mscmr-bssfp2lge --data-root data
# (d) Diagnostics at seed 0: velocity prediction on MS-CMRSeg; the domain-guided generator without pseudo-pair
# weights on abdominal CT -> MR.
$BIN/diffuse-uda run -t mscmr-bssfp2lge -o bench/s17/vpred-mscmr-bssfp2lge/seed0 --seed 0 --data-root data \
    --set diffusion.prediction_type=v --set stage1_run=bench/s16/default-mscmr-bssfp2lge/ascplus/seed0
$BIN/diffuse-uda run -t abdominal-ct2mr -o bench/s17/noweight-abdominal-ct2mr/seed0 --seed 0 --data-root data \
    --set diffusion.pair_weighting=none --set stage1_run=bench/s16/default-abdominal-ct2mr/ascplus/seed0
# The zero-initialised domain embedding (rule F): seed 0 on the three grey tasks, then seeds 1-2 on the demo.
for ts in abdominal-ct2mr:0 demo-brain-t1t2:0 mscmr-bssfp2lge:0 demo-brain-t1t2:1 demo-brain-t1t2:2; do IFS=: read -r t s <<< "$ts"
  $BIN/diffuse-uda run -t $t -o bench/s17/zero-$t/seed$s --seed $s --data-root data \
      --set diffusion.domain_embedding_init=zero --set stage1_run=bench/s16/default-$t/ascplus/seed$s
done
# (e) Fidelity and speed per generator and sampler: 32 pseudo-label masks of the default pipeline run, each generator
# at the guidance its own pipeline chose; the polyps at seed 2 (their default seed-2 run is session 15's, which the
# session-16 rows reuse). Then the table (BENCHMARKS.md) and the side-by-side galleries (docs/figures/).
synth17() {  # TASK SEED SOURCE TARGET ORACLE LABEL=RUN... (the first run's pseudo-labels are the masks)
  local t=$1 s=$2 src=$3 tgt=$4 oracle=$5; shift 5
  local masks=${1#*=}/2_pseudolabels
  for g in "$@"; do
    local label=${g%%=*} run=${g#*=} G
    G=$($BIN/python -c "import json; print(json.load(open('$run/4_synthetic/synthesis_settings.json')).get('guidance_scale') or 1.0)")
    $BIN/python benchmarks/bench_synthesis.py --generator $run/3_diffusion/diffusion_last.pt --segmenter $oracle \
        --masks $masks --stage1 bench/s16/default-$t/ascplus/seed$s --source data/$src --target data/$tgt \
        --samplers ddpm:250:$G ddim:25:$G:1 ddim:25:$G:0 dpm++2m:20:$G --n 32 --seed 1 \
        --out benchmarks/results/synthesis/generators/${t}_seed${s}_$label.json
  done
}
D=bench/s16/default; Z=bench/s17/zero; O=bench/s17/oracle
synth17 abdominal-ct2mr 0 Dataset521_AbdomenCT Dataset522_AbdomenMR $O-abdominal-ct2mr/target-supervised/seed0 \
    default=$D-abdominal-ct2mr/diffuse-uda/seed0 paper=$D-abdominal-ct2mr/diffuse-uda-paper/seed0 \
    zero=$Z-abdominal-ct2mr/seed0 noweight=bench/s17/noweight-abdominal-ct2mr/seed0
synth17 demo-brain-t1t2 0 Dataset901_DemoBrainT1 Dataset902_DemoBrainT2 $O-demo-brain-t1t2/target-supervised/seed0 \
    default=$D-demo-brain-t1t2/diffuse-uda/seed0 paper=$D-demo-brain-t1t2/diffuse-uda-paper/seed0 zero=$Z-demo-brain-t1t2/seed0
synth17 mscmr-bssfp2lge 0 Dataset501_MSCMR_bSSFP Dataset502_MSCMR_LGE $O-mscmr-bssfp2lge/target-supervised/seed0 \
    default=$D-mscmr-bssfp2lge/diffuse-uda/seed0 paper=$D-mscmr-bssfp2lge/diffuse-uda-paper/seed0 \
    zero=$Z-mscmr-bssfp2lge/seed0 v=bench/s17/vpred-mscmr-bssfp2lge/seed0
synth17 polyp-kvasir2cvc 2 Dataset511_KvasirSEG Dataset512_CVCClinicDB bench/polyp-kvasir2cvc/target-supervised/seed0 \
    default=bench/s15/default-polyp-kvasir2cvc/diffuse-uda/seed2 paper=$D-polyp-kvasir2cvc/diffuse-uda-paper/seed2
G=benchmarks/results/synthesis/generators
$BIN/python benchmarks/generator_table.py abdominal-ct2mr/domain-guided=$G/abdominal-ct2mr_seed0_default.json \
    abdominal-ct2mr/zero-init=$G/abdominal-ct2mr_seed0_zero.json abdominal-ct2mr/no-weights=$G/abdominal-ct2mr_seed0_noweight.json \
    abdominal-ct2mr/paper=$G/abdominal-ct2mr_seed0_paper.json \
    demo-brain-t1t2/domain-guided=$G/demo-brain-t1t2_seed0_default.json demo-brain-t1t2/zero-init=$G/demo-brain-t1t2_seed0_zero.json \
    demo-brain-t1t2/paper=$G/demo-brain-t1t2_seed0_paper.json \
    mscmr-bssfp2lge/domain-guided=$G/mscmr-bssfp2lge_seed0_default.json mscmr-bssfp2lge/zero-init=$G/mscmr-bssfp2lge_seed0_zero.json \
    mscmr-bssfp2lge/v-prediction=$G/mscmr-bssfp2lge_seed0_v.json mscmr-bssfp2lge/paper=$G/mscmr-bssfp2lge_seed0_paper.json \
    polyp-kvasir2cvc/domain-guided=$G/polyp-kvasir2cvc_seed2_default.json polyp-kvasir2cvc/paper=$G/polyp-kvasir2cvc_seed2_paper.json
gallery17() {  # TASK SEED MASKS_RUN LABEL=RUN...
  local t=$1 s=$2 masks=$3; shift 3
  local gens=() g run
  for g in "$@"; do run=${g#*=}
    gens+=("${g%%=*}=$run/3_diffusion/diffusion_last.pt:$($BIN/python -c "import json; print(json.load(open('$run/4_synthetic/synthesis_settings.json')).get('guidance_scale') or 1.0)")")
  done
  $BIN/python benchmarks/generator_gallery.py --masks $masks/2_pseudolabels --stage1 bench/s16/default-$t/ascplus/seed$s \
      --generator "${gens[@]}" --rows 6 --out docs/figures/generators_$t.png
}
gallery17 abdominal-ct2mr 0 $D-abdominal-ct2mr/diffuse-uda/seed0 domain-guided=$D-abdominal-ct2mr/diffuse-uda/seed0 \
    zero-init=$Z-abdominal-ct2mr/seed0 paper=$D-abdominal-ct2mr/diffuse-uda-paper/seed0
gallery17 demo-brain-t1t2 0 $D-demo-brain-t1t2/diffuse-uda/seed0 domain-guided=$D-demo-brain-t1t2/diffuse-uda/seed0 \
    zero-init=$Z-demo-brain-t1t2/seed0 paper=$D-demo-brain-t1t2/diffuse-uda-paper/seed0
gallery17 mscmr-bssfp2lge 0 $D-mscmr-bssfp2lge/diffuse-uda/seed0 domain-guided=$D-mscmr-bssfp2lge/diffuse-uda/seed0 \
    zero-init=$Z-mscmr-bssfp2lge/seed0 paper=$D-mscmr-bssfp2lge/diffuse-uda-paper/seed0
gallery17 polyp-kvasir2cvc 2 bench/s15/default-polyp-kvasir2cvc/diffuse-uda/seed2 \
    domain-guided=bench/s15/default-polyp-kvasir2cvc/diffuse-uda/seed2 paper=$D-polyp-kvasir2cvc/diffuse-uda-paper/seed2
# (f) Export, the tables, the rules.
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge polyp-kvasir2cvc; do
  $BIN/python benchmarks/export_results.py $D-$t /tmp/s17-$t && cp -r /tmp/s17-$t/diffuse-uda-paper benchmarks/results/$t/
done
for m in M1 M2 M3 M4 M5 M6; do cp -r /tmp/s17-mscmr-bssfp2lge/diffuse-uda-$m benchmarks/results/mscmr-bssfp2lge/; done
for v in vpred-mscmr-bssfp2lge noweight-abdominal-ct2mr zero-abdominal-ct2mr zero-demo-brain-t1t2 zero-mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s17/$v benchmarks/results/generator-variants/$v
done
$BIN/python benchmarks/generator_decision.py --out benchmarks/results/generator_decision.json
$BIN/python benchmarks/domain_embedding_scale.py bench/s16/default-abdominal-ct2mr/diffuse-uda/seed0/3_diffusion/diffusion_last.pt \
    bench/s17/zero-abdominal-ct2mr/seed0/3_diffusion/diffusion_last.pt
# The task tables with the new rows (lists as in Session 16 (g), plus diffuse-uda-paper and, on MS-CMRSeg, the
# Table-3 rows):
T3=diffuse-uda-M1,diffuse-uda-M2,diffuse-uda-M3,diffuse-uda-M4,diffuse-uda-M5,diffuse-uda-M6
$BIN/python benchmarks/collect_bench.py benchmarks/results/abdominal-ct2mr abdominal-ct2mr --data-root data \
    --methods $B,ascplus-gin-ipa,ascplus,$N16,diffuse-uda,diffuse-uda-paper,$ST,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-calibrated,$OLD
$BIN/python benchmarks/collect_bench.py benchmarks/results/demo-brain-t1t2 demo-brain-t1t2 --data-root data \
    --methods $B,ascplus-gin-ipa,ascplus,$N16,diffuse-uda,diffuse-uda-paper,$ST,ascplus-session12,ascplus-class-ratio-session12,diffuse-uda-session15
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $B,ascplus,$N16,diffuse-uda,diffuse-uda-paper,$T3,ascplus-self-training,ascplus-self-training-2,ascplus-class-ratio-self-training,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated,$OLD
$BIN/python benchmarks/collect_bench.py benchmarks/results/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $B,ascplus-fourier-luminance,ascplus-fourier-bounded,ascplus,$N16,ascplus-class-ratio,diffuse-uda,diffuse-uda-paper,ascplus-self-training,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated,ascplus-session12,ascplus-class-ratio-session12,diffuse-uda-session12
# The Table-3 p-values (against stage 1 and row against row):
R=benchmarks/results/mscmr-bssfp2lge
$BIN/python benchmarks/paired_test.py $R/ascplus/seed0 $R/diffuse-uda/seed0/5_ascplus_synth $R/diffuse-uda-M{1,2,3,4,5,6}/seed0/5_ascplus_synth
for pair in "M1 M2" "M2 M3" "M3 M4" "M4 M5" "M5 M6"; do set -- $pair
  $BIN/python benchmarks/paired_test.py $R/diffuse-uda-$1/seed0/5_ascplus_synth $R/diffuse-uda-$2/seed0/5_ascplus_synth
done
# Velocity prediction end to end against the default (MS-CMRSeg seed 0):
$BIN/python benchmarks/paired_test.py $R/diffuse-uda/seed0/5_ascplus_synth benchmarks/results/generator-variants/vpred-mscmr-bssfp2lge/seed0/5_ascplus_synth

# ---------------------------------------------------------------- Session 18
# Issue 14: rectified flow (rule G) and the generation ablation (Table 3) at seeds 1-2. A fresh machine: stage 1
# is trained again (seed 0 for the flow runs, checked against the committed runs case by case with cmp).
# (a) Table 3 on the domain-guided generator, seeds 1-2 (two processes, one per seed, into the same folder):
for s in 1 2; do
  $BIN/diffuse-uda bench -t mscmr-bssfp2lge --methods ascplus,diffuse-uda-M1,diffuse-uda-M2,diffuse-uda-M3,diffuse-uda-M4,diffuse-uda-M5,diffuse-uda-M6 \
      --seed-list $s -o bench/s18/default-mscmr-bssfp2lge --data-root data &
done; wait
# (b) Rectified flow at seed 0 on MS-CMRSeg and the demo, on a stage 1 made again:
for t in mscmr-bssfp2lge demo-brain-t1t2; do
  $BIN/diffuse-uda bench -t $t --methods ascplus,target-supervised --seed-list 0 -o bench/s18/s0-$t --data-root data
  for m in ascplus target-supervised; do
    cmp bench/s18/s0-$t/$m/seed0/evaluation/per_case.csv benchmarks/results/$t/$m/seed0/evaluation/per_case.csv
  done
  $BIN/diffuse-uda run -t $t -o bench/s18/flow-$t/seed0 --seed 0 --data-root data --set diffusion.prediction_type=flow \
      --set synthesis.sampler=euler --set stage1_run=bench/s18/s0-$t/ascplus/seed0
done
# (c) The default pipeline on the same re-made stage 1 (the comparison rule G asks for), then both generators'
# samples on the same 32 pseudo-label masks (the guidance each pipeline chose; flow: 1.0, default: 1.5):
$BIN/diffuse-uda run -t mscmr-bssfp2lge -o bench/s18/default-s0-mscmr-bssfp2lge/seed0 --seed 0 --data-root data \
    --set stage1_run=bench/s18/s0-mscmr-bssfp2lge/ascplus/seed0
synth18() {  # LABEL RUN SAMPLERS...
  local label=$1 run=$2; shift 2
  $BIN/python benchmarks/bench_synthesis.py --generator $run/3_diffusion/diffusion_last.pt \
      --segmenter bench/s18/s0-mscmr-bssfp2lge/target-supervised/seed0 --masks bench/s18/default-s0-mscmr-bssfp2lge/seed0/2_pseudolabels \
      --stage1 bench/s18/s0-mscmr-bssfp2lge/ascplus/seed0 --source data/Dataset501_MSCMR_bSSFP --target data/Dataset502_MSCMR_LGE \
      --samplers "$@" --n 32 --seed 1 --out benchmarks/results/synthesis/generators/mscmr-bssfp2lge_seed0_$label.json
}
synth18 flow bench/s18/flow-mscmr-bssfp2lge/seed0 euler:250:1.0 euler:25:1.0
synth18 default-session18 bench/s18/default-s0-mscmr-bssfp2lge/seed0 ddpm:250:1.5 ddim:25:1.5:1
cp bench/s18/flow-mscmr-bssfp2lge/seed0/4_synthetic/gallery.png docs/figures/gallery_mscmr-bssfp2lge_rectified-flow_seed0.png
# (d) Export, tables, tests:
V=benchmarks/results/generator-variants
$BIN/python benchmarks/export_results.py bench/s18/flow-mscmr-bssfp2lge $V/flow-mscmr-bssfp2lge
$BIN/python benchmarks/export_results.py bench/s18/default-s0-mscmr-bssfp2lge $V/default-session18-mscmr-bssfp2lge
$BIN/python benchmarks/export_results.py bench/s18/s0-mscmr-bssfp2lge $V/stage1-session18-mscmr-bssfp2lge
G=benchmarks/results/synthesis/generators
$BIN/python benchmarks/generator_table.py mscmr-bssfp2lge/domain-guided=$G/mscmr-bssfp2lge_seed0_default-session18.json \
    mscmr-bssfp2lge/rectified-flow=$G/mscmr-bssfp2lge_seed0_flow.json
$BIN/python benchmarks/paired_test.py $V/stage1-session18-mscmr-bssfp2lge/ascplus/seed0 \
    $V/default-session18-mscmr-bssfp2lge/seed0/5_ascplus_synth $V/flow-mscmr-bssfp2lge/seed0/5_ascplus_synth
$BIN/python benchmarks/paired_test.py $V/default-session18-mscmr-bssfp2lge/seed0/5_ascplus_synth $V/flow-mscmr-bssfp2lge/seed0/5_ascplus_synth
# The re-made seed-0 runs against the committed ones (a fresh machine: not bit-identical):
R=benchmarks/results/mscmr-bssfp2lge
$BIN/python benchmarks/paired_test.py $R/ascplus/seed0 $V/stage1-session18-mscmr-bssfp2lge/ascplus/seed0
$BIN/python benchmarks/paired_test.py $R/target-supervised/seed0 $V/stage1-session18-mscmr-bssfp2lge/target-supervised/seed0
# (e) Table 3 at 3 seeds: export seeds 1-2 (the M rows, and their stage 1 as `ascplus-session18`), the task table,
# the separation rule.
$BIN/python benchmarks/export_results.py bench/s18/default-mscmr-bssfp2lge /tmp/s18-t3
for m in M1 M2 M3 M4 M5 M6; do cp -r /tmp/s18-t3/diffuse-uda-$m/seed1 /tmp/s18-t3/diffuse-uda-$m/seed2 $R/diffuse-uda-$m/; done
mkdir -p $R/ascplus-session18 && cp -r /tmp/s18-t3/ascplus/seed1 /tmp/s18-t3/ascplus/seed2 $R/ascplus-session18/
$BIN/python benchmarks/collect_bench.py benchmarks/results/mscmr-bssfp2lge mscmr-bssfp2lge --data-root data \
    --methods $B,ascplus,$N16,diffuse-uda,diffuse-uda-paper,$T3,ascplus-session18,ascplus-self-training,ascplus-self-training-2,ascplus-class-ratio-self-training,ad,glua,glua-shared-budget,glua-no-style-transfer,glua-no-local-alignment,glua-no-output-adversary,heal-HD-calibrated,heal-calibrated,$OLD
$BIN/python benchmarks/generation_ablation.py $R --seeds 0 1 2 --stage1-for 1=ascplus-session18 --stage1-for 2=ascplus-session18 \
    --out benchmarks/results/generation_ablation.json

# ---------------------------------------------------------------- Session 19
# Issue 14: rule G (b) on the demo (rectified flow against the default pipeline on one stage 1 made here), and rule H
# (the polyp generator with target pairs trained without their pseudo-label masks). Same machine as session 18.
# (a) The demo's stage 1 and oracle at seed 0, then both pipelines on that stage 1:
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods ascplus,target-supervised --seed-list 0 -o bench/s19/s0-demo-brain-t1t2 --data-root data
S1=bench/s19/s0-demo-brain-t1t2/ascplus/seed0
$BIN/diffuse-uda run -t demo-brain-t1t2 -o bench/s19/flow-demo-brain-t1t2/seed0 --seed 0 --data-root data \
    --set diffusion.prediction_type=flow --set synthesis.sampler=euler --set stage1_run=$S1 &
$BIN/diffuse-uda run -t demo-brain-t1t2 -o bench/s19/default-s0-demo-brain-t1t2/seed0 --seed 0 --data-root data \
    --set stage1_run=$S1 &
wait
# (b) The polyp generators (wide, stage 1 = gin fixed, seed 0), with and without the target pairs' masks; the
# second shares the first's stage 1 and pseudo-labels. Only stages 1-3 are used (each run was stopped after its
# generator); the oracle is this machine's seed-0 `target-supervised`.
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods target-supervised --seed-list 0 -o bench/s19/polyp-oracle --data-root data
P=bench/s19/polyp-wide/seed0
$BIN/diffuse-uda run -t polyp-kvasir2cvc -o $P --seed 0 --data-root data --set segmentation.method.appearance=gin \
    --set 'diffusion.channels=[32,64,128]'
$BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s19/polyp-wide-nomask/seed0 --seed 0 --data-root data \
    --set segmentation.method.appearance=gin --set 'diffusion.channels=[32,64,128]' --set diffusion.target_mask_dropout=1.0 \
    --set "share_stages_with=[$PWD/$P]"
for v in wide:polyp-wide wide-nomask:polyp-wide-nomask; do
  $BIN/python benchmarks/bench_synthesis.py --generator bench/s19/${v#*:}/seed0/3_diffusion/diffusion_last.pt \
      --segmenter bench/s19/polyp-oracle/target-supervised/seed0 --masks $P/2_pseudolabels --stage1 $P/1_ascplus \
      --source data/Dataset511_KvasirSEG --target data/Dataset512_CVCClinicDB --samplers ddim:25:1:1 ddim:25:2:1 \
      --n 32 --seed 1 --out benchmarks/results/synthesis/polyp-target-masks/${v%%:*}_seed0.json
done
# (c) Both demo generators' samples on the same 32 pseudo-label masks (the guidance both pipelines chose, 1.5):
synth19() {  # LABEL RUN SAMPLERS...
  local label=$1 run=$2; shift 2
  $BIN/python benchmarks/bench_synthesis.py --generator bench/s19/$run/seed0/3_diffusion/diffusion_last.pt \
      --segmenter bench/s19/s0-demo-brain-t1t2/target-supervised/seed0 --masks bench/s19/default-s0-demo-brain-t1t2/seed0/2_pseudolabels \
      --stage1 $S1 --source data/Dataset901_DemoBrainT1 --target data/Dataset902_DemoBrainT2 --samplers "$@" \
      --n 32 --seed 1 --out benchmarks/results/synthesis/generators/demo-brain-t1t2_seed0_$label.json
}
synth19 flow flow-demo-brain-t1t2 euler:250:1.5 euler:25:1.5
synth19 default-session19 default-s0-demo-brain-t1t2 ddpm:250:1.5 ddim:25:1.5:1
# (d) Export and paired tests:
V=benchmarks/results/generator-variants
$BIN/python benchmarks/export_results.py bench/s19/flow-demo-brain-t1t2 $V/flow-demo-brain-t1t2
$BIN/python benchmarks/export_results.py bench/s19/default-s0-demo-brain-t1t2 $V/default-session19-demo-brain-t1t2
$BIN/python benchmarks/export_results.py bench/s19/s0-demo-brain-t1t2 $V/stage1-session19-demo-brain-t1t2
$BIN/python benchmarks/paired_test.py $V/stage1-session19-demo-brain-t1t2/ascplus/seed0 \
    $V/default-session19-demo-brain-t1t2/seed0/5_ascplus_synth $V/flow-demo-brain-t1t2/seed0/5_ascplus_synth
$BIN/python benchmarks/paired_test.py $V/default-session19-demo-brain-t1t2/seed0/5_ascplus_synth $V/flow-demo-brain-t1t2/seed0/5_ascplus_synth
R=benchmarks/results/demo-brain-t1t2
$BIN/python benchmarks/paired_test.py $R/ascplus/seed0 $V/stage1-session19-demo-brain-t1t2/ascplus/seed0
$BIN/python benchmarks/paired_test.py $R/target-supervised/seed0 $V/stage1-session19-demo-brain-t1t2/target-supervised/seed0
$BIN/python benchmarks/paired_test.py $R/diffuse-uda/seed0/5_ascplus_synth $V/default-session19-demo-brain-t1t2/seed0/5_ascplus_synth
cp bench/s19/flow-demo-brain-t1t2/seed0/4_synthetic/gallery.png docs/figures/gallery_demo-brain-t1t2_rectified-flow_seed0.png
# (e) The polyp pipelines run on to stage 3 (same commands as (b), which resume); export and paired tests:
T=benchmarks/results/polyp-generator-target-masks
$BIN/python benchmarks/export_results.py bench/s19/polyp-wide $T/wide
$BIN/python benchmarks/export_results.py bench/s19/polyp-wide-nomask $T/wide-nomask
$BIN/python benchmarks/export_results.py bench/s19/polyp-oracle $T/oracle
$BIN/python benchmarks/paired_test.py $T/wide/seed0/1_ascplus $T/wide/seed0/5_ascplus_synth $T/wide-nomask/seed0/5_ascplus_synth
$BIN/python benchmarks/paired_test.py $T/wide/seed0/5_ascplus_synth $T/wide-nomask/seed0/5_ascplus_synth
$BIN/python benchmarks/generator_table.py polyp-kvasir2cvc/wide=benchmarks/results/synthesis/polyp-target-masks/wide_seed0.json \
    polyp-kvasir2cvc/wide-no-target-masks=benchmarks/results/synthesis/polyp-target-masks/wide-nomask_seed0.json
for v in wide-session19:polyp-wide wide-no-target-masks:polyp-wide-nomask; do
  cp bench/s19/${v#*:}/seed0/4_synthetic/gallery.png docs/figures/gallery_polyp-kvasir2cvc_${v%%:*}_seed0.png
done

# ---------------------------------------------------------------- Session 20
# (a) The structure term's premise (CutMix equivariance of a source-only model, seed 0), all nine tasks:
for t in mscmr-bssfp2lge abdominal-ct2mr demo-brain-t1t2 polyp-kvasir2cvc mscmr-lge2bssfp abdominal-mr2ct \
         demo-brain-t2t1 demo-brain-t1flair polyp-cvc2kvasir; do
  tt=$t; [ -f benchmarks/tasks/$t.yaml ] && tt=benchmarks/tasks/$t.yaml
  $BIN/diffuse-uda bench -t $tt --methods source-only --seed-list 0 -o bench/s20/so/$t
  $BIN/python benchmarks/cutmix_equivariance.py measure $tt bench/s20/so/$t/source-only/seed0 \
      benchmarks/results/structure-premise/$t.json
done
$BIN/python benchmarks/cutmix_equivariance.py table benchmarks/results/structure-premise/{mscmr-bssfp2lge,abdominal-ct2mr,demo-brain-t1t2,polyp-kvasir2cvc,mscmr-lge2bssfp,abdominal-mr2ct,demo-brain-t2t1,demo-brain-t1flair,polyp-cvc2kvasir}.json
# (b) Rule I: ascplus with and without the structure term on CVC -> Kvasir (two processes, one thread each):
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods ascplus --seed-list 0,1,2 -o bench/s20/cvc2kvasir &
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods ascplus --seed-list 0,1,2 -o bench/s20/cvc2kvasir-nostructure \
    --set method.structure=false &
wait
# (c) The bounds made again on this machine (source-only seed 0 is (a)'s run), and the exploratory dual-view runs:
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods source-only,source-only-dg --seed-list 0,1,2 -o bench/s20/so/polyp-cvc2kvasir
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus-histogram-matching,ascplus-gin --seed-list 0 \
    -o bench/s20/k2c-nostructure --set method.structure=false
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus-histogram-matching,ascplus-gin --seed-list 0 \
    -o bench/s20/k2c-nostructure-nodual --set method.structure=false --set method.app_restyled=false
# (d) Export and paired tests:
R=benchmarks/results/structure-photos
for x in so/polyp-kvasir2cvc:kvasir2cvc-source-only cvc2kvasir:cvc2kvasir-default cvc2kvasir-nostructure:cvc2kvasir-no-structure so/polyp-cvc2kvasir:cvc2kvasir-bounds \
         k2c-nostructure:kvasir2cvc-no-structure k2c-nostructure-nodual:kvasir2cvc-no-structure-no-dual; do
  $BIN/python benchmarks/export_results.py bench/s20/${x%%:*} $R/${x#*:}
done
for s in 0 1 2; do
  $BIN/python benchmarks/paired_test.py $R/cvc2kvasir-default/ascplus/seed$s $R/cvc2kvasir-no-structure/ascplus/seed$s
done
for c in histogram-matching gin; do
  $BIN/python benchmarks/paired_test.py $R/kvasir2cvc-no-structure/ascplus-$c/seed0 $R/kvasir2cvc-no-structure-no-dual/ascplus-$c/seed0
done
# (e) Each candidate's 3-seed mean test Dice with and without the term (from the exported candidate evaluations):
$BIN/python - <<'PY'
import json
import numpy as np
R = "benchmarks/results/structure-photos"
for cfg in ("cvc2kvasir-default", "cvc2kvasir-no-structure"):
    means = {c: np.mean([json.load(open(f"{R}/{cfg}/ascplus-{c}/seed{s}/evaluation/summary.json"))
                         ["per_class"]["polyp"]["dice"]["mean"] * 100 for s in range(3)])
             for c in ("paper", "histogram-matching", "bezier-ipa", "gin", "mix", "fourier-luminance")}
    print(cfg, {c: round(float(v), 1) for c, v in means.items()}, "mean of the six:",
          round(float(np.mean(list(means.values()))), 1))
PY

# ---------------------------------------------------------------- Session 21
# (a) Rule J from the committed choices and the imported source labels (no training):
$BIN/python benchmarks/floor_decision.py --data-root data --out benchmarks/results/floor-rule/decision.json
# (b) Rule K's held-out decisions: the five grey candidates at seeds 3-4 of the abdominal tasks and seed 3 of the
#     MS-CMRSeg tasks (two processes, one thread each), then the three rules' rows from those candidates (reused):
C=ascplus-paper,ascplus-histogram-matching,ascplus-bezier-ipa,ascplus-gin,ascplus-mix
RULES=ascplus-guarded-class-ratio,ascplus-floored-class-ratio,ascplus-margin-class-ratio
for run in "abdominal-ct2mr:3 mscmr-bssfp2lge:3 abdominal-ct2mr:4" "abdominal-mr2ct:3 mscmr-lge2bssfp:3 abdominal-mr2ct:4"; do
  (for x in $run; do $BIN/diffuse-uda bench -t ${x%:*} --methods $C --seed-list ${x#*:} -o bench/s21/${x%:*}; done) &
done
wait
for x in abdominal-ct2mr:3,4 abdominal-mr2ct:3,4 mscmr-bssfp2lge:3 mscmr-lge2bssfp:3; do
  $BIN/diffuse-uda bench -t ${x%:*} --methods $C,$RULES --seed-list ${x#*:} -o bench/s21/${x%:*}
  $BIN/python benchmarks/export_results.py bench/s21/${x%:*} benchmarks/results/rule-k/${x%:*}
done
# (c) The decision:
$BIN/python benchmarks/margin_decision.py --out benchmarks/results/rule-k/decision.json

# ---------------------------------------------------------------- Session 22
# (a) Rule L's held-out rows: one self-training round after rule J's choice, from session 21's candidates (bench/s21,
#     "Session 21" (b)); two processes, one thread each; then only the new row's runs are exported:
for run in "abdominal-ct2mr:3 mscmr-bssfp2lge:3 abdominal-ct2mr:4" "abdominal-mr2ct:3 mscmr-lge2bssfp:3 abdominal-mr2ct:4"; do
  (for x in $run; do $BIN/diffuse-uda bench -t ${x%:*} --methods ascplus-self-training --seed-list ${x#*:} -o bench/s21/${x%:*}; done) &
done
wait
for t in abdominal-ct2mr abdominal-mr2ct mscmr-bssfp2lge mscmr-lge2bssfp; do
  $BIN/python benchmarks/export_results.py bench/s21/$t benchmarks/results/rule-l/$t --rows ascplus-self-training
done
# (b) Reported with it, not decided by it: the round on the committed pick of the design seeds 0-2 (the pick's
#     candidate retrained here, then the round; one thread each; this session ran two processes at a time, the
#     MS-CMRSeg seeds after the other two tasks), exported:
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do
  (for s in 0 1 2; do
     $BIN/python benchmarks/self_training_at_pick.py -t $t --seed $s --choice benchmarks/results/$t/bench.json -o bench/s22/$t
   done) &
done
wait
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s22/$t benchmarks/results/rule-l-design/$t
done
# (c) The decision (from (a)) and the design rows (from (b)):
$BIN/python benchmarks/self_training_decision.py --out benchmarks/results/rule-l/decision.json

# ---------------------------------------------------------------- Session 23
# (a) Rule M's held-out rows: a second self-training round after rule L's round 1, in the same row folders
#     (bench/s21, "Session 22" (a); round 1 and the candidates are reused, only round 2 is trained), and
# (b) reported with it: the second round after session 22's round 1 on the design seeds 0-2 (bench/s22,
#     "Session 22" (b)). Two processes, one thread each, in this order.
# rounds_at_pick "task:seed:kind:N ...": in order, self-training rounds 1..N after the pick (rounds already made are
# reused); kind h = a held-out decision (rule L's row, bench/s21), d = a design seed (the committed pick, bench/s22),
# n = a held-out demo task (a task file of "Session 16", bench/s24).
rounds_at_pick() {
  for x in $1; do
    IFS=: read -r t s kind n <<< "$x"
    case $kind in
      h) $BIN/python benchmarks/self_training_at_pick.py -t $t --seed $s --rounds $n --row ascplus-self-training \
             --choice benchmarks/results/rule-l/$t/ascplus-self-training/seed$s -o bench/s21/$t ;;
      d) $BIN/python benchmarks/self_training_at_pick.py -t $t --seed $s --rounds $n \
             --choice benchmarks/results/$t/bench.json -o bench/s22/$t ;;
      n) $BIN/python benchmarks/self_training_at_pick.py -t benchmarks/tasks/$t.yaml --seed $s --rounds $n \
             --choice benchmarks/results/$t/bench.json -o bench/s24/$t ;;
    esac
  done
}
rounds_at_pick "abdominal-ct2mr:3:h:2 mscmr-bssfp2lge:3:h:2 abdominal-ct2mr:4:h:2 abdominal-ct2mr:0:d:2 demo-brain-t1t2:0:d:2 mscmr-bssfp2lge:0:d:2 abdominal-ct2mr:2:d:2 demo-brain-t1t2:2:d:2" &
rounds_at_pick "abdominal-mr2ct:3:h:2 mscmr-lge2bssfp:3:h:2 abdominal-mr2ct:4:h:2 abdominal-ct2mr:1:d:2 demo-brain-t1t2:1:d:2 mscmr-bssfp2lge:1:d:2 mscmr-bssfp2lge:2:d:2" &
wait
for t in abdominal-ct2mr abdominal-mr2ct mscmr-bssfp2lge mscmr-lge2bssfp; do
  $BIN/python benchmarks/export_results.py bench/s21/$t benchmarks/results/rule-m/$t --rows ascplus-self-training --no-tables
done
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s22/$t benchmarks/results/rule-m-design/$t --rows ascplus-self-training-at-pick \
      --no-tables
done
# (d) Exploratory, not decided: a third round on the design seeds of abdominal CT -> MR and the demo (after (b);
#     rounds 1-2 reused), re-exported with them, and the pseudo-label drift between consecutive rounds (label-free;
#     reads the bench folders' pseudo-labels, which are not committed) beside each round's test gain:
rounds_at_pick "abdominal-ct2mr:0:d:3 abdominal-ct2mr:1:d:3" &
rounds_at_pick "demo-brain-t1t2:0:d:3 demo-brain-t1t2:1:d:3 demo-brain-t1t2:2:d:3 abdominal-ct2mr:2:d:3" &
wait
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/python benchmarks/export_results.py bench/s22/$t benchmarks/results/rule-m-design/$t --rows ascplus-self-training-at-pick \
      --no-tables
done
$BIN/python benchmarks/pseudolabel_drift.py bench/s22/*/ascplus-self-training-at-pick/seed* \
    bench/s21/*/ascplus-self-training/seed* --out benchmarks/results/rule-m/drift.json
# (e) The decision (from (a)), the design rows (from (b)) and the third round (from (d)):
$BIN/python benchmarks/second_round_decision.py --out benchmarks/results/rule-m/decision.json

# ---------------------------------------------------------------- Session 24
# (a) Rule N's held-out rows: a third self-training round after rule M's round 2, in the same row folders
#     (bench/s21, "Session 23" (a); the candidates and rounds 1-2 are reused, only round 3 is trained), and
# (b) reported with it: the third round on the design seeds 0-2 of MS-CMRSeg (bench/s22, "Session 23" (b); the
#     other two design tasks have theirs from "Session 23" (d)). Two processes, one thread each, in this order:
rounds_at_pick "abdominal-ct2mr:3:h:3 mscmr-bssfp2lge:3:h:3 abdominal-ct2mr:4:h:3 mscmr-bssfp2lge:0:d:3 mscmr-bssfp2lge:2:d:3" &
rounds_at_pick "abdominal-mr2ct:3:h:3 mscmr-lge2bssfp:3:h:3 abdominal-mr2ct:4:h:3 mscmr-bssfp2lge:1:d:3" &
wait
# (c) Reported, no rule: the two-round default on the held-out demo tasks (their data and task files:
#     `python benchmarks/heldout_demo.py data`, "Session 16"; the committed pick retrained here, then rounds 1-2;
#     bench/s24), and a fourth round on the demo's design seeds (bench/s22, rounds 1-3 reused); in the order this
#     session ran them (the fourth rounds first):
rounds_at_pick "demo-brain-t1t2:0:d:4 demo-brain-t1t2:1:d:4 demo-brain-t1flair:0:n:2 demo-brain-t1flair:1:n:2 demo-brain-t1flair:2:n:2" &
rounds_at_pick "demo-brain-t1t2:2:d:4 demo-brain-t2t1:0:n:2 demo-brain-t2t1:1:n:2 demo-brain-t2t1:2:n:2" &
wait
# (d) Exports, the decision (from (a)), the design rows (from (b) and "Session 23" (d)), the fourth round and the
#     held-out demo tasks (from (c)), and the pseudo-label drift of every pair of consecutive rounds:
for t in abdominal-ct2mr abdominal-mr2ct mscmr-bssfp2lge mscmr-lge2bssfp; do
  $BIN/python benchmarks/export_results.py bench/s21/$t benchmarks/results/rule-n/$t --rows ascplus-self-training --no-tables
done
for t in abdominal-ct2mr demo-brain-t1t2 mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s22/$t benchmarks/results/rule-n-design/$t --rows ascplus-self-training-at-pick \
      --no-tables
done
for t in demo-brain-t1flair demo-brain-t2t1; do
  $BIN/python benchmarks/export_results.py bench/s24/$t benchmarks/results/rule-n-demo-heldout/$t
done
$BIN/python benchmarks/third_round_decision.py --out benchmarks/results/rule-n/decision.json
$BIN/python benchmarks/pseudolabel_drift.py bench/s22/*/ascplus-self-training-at-pick/seed* \
    bench/s21/*/ascplus-self-training/seed* bench/s24/*/ascplus-self-training-at-pick/seed* \
    --out benchmarks/results/rule-n/drift.json

# ---------------------------------------------------------------- Session 25
# (a) Rule O: the pipeline (stages 2-5, product defaults) on the seed-0 pick's candidate (round 0) and on its second
#     self-training round, both from "Session 22" (b) / "Session 23" (b) (bench/s22; no stage 1 is trained here).
#     Two processes, one thread each; this session ran the round-2 arms first:
pipeline_at_round() {  # task seed round
  $BIN/python benchmarks/pipeline_at_round.py -t $1 --seed $2 --round $3 --choice benchmarks/results/$1/bench.json \
      --bench bench/s22/$1 -o bench/s25/$1/round$3/seed$2
}
(pipeline_at_round demo-brain-t1t2 0 2; pipeline_at_round demo-brain-t1t2 0 0) &
(pipeline_at_round abdominal-ct2mr 0 2; pipeline_at_round abdominal-ct2mr 0 0) &
wait
# (b) Post hoc: why the demo's stage 1 stops near 60 (the seed-0 pick and its second round; regenerates the demo's
#     target without its bias field / blur under /tmp/demo-diagnosis):
$BIN/python benchmarks/demo_contrast_diagnosis.py --data-root data --work /tmp/demo-diagnosis \
    --model pick=bench/s22/demo-brain-t1t2/ascplus-bezier-ipa/seed0 \
    --model round2=bench/s22/demo-brain-t1t2/ascplus-self-training-at-pick/seed0/self_training/round2 \
    --out benchmarks/results/demo-diagnosis/diagnosis.json --figure docs/figures/demo_contrast_diagnosis.png
# (c) Exploratory (registered before their runs): the seed-0 pick's candidate with twice the width, twice the updates
#     (both after (a)), then with monotone curves; then 4000 updates on more design seeds (two processes each time):
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods ascplus-bezier-ipa --seed-list 0 -o bench/s25/variants-width16 \
    --set network.init_filters=16 &
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods ascplus-bezier-ipa --seed-list 0 -o bench/s25/variants-iter4000 \
    --set training.iterations=4000 &
wait
$BIN/diffuse-uda bench -t demo-brain-t1t2 --methods ascplus-bezier-ipa --seed-list 0 -o bench/s25/variants-monotone \
    --set 'method.appearance_options={"member": "bezier", "member_options": {"location_scale": true, "random_endpoints": false}}'
longer_at_pick() {  # "task:seed ...": the committed pick's candidate at 4000 updates, in order
  for x in $1; do
    IFS=: read -r t s <<< "$x"
    pick=$($BIN/python -c "import json; print([c['chosen'] for c in json.load(open('benchmarks/results/$t/bench.json'))['appearance_choices']['ascplus'] if c['seed'] == $s][0])")
    $BIN/diffuse-uda bench -t $t --methods ascplus-$pick --seed-list $s -o bench/s25/iter4000-$t --set training.iterations=4000
  done
}
longer_at_pick "demo-brain-t1t2:1 abdominal-ct2mr:0" &
longer_at_pick "demo-brain-t1t2:2 mscmr-bssfp2lge:0" &
wait
longer_at_pick "abdominal-ct2mr:1" &  # registered after the runs above
longer_at_pick "abdominal-ct2mr:2" &
wait
$BIN/python benchmarks/demo_contrast_diagnosis.py --data-root data --work /tmp/demo-diagnosis \
    --model pick=bench/s22/demo-brain-t1t2/ascplus-bezier-ipa/seed0 \
    --model width16=bench/s25/variants-width16/ascplus-bezier-ipa/seed0 \
    --model monotone=bench/s25/variants-monotone/ascplus-bezier-ipa/seed0 \
    --model iter4000=bench/s25/variants-iter4000/ascplus-bezier-ipa/seed0 \
    --out benchmarks/results/demo-diagnosis/variants.json
# (d) Exports, rule O's decision (with issue 14's mark against today's ascplus, from committed rows) and the
#     training-length table:
for t in demo-brain-t1t2 abdominal-ct2mr; do
  $BIN/python benchmarks/export_results.py bench/s25/$t benchmarks/results/rule-o/$t --no-tables
done
for v in width16 monotone; do
  $BIN/python benchmarks/export_results.py bench/s25/variants-$v benchmarks/results/demo-diagnosis/variants-$v
done
$BIN/python benchmarks/export_results.py bench/s25/variants-iter4000 benchmarks/results/training-length/demo-brain-t1t2 \
    --no-tables
for t in demo-brain-t1t2 abdominal-ct2mr mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s25/iter4000-$t benchmarks/results/training-length/$t --no-tables
done
$BIN/python benchmarks/pipeline_round_decision.py --out benchmarks/results/rule-o/decision.json
$BIN/python benchmarks/training_length.py --out benchmarks/results/training-length/record.json
# ---------------------------------------------------------------- Session 26
# (a) Rule P's held-out demo decisions: the committed pick's candidate at 4000 updates (no round) on the two held-out
#     demo tasks (their data and task files: "Session 16"), seeds 0-2; two processes, one thread each:
longer_at_pick_file() {  # "task:seed ...", in order
  for x in $1; do
    IFS=: read -r t s <<< "$x"
    pick=$($BIN/python -c "import json; print([c['chosen'] for c in json.load(open('benchmarks/results/$t/bench.json'))['appearance_choices']['ascplus'] if c['seed'] == $s][0])")
    $BIN/diffuse-uda bench -t benchmarks/tasks/$t.yaml --methods ascplus-$pick --seed-list $s -o bench/s26/iter4000-$t \
        --set training.iterations=4000
  done
}
longer_at_pick_file "demo-brain-t2t1:0 demo-brain-t2t1:1 demo-brain-t2t1:2" &
longer_at_pick_file "demo-brain-t1flair:0 demo-brain-t1flair:1 demo-brain-t1flair:2" &
wait
# (b) Rule P's new real-task seeds (after (a)): today's `ascplus` (the choice, then two rounds, its default on
#     scans), then the candidate it chose at 4000 updates (a separate folder: the choice's candidates are the first
#     folder's ascplus-<name> rows at 2000 updates):
default_then_longer() {  # task seed
  $BIN/diffuse-uda bench -t $1 --methods ascplus --seed-list $2 -o bench/s26/rule-p-$1
  pick=$($BIN/python -c "import json; print(json.load(open('bench/s26/rule-p-$1/ascplus/seed$2/appearance_choice.json'))['chosen'])")
  $BIN/diffuse-uda bench -t $1 --methods ascplus-$pick --seed-list $2 -o bench/s26/iter4000-$1 --set training.iterations=4000
}
default_then_longer abdominal-ct2mr 5 &
default_then_longer mscmr-bssfp2lge 4 &
wait
# (c) Exports and rule P's decision:
for t in demo-brain-t2t1 demo-brain-t1flair abdominal-ct2mr mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s26/iter4000-$t benchmarks/results/rule-p/$t --no-tables
done
for t in abdominal-ct2mr mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s26/rule-p-$t benchmarks/results/rule-p-default/$t
done
$BIN/python benchmarks/training_length_decision.py --out benchmarks/results/rule-p/decision.json
# (d) Reported, no rule (after (b)): the committed pick of MS-CMRSeg bSSFP -> LGE at design seeds 1-2, 4000 updates,
#     then the training-length record (now 3 seeds of each grey design task):
longer_at_pick_design() {  # seed
  t=mscmr-bssfp2lge
  pick=$($BIN/python -c "import json; print([c['chosen'] for c in json.load(open('benchmarks/results/$t/bench.json'))['appearance_choices']['ascplus'] if c['seed'] == $1][0])")
  $BIN/diffuse-uda bench -t $t --methods ascplus-$pick --seed-list $1 -o bench/s26/design-iter4000-$t \
      --set training.iterations=4000
}
longer_at_pick_design 1 &
longer_at_pick_design 2 &
wait
$BIN/python benchmarks/export_results.py bench/s26/design-iter4000-mscmr-bssfp2lge \
    benchmarks/results/training-length/mscmr-bssfp2lge --no-tables
$BIN/python benchmarks/training_length.py --out benchmarks/results/training-length/record.json

# ---------------------------------------------------------------- Session 27
# (a) Rule Q: two self-training rounds (2000 updates each) on the committed pick's 4000-update model (Session 26
#     (a)-(b) and Session 25's design runs made those models, which are reused from their folders), for rule P's 8
#     held-out decisions first, then the design seeds; two processes, one thread each:
rounds_on_longer() {  # "task|seed|choice|bench-folder ...", in order
  for x in $1; do
    IFS='|' read -r t s c o <<< "$x"
    $BIN/python benchmarks/self_training_at_pick.py -t $t --seed $s --choice $c -o $o --pick-iterations 4000 \
        --rounds 2 --row ascplus-longer-rounds
  done
}
R=benchmarks/results
rounds_on_longer "benchmarks/tasks/demo-brain-t1flair.yaml|0|$R/demo-brain-t1flair/bench.json|bench/s26/iter4000-demo-brain-t1flair
  benchmarks/tasks/demo-brain-t1flair.yaml|1|$R/demo-brain-t1flair/bench.json|bench/s26/iter4000-demo-brain-t1flair
  benchmarks/tasks/demo-brain-t1flair.yaml|2|$R/demo-brain-t1flair/bench.json|bench/s26/iter4000-demo-brain-t1flair
  abdominal-ct2mr|5|$R/rule-p-default/abdominal-ct2mr/ascplus/seed5|bench/s26/iter4000-abdominal-ct2mr
  demo-brain-t1t2|0|$R/demo-brain-t1t2/bench.json|bench/s25/variants-iter4000
  demo-brain-t1t2|2|$R/demo-brain-t1t2/bench.json|bench/s25/iter4000-demo-brain-t1t2
  abdominal-ct2mr|1|$R/abdominal-ct2mr/bench.json|bench/s25/iter4000-abdominal-ct2mr
  mscmr-bssfp2lge|0|$R/mscmr-bssfp2lge/bench.json|bench/s25/iter4000-mscmr-bssfp2lge
  mscmr-bssfp2lge|2|$R/mscmr-bssfp2lge/bench.json|bench/s26/design-iter4000-mscmr-bssfp2lge" &
rounds_on_longer "benchmarks/tasks/demo-brain-t2t1.yaml|0|$R/demo-brain-t2t1/bench.json|bench/s26/iter4000-demo-brain-t2t1
  benchmarks/tasks/demo-brain-t2t1.yaml|1|$R/demo-brain-t2t1/bench.json|bench/s26/iter4000-demo-brain-t2t1
  benchmarks/tasks/demo-brain-t2t1.yaml|2|$R/demo-brain-t2t1/bench.json|bench/s26/iter4000-demo-brain-t2t1
  mscmr-bssfp2lge|4|$R/rule-p-default/mscmr-bssfp2lge/ascplus/seed4|bench/s26/iter4000-mscmr-bssfp2lge
  demo-brain-t1t2|1|$R/demo-brain-t1t2/bench.json|bench/s25/iter4000-demo-brain-t1t2
  abdominal-ct2mr|0|$R/abdominal-ct2mr/bench.json|bench/s25/iter4000-abdominal-ct2mr
  abdominal-ct2mr|2|$R/abdominal-ct2mr/bench.json|bench/s25/iter4000-abdominal-ct2mr
  mscmr-bssfp2lge|1|$R/mscmr-bssfp2lge/bench.json|bench/s26/design-iter4000-mscmr-bssfp2lge" &
wait
# (b) Exports (the rounds only; the 4000-update models are committed since Session 26) and rule Q's decision:
for o in s26/iter4000-demo-brain-t1flair s26/iter4000-demo-brain-t2t1 s26/iter4000-abdominal-ct2mr \
    s26/iter4000-mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/$o $R/rule-q/${o#s26/iter4000-} --rows ascplus-longer-rounds \
      --no-tables
done
for o in s25/variants-iter4000:demo-brain-t1t2 s25/iter4000-demo-brain-t1t2:demo-brain-t1t2 \
    s25/iter4000-abdominal-ct2mr:abdominal-ct2mr s25/iter4000-mscmr-bssfp2lge:mscmr-bssfp2lge \
    s26/design-iter4000-mscmr-bssfp2lge:mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/${o%%:*} $R/rule-q-design/${o##*:} --rows ascplus-longer-rounds \
      --no-tables
done
$BIN/python benchmarks/longer_rounds_decision.py --out $R/rule-q/decision.json

# ---------------------------------------------------------------- Session 28
# (a) Rule R: the pipeline (stages 2-5, product defaults) on today's ascplus default model, round 2 of the committed
#     pick trained for 4000 updates (Session 27 (a)'s runs, reused from their folders; nothing of stage 1 is trained
#     here), at seeds 0-2 of abdominal CT -> MR and the demo; two processes, one thread each:
R=benchmarks/results
pipeline_on_default() {  # "task|seed|bench-folder ...", in order
  for x in $1; do
    IFS='|' read -r t s b <<< "$x"
    $BIN/python benchmarks/pipeline_at_round.py -t $t --seed $s --round 2 --row ascplus-longer-rounds \
        --choice $R/$t/bench.json --bench $b -o bench/s28/$t/default/seed$s
  done
}
pipeline_on_default "abdominal-ct2mr|0|bench/s25/iter4000-abdominal-ct2mr
  demo-brain-t1t2|1|bench/s25/iter4000-demo-brain-t1t2 abdominal-ct2mr|2|bench/s25/iter4000-abdominal-ct2mr" &
pipeline_on_default "abdominal-ct2mr|1|bench/s25/iter4000-abdominal-ct2mr
  demo-brain-t1t2|2|bench/s25/iter4000-demo-brain-t1t2 demo-brain-t1t2|0|bench/s25/variants-iter4000" &
wait
# (b) Exports and rule R's decision (with issue 14's mark against today's ascplus):
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/python benchmarks/export_results.py bench/s28/$t $R/rule-r/$t --no-tables
done
$BIN/python benchmarks/pipeline_default_decision.py --out $R/rule-r/decision.json

# ---------------------------------------------------------------- Session 29
# (a) Exploratory, Kvasir -> CVC: the photo rows at 2000 and 4000 updates (seed 0), the photo bounds at 4000 updates
#     (seeds 1-2; their 2000-update runs are the committed rows), two component runs at 4000 updates (seed 0); two
#     processes, one thread each:
R=benchmarks/results
t=polyp-kvasir2cvc
rows=source-only,source-only-dg,fda,ascplus-gin,ascplus-histogram-matching
$BIN/diffuse-uda bench -t $t --methods $rows,mean-teacher --seeds 1 -o bench/s29/kvasir-2000 &
$BIN/diffuse-uda bench -t $t --methods $rows --seeds 1 -o bench/s29/kvasir-4000 --set training.iterations=4000 &
wait
$BIN/diffuse-uda bench -t $t --methods source-only,source-only-dg,fda --seed-list 1,2 -o bench/s29/kvasir-4000 \
    --set training.iterations=4000 &
$BIN/diffuse-uda bench -t $t --methods ascplus-histogram-matching --seed-list 0 -o bench/s29/kvasir-4000-no-structure \
    --set training.iterations=4000 --set method.structure=false &
wait
$BIN/diffuse-uda bench -t $t --methods mean-teacher --seed-list 0 -o bench/s29/kvasir-4000 --set training.iterations=4000
# (b) Reported, no rule: the bounds at 4000 updates on the grey design tasks, one bench call per seed:
bounds_at_4000() {  # "task:seed ...", in order
  for x in $1; do
    $BIN/diffuse-uda bench -t ${x%%:*} --methods source-only-dg,source-only,target-supervised --seed-list ${x##*:} \
        -o bench/s29/bounds4000-${x%%:*} --set training.iterations=4000
  done
}
bounds_at_4000 "demo-brain-t1t2:0 demo-brain-t1t2:1 demo-brain-t1t2:2" &
bounds_at_4000 "abdominal-ct2mr:0 abdominal-ct2mr:1 abdominal-ct2mr:2" &
wait
for s in 0 1 2; do bounds_at_4000 "mscmr-bssfp2lge:$s" & done  # after rule S, three processes side by side
wait
# (c) Exports and the two records:
P=$R/photo-training-length/$t
$BIN/python benchmarks/export_results.py bench/s29/kvasir-2000 $P/updates-2000
$BIN/python benchmarks/export_results.py bench/s29/kvasir-4000 $P/updates-4000 --no-tables
$BIN/python benchmarks/export_results.py bench/s29/kvasir-4000-no-structure $P/updates-4000-no-structure --no-tables
$BIN/python benchmarks/photo_training_length.py --out $R/photo-training-length/record.json
for t in demo-brain-t1t2 abdominal-ct2mr mscmr-bssfp2lge; do
  $BIN/python benchmarks/export_results.py bench/s29/bounds4000-$t $R/bounds-4000/$t --no-tables
done
$BIN/python benchmarks/bounds_at_4000.py --out $R/bounds-4000/record.json
# (d) Rule S (held out, CVC -> Kvasir): session 20's no-structure pick per seed (mix, mix, gin) trained for 4000 updates
#     without the structure term, and one committed 2000-update candidate made again as a check; then the decision:
t=polyp-cvc2kvasir
for x in mix:0 mix:1 gin:2; do
  $BIN/diffuse-uda bench -t $t --methods ascplus-${x%%:*} --seed-list ${x##*:} -o bench/s29/cvc2kvasir-4000-no-structure \
      --set training.iterations=4000 --set method.structure=false
done
$BIN/diffuse-uda bench -t $t --methods ascplus-mix --seed-list 0 -o bench/s29/cvc2kvasir-no-structure \
    --set method.structure=false
$BIN/python benchmarks/export_results.py bench/s29/cvc2kvasir-4000-no-structure $R/rule-s/$t --no-tables
$BIN/python benchmarks/export_results.py bench/s29/cvc2kvasir-no-structure $R/rule-s/reproduction --no-tables
$BIN/python benchmarks/photo_structure_decision.py --out $R/rule-s/decision.json

# ---------------------------------------------------------------- Session 30
# (a) The exploration of rules T and U, Kvasir -> CVC: ascplus-identity (no restyling) with and without the structure
#     term, at 2000 and 4000 updates, seeds 0-2, one bench call per seed; two processes, one thread each. The settings
#     are passed only where they are not the defaults (as the runs were made):
R=benchmarks/results
identity() {  # task folder iterations structure "seeds"; no seeds: one call over seeds 0-2 (writes the 3-seed table)
  local extra=()
  [ "$3" != 2000 ] && extra+=(--set training.iterations=$3)
  [ "$4" = false ] && extra+=(--set method.structure=false)
  if [ -z "$5" ]; then
    $BIN/diffuse-uda bench -t $1 --methods ascplus-identity --seeds 3 -o bench/s30/$2 "${extra[@]}"
  fi
  for s in $5; do
    $BIN/diffuse-uda bench -t $1 --methods ascplus-identity --seed-list $s -o bench/s30/$2 "${extra[@]}"
  done
}
t=polyp-kvasir2cvc
identity $t kvasir-2000 2000 true "0 1 2" &
identity $t kvasir-4000 4000 true "0 1 2" &
wait
identity $t kvasir-2000-no-structure 2000 false "0 1 2" &
identity $t kvasir-4000-no-structure 4000 false "0 1 2" &
wait
# (b) The held-out checks on CVC -> Kvasir at each rule's length (T: 2000 updates, U: 4000), and the bounds at both
#     lengths made here (at 2000 updates they check session 20's committed bounds):
t=polyp-cvc2kvasir
identity $t cvc2kvasir-2000 2000 true "0 1 2" &
identity $t cvc2kvasir-4000-no-structure 4000 false "0 1 2" &
wait
$BIN/diffuse-uda bench -t $t --methods source-only,source-only-dg --seeds 3 -o bench/s30/cvc2kvasir-bounds-2000
$BIN/diffuse-uda bench -t $t --methods source-only,source-only-dg --seeds 3 -o bench/s30/cvc2kvasir-bounds-4000 \
    --set training.iterations=4000
# (c) Each identity folder's table over its 3 seeds (the runs are reused), the exports and the records:
identity polyp-kvasir2cvc kvasir-2000 2000 true ""
identity polyp-kvasir2cvc kvasir-4000 4000 true ""
identity polyp-kvasir2cvc kvasir-2000-no-structure 2000 false ""
identity polyp-kvasir2cvc kvasir-4000-no-structure 4000 false ""
identity polyp-cvc2kvasir cvc2kvasir-2000 2000 true ""
identity polyp-cvc2kvasir cvc2kvasir-4000-no-structure 4000 false ""
for x in kvasir-2000:design/updates-2000 kvasir-4000:design/updates-4000 \
    kvasir-2000-no-structure:design-no-structure/updates-2000 kvasir-4000-no-structure:design-no-structure/updates-4000 \
    cvc2kvasir-2000:polyp-cvc2kvasir cvc2kvasir-4000-no-structure:polyp-cvc2kvasir-no-structure \
    cvc2kvasir-bounds-2000:bounds-2000 cvc2kvasir-bounds-4000:bounds-4000; do
  $BIN/python benchmarks/export_results.py bench/s30/${x%%:*} $R/rule-t/${x##*:}
done
# (d) After rule U was taken (its implementation), the bench's ascplus row on Kvasir -> CVC at seed 0 with the new
#     photo default, which should be the design run at 4000 updates without the term; and the old default's picks at
#     CVC -> Kvasir seeds 0-1 (session 20: mix, gin) made again here; then the record:
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods ascplus --seed-list 0 -o bench/s30/kvasir-product
$BIN/python benchmarks/export_results.py bench/s30/kvasir-product $R/rule-t/product-check
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods ascplus-mix --seed-list 0 -o bench/s30/cvc2kvasir-default-check &
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods ascplus-gin --seed-list 1 -o bench/s30/cvc2kvasir-default-check
wait
$BIN/python benchmarks/export_results.py bench/s30/cvc2kvasir-default-check $R/rule-t/default-check --no-tables
$BIN/python benchmarks/photo_identity_decision.py --out $R/rule-t/decision.json
# The precision diagnostic (test labels, for the report only) of seed 0's predictions; session 29's folder
# bench/s29/kvasir-2000 holds the other rows (reproduce.sh "Session 29" (a)):
P=bench/s29/kvasir-2000
$BIN/python benchmarks/photo_precision.py --labels data/Dataset512_CVCClinicDB/labelsTs \
    --run source-only=$P/source-only/seed0 --run mean-teacher=$P/mean-teacher/seed0 --run fda=$P/fda/seed0 \
    --run source-only-dg=$P/source-only-dg/seed0 --run ascplus-gin=$P/ascplus-gin/seed0 \
    --run ascplus-histogram-matching=$P/ascplus-histogram-matching/seed0 \
    --run ascplus-identity=bench/s30/kvasir-2000/ascplus-identity/seed0 \
    --run "ascplus-identity, no structure term=bench/s30/kvasir-2000-no-structure/ascplus-identity/seed0" \
    --out $R/rule-t/precision-seed0.json
# ---------------------------------------------------------------- Session 31
# (a) Kvasir -> CVC with rule U's stage 1 (the product's ascplus on photos) and the pipeline from it, seeds 0-2, one
#     bench folder filled by two processes (one torch thread each). Seed 0's ascplus is session 30's product check
#     (bench/s30/kvasir-product, the same request: the bench reuses it):
R=benchmarks/results
B="$BIN/diffuse-uda bench -t polyp-kvasir2cvc -o bench/s31/kvasir2cvc"
mkdir -p bench/s31/kvasir2cvc/ascplus && cp -r bench/s30/kvasir-product/ascplus/seed0 bench/s31/kvasir2cvc/ascplus/
( $B --methods ascplus,diffuse-uda --seed-list 0
  while [ ! -f bench/s31/asc2.done ]; do sleep 20; done
  $B --methods ascplus,diffuse-uda --seed-list 2 ) &
( $B --methods ascplus --seed-list 1
  $B --methods ascplus --seed-list 2 && touch bench/s31/asc2.done
  $B --methods ascplus,diffuse-uda --seed-list 1 ) &
wait
# (b) Exploratory (registered after seed 0's pipeline): the pipeline's stage 3 again at stage 1's length (4000 updates),
#     the generators' mask fidelity under a seed-0 oracle made here, stage 1's pseudo-label Dice (post hoc), and the
#     photo default of session 20 at CVC -> Kvasir seed 2 made again:
$BIN/diffuse-uda bench -t polyp-kvasir2cvc --methods target-supervised --seed-list 0 -o bench/s31/oracle
for s in 0 1 2; do
  P=bench/s31/kvasir2cvc/diffuse-uda/seed$s S3=bench/s31/stage3-4000/seed$s
  $BIN/diffuse-uda train -m ascplus -t polyp-kvasir2cvc --seed $s -o $S3 --set method.appearance=identity \
      --set method.structure=false --set training.iterations=4000 --extra-labelled $P/4_synthetic
  $BIN/diffuse-uda predict --model $S3 -o $S3/predictions_target_test
  $BIN/diffuse-uda evaluate -p $S3/predictions_target_test -r data/Dataset512_CVCClinicDB -o $S3/evaluation
  $BIN/python benchmarks/bench_synthesis.py --generator $P/3_diffusion/diffusion_last.pt \
      --segmenter bench/s31/oracle/target-supervised/seed0 --masks $P/2_pseudolabels \
      --stage1 bench/s31/kvasir2cvc/ascplus/seed$s --source data/Dataset511_KvasirSEG \
      --target data/Dataset512_CVCClinicDB --samplers ddim:25:1:1 ddim:25:2:1 ddim:25:3:1 --n 32 --seed 1 \
      --out $R/polyp-kvasir2cvc-rule-u/synthesis/seed$s.json
done
$BIN/python benchmarks/pseudolabel_quality.py bench/s31/kvasir2cvc --out bench/s31/pseudolabels --entries ascplus \
    --seeds 0 1 2 --json $R/polyp-kvasir2cvc-rule-u/pseudolabel_quality.json
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods ascplus-gin --seed-list 2 -o bench/s31/cvc2kvasir-default-check
# (b2) Exploratory (registered after the results): the seed-0 pipeline with one kind of conditioning mask, stages 1-3
#      shared with the seed-0 pipeline; two processes:
for k in source target; do
  $BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s31/masks-$k/seed0 --seed 0 --set synthesis.masks=$k \
      --set stage1_run=bench/s31/kvasir2cvc/ascplus/seed0 --set "share_stages_with=[$PWD/bench/s31/kvasir2cvc/diffuse-uda/seed0]" &
done
wait
# (c) The runs' small files, the table with issue 13's other rows read from the committed task folder, the record:
for k in source target; do
  $BIN/python benchmarks/export_results.py bench/s31/masks-$k $R/polyp-kvasir2cvc-rule-u/masks-$k --no-tables
done
$BIN/python benchmarks/export_results.py bench/s31/kvasir2cvc $R/polyp-kvasir2cvc-rule-u --no-tables
$BIN/python benchmarks/export_results.py bench/s31/stage3-4000 $R/polyp-kvasir2cvc-rule-u/stage3-4000 --no-tables
$BIN/python benchmarks/export_results.py bench/s31/cvc2kvasir-default-check $R/rule-t/default-check-session31 --no-tables
$BIN/python benchmarks/collect_bench.py $R/polyp-kvasir2cvc-rule-u polyp-kvasir2cvc --data-root data \
    --methods source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus,diffuse-uda \
    --rows-from $R/polyp-kvasir2cvc
$BIN/python benchmarks/photo_pipeline_marks.py --out $R/polyp-kvasir2cvc-rule-u/marks.json

# ---------------------------------------------------------------- Session 32
# (a) Rule V: synthesis from each mask's own image (SDEdit, strength 0.5), stages 1-3 shared with session 31's
#     pipeline of each seed (made on this machine: bench/s31 above); two processes, one torch thread each:
R=benchmarks/results
for s in 0 1 2; do
  $BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s32/sdedit/seed$s --seed $s --set synthesis.init_strength=0.5 \
      --set stage1_run=bench/s31/kvasir2cvc/ascplus/seed$s \
      --set "share_stages_with=[$PWD/bench/s31/kvasir2cvc/diffuse-uda/seed$s]"
done
# (b) Exploratory, registered after seed 0's run: source masks only at 0.5; both kinds at 0.3 and 0.2 (seed 0):
$BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s32/src05/seed0 --seed 0 --set synthesis.masks=source \
    --set synthesis.init_strength=0.5 --set stage1_run=bench/s31/kvasir2cvc/ascplus/seed0 \
    --set "share_stages_with=[$PWD/bench/s31/kvasir2cvc/diffuse-uda/seed0]"
for k in 3 2; do  # strength 0.3, then 0.2 (registered after the others finished)
  $BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s32/both0$k/seed0 --seed 0 --set synthesis.init_strength=0.$k \
      --set stage1_run=bench/s31/kvasir2cvc/ascplus/seed0 \
      --set "share_stages_with=[$PWD/bench/s31/kvasir2cvc/diffuse-uda/seed0]"
done
# (b2) Diagnostic, registered after those: source masks only at strength 0.05, with and without the deformation:
for d in true false; do
  $BIN/diffuse-uda run -t polyp-kvasir2cvc -o bench/s32/src005-deform-$d/seed0 --seed 0 --set synthesis.masks=source \
      --set synthesis.init_strength=0.05 --set synthesis.deform=$d --set stage1_run=bench/s31/kvasir2cvc/ascplus/seed0 \
      --set "share_stages_with=[$PWD/bench/s31/kvasir2cvc/diffuse-uda/seed0]"
done
# (b3) The held-out photo direction, CVC -> Kvasir, seeds 0 and 1 side by side (registered before the runs):
for s in 0 1; do
  ( $BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods ascplus,diffuse-uda --seed-list $s -o bench/s32/cvc2kvasir
    $BIN/diffuse-uda run -t polyp-cvc2kvasir -o bench/s32/cvc2kvasir-sdedit/seed$s --seed $s \
        --set synthesis.init_strength=0.5 --set stage1_run=bench/s32/cvc2kvasir/ascplus/seed$s \
        --set "share_stages_with=[$PWD/bench/s32/cvc2kvasir/diffuse-uda/seed$s]" ) &
done
wait
# (c) The runs' small files and the record:
$BIN/python benchmarks/export_results.py bench/s32/sdedit $R/polyp-kvasir2cvc-rule-u/sdedit-0.5 --no-tables
$BIN/python benchmarks/export_results.py bench/s32/src05 $R/polyp-kvasir2cvc-rule-u/sdedit-0.5-masks-source --no-tables
for k in 3 2; do
  $BIN/python benchmarks/export_results.py bench/s32/both0$k $R/polyp-kvasir2cvc-rule-u/sdedit-0.$k --no-tables
done
$BIN/python benchmarks/export_results.py bench/s32/src005-deform-true $R/polyp-kvasir2cvc-rule-u/sdedit-0.05-masks-source \
    --no-tables
$BIN/python benchmarks/export_results.py bench/s32/src005-deform-false \
    $R/polyp-kvasir2cvc-rule-u/sdedit-0.05-masks-source-no-deform --no-tables
$BIN/python benchmarks/export_results.py bench/s32/cvc2kvasir $R/polyp-cvc2kvasir-rule-u --no-tables
$BIN/python benchmarks/export_results.py bench/s32/cvc2kvasir-sdedit $R/polyp-cvc2kvasir-rule-u/sdedit-0.5 --no-tables
$BIN/python benchmarks/collect_bench.py $R/polyp-cvc2kvasir-rule-u polyp-cvc2kvasir --data-root data \
    --methods source-only,source-only-dg,target-supervised,ascplus,diffuse-uda --rows-from $R/polyp-cvc2kvasir
$BIN/python benchmarks/sdedit_decision.py --out $R/polyp-kvasir2cvc-rule-u/sdedit.json
cp bench/s32/sdedit/seed0/4_synthetic/gallery.png docs/figures/gallery_polyp-kvasir2cvc_init-0.5_seed0.png
cp bench/s31/kvasir2cvc/diffuse-uda/seed0/4_synthetic/gallery.png docs/figures/gallery_polyp-kvasir2cvc_rule-u_seed0.png

# ---------------------------------------------------------------- Session 33
# (a) Stage 3's photo request (Kvasir -> CVC, 2000 updates) with the 800 source pairs again as its extra labelled set,
#     by two resampling paths (registered as "the generator's 64-px round trip"; the quick profile segments at 64 px
#     too, so both are the source pairs again: BENCHMARKS "Session 33"), and the request without extra pairs made
#     again here; two processes, one torch thread each:
R=benchmarks/results
for z in 64 128; do
  $BIN/python benchmarks/round_trip_dataset.py -t polyp-kvasir2cvc --data-root data --size $z $z -o bench/s33/round-trip-$z
done
# how far the two sets differ as stage 3 reads them (the 0.015 and the identical labels BENCHMARKS quotes):
$BIN/python benchmarks/round_trip_dataset.py -t polyp-kvasir2cvc --data-root data --size 128 128 \
    -o bench/s33/round-trip-128 --compare bench/s33/round-trip-64
stage3() {  # stage3 OUT SEED [extra dataset]: the photo pipeline's stage-3 request, predicted and evaluated
  $BIN/diffuse-uda train -m ascplus -t polyp-kvasir2cvc --seed $2 -o $1 --set method.appearance=identity \
      --set method.structure=false ${3:+--extra-labelled $3}
  $BIN/diffuse-uda predict --model $1 -o $1/predictions_target_test
  $BIN/diffuse-uda evaluate -p $1/predictions_target_test -r data/Dataset512_CVCClinicDB -o $1/evaluation
}
for z in 64 128; do
  ( for s in 0 1 2; do stage3 bench/s33/stage3-rt$z/ascplus/seed$s $s bench/s33/round-trip-$z; done ) &
done
wait
for s in 0 1 2; do stage3 bench/s33/stage3-none/ascplus/seed$s $s; done
# (b) The fidelity measures on the conditioning masks' own real images (row "real") beside session 31's generators:
for s in 0 1 2; do
  P=bench/s31/kvasir2cvc/diffuse-uda/seed$s
  $BIN/python benchmarks/bench_synthesis.py --generator $P/3_diffusion/diffusion_last.pt \
      --segmenter bench/s31/oracle/target-supervised/seed0 --masks $P/2_pseudolabels \
      --stage1 bench/s31/kvasir2cvc/ascplus/seed$s --source data/Dataset511_KvasirSEG \
      --target data/Dataset512_CVCClinicDB --samplers real ddim:25:1:1 ddim:25:2:1 ddim:25:3:1 --n 32 --seed 1 \
      --out $R/polyp-kvasir2cvc-rule-u/synthesis-real/seed$s.json
done
# (c) CVC -> Kvasir seed 2 (session 32's held-out photo direction, third seed), into session 32's bench folder:
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods ascplus,diffuse-uda --seed-list 2 -o bench/s32/cvc2kvasir
$BIN/diffuse-uda run -t polyp-cvc2kvasir -o bench/s32/cvc2kvasir-sdedit/seed2 --seed 2 \
    --set synthesis.init_strength=0.5 --set stage1_run=bench/s32/cvc2kvasir/ascplus/seed2 \
    --set "share_stages_with=[$PWD/bench/s32/cvc2kvasir/diffuse-uda/seed2]"
# (d) The runs' small files, the tables and the records:
$BIN/python benchmarks/export_results.py bench/s33/stage3-rt64 $R/polyp-kvasir2cvc-rule-u/stage3-spread/source-pairs-64 \
    --no-tables
$BIN/python benchmarks/export_results.py bench/s33/stage3-rt128 \
    $R/polyp-kvasir2cvc-rule-u/stage3-spread/source-pairs-128 --no-tables
$BIN/python benchmarks/export_results.py bench/s33/stage3-none $R/polyp-kvasir2cvc-rule-u/stage3-spread/no-extra-pairs \
    --no-tables
$BIN/python benchmarks/export_results.py bench/s32/cvc2kvasir $R/polyp-cvc2kvasir-rule-u --no-tables
$BIN/python benchmarks/export_results.py bench/s32/cvc2kvasir-sdedit $R/polyp-cvc2kvasir-rule-u/sdedit-0.5 --no-tables
$BIN/python benchmarks/collect_bench.py $R/polyp-cvc2kvasir-rule-u polyp-cvc2kvasir --data-root data \
    --methods source-only,source-only-dg,target-supervised,ascplus,diffuse-uda --rows-from $R/polyp-cvc2kvasir
$BIN/python benchmarks/photo_sequence_level.py --out $R/polyp-kvasir2cvc-rule-u/sequence-level.json
$BIN/python benchmarks/sdedit_decision.py --out $R/polyp-kvasir2cvc-rule-u/sdedit.json
# (e) Item 5 (registered after (c)): the fidelity ceiling on CVC -> Kvasir, with a seed-0 oracle made here; then the
#     record that prints (a), (b) and (e):
$BIN/diffuse-uda bench -t polyp-cvc2kvasir --methods target-supervised --seed-list 0 -o bench/s33/oracle-cvc2kvasir
for s in 0 1 2; do
  P=bench/s32/cvc2kvasir/diffuse-uda/seed$s
  $BIN/python benchmarks/bench_synthesis.py --generator $P/3_diffusion/diffusion_last.pt \
      --segmenter bench/s33/oracle-cvc2kvasir/target-supervised/seed0 --masks $P/2_pseudolabels \
      --stage1 bench/s32/cvc2kvasir/ascplus/seed$s --source data/Dataset512_CVCClinicDB \
      --target data/Dataset511_KvasirSEG --samplers real ddim:25:1:1 ddim:25:2:1 ddim:25:3:1 --n 32 --seed 1 \
      --out $R/polyp-cvc2kvasir-rule-u/synthesis-real/seed$s.json
done
$BIN/python benchmarks/export_results.py bench/s33/oracle-cvc2kvasir $R/polyp-cvc2kvasir-rule-u/oracle-session33 --no-tables
$BIN/python benchmarks/photo_stage3_spread.py --out $R/polyp-kvasir2cvc-rule-u/stage3-spread/spread.json

# ---------------------------------------------------------------- Session 34
# (a) The MS-CMRSeg pipeline from today's ascplus default (BENCHMARKS "Session 34", items 1-2): the committed pick at
#     4000 updates, two self-training rounds, then stages 2-5 from round 2; three processes, one torch thread each:
R=benchmarks/results
T=mscmr-bssfp2lge
mscmr_from_default() {  # seed
  $BIN/python benchmarks/self_training_at_pick.py -t $T --seed $1 --choice $R/$T/bench.json -o bench/s34/iter4000-$T \
      --pick-iterations 4000 --rounds 2 --row ascplus-longer-rounds
  $BIN/python benchmarks/pipeline_at_round.py -t $T --seed $1 --round 2 --row ascplus-longer-rounds \
      --choice $R/$T/bench.json --bench bench/s34/iter4000-$T -o bench/s34/$T/default/seed$1
}
for s in 0 1 2; do mscmr_from_default $s & done
$BIN/diffuse-uda bench -t $T --methods target-supervised --seed-list 0 -o bench/s34/oracle-mscmr  # item 4's oracle
wait
# (b) Items 3-4: each seed's stage 3 trained again at training seed 100 + S; the fidelity ceiling (the masks' own
#     real images beside the samples, under the seed-0 oracle):
for s in 0 1 2; do
  ( P=bench/s34/$T/default/seed$s
    $BIN/python benchmarks/stage3_reseeded.py --pipeline $P --seed $((100 + s)) -o bench/s34/$T/stage3-reseeded/seed$s
    $BIN/python benchmarks/bench_synthesis.py --generator $P/3_diffusion/diffusion_last.pt \
        --segmenter bench/s34/oracle-mscmr/target-supervised/seed0 --masks $P/2_pseudolabels \
        --stage1 bench/s34/iter4000-$T/ascplus-longer-rounds/seed$s/self_training/round2 \
        --source data/Dataset501_MSCMR_bSSFP --target data/Dataset502_MSCMR_LGE \
        --samplers real ddim:25:1:1 ddim:25:2:1 ddim:25:3:1 --n 32 --seed 1 \
        --out $R/mscmr-pipeline-default/synthesis-real/seed$s.json ) &
done
wait
$BIN/python benchmarks/export_results.py bench/s34/iter4000-$T $R/mscmr-pipeline-default/stage1 --no-tables
$BIN/python benchmarks/export_results.py bench/s34/$T $R/mscmr-pipeline-default/pipeline --no-tables
$BIN/python benchmarks/export_results.py bench/s34/oracle-mscmr $R/mscmr-pipeline-default/oracle --no-tables
$BIN/python benchmarks/mscmr_pipeline_default.py --out $R/mscmr-pipeline-default/record.json
# (d) The two Kvasir -> CVC bench tables with the CVC sequences (data imported by today's `import polyp`, which
#     writes case_groups; the tables' rows are unchanged, the significance line adds the test over sequences):
B=source-only,source-only-dg,source-only-dg-ipa,target-supervised,fda,ascplus-paper,ascplus-histogram-matching
B=$B,ascplus-bezier,ascplus-bezier-ipa,ascplus-gin,ascplus-mix
$BIN/python benchmarks/collect_bench.py $R/polyp-kvasir2cvc polyp-kvasir2cvc --data-root data \
    --methods $B,ascplus-fourier-luminance,ascplus-fourier-bounded,ascplus,ascplus-agreement,ascplus-guarded-class-ratio,ascplus-class-ratio,diffuse-uda,diffuse-uda-paper,ascplus-self-training,ad,glua,glua-shared-budget,heal-HD-calibrated,heal-HD-EGS-calibrated,ascplus-session12,ascplus-class-ratio-session12,diffuse-uda-session12
$BIN/python benchmarks/collect_bench.py $R/polyp-kvasir2cvc-rule-u polyp-kvasir2cvc --data-root data \
    --methods source-only,source-only-dg,target-supervised,fda,ascplus-paper,ascplus,diffuse-uda \
    --rows-from $R/polyp-kvasir2cvc

# ---------------------------------------------------------------- Session 35
# (a) Rule W: the label-free synthetic check on the pipeline runs behind the committed rows (MS-CMRSeg: Session 34
#     (a); Kvasir -> CVC: Session 31; CVC -> Kvasir: Sessions 32-33), seeds 0-2; two processes, one thread each:
R=benchmarks/results
check_runs() {  # "name|pipeline-folder ...", in order; $1 = --masks
  masks=$1; shift
  for x in "$@"; do
    IFS='|' read -r name pipe <<< "$x"
    out=bench/s35/check/$name
    if [ "$masks" = source ]; then  # the source-only segmenter is the one of (a), reused
      out=bench/s35/check-source-masks/$name; mkdir -p $out; cp -r bench/s35/check/$name/source-only $out/
    fi
    $BIN/python benchmarks/synthetic_check_runs.py --pipeline $pipe -o $out --masks $masks
  done
}
M=bench/s34/mscmr-bssfp2lge/default K=bench/s31/kvasir2cvc/diffuse-uda C=bench/s32/cvc2kvasir/diffuse-uda
LANE_A="mscmr-bssfp2lge/seed0|$M/seed0 polyp-kvasir2cvc/seed0|$K/seed0 polyp-cvc2kvasir/seed0|$C/seed0
  mscmr-bssfp2lge/seed2|$M/seed2 polyp-kvasir2cvc/seed2|$K/seed2"
LANE_B="mscmr-bssfp2lge/seed1|$M/seed1 polyp-kvasir2cvc/seed1|$K/seed1 polyp-cvc2kvasir/seed1|$C/seed1
  polyp-cvc2kvasir/seed2|$C/seed2"
check_runs all $LANE_A & check_runs all $LANE_B & wait
# (b) Exploratory (registered after rule W failed): the synthetic-only segmenter on the source-mask pairs alone:
check_runs source $LANE_A & check_runs source $LANE_B & wait
# (c) Rule X's held-out runs: at seed 0 of abdominal CT -> MR and the demo, the pipeline from today's ascplus default
#     (the committed pick at 4000 updates, two rounds, stages 2-5 from round 2), then both checks on it:
heldout() {  # task
  $BIN/python benchmarks/self_training_at_pick.py -t $1 --seed 0 --choice $R/$1/bench.json -o bench/s35/iter4000-$1 \
      --pick-iterations 4000 --rounds 2 --row ascplus-longer-rounds
  $BIN/python benchmarks/pipeline_at_round.py -t $1 --seed 0 --round 2 --row ascplus-longer-rounds \
      --choice $R/$1/bench.json --bench bench/s35/iter4000-$1 -o bench/s35/$1/default/seed0
  $BIN/python benchmarks/synthetic_check_runs.py --pipeline bench/s35/$1/default/seed0 \
      -o bench/s35/check-source-masks/$1/seed0 --masks source
  mkdir -p bench/s35/check/$1/seed0 && cp -r bench/s35/check-source-masks/$1/seed0/source-only bench/s35/check/$1/seed0/
  $BIN/python benchmarks/synthetic_check_runs.py --pipeline bench/s35/$1/default/seed0 -o bench/s35/check/$1/seed0
}
heldout abdominal-ct2mr & heldout demo-brain-t1t2 & wait
# (d) Exports and the record that prints (a)-(c):
$BIN/python benchmarks/export_results.py bench/s35/check $R/synthetic-check/check --no-tables
$BIN/python benchmarks/export_results.py bench/s35/check-source-masks $R/synthetic-check/check-source-masks --no-tables
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/python benchmarks/export_results.py bench/s35/iter4000-$t $R/synthetic-check/heldout/stage1/$t --no-tables
  $BIN/python benchmarks/export_results.py bench/s35/$t $R/synthetic-check/heldout/pipeline/$t --no-tables
done
$BIN/python benchmarks/synthetic_check_decision.py --out $R/synthetic-check/record.json
# (e) The product's check (the pipeline's opt-in stage) on the held-out demo run, against the measured --masks source
#     record of the same run:
$BIN/python benchmarks/synthetic_check_product.py --pipeline bench/s35/demo-brain-t1t2/default/seed0 \
    -o bench/s35/product-check --reference bench/s35/check-source-masks/demo-brain-t1t2/seed0

# ---------------------------------------------------------------- Session 36
# (a) The synthetic check at seeds 1 and 2 of the held-out tasks: Session 35 (c)'s pipeline from today's ascplus
#     default (stage 3 always trained: pipeline_at_round.py), then the check with source-mask pairs on it; two
#     processes, one seed at a time:
heldout_seed() {  # task seed
  $BIN/python benchmarks/self_training_at_pick.py -t $1 --seed $2 --choice $R/$1/bench.json -o bench/s36/iter4000-$1 \
      --pick-iterations 4000 --rounds 2 --row ascplus-longer-rounds
  $BIN/python benchmarks/pipeline_at_round.py -t $1 --seed $2 --round 2 --row ascplus-longer-rounds \
      --choice $R/$1/bench.json --bench bench/s36/iter4000-$1 -o bench/s36/$1/default/seed$2
  $BIN/python benchmarks/synthetic_check_runs.py --pipeline bench/s36/$1/default/seed$2 \
      -o bench/s36/check-source-masks/$1/seed$2 --masks source
}
for s in 1 2; do heldout_seed abdominal-ct2mr $s & heldout_seed demo-brain-t1t2 $s & wait; done
# (b) Exports (beside session 35's seed-0 runs) and the record that prints (a):
$BIN/python benchmarks/export_results.py bench/s36/check-source-masks $R/synthetic-check/check-source-masks --no-tables
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/python benchmarks/export_results.py bench/s36/iter4000-$t $R/synthetic-check/heldout/stage1/$t --no-tables
  $BIN/python benchmarks/export_results.py bench/s36/$t $R/synthetic-check/heldout/pipeline/$t --no-tables
done
$BIN/python benchmarks/synthetic_check_heldout_seeds.py --out $R/synthetic-check/record-session36.json
# (c) The demo with the check as the pipeline's default, from a clean clone, alone on the machine, then the pipeline
#     against its stage 1 over the test volumes:
#     git clone <repo> /tmp/demo && cd /tmp/demo && make demo
#     .venv/bin/python benchmarks/paired_test.py demo_output/runs/quick_seed0/diffuse-uda/1_ascplus \
#         demo_output/runs/quick_seed0/diffuse-uda/5_ascplus_synth
# ---------------------------------------------------------------- Session 37
# (a) Stage 3 with stage 1's pseudo-labelled target images (rule Y): Session 36 (a)'s stage 1 and pipeline, the variant
#     sharing stages 1-4 with that pipeline (only its stage 3 trains), then round 3 of stage 1 (stage 3's request
#     without the synthetic pairs); two processes, one seed at a time:
stage3_pseudo_seed() {  # task seed
  $BIN/python benchmarks/self_training_at_pick.py -t $1 --seed $2 --choice $R/$1/bench.json -o bench/s37/iter4000-$1 \
      --pick-iterations 4000 --rounds 2 --row ascplus-longer-rounds
  for variant in default stage3-pseudo; do
    $BIN/python benchmarks/pipeline_at_round.py -t $1 --seed $2 --round 2 --row ascplus-longer-rounds \
        --choice $R/$1/bench.json --bench bench/s37/iter4000-$1 -o bench/s37/$1/$variant/seed$2 \
        $([ $variant = stage3-pseudo ] && echo --stage3-pseudolabels --share bench/s37/$1/default/seed$2)
  done
  $BIN/python benchmarks/self_training_at_pick.py -t $1 --seed $2 --choice $R/$1/bench.json -o bench/s37/iter4000-$1 \
      --pick-iterations 4000 --rounds 3 --row ascplus-longer-rounds
}
for s in 1 2; do stage3_pseudo_seed abdominal-ct2mr $s & stage3_pseudo_seed demo-brain-t1t2 $s & wait; done
#     Stage 3's spread at seed 1 (a third process beside the seed-2 runs): the pipeline's stage 3 with training seed 101.
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/python benchmarks/stage3_reseeded.py --pipeline bench/s37/$t/default/seed1 --seed 101 \
      -o bench/s37/$t/stage3-reseeded/seed1
done
$BIN/python benchmarks/stage3_reseeded.py --pipeline bench/s37/abdominal-ct2mr/default/seed1 --seed 102 \
    -o bench/s37/abdominal-ct2mr/stage3-reseeded-102/seed1  # a third draw there
# (b) Exports and the record that prints (a):
for t in abdominal-ct2mr demo-brain-t1t2; do
  $BIN/python benchmarks/export_results.py bench/s37/iter4000-$t $R/stage3-pseudolabels/stage1/$t --no-tables
  $BIN/python benchmarks/export_results.py bench/s37/$t $R/stage3-pseudolabels/pipeline/$t --no-tables
done
$BIN/python benchmarks/stage3_pseudolabels.py --out $R/stage3-pseudolabels/record.json

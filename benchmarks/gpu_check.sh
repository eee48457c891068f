#!/usr/bin/env bash
# GPU check: one prepared script for a lent CUDA machine (BENCHMARKS.md, "GPU check").
#
#   OUT=/some/folder bash benchmarks/gpu_check.sh     # from the repository root
#
# 1. the device and library versions;
# 2. generator memory on CUDA (benchmarks/bench_diffusion_memory.py): one training step's activations
#    for quick 2D, paper 2D and paper 3D (128^3), with and without gradient checkpointing, with and
#    without bf16 autocast, and one whole paper-3D training update (optimizer, EMA, checkpoint write);
# 3. the whole pipeline end to end on the GPU at the smoke profile (`diffuse-uda run`);
# 4. two bench rows at the quick profile on the embedded demo, to set GPU wall time and Dice beside
#    the CPU's (BENCHMARKS.md, demo-brain-t1t2, seed 0; on an H200 they took 47 + 69 s: a third row,
#    source-only-dg, did not fit the step's limit);
# 5. the test suite with the GPU visible (device=auto picks it), in parallel processes.
# Each step has its own time limit, so one that fails or runs long does not cost the others.
# Missing packages (MONAI, nibabel, pydantic, nilearn) can come as wheels in .whl/ (device README).
set -u
OUT=${OUT:?set OUT to a folder for the results}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=10
CLI=(python3 -c "import sys; from diffuse_uda.cli import main; sys.argv[0] = 'diffuse-uda'; main()")
stamp() { echo "$(date +%s) $*" >> "$OUT/timing.txt"; }

{ nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, monai; print('torch', torch.__version__, 'cuda', torch.version.cuda)
print('device', torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported()); print('monai', monai.__version__)"
  nproc; } > "$OUT/env.txt" 2>&1

stamp memory-start
timeout 170 python3 benchmarks/bench_diffusion_memory.py --device cuda --profiles quick:2 paper:2 paper:3 \
  --what step --checkpointing off on --amp on off --timeout 60 > "$OUT/memory.log" 2>&1
timeout 60 python3 benchmarks/bench_diffusion_memory.py --device cuda --profiles paper:3 --what train \
  --checkpointing off on --timeout 50 >> "$OUT/memory.log" 2>&1
stamp memory-end

python3 -c "from pathlib import Path; from diffuse_uda.data.demo_brain import DemoBrainConfig, generate_demo_brain
generate_demo_brain(Path('/tmp/data'), DemoBrainConfig(seed=0))" > /dev/null 2>&1
stamp smoke-run-start
timeout 90 "${CLI[@]}" run -t demo-brain-t1t2 --profile smoke -o /tmp/smoke --data-root /tmp/data > "$OUT/smoke.log" 2>&1
echo "exit $?" >> "$OUT/smoke.log"
stamp smoke-run-end

stamp bench-start
timeout 150 "${CLI[@]}" bench -t demo-brain-t1t2 --methods source-only,ascplus-paper --seed-list 0 \
  -o /tmp/bench --data-root /tmp/data > "$OUT/bench.log" 2>&1
echo "exit $?" >> "$OUT/bench.log"
cp /tmp/bench/bench.md "$OUT/bench.md" 2>/dev/null
stamp bench-end

stamp pytest-start
timeout 140 python3 -m pytest -q -p no:cacheprovider -n 12 --timeout 120 -m "not slow" tests > "$OUT/pytest.log" 2>&1
echo "exit $?" >> "$OUT/pytest.log"
stamp pytest-end
tail -c 200000 "$OUT/bench.log" > "$OUT/bench.tail" && mv "$OUT/bench.tail" "$OUT/bench.log"

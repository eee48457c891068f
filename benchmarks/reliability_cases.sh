#!/usr/bin/env bash
# Reruns every case of docs/reliability.md on a fresh copy of the generated demo data (smoke profile,
# about two minutes on one core) and prints each command with what it printed and its exit status.
# usage: benchmarks/reliability_cases.sh [WORKDIR]   (default: a new temporary folder)
set -u
W=${1:-$(mktemp -d)}
mkdir -p "$W"
export DIFFUSE_UDA_CACHE=$W/cache OMP_NUM_THREADS=1
cd "$W" || exit 1
D=diffuse-uda
run() {  # print the command, its last output lines and its exit status
  echo "\$ $*"
  "$@" > out.txt 2>&1; rc=$?
  grep -v '^\s*$' out.txt | grep -v '%|' | tail -n 4 | sed 's/^/    /'
  echo "    -> exit $rc"
}
python - <<'PY'
from pathlib import Path
from diffuse_uda.data.demo_brain import DemoBrainConfig, generate_demo_brain
generate_demo_brain(Path("data"), DemoBrainConfig(n_source=2, n_target_train=2, n_target_test=2, shape=(32, 32, 16)),
                    progress=False)
PY
T="-t demo-brain-t1t2 --data-root data --profile smoke --set training.device=cpu"

echo "## 1. a finished run folder is reused only for the same method, settings and inputs"
run $D train -m source-only $T -o runs/base
run $D train -m fda $T -o runs/base
run $D train -m fda $T -o runs/base --force
echo "## 1b. an unfinished run resumes only as the same method (a killed run: checkpoint + running manifest)"
$D train -m source-only $T -o runs/killed --set training.iterations=20000 --set training.checkpoint_every=5 \
  > /dev/null 2>&1 &
sleep 20; pkill -9 -f "runs/killed"; sleep 1
echo "    killed: run.json status $(python -c "import json; print(json.load(open('runs/killed/run.json'))['status'])")"
run $D train -m fda $T -o runs/killed --set training.iterations=20000 --set training.checkpoint_every=5
echo "## 2. changed inputs are not reused: every source label zeroed"
python - <<'PY'
import nibabel as nib, numpy as np
from pathlib import Path
for p in Path("data/Dataset901_DemoBrainT1/labelsTr").glob("*.nii.gz"):
    img = nib.load(p); nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), p)
PY
run $D train -m fda $T -o runs/base
echo "## 3. a crafted model.pt does not run code"
python - <<'PY'
import os, torch
class P:
    def __reduce__(self): return (os.system, ("touch PWNED",))
os.makedirs("crafted", exist_ok=True); torch.save({"network": P()}, "crafted/model.pt")
PY
run $D predict --model crafted -o preds --dataset data/Dataset902_DemoBrainT2
echo "    PWNED exists: $(test -e PWNED && echo yes || echo no)"
echo "## 4. evaluation checks label maps"
run $D predict --model runs/base -o preds_fda --dataset data/Dataset902_DemoBrainT2
python - <<'PY'
import json; from pathlib import Path
p = Path("data/Dataset902_DemoBrainT2/dataset.json"); d = json.loads(p.read_text())
d["labels"] = {"background": 0, "CSF": 1, "WM": 2, "GM": 3}; p.write_text(json.dumps(d))
PY
run $D evaluate -p preds_fda -r data/Dataset902_DemoBrainT2 -o eval_swapped
echo "## 6. bad settings and outputs fail before any work, in one line"
for s in training.checkpoint_every=0 training.log_every=0 training.lr=nan network.init_filters=0 training.device=cuda \
         training.batch_size=0 training.iterations=-3; do
  run $D train -m source-only $T -o runs/bad --set $s
done
echo "not a folder" > afile
run $D train -m source-only $T -o afile
run $D bench $T --methods source-only,nosuch --seeds 1 -o bench_bad
echo "    bench_bad/source-only exists: $(test -e bench_bad/source-only && echo yes || echo no)"
echo "## 7. validate every split"
run $D validate data/Dataset902_DemoBrainT2 --split Ts

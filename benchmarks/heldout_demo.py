"""Make the two held-out synthetic tasks of session 16 (BENCHMARKS.md) with the demo generator.

`demo-brain-t2t1` (generator seed 1): the T2-like contrast is the labelled source, the T1-like one the target.
`demo-brain-t1flair` (seed 2): T1-like source, FLAIR-like target (CSF dark as in T1, grey matter brighter than
white matter: a partial inversion). Subjects are new draws (the demo uses seed 0). The datasets are written under
DATA_ROOT with their own names, and the task files are benchmarks/tasks/<task>.yaml:

    python benchmarks/heldout_demo.py /work/data
    diffuse-uda bench -t benchmarks/tasks/demo-brain-t2t1.yaml --data-root /work/data ...
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from diffuse_uda.data.demo_brain import (
    SOURCE_DATASET,
    TARGET_DATASET,
    ContrastModel,
    DemoBrainConfig,
    generate_demo_brain,
)

T1_LIKE = DemoBrainConfig().source
T2_LIKE = DemoBrainConfig().target
FLAIR_LIKE = ContrastModel(modality="FLAIRw", csf=0.15, gm=0.8, wm=0.55, bias_strength=0.15, noise_sigma=0.03,
                           blur_sigma_vox=0.3)
# task -> (generator config, source dataset name, target dataset name)
TASKS: dict[str, tuple[DemoBrainConfig, str, str]] = {
    "demo-brain-t2t1": (DemoBrainConfig(seed=1, source=T2_LIKE, target=T1_LIKE),
                        "Dataset905_DemoBrainT2_seed1", "Dataset906_DemoBrainT1_seed1"),
    "demo-brain-t1flair": (DemoBrainConfig(seed=2, source=T1_LIKE, target=FLAIR_LIKE),
                           "Dataset907_DemoBrainT1_seed2", "Dataset908_DemoBrainFLAIR_seed2"),
}


def make_task(data_root: Path, task: str) -> tuple[Path, Path]:
    """Write (or keep) the task's two datasets under ``data_root``."""
    config, source_name, target_name = TASKS[task]
    source, target = data_root / source_name, data_root / target_name
    if source.is_dir() and target.is_dir():
        return source, target
    work = data_root / f".{task}.tmp"
    made = generate_demo_brain(work, config)
    for folder, name, role in ((made[0], source_name, "source (labelled)"), (made[1], target_name, "target")):
        meta_path = folder / "dataset.json"
        meta = json.loads(meta_path.read_text())
        meta["name"] = name
        contrast = config.source if folder.name == SOURCE_DATASET else config.target
        meta["description"] = (f"Held-out task {task}, {role}: synthetic {contrast.modality} brain MRI from the demo "
                               f"generator (seed {config.seed}); made by benchmarks/heldout_demo.py.")
        meta_path.write_text(json.dumps(meta, indent=2))
        folder.rename(data_root / name)
    shutil.rmtree(work)
    assert {SOURCE_DATASET, TARGET_DATASET} == {made[0].name, made[1].name}
    return source, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data_root", type=Path)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = parser.parse_args()
    for task in args.tasks:
        print(task, *make_task(args.data_root, task))


if __name__ == "__main__":
    main()

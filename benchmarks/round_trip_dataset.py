"""A task's source pairs resized to a given size and written as the synthesis stage writes its pairs (no generator).

The images and expert labels are resized to ``--size`` exactly as the generator's conditioning pairs are
(``diffuse_uda.pipeline.run.pair_samples``, from the task's own preprocessing size) and written like synthetic pairs
(one NIfTI per channel and a label map, ``dataset.json`` last). Given to a stage-3 request in place of the synthetic
pairs (``diffuse-uda train ... --extra-labelled OUT``) it is a control with no generator in it: the same source pairs
again.

Session 33 registered it as "the generator's 64-px round trip", on the premise that segmentation runs at the task's
128 px. It does not: the quick profile resamples 2D tasks to 64 px for segmentation as well, so at ``--size 64 64``
and ``--size 128 128`` both sets reach stage 3 as the source pairs at 64 px, by two resampling paths (BENCHMARKS.md,
session 33). Reads source labels only.

    python benchmarks/round_trip_dataset.py -t polyp-kvasir2cvc --data-root data --size 64 64 -o bench/source-pairs-64
    python benchmarks/round_trip_dataset.py -t polyp-kvasir2cvc --data-root data --size 128 128 \
        -o bench/source-pairs-128 --compare bench/source-pairs-64   # how far the two sets differ as stage 3 reads them
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from diffuse_uda.data.dataset_json import DatasetInfo, image_paths, label_path, load_dataset_json, write_dataset_json
from diffuse_uda.data.io import write_nifti
from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.data.task import Task, load_task
from diffuse_uda.diffusion.synthesize import FILE_ENDING, as_stored
from diffuse_uda.pipeline.run import pair_samples
from diffuse_uda.pipeline.train import default_cache_dir


def write_round_trip(task: Task, size: tuple[int, ...], out: Path, progress: bool = True) -> int:
    """Write the source pairs with foreground at ``size`` under ``out`` (imagesTr, labelsTr, dataset.json);
    returns the number of pairs. An existing complete folder is left as it is."""
    if (out / "dataset.json").is_file():
        return load_dataset_json(out).num_training
    dims = task.preprocessing.spatial_dims
    cases = prepare_split(task.source_dir, "Tr", task.preprocessing, True, default_cache_dir(), progress, task.labels)
    pairs = pair_samples(cases, dims, size, "source", None)
    info = load_dataset_json(task.source_dir)
    for pair in pairs:
        for channel, path in enumerate(image_paths(out, "Tr", pair.case_id, pair.image.shape[0], FILE_ENDING)):
            write_nifti(path, as_stored(pair.image[channel].astype(np.float32)))
        write_nifti(label_path(out, "Tr", pair.case_id, FILE_ENDING), as_stored(pair.mask))
    # dataset.json last: the folder counts as complete only once every pair is written
    write_dataset_json(out, DatasetInfo(
        name=out.name, channel_names={str(k): str(v) for k, v in info.channel_names.items()},
        labels={str(k): int(v) for k, v in task.labels.items()}, file_ending=FILE_ENDING, num_training=len(pairs),
        description=f"{task.name} source pairs resized to {list(size)} (no generator): a control for stage 3.",
        provenance={"size": list(size), "source": str(task.source_dir)}))
    return len(pairs)


def compare_as_read(task: Task, first: Path, second: Path, size: tuple[int, ...]) -> dict[str, float]:
    """Two such sets as stage 3 reads them (the task's preprocessing at ``size``): the mean absolute image difference
    (images on [0, 1]) and the number of label voxels that differ, over their pairs in order."""
    cfg = task.preprocessing.model_copy(update={"size": size})
    (a, la), (b, lb) = (stack_samples(prepare_split(d, "Tr", cfg, True, None, False, task.labels),
                                      cfg.spatial_dims) for d in (first, second))
    assert la is not None and lb is not None
    return {"pairs": int(a.shape[0]), "mean_abs_image_difference": float((a - b).abs().mean()),
            "label_voxels_differing": int((la != lb).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", "--task", required=True, help="shipped task name or task YAML")
    ap.add_argument("--data-root", type=Path, default=Path("data"))
    ap.add_argument("--size", type=int, nargs="+", required=True, help="the pairs' size (e.g. the generator's)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--compare", type=Path, default=None,
                    help="another such set: print how far the two differ as stage 3 reads them (at --read-size)")
    ap.add_argument("--read-size", type=int, nargs="+", default=[64, 64],
                    help="stage 3's input size (the quick profile's 2D size: 64 64)")
    args = ap.parse_args()
    task = load_task(args.task, data_root=args.data_root)
    n = write_round_trip(task, tuple(args.size), args.out)
    print(f"{n} source pairs at {args.size} -> {args.out}")
    if args.compare is not None:
        d = compare_as_read(task, args.out, args.compare, tuple(args.read_size))
        print(f"as stage 3 reads them ({args.read_size}): {d['pairs']} pairs, mean absolute image difference "
              f"{d['mean_abs_image_difference']:.3f}, {d['label_voxels_differing']} label voxels differ")


if __name__ == "__main__":
    main()

"""Why stage 1 misses the demo's mark (issue 13, session 25): which of the target's differences does the model fail on?

    python benchmarks/demo_contrast_diagnosis.py --data-root data --work /tmp/demo-diagnosis \\
        --model pick=bench/s22/demo-brain-t1t2/ascplus-bezier-ipa/seed0 \\
        --model round2=bench/s22/demo-brain-t1t2/ascplus-self-training-at-pick/seed0/self_training/round2 \\
        --out benchmarks/results/demo-diagnosis/diagnosis.json --figure docs/figures/demo_contrast_diagnosis.png

The demo's T2-like target differs from the T1-like source in three ways (``data/demo_brain.py``): the inverted tissue
contrast, a stronger multiplicative bias field (0.25 against 0.05) with more noise, and a 0.6-voxel blur. The demo
generator makes the same test subjects again (seed 0: same anatomy, same labels, checked) with one difference removed
at a time: ``no-bias`` (the source's bias strength), ``no-blur``, and ``clean`` (both, and the source's noise), so
only the contrast is left. Each model segments every variant's test images; Dice per class (numpy, per case, then
the mean over cases: the evaluation's value on the original). Also recorded: the row-normalised confusion matrix
of each model on the original target test split, and a figure (the first model on the original and the clean
target, and on a source training image).

Then the model on its own *source training* slices (with foreground), three ways: as they are, restyled by the
appearance transfer the model was trained with (one draw per slice, seed 0: the training distribution of its
restyled-source Dice term), and remapped by the piecewise-linear curve through the demo generator's tissue means,
T1-like -> T2-like (0 -> 0, CSF 0.2 -> 1.0, GM 0.6 -> 0.6, WM 0.9 -> 0.35): the target's contrast on the source's
anatomy and acquisition. Dice on the preprocessed grid. Post hoc: target test labels are read here as by the
evaluation, and nothing here feeds a choice or a training.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from diffuse_uda.data.dataset_json import label_path, list_cases, load_dataset_json
from diffuse_uda.data.demo_brain import SOURCE_DATASET, TARGET_DATASET, DemoBrainConfig, generate_demo_brain
from diffuse_uda.data.io import read_nifti
from diffuse_uda.data.preprocessing import prepare_case
from diffuse_uda.inference.predict import predict_dataset
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.transforms.appearance import build_appearance_transfer

BASE = DemoBrainConfig(seed=0)
VARIANTS = {"no-bias": {"bias_strength": BASE.source.bias_strength},
            "no-blur": {"blur_sigma_vox": 0.0},
            "clean": {"bias_strength": BASE.source.bias_strength, "blur_sigma_vox": 0.0,
                      "noise_sigma": BASE.source.noise_sigma}}


def variant_datasets(data_root: Path, work: Path) -> dict[str, Path]:
    """The original target dataset and one regenerated per variant (same subjects and labels, checked)."""
    out = {"original": data_root / TARGET_DATASET}
    for name, change in VARIANTS.items():
        config = BASE.model_copy(update={"target": BASE.target.model_copy(update=change)})
        out[name] = generate_demo_brain(work / name, config, progress=False)[1]
        for case in list_cases(out[name], "Ts"):
            if not np.array_equal(read_nifti(label_path(out[name], "Ts", case))[0],
                                  read_nifti(label_path(out["original"], "Ts", case))[0]):
                raise SystemExit(f"{name}: test labels of {case} differ from the original's: not the same subjects")
    return out

# The generator's tissue means, background first: the T1-like -> T2-like curve (flat beyond WM).
T1_TO_T2 = ([0.0, BASE.source.csf, BASE.source.gm, BASE.source.wm, 1.0],
            [0.0, BASE.target.csf, BASE.target.gm, BASE.target.wm, BASE.target.wm])


def dice_per_class(reference: np.ndarray, prediction: np.ndarray, num_classes: int) -> list[float]:
    """Dice (%) of each foreground class between two label maps (numpy arrays of the same shape)."""
    return [200 * float(np.sum((reference == k) & (prediction == k))) /
            max(float(np.sum(reference == k) + np.sum(prediction == k)), 1.0) for k in range(1, num_classes)]


def source_fit(run: str, source: Path, num_classes: int) -> dict[str, float]:
    """Mean foreground Dice (%) of the model on its source training slices: plain, restyled by its own training
    transfer, and remapped by :data:`T1_TO_T2`."""
    bundle = load_bundle(run, torch.device("cpu"))
    method = bundle.run_config.method
    transfer = build_appearance_transfer(method["appearance"], method.get("appearance_options"))
    generator = torch.Generator().manual_seed(0)
    info = load_dataset_json(source)
    dice: dict[str, list[list[float]]] = {"plain": [], "restyled": [], "T1->T2 curve": []}
    for case in list_cases(source, "Tr"):
        prepared = prepare_case(source, "Tr", case, bundle.preprocessing, info.num_channels, dict(info.labels))
        x = torch.as_tensor(prepared.image).permute(3, 0, 1, 2)  # slices (Z, C, H, W)
        y = torch.as_tensor(prepared.label).permute(2, 0, 1).long()
        keep = y.flatten(1).amax(1) > 0
        x, y = x[keep], y[keep]
        views = {"plain": x, "restyled": transfer.restyle(x, None, generator)[0],
                 "T1->T2 curve": torch.as_tensor(np.interp(x.numpy(), *T1_TO_T2), dtype=torch.float32)}
        with torch.no_grad():
            for name, view in views.items():
                pred = bundle.network(view).argmax(1)
                dice[name].append(dice_per_class(y.numpy(), pred.numpy(), num_classes))
    return {name: float(np.mean(v)) for name, v in dice.items()}


def scores(predictions: Path, reference: Path, num_classes: int) -> tuple[list[float], np.ndarray]:
    """Per class (foreground), the mean over cases of Dice in %; and the confusion counts (reference x prediction)."""
    per_case, confusion = [], np.zeros((num_classes, num_classes), np.int64)
    for case in list_cases(reference, "Ts"):
        ref = read_nifti(label_path(reference, "Ts", case))[0].astype(np.int64)
        pred = read_nifti(predictions / f"{case}.nii.gz")[0].astype(np.int64)
        confusion += np.bincount(num_classes * ref.ravel() + pred.ravel(),
                                 minlength=num_classes ** 2).reshape(num_classes, num_classes)
        per_case.append(dice_per_class(ref, pred, num_classes))
    return [float(v) for v in np.mean(per_case, axis=0)], confusion


def figure(path: Path, rows: list[tuple[str, Path, Path, str]]) -> None:
    """Image | reference | prediction at the middle axial slice, one row per (title, dataset, predictions, split)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)))
    for ax_row, (title, dataset, predictions, split) in zip(axes, rows, strict=True):
        case = list_cases(dataset, split)[0]
        image = read_nifti(dataset / f"images{split}" / f"{case}_0000.nii.gz")[0]
        z = image.shape[2] // 2
        panels = (image, read_nifti(label_path(dataset, split, case))[0], read_nifti(predictions / f"{case}.nii.gz")[0])
        for ax, vol, name in zip(ax_row, panels, (title, "reference", "prediction"), strict=True):
            ax.imshow(vol[:, :, z].T, origin="lower", cmap="gray" if name == title else "viridis",
                      **({} if name == title else {"vmin": 0, "vmax": 3}))
            ax.set_title(name, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="folder for the regenerated datasets and predictions")
    ap.add_argument("--model", action="append", required=True, help="name=run folder (the first one is drawn)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--figure", type=Path, default=None)
    args = ap.parse_args()

    datasets = variant_datasets(args.data_root, args.work)
    labels = load_dataset_json(datasets["original"]).labels
    names = [n for n, v in sorted(labels.items(), key=lambda kv: kv[1]) if v > 0]
    record: dict = {"classes": names, "variants": {"original": "the demo's target", **VARIANTS}, "models": {}}
    for spec in args.model:
        name, run = spec.split("=", 1)
        entry: dict = {"run": run, "dice": {}}
        for variant, dataset in datasets.items():
            pred = predict_dataset(run, dataset, args.work / "predictions" / f"{name}-{variant}", device="cpu",
                                   progress=False)
            per_class, confusion = scores(pred, dataset, len(names) + 1)
            entry["dice"][variant] = {**dict(zip(names, per_class, strict=True)), "mean": float(np.mean(per_class))}
            if variant == "original":
                entry["confusion_percent"] = (100 * confusion / confusion.sum(1, keepdims=True)).round(1).tolist()
        entry["source_fit"] = source_fit(run, args.data_root / SOURCE_DATASET, len(names) + 1)
        record["models"][name] = entry
        print(f"{name}: " + "; ".join(f"{v} " + " ".join(f"{c} {d[c]:.1f}" for c in names) + f" mean {d['mean']:.1f}"
                                       for v, d in entry["dice"].items()))
        print(f"{name}: confusion on the original (rows: reference background, {', '.join(names)}; columns: "
              f"prediction, %): {entry['confusion_percent']}")
        print(f"{name}: on its source training slices: " + ", ".join(f"{v} {d:.1f}"
                                                                    for v, d in entry["source_fit"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    if args.figure is not None:
        first, run = args.model[0].split("=", 1)
        source = args.data_root / SOURCE_DATASET
        source_pred = predict_dataset(run, source, args.work / "predictions" / f"{first}-source", split="Tr",
                                      device="cpu", progress=False)
        figure(args.figure, [("target (T2-like)", datasets["original"], args.work / "predictions" / f"{first}-original",
                              "Ts"),
                             ("clean target", datasets["clean"], args.work / "predictions" / f"{first}-clean", "Ts"),
                             ("source (T1-like), training", source, source_pred, "Tr")])


if __name__ == "__main__":
    main()

"""End-to-end evaluation on a tiny fake nnU-Net dataset, plus ReferenceLabels checks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.evaluation.evaluate import EvaluationSummary, evaluate_predictions, load_per_case, load_summary
from diffuse_uda.evaluation.prediction_info import write_prediction_info
from diffuse_uda.evaluation.reference import ReferenceLabels

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])
SHAPE = (12, 12, 4)
LABELS = {"background": 0, "Myo": 1, "LV": 2}


def _save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def _label(case_index: int) -> np.ndarray:
    lab = np.zeros(SHAPE, dtype=np.uint8)
    lab[2:8, 2:8, 1:3] = 1
    lab[4:6, 4:6, 1:3] = 2
    if case_index == 1:
        lab[lab == 2] = 1  # LV missing in this case: exercises the one-empty convention
    return lab


def _make_dataset(root: Path, n_cases: int = 2) -> Path:
    ds = root / "Dataset001_Fake"
    ds.mkdir(parents=True)
    (ds / "dataset.json").write_text(
        json.dumps(
            {"channel_names": {"0": "MRI"}, "labels": LABELS, "numTraining": 0, "file_ending": ".nii.gz"}
        )
    )
    for i in range(n_cases):
        _save(ds / "imagesTs" / f"case{i}_0000.nii.gz", np.random.default_rng(i).random(SHAPE).astype(np.float32))
        _save(ds / "labelsTs" / f"case{i}.nii.gz", _label(i))
    return ds


def _write_predictions(pred_dir: Path, n_cases: int = 2, labels: dict[str, int] | None = None) -> None:
    pred_dir.mkdir(parents=True, exist_ok=True)
    write_prediction_info(pred_dir, LABELS if labels is None else labels, model="test")
    for i in range(n_cases):
        pred = _label(0)  # predicts LV everywhere: case1 gets a false-positive LV (NaN distances)
        _save(pred_dir / f"case{i}.nii.gz", pred)


def test_evaluate_end_to_end(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path)
    ref = ReferenceLabels(ds)
    assert ref.case_ids == ["case0", "case1"] and ref.split == "Ts"
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir)
    out = tmp_path / "eval"
    summary = evaluate_predictions(pred_dir, ref, out, progress=False)

    assert set(summary.per_class) == {"Myo", "LV"}
    assert summary.per_class["LV"]["dice"]["mean"] == pytest.approx(0.5)  # 1 and 0
    assert summary.per_class["LV"]["hd95"]["n_nan"] == 1
    assert summary.per_class["LV"]["hd95"]["mean"] == pytest.approx(0.0)  # NaN excluded
    assert summary.per_class["Myo"]["dice"]["mean"] < 1.0
    assert summary.mean_foreground["dice"]["n"] == 2
    # case1 has a NaN LV distance, so its foreground mean distance is NaN (counted, not hidden)
    assert summary.mean_foreground["hd95"]["n_nan"] == 1
    assert summary.metadata["n_cases"] == 2 and summary.metadata["reference_split"] == "Ts"
    assert summary.metadata["nsd_tolerance_mm"] == 2.0

    with (out / "per_case.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 and list(rows[0]) == ["case", "class", "dice", "hd95", "assd", "nsd"]
    per_case = load_per_case(out / "per_case.csv")
    assert math.isnan(per_case["case1"]["LV"]["hd95"])
    # foreground mean = classes averaged within each case, then over cases
    case_means = [np.mean([per_case[c][k]["dice"] for k in ("Myo", "LV")]) for c in ("case0", "case1")]
    assert summary.mean_foreground["dice"]["mean"] == pytest.approx(np.mean(case_means))

    raw = json.loads((out / "summary.json").read_text())  # strict JSON: NaN stored as null
    assert "mean_foreground" in raw and "metadata" in raw
    loaded = load_summary(out / "summary.json")
    assert isinstance(loaded, EvaluationSummary)
    assert loaded.per_class["LV"]["dice"] == summary.per_class["LV"]["dice"]

    md = (out / "summary.md").read_text()
    assert "| Class | Dice (%)" in md and "Myo" in md and "50.0 ± 50.0" in md
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temp files left behind


def test_reference_with_an_extra_label_is_refused(tmp_path: Path) -> None:
    """A reference that declares a class the model never had must not be scored (it would add a
    class scored 'both empty' = 100 % Dice on cases without it, inflating the mean)."""
    ds = _make_dataset(tmp_path)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, labels={"background": 0, "Myo": 1})  # a model without LV
    with pytest.raises(DataError, match="reference declares LV=2") as err:
        evaluate_predictions(pred_dir, ReferenceLabels(ds), tmp_path / "eval", progress=False)
    assert err.value.path == pred_dir
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_reference_with_swapped_class_names_is_refused(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, labels={"background": 0, "LV": 1, "Myo": 2})
    with pytest.raises(DataError, match="LV is 1 in the predictions but 2 in the reference"):
        evaluate_predictions(pred_dir, ReferenceLabels(ds), tmp_path / "eval", progress=False)


def test_predictions_without_a_label_map_need_one(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir)
    (pred_dir / "prediction.json").unlink()
    with pytest.raises(DataError, match="no label map"):
        evaluate_predictions(pred_dir, ReferenceLabels(ds), tmp_path / "eval", progress=False)
    summary = evaluate_predictions(pred_dir, ReferenceLabels(ds), tmp_path / "eval", progress=False, labels=LABELS)
    assert summary.metadata["n_cases"] == 2


def test_prediction_shape_mismatch_names_file(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path, n_cases=1)
    write_prediction_info(tmp_path / "pred", LABELS)
    bad = tmp_path / "pred" / "case0.nii.gz"
    _save(bad, np.zeros((12, 12, 5), dtype=np.uint8))
    with pytest.raises(DataError, match="shape") as err:
        evaluate_predictions(tmp_path / "pred", ReferenceLabels(ds), tmp_path / "eval", progress=False)
    assert err.value.path == bad


def test_prediction_affine_mismatch_names_file(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path, n_cases=1)
    write_prediction_info(tmp_path / "pred", LABELS)
    bad = tmp_path / "pred" / "case0.nii.gz"
    _save(bad, _label(0), np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(DataError, match="affine") as err:
        evaluate_predictions(tmp_path / "pred", ReferenceLabels(ds), tmp_path / "eval", progress=False)
    assert err.value.path == bad


def test_a_prediction_in_another_orientation_of_the_same_grid_is_scored_on_the_reference_grid(
        tmp_path: Path) -> None:
    # `predict --original-orientation` writes predictions in the scans' original orientation, while the
    # reference labels of a reoriented import are on the canonical grid: the same voxels, other axes.
    ds = _make_dataset(tmp_path)
    _write_predictions(tmp_path / "pred")
    same = evaluate_predictions(tmp_path / "pred", ReferenceLabels(ds), tmp_path / "eval", progress=False)
    flip = np.array([[-1.0, 0, 0, SHAPE[0] - 1], [0, -1, 0, SHAPE[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]])
    write_prediction_info(tmp_path / "flipped", LABELS)
    for i in range(2):
        pred = _label(0)[::-1, ::-1].transpose(1, 0, 2)  # stored as (y, x, z), both reversed
        swap = np.array([[0.0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        _save(tmp_path / "flipped" / f"case{i}.nii.gz", np.ascontiguousarray(pred), AFFINE @ flip @ swap)
    other = evaluate_predictions(tmp_path / "flipped", ReferenceLabels(ds), tmp_path / "eval2", progress=False)
    assert other.per_class == same.per_class and same.mean("dice") > 0.5
    # Flipped without moving the origin: other voxels in the world, still refused.
    _save(tmp_path / "flipped" / "case0.nii.gz", np.ascontiguousarray(_label(0)[::-1, ::-1]),
          AFFINE @ np.diag([-1.0, -1.0, 1.0, 1.0]))
    with pytest.raises(DataError, match="affine differs"):
        evaluate_predictions(tmp_path / "flipped", ReferenceLabels(ds), tmp_path / "eval3", progress=False)


def test_missing_prediction_names_file(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path)
    pred_dir = tmp_path / "pred"
    _write_predictions(pred_dir, n_cases=1)
    with pytest.raises(DataError, match="missing") as err:
        evaluate_predictions(pred_dir, ReferenceLabels(ds), tmp_path / "eval", progress=False)
    assert err.value.path == pred_dir / "case1.nii.gz"
    assert not (tmp_path / "eval" / "summary.json").exists()


def test_reference_validates_label_values(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path, n_cases=1)
    lab = _label(0)
    lab[0, 0, 0] = 7
    _save(ds / "labelsTs" / "case0.nii.gz", lab)
    with pytest.raises(DataError, match=r"\[7\]") as err:
        ReferenceLabels(ds).load("case0")
    assert err.value.path == ds / "labelsTs" / "case0.nii.gz"


def test_reference_training_split_needs_explicit_purpose(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path, n_cases=1)
    with pytest.raises(ConfigError, match="pseudo-label-quality"):
        ReferenceLabels(ds, split="Tr")
    with pytest.raises(ConfigError):
        ReferenceLabels(ds, split="Val")
    # test labels can never be requested for training, nor training labels for evaluation
    with pytest.raises(ConfigError, match="only read split 'Tr'"):
        ReferenceLabels(ds, split="Ts", purpose="oracle-training")
    with pytest.raises(ConfigError, match="only read split 'Ts'"):
        ReferenceLabels(ds, split="Tr", purpose="evaluation")
    with pytest.raises(ConfigError, match="unknown"):
        ReferenceLabels(ds, split="Tr", purpose="whatever")
    assert ReferenceLabels(ds).purpose == "evaluation"


def test_reference_training_split_for_pseudo_label_quality(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path, n_cases=1)
    (ds / "imagesTs").rename(ds / "imagesTr")
    (ds / "labelsTs").rename(ds / "labelsTr")
    ref = ReferenceLabels(ds, split="Tr", purpose="pseudo-label-quality")
    label, affine = ref.load("case0")
    assert label.shape == SHAPE and np.allclose(affine, AFFINE)


def test_reference_missing_label_file(tmp_path: Path) -> None:
    ds = _make_dataset(tmp_path, n_cases=1)
    (ds / "labelsTs" / "case0.nii.gz").unlink()
    with pytest.raises(DataError, match="missing") as err:
        ReferenceLabels(ds)
    assert err.value.path == ds / "labelsTs" / "case0.nii.gz"

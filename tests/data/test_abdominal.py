"""Tests for the abdominal CT <-> MR importer on a tiny fake layout (and on the real data when present)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from typer.testing import CliRunner

from diffuse_uda.cli import app
from diffuse_uda.data.dataset_json import list_cases, load_dataset_json
from diffuse_uda.data.importers.abdominal import (
    CT_DATASET,
    CT_SPLIT_DATASET,
    LABELS,
    MR_ALL_DATASET,
    MR_DATASET,
    import_abdominal,
    n_test_volumes,
)
from diffuse_uda.data.io import read_nifti, write_nifti
from diffuse_uda.data.task import load_task
from diffuse_uda.data.validation import validate_dataset
from diffuse_uda.errors import DataError

REAL_DATA = Path(__file__).parents[2].parent / "shared" / "data"
# Axis codes differ on purpose, as in the real data: CT is L,P,S and MR is L,A,S with a slight tilt.
CT_AFFINE = np.diag([-1.75, -1.75, 1.0, 1.0])
_tilt = np.deg2rad(2.0)
MR_AFFINE = np.array([[-1.25 * np.cos(_tilt), 0.0, 7.7 * np.sin(_tilt), 192.7],
                      [0.0, 1.25, 0.0, -200.7],
                      [-1.25 * np.sin(_tilt), 0.0, 7.7 * np.cos(_tilt), -77.1],
                      [0.0, 0.0, 0.0, 1.0]])
CT_NUMBERS = (0, 9, 10, 18)
MR_NUMBERS = tuple(n for n in range(14) if n != 5)  # 13 volumes, one number missing as upstream
SHAPE = (10, 8, 3)


def _write_volume(folder: Path, n: int, affine: np.ndarray, rng: np.random.Generator) -> None:
    image = rng.random(SHAPE) * 255.0  # float64, as upstream
    label = np.zeros(SHAPE, np.float32)  # float32 label values, as upstream
    label[1:4, 1:4, :] = 1
    label[5:7, 1:3, 1] = 2
    label[5:7, 5:7, 1] = 3
    label[8, 6, 2] = 4
    write_nifti(folder / f"image_{n}.nii.gz", image, affine)
    write_nifti(folder / f"label_{n}.nii.gz", label, affine)


def make_fake_abdominal(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for n in CT_NUMBERS:
        _write_volume(root / "CT", n, CT_AFFINE, rng)
    for n in MR_NUMBERS:
        _write_volume(root / "MR_T2", n, MR_AFFINE, rng)
    return root


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, tuple[Path, ...]]:
    """(fake source folder, data root, dataset folders) of one import, shared by the read-only tests."""
    base = tmp_path_factory.mktemp("abdominal")
    src = make_fake_abdominal(base / "src")
    return src, base / "data", import_abdominal(src, base / "data", seed=0)


def test_n_test_volumes_rule() -> None:
    # max(6, round(0.3 n)), never more than half the volumes.
    assert [n_test_volumes(n) for n in (0, 1, 2, 3, 6, 12, 13, 19, 20, 30, 40)] == [0, 0, 1, 1, 3, 6, 6, 6, 6, 9, 12]


def test_datasets_and_splits_by_volume(imported: tuple[Path, Path, tuple[Path, ...]]) -> None:
    _, root, dirs = imported
    assert [d.name for d in dirs] == [CT_DATASET, MR_DATASET, MR_ALL_DATASET, CT_SPLIT_DATASET]
    assert all(d.parent == root for d in dirs)
    ct, mr, mr_all, ct_split = dirs
    mr_ids = [f"mr{n:02d}" for n in MR_NUMBERS]
    ct_ids = [f"ct{n:02d}" for n in CT_NUMBERS]
    assert list_cases(ct, "Tr") == ct_ids and not (ct / "imagesTs").exists()
    assert list_cases(mr_all, "Tr") == mr_ids and not (mr_all / "imagesTs").exists()

    tr, ts = list_cases(mr, "Tr"), list_cases(mr, "Ts")
    assert len(ts) == 6 and len(tr) == 7  # 13 volumes: max(6, round(3.9)) = 6, under the cap of 6
    assert not set(tr) & set(ts) and sorted(tr + ts) == mr_ids
    assert sorted(p.name for p in (mr / "labelsTs").iterdir()) == [f"{c}.nii.gz" for c in ts]
    info = load_dataset_json(mr)
    assert info.provenance["cases"] == {"Tr": tr, "Ts": ts}
    assert info.num_training == 7 and "by volume" in info.provenance["split_rule"]

    c_tr, c_ts = list_cases(ct_split, "Tr"), list_cases(ct_split, "Ts")
    assert len(c_ts) == 2 and len(c_tr) == 2 and not set(c_tr) & set(c_ts)  # 4 volumes: capped at half
    assert "tiny test split" in load_dataset_json(ct_split).description
    for d in dirs:
        validate_dataset(d, splits=("Tr", "Ts") if (d / "imagesTs").exists() else ("Tr",))


def test_metadata_labels_and_provenance(imported: tuple[Path, Path, tuple[Path, ...]]) -> None:
    src, _, (ct, mr, mr_all, ct_split) = imported
    for d, channel in ((ct, "CT"), (mr, "MR"), (mr_all, "MR"), (ct_split, "CT")):
        info = load_dataset_json(d)
        assert info.channel_names == {"0": channel}
        assert info.labels == {"background": 0, "liver": 1, "right_kidney": 2, "left_kidney": 3, "spleen": 4}
        assert info.provenance["source_dir"] == str(src.resolve())
    record = load_dataset_json(mr).provenance["source_files"]["mr13"]
    assert record["image"] == "MR_T2/image_13.nii.gz" and record["label"] == "MR_T2/label_13.nii.gz"
    np.testing.assert_allclose(record["original_affine"], MR_AFFINE, atol=1e-5)
    assert record["original_axis_codes"] == "LAS"
    assert load_dataset_json(ct).provenance["source_files"]["ct09"]["original_axis_codes"] == "LPS"


def test_arrays_kept_with_diagonal_affine_and_types(imported: tuple[Path, Path, tuple[Path, ...]]) -> None:
    src, _, (ct, mr, _, _) = imported
    mr_case = (list_cases(mr, "Ts"))[0]
    n = int(mr_case[2:])
    for folder, case, split, source, spacing in ((ct, "ct10", "Tr", src / "CT", (1.75, 1.75, 1.0)),
                                                 (mr, mr_case, "Ts", src / "MR_T2", (1.25, 1.25, 7.7))):
        image, affine = read_nifti(folder / f"images{split}" / f"{case}_0000.nii.gz")
        label, label_affine = read_nifti(folder / f"labels{split}" / f"{case}.nii.gz")
        np.testing.assert_allclose(affine, np.diag([*spacing, 1.0]), atol=1e-5)
        np.testing.assert_array_equal(label_affine, affine)
        assert image.dtype == np.float32 and label.dtype == np.uint8
        # Arrays as stored upstream: no reorientation although the axis codes differ.
        number = 10 if case == "ct10" else n
        original, _ = read_nifti(source / f"image_{number}.nii.gz")
        np.testing.assert_allclose(image, original.astype(np.float32))
        assert label[2, 2, 0] == 1 and label[6, 1, 1] == 2 and label[6, 6, 1] == 3 and label[8, 6, 2] == 4
        assert nib.aff2axcodes(affine) == ("R", "A", "S")


def test_reimport_is_skipped_and_reported(imported: tuple[Path, Path, tuple[Path, ...]]) -> None:
    src, root, dirs = imported
    stamp = (dirs[1] / "imagesTs").stat().st_mtime_ns
    reports: list[tuple[Path, bool]] = []
    assert import_abdominal(src, root, seed=0, on_dataset=lambda p, w: reports.append((p, w))) == dirs
    assert reports == [(d, False) for d in dirs]
    assert (dirs[1] / "imagesTs").stat().st_mtime_ns == stamp
    result = CliRunner().invoke(app, ["import", "abdominal", str(src), "--out", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"already imported, skipped: {d}" for d in dirs]


def test_new_seed_changes_only_split_datasets(tmp_path: Path) -> None:
    src = make_fake_abdominal(tmp_path / "src")
    first = import_abdominal(src, tmp_path / "a", seed=0)
    other = import_abdominal(src, tmp_path / "b", seed=1)
    assert [list_cases(d, "Ts") for d in (first[1], first[3])] != [list_cases(d, "Ts") for d in (other[1], other[3])]
    # Seeded: the same seed gives the same split.
    again = import_abdominal(src, tmp_path / "c", seed=1)
    assert list_cases(again[1], "Ts") == list_cases(other[1], "Ts")
    # The unsplit datasets do not depend on the seed; the split ones refuse a different one.
    reports: list[tuple[str, bool]] = []
    with pytest.raises(DataError, match=f"{MR_DATASET}: exists from an import with different settings"):
        import_abdominal(src, tmp_path / "a", seed=1, on_dataset=lambda p, w: reports.append((p.name, w)))
    assert reports == []  # refused before writing or reporting anything


def test_cli_writes_and_task_checks(tmp_path: Path) -> None:
    src = make_fake_abdominal(tmp_path / "src")
    root = tmp_path / "data"
    result = CliRunner().invoke(app, ["import", "abdominal", str(src), "--out", str(root)])
    assert result.exit_code == 0, result.output
    names = (CT_DATASET, MR_DATASET, MR_ALL_DATASET, CT_SPLIT_DATASET)
    assert result.output.splitlines() == [f"wrote {root / n}" for n in names]
    for name, source, target in (("abdominal-ct2mr", CT_DATASET, MR_DATASET),
                                 ("abdominal-mr2ct", MR_ALL_DATASET, CT_SPLIT_DATASET)):
        task = load_task(name, root)
        assert task.source_dir == root / source and task.target_dir == root / target
        assert task.labels == LABELS and task.num_classes == 5 and task.num_channels == 1
        assert task.preprocessing.spatial_dims == 2 and tuple(task.preprocessing.size) == (128, 128)
        task.check()


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nowhere: abdominal data folder does not exist"):
        import_abdominal(tmp_path / "nowhere", tmp_path / "data")
    src = make_fake_abdominal(tmp_path / "src")
    for p in (src / "MR_T2").iterdir():
        p.unlink()
    (src / "MR_T2").rmdir()
    with pytest.raises(DataError, match=r"MR_T2: folder does not exist"):
        import_abdominal(src, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_undeclared_label_value_names_the_file(tmp_path: Path) -> None:
    src = make_fake_abdominal(tmp_path / "src")
    label = np.zeros(SHAPE, np.float32)
    label[0, 0, 0] = 5
    write_nifti(src / "MR_T2" / "label_7.nii.gz", label, MR_AFFINE)
    with pytest.raises(DataError) as exc:
        import_abdominal(src, tmp_path / "data")
    assert "MR_T2/label_7.nii.gz" in str(exc.value) and "[5] are not declared" in str(exc.value)
    # The CT datasets come first and are complete; no partial MR dataset or temp folder is left.
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [CT_DATASET]


def test_shape_mismatch_and_missing_label_name_the_file(tmp_path: Path) -> None:
    src = make_fake_abdominal(tmp_path / "src")
    write_nifti(src / "CT" / "label_9.nii.gz", np.zeros((10, 8, 4), np.float32), CT_AFFINE)
    with pytest.raises(DataError, match=r"CT/label_9\.nii\.gz: label shape \(10, 8, 4\) differs from image shape"):
        import_abdominal(src, tmp_path / "data")
    (src / "CT" / "label_9.nii.gz").unlink()
    with pytest.raises(DataError, match=r"CT/image_9\.nii\.gz: no label for this volume"):
        import_abdominal(src, tmp_path / "data")
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


def test_non_finite_image_and_mismatched_affine(tmp_path: Path) -> None:
    src = make_fake_abdominal(tmp_path / "src")
    bad = np.zeros(SHAPE)
    bad[1, 1, 1] = np.nan
    write_nifti(src / "CT" / "image_18.nii.gz", bad, CT_AFFINE)
    with pytest.raises(DataError, match=r"CT/image_18\.nii\.gz: image contains 1 NaN"):
        import_abdominal(src, tmp_path / "data")
    write_nifti(src / "CT" / "image_18.nii.gz", np.zeros(SHAPE), MR_AFFINE)
    with pytest.raises(DataError, match=r"CT/label_18\.nii\.gz: label affine differs from image affine"):
        import_abdominal(src, tmp_path / "data")


@pytest.mark.realdata
def test_real_abdominal_import(tmp_path: Path) -> None:
    src = REAL_DATA / "abdominal"
    if not (src / "CT").is_dir() or not (src / "MR_T2").is_dir():
        pytest.skip(f"abdominal data not available at {src}")
    start = time.perf_counter()
    ct, mr, mr_all, ct_split = import_abdominal(src, tmp_path)
    elapsed = time.perf_counter() - start
    assert len(list_cases(ct, "Tr")) == 6 and len(list_cases(mr_all, "Tr")) == 19
    mr_tr, mr_ts = list_cases(mr, "Tr"), list_cases(mr, "Ts")
    assert len(mr_tr) == 13 and len(mr_ts) == 6 and not set(mr_tr) & set(mr_ts)
    ct_tr, ct_ts = list_cases(ct_split, "Tr"), list_cases(ct_split, "Ts")
    assert len(ct_tr) == 3 and len(ct_ts) == 3 and sorted(ct_tr + ct_ts) == list_cases(ct, "Tr")
    for d in (ct, mr, mr_all, ct_split):
        splits = ("Tr", "Ts") if (d / "imagesTs").exists() else ("Tr",)
        report = validate_dataset(d, splits=splits)
        assert not [w for w in report.warnings if "never occur" in w], report.warnings  # every organ present
        meta = json.loads((d / "dataset.json").read_text())
        assert meta["labels"] == LABELS
    # Spacing from the original affines: CT 1.75 x 1.75 x 1 mm, MR 1.25 x 1.25 x 7.7 mm.
    assert validate_dataset(ct).shapes["Tr"]["max_spacing"] == [1.75, 1.75, 1.0]
    assert validate_dataset(mr_all).shapes["Tr"]["min_spacing"][:2] == [1.25, 1.25]
    assert elapsed < 300


def test_broken_symlink_is_an_error(tmp_path: Path) -> None:
    src = make_fake_abdominal(tmp_path / "src")
    (src / "MR_T2" / "image_3.nii.gz").unlink()
    (src / "MR_T2" / "image_3.nii.gz").symlink_to(tmp_path / "elsewhere" / "image_3.nii.gz")
    with pytest.raises(DataError, match=r"MR_T2/image_3\.nii\.gz: broken symbolic link"):
        import_abdominal(src, tmp_path / "data")

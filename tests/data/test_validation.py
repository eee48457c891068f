"""Tests for diffuse_uda.data.validation: every check fires and names the file."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from diffuse_uda.data.dataset_json import DatasetInfo, write_dataset_json
from diffuse_uda.data.io import write_nifti
from diffuse_uda.data.validation import ValidationReport, validate_case_arrays, validate_dataset
from diffuse_uda.errors import ConfigError, DataError

LABELS = {"background": 0, "Myo": 1, "LV": 2}
SHAPE = (6, 5, 3)
AFFINE = np.diag([1.25, 1.25, 8.0, 1.0])


def make_dataset(root: Path, n_cases: int = 2, channels: int = 2, splits: tuple[str, ...] = ("Tr",)) -> Path:
    """A tiny valid dataset: `n_cases` cases per split, `channels` channels, labels 0/1/2."""
    rng = np.random.default_rng(0)
    write_dataset_json(root, DatasetInfo(name="Toy", channel_names={str(k): f"c{k}" for k in range(channels)},
                                         labels=dict(LABELS), num_training=n_cases))
    for split in splits:
        for i in range(n_cases):
            for k in range(channels):
                write_nifti(root / f"images{split}" / f"case{i}_{k:04d}.nii.gz",
                            rng.random(SHAPE).astype(np.float32), AFFINE)
            label = np.zeros(SHAPE, np.uint8)
            label[1:3, 1:3, :] = 1
            label[4, 4, 1] = 2
            write_nifti(root / f"labels{split}" / f"case{i}.nii.gz", label, AFFINE)
    return root


def _expect(root: Path, file_name: str, problem: str, **kw: object) -> None:
    with pytest.raises(DataError) as exc:
        validate_dataset(root, **kw)  # type: ignore[arg-type]
    message = str(exc.value)
    assert file_name in message, message
    assert problem in message, message


def test_valid_dataset_report(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "Dataset900_Toy", splits=("Tr", "Ts"))
    report = validate_dataset(root, splits=("Tr", "Ts"))
    assert isinstance(report, ValidationReport)
    assert report.dataset_dir == root
    assert report.n_cases == {"Tr": 2, "Ts": 2}
    assert report.shapes["Tr"]["min_shape"] == list(SHAPE)
    assert report.shapes["Tr"]["max_spacing"] == [1.25, 1.25, 8.0]
    assert report.warnings == []
    assert "Tr: 2 case(s)" in str(report)


def test_warnings(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    write_dataset_json(root, DatasetInfo(name="Toy", channel_names={"0": "a", "1": "b"},
                                         labels={**LABELS, "RV": 3}, num_training=5))
    write_nifti(root / "labelsTr" / "stray.nii.gz", np.zeros(SHAPE, np.uint8), AFFINE)
    warnings = "\n".join(validate_dataset(root).warnings)
    assert "numTraining is 5" in warnings
    assert "['RV'] never occur" in warnings
    assert "stray.nii.gz" in warnings


def test_missing_folder_and_not_a_folder(tmp_path: Path) -> None:
    _expect(tmp_path / "absent", "absent", "dataset folder does not exist")
    (tmp_path / "file").write_text("x")
    _expect(tmp_path / "file", "file", "is not a folder")


def test_dataset_json_problem(tmp_path: Path) -> None:
    tmp_path.joinpath("dataset.json").write_text("{")
    _expect(tmp_path, "dataset.json", "not valid JSON")


def test_empty_images_folder(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    for p in (root / "imagesTr").iterdir():
        p.unlink()
    _expect(root, "imagesTr", "no images")


def test_unrequested_split_missing_is_error_only_when_requested(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    validate_dataset(root)
    _expect(root, "imagesTs", "does not exist", splits=("Ts",))
    with pytest.raises(ConfigError):
        validate_dataset(root, splits=("Val",))


def test_unreadable_image(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    (root / "imagesTr" / "case1_0001.nii.gz").write_bytes(b"garbage")
    _expect(root, "case1_0001.nii.gz", "cannot read NIfTI")


def test_channels_disagree_in_shape(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    write_nifti(root / "imagesTr" / "case0_0001.nii.gz", np.zeros((6, 5, 2), np.float32), AFFINE)
    _expect(root, "case0_0001.nii.gz", "differs from case0_0000.nii.gz")


def test_channels_disagree_in_affine(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    write_nifti(root / "imagesTr" / "case0_0001.nii.gz", np.zeros(SHAPE, np.float32), np.eye(4))
    _expect(root, "case0_0001.nii.gz", "affine differs")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_image(tmp_path: Path, bad: float) -> None:
    root = make_dataset(tmp_path)
    image = np.zeros(SHAPE, np.float32)
    image[0, 0, 0] = bad
    write_nifti(root / "imagesTr" / "case1_0000.nii.gz", image, AFFINE)
    _expect(root, "case1_0000.nii.gz", "NaN" if np.isnan(bad) else "1 Inf")


def test_degenerate_affine(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, channels=1)
    # nibabel refuses to build a qform from a singular matrix, so store it as sform only.
    img = nib.Nifti1Image(np.zeros(SHAPE, np.float32), None)
    img.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=2)
    img.set_qform(None, code=0)
    nib.save(img, str(root / "imagesTr" / "case1_0000.nii.gz"))
    _expect(root, "case1_0000.nii.gz", "degenerate affine")


def test_missing_label(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    (root / "labelsTr" / "case1.nii.gz").unlink()
    _expect(root, "case1.nii.gz", "missing label file")
    (root / "labelsTr" / "case1.nii.gz").symlink_to(tmp_path / "gone.nii.gz")
    _expect(root, "labelsTr/case1.nii.gz", "broken symbolic link")


def test_label_shape_mismatch(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    write_nifti(root / "labelsTr" / "case0.nii.gz", np.zeros((6, 5, 4), np.uint8), AFFINE)
    _expect(root, "case0.nii.gz", "label shape (6, 5, 4) differs from image shape (6, 5, 3)")


def test_label_affine_mismatch_beyond_tolerance(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    shifted = AFFINE.copy()
    shifted[0, 3] = 0.5
    write_nifti(root / "labelsTr" / "case0.nii.gz", np.zeros(SHAPE, np.uint8), shifted)
    _expect(root, "case0.nii.gz", "label affine differs from image affine")
    # Header round-off sized differences are accepted.
    nearly = AFFINE.copy()
    nearly[0, 3] = 1e-5
    write_nifti(root / "labelsTr" / "case0.nii.gz", np.zeros(SHAPE, np.uint8), nearly)
    validate_dataset(root)


def test_non_integer_label(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    label = np.zeros(SHAPE, np.float32)
    label[0, 0, 0] = 0.5
    write_nifti(root / "labelsTr" / "case1.nii.gz", label, AFFINE)
    _expect(root, "case1.nii.gz", "non-integer label values [0.5]")


def test_integer_valued_float_label_is_fine(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    write_nifti(root / "labelsTr" / "case1.nii.gz", np.ones(SHAPE, np.float32), AFFINE)
    validate_dataset(root)


def test_undeclared_label_values_are_listed(tmp_path: Path) -> None:
    root = make_dataset(tmp_path)
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, 0] = 7
    label[0, 1, 0] = 9
    write_nifti(root / "labelsTr" / "case1.nii.gz", label, AFFINE)
    _expect(root, "case1.nii.gz", "label values [7, 9] are not declared")


def test_check_labels_false_never_touches_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dataset(tmp_path, splits=("Tr", "Ts"))
    (root / "labelsTr" / "case0.nii.gz").write_bytes(b"garbage")
    (root / "labelsTr" / "case1.nii.gz").unlink()
    (root / "labelsTs" / "case0.nii.gz").write_bytes(b"garbage")
    touched: list[str] = []
    real_stat = Path.stat

    def spy_stat(self: Path, *args: object, **kwargs: object) -> object:
        if self.name.startswith("labels") or self.parent.name.startswith("labels"):
            touched.append(str(self))
        return real_stat(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", spy_stat)
    report = validate_dataset(root, splits=("Tr", "Ts"), check_labels=False)
    assert report.n_cases == {"Tr": 2, "Ts": 2}
    assert touched == []
    monkeypatch.undo()
    # Without labels the folder may also be absent altogether.
    for p in (root / "labelsTr").iterdir():
        p.unlink()
    (root / "labelsTr").rmdir()
    validate_dataset(root, check_labels=False)
    _expect(root, "case0.nii.gz", "missing label file")


def test_validate_case_arrays_core() -> None:
    image = np.zeros((4, 4, 2), np.float32)
    label = np.zeros((4, 4, 2), np.uint8)
    label[0, 0, 0] = 2
    assert validate_case_arrays("img.nii.gz", image, "lab.nii.gz", label, LABELS, AFFINE, AFFINE) == [0, 2]
    # Channel-first stacks are accepted too; label and everything after it are optional.
    assert validate_case_arrays("img.nii.gz", np.zeros((2, 4, 4, 2), np.float32), "lab.nii.gz", label) == [0, 2]
    assert validate_case_arrays("img.nii.gz", image) == []
    with pytest.raises(DataError, match="lab.nii.gz: label shape"):
        validate_case_arrays("img.nii.gz", image, "lab.nii.gz", label[:3])
    bad = image.copy()
    bad[1, 1, 1] = np.nan
    with pytest.raises(DataError, match="img.nii.gz: image contains 1 NaN"):
        validate_case_arrays("img.nii.gz", bad, None, None, None, None, None)


@pytest.fixture()
def validate_cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):
    """Run ``diffuse-uda validate ARGS`` through the real entry point: (exit code, stdout + stderr)."""
    from diffuse_uda.cli import main

    def run(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["diffuse-uda", "validate", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        captured = capsys.readouterr()
        return int(exc.value.code or 0), captured.out + captured.err

    return run


def test_validate_cli_checks_every_present_split_by_default(tmp_path: Path, validate_cli) -> None:
    # Defect: `validate` only ever looked at imagesTr/labelsTr, so a broken test split passed.
    root = make_dataset(tmp_path / "Dataset900_Toy", splits=("Tr", "Ts"))
    code, output = validate_cli(str(root))
    assert code == 0 and "Tr: 2 case(s)" in output and "Ts: 2 case(s)" in output, output
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, 0] = 7
    write_nifti(root / "labelsTs" / "case1.nii.gz", label, AFFINE)
    for args in ([], ["--split", "all"], ["--split", "Ts"]):
        code, output = validate_cli(str(root), *args)
        assert code == 2 and "labelsTs/case1.nii.gz" in output and "[7] are not declared" in output, (args, output)
    code, output = validate_cli(str(root), "--split", "Tr")
    assert code == 0 and "Ts:" not in output, output
    # --no-labels still skips the labels, of every split.
    code, output = validate_cli(str(root), "--no-labels")
    assert code == 0 and "Ts: 2 case(s)" in output, output


def test_validate_cli_missing_split_is_an_error_only_when_requested(tmp_path: Path, validate_cli) -> None:
    root = make_dataset(tmp_path / "Dataset900_Toy", splits=("Tr",))
    code, output = validate_cli(str(root))
    assert code == 0 and "Tr: 2 case(s)" in output and "Ts:" not in output, output
    code, output = validate_cli(str(root), "--split", "Ts")
    assert code == 2 and "imagesTs" in output and "split Ts was requested" in output, output
    code, output = validate_cli(str(root), "--split", "Val")
    assert code != 0 and "Val" in output


def _geometry_dataset(root: Path, affine: np.ndarray, shape: tuple[int, int, int] = SHAPE) -> Path:
    write_dataset_json(root, DatasetInfo(name=root.name, channel_names={"0": "MR"}, labels=dict(LABELS),
                                         num_training=2))
    for i in range(2):
        write_nifti(root / "imagesTr" / f"case{i}_0000.nii.gz", np.ones(shape, np.float32), affine)
        label = np.zeros(shape, np.uint8)
        label[1, 1, 0], label[2, 2, 0] = 1, 2
        write_nifti(root / "labelsTr" / f"case{i}.nii.gz", label, affine)
    return root


def test_compare_geometry_names_orientation_and_field_of_view_differences(tmp_path: Path) -> None:
    from diffuse_uda.data.validation import compare_geometry

    ras = validate_dataset(_geometry_dataset(tmp_path / "A", AFFINE))
    assert ras.orientation_codes == {"RAS": 2} and ras.median_fov_mm == (7.5, 6.25)
    assert compare_geometry(ras, validate_dataset(_geometry_dataset(tmp_path / "B", AFFINE))) == []
    lps = validate_dataset(_geometry_dataset(tmp_path / "C", np.diag([-1.25, -1.25, 8.0, 1.0])))
    (warning,) = compare_geometry(ras, lps)
    assert "orientation differs" in warning and "RAS (2/2)" in warning and "LPS (2/2)" in warning
    assert str(tmp_path / "A") in warning and str(tmp_path / "C") in warning
    # Field of view: 1.4x along an axis is tolerated, 2x is not.
    near = validate_dataset(_geometry_dataset(tmp_path / "D", np.diag([1.75, 1.25, 8.0, 1.0])))
    assert compare_geometry(ras, near) == []
    wide = validate_dataset(_geometry_dataset(tmp_path / "E", np.diag([2.5, 2.5, 8.0, 1.0])))
    (warning,) = compare_geometry(ras, wide)
    assert "in-plane field of view differs" in warning and "8 x 6 mm" in warning and "15 x 12 mm" in warning
    assert "ratio 2.00 > 1.5" in warning


def test_validate_cli_compares_two_datasets_and_a_task(tmp_path: Path, validate_cli) -> None:
    source = _geometry_dataset(tmp_path / "data" / "Dataset910_Src", AFFINE)
    target = _geometry_dataset(tmp_path / "data" / "Dataset911_Tgt", np.diag([-2.5, -2.5, 8.0, 1.0]))
    code, output = validate_cli(str(source), str(target))
    assert code == 0, output  # warnings only
    assert output.count("OK: ") == 2
    assert "warning: orientation differs" in output and "warning: in-plane field of view differs" in output
    # --task: the source with labels, the target's images only (its labels are evaluation data).
    import shutil

    shutil.rmtree(target / "labelsTr")
    task = tmp_path / "task.yaml"
    task.write_text("name: t\nsource: Dataset910_Src\ntarget: Dataset911_Tgt\n"
                    "labels: {background: 0, Myo: 1, LV: 2}\n")
    code, output = validate_cli("--task", str(task), "--data-root", str(tmp_path / "data"))
    assert code == 0 and "warning: orientation differs" in output, output
    shutil.rmtree(source / "labelsTr")
    code, output = validate_cli("--task", str(task), "--data-root", str(tmp_path / "data"))
    assert code == 2 and "Dataset910_Src/labelsTr/case0.nii.gz" in output, output
    code, output = validate_cli(str(source), "--task", str(task))
    assert code == 2 and "either --task or dataset folders" in output, output
    # The task's label map must be the datasets' (e.g. both centres imported with the same --labels).
    task.write_text(task.read_text().replace("LV: 2}", "LV: 2, RV: 3}"))
    code, output = validate_cli("--task", str(task), "--data-root", str(tmp_path / "data"))
    assert code == 2 and "Dataset910_Src/dataset.json: labels" in output and "differ from task" in output, output

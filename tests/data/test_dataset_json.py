"""Tests for diffuse_uda.data.dataset_json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from diffuse_uda.data.dataset_json import (
    DatasetInfo,
    has_split,
    image_paths,
    label_path,
    list_cases,
    load_dataset_json,
    write_dataset_json,
)
from diffuse_uda.errors import ConfigError, DataError


def _info(**kw: Any) -> DatasetInfo:
    base: dict[str, Any] = {
        "name": "Toy",
        "channel_names": {"0": "R", "1": "G"},
        "labels": {"background": 0, "Myo": 1, "LV": 2},
        "num_training": 2,
        "provenance": {"source": "synthetic"},
    }
    base.update(kw)
    return DatasetInfo(**base)


def _write_raw(folder: Path, obj: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(obj))


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_round_trip(tmp_path: Path) -> None:
    info = _info()
    path = write_dataset_json(tmp_path / "Dataset900_Toy", info)
    assert path.name == "dataset.json"
    raw = json.loads(path.read_text())
    assert raw["numTraining"] == 2 and raw["file_ending"] == ".nii.gz"
    assert raw["channel_names"] == {"0": "R", "1": "G"}
    loaded = load_dataset_json(tmp_path / "Dataset900_Toy")
    assert loaded == info
    assert loaded.num_channels == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["dataset.json"]


def test_case_groups_round_trip_and_are_checked(tmp_path: Path) -> None:
    info = _info()
    info.case_groups = {"seq01_frame0001": "seq01", "seq01_frame0002": "seq01"}
    loaded = load_dataset_json(write_dataset_json(tmp_path / "Dataset900_Toy", info).parent)
    assert loaded.case_groups == info.case_groups
    assert "case_groups" not in json.loads(write_dataset_json(tmp_path / "Dataset901_Toy", _info()).read_text())
    _write_raw(tmp_path / "bad", {"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 0,
                                  "file_ending": ".nii.gz", "case_groups": {"a": 3}})
    with pytest.raises(DataError, match=r"dataset\.json: case_groups must map case ids"):
        load_dataset_json(tmp_path / "bad")


def test_minimal_nnunet_json_gets_defaults(tmp_path: Path) -> None:
    _write_raw(tmp_path / "Dataset001_X", {"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1},
                                           "numTraining": 0, "file_ending": ".nii.gz"})
    info = load_dataset_json(tmp_path / "Dataset001_X")
    assert info.name == "Dataset001_X" and info.provenance == {} and info.description == ""


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ({"labels": {"background": 0}, "numTraining": 0, "file_ending": ".nii.gz"}, "missing required key"),
        ({"modality": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 0, "file_ending": ".nii.gz"},
         "nnU-Net v1"),
        ({"channel_names": {"0": "CT"}, "labels": ["background"], "numTraining": 0, "file_ending": ".nii.gz"},
         "labels must be"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0, "x": "one"}, "numTraining": 0,
          "file_ending": ".nii.gz"}, "labels must map names to integers"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 1, "x": 0}, "numTraining": 0,
          "file_ending": ".nii.gz"}, "background"),
        ({"channel_names": {"0": "CT"}, "labels": {"x": 1}, "numTraining": 0, "file_ending": ".nii.gz"},
         "background"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1, "b": 1}, "numTraining": 0,
          "file_ending": ".nii.gz"}, "duplicate label value 1"),
        ({"channel_names": {"0": "CT", "2": "MR"}, "labels": {"background": 0}, "numTraining": 0,
          "file_ending": ".nii.gz"}, "channel_names keys"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": 0, "file_ending": ".png"},
         "unsupported file_ending"),
        ({"channel_names": {"0": "CT"}, "labels": {"background": 0}, "numTraining": -1, "file_ending": ".nii.gz"},
         "numTraining"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_dataset_json_names_file(tmp_path: Path, content: Any, problem: str) -> None:
    _write_raw(tmp_path, content)
    with pytest.raises(DataError) as exc:
        load_dataset_json(tmp_path)
    assert "dataset.json" in str(exc.value)
    assert problem in str(exc.value)


def test_missing_and_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset\.json: file does not exist"):
        load_dataset_json(tmp_path)
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: not valid JSON"):
        load_dataset_json(tmp_path)


def test_write_refuses_invalid_info(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="background"):
        write_dataset_json(tmp_path, _info(labels={"background": 2}))
    assert not (tmp_path / "dataset.json").exists()


def test_path_builders() -> None:
    root = Path("/nowhere/Dataset900_Toy")
    assert image_paths(root, "Tr", "case1", 2) == [root / "imagesTr" / "case1_0000.nii.gz",
                                                   root / "imagesTr" / "case1_0001.nii.gz"]
    assert label_path(root, "Ts", "case1") == root / "labelsTs" / "case1.nii.gz"
    with pytest.raises(ConfigError):
        label_path(root, "Val", "case1")


def test_list_cases_and_has_split(tmp_path: Path) -> None:
    write_dataset_json(tmp_path, _info())
    assert not has_split(tmp_path, "Tr")
    with pytest.raises(DataError, match="imagesTr: folder does not exist"):
        list_cases(tmp_path, "Tr")
    (tmp_path / "imagesTr").mkdir()
    assert not has_split(tmp_path, "Tr")
    with pytest.raises(DataError, match="imagesTr: no images"):
        list_cases(tmp_path, "Tr")
    for case in ("b_2", "a1"):
        for k in range(2):
            _touch(tmp_path / "imagesTr" / f"{case}_{k:04d}.nii.gz")
    _touch(tmp_path / "imagesTr" / ".DS_Store")
    _touch(tmp_path / "imagesTr" / ".a1_0000.nii.gz.1234.tmp.nii.gz")  # an in-progress write
    assert has_split(tmp_path, "Tr")
    assert list_cases(tmp_path, "Tr") == ["a1", "b_2"]


def test_list_cases_missing_channel_names_file(tmp_path: Path) -> None:
    write_dataset_json(tmp_path, _info())
    _touch(tmp_path / "imagesTr" / "a_0000.nii.gz")
    _touch(tmp_path / "imagesTr" / "a_0001.nii.gz")
    _touch(tmp_path / "imagesTr" / "b_0001.nii.gz")
    with pytest.raises(DataError, match=r"b_0000\.nii\.gz: missing channel 0"):
        list_cases(tmp_path, "Tr")
    (tmp_path / "imagesTr" / "b_0001.nii.gz").rename(tmp_path / "imagesTr" / "b_0002.nii.gz")
    with pytest.raises(DataError, match=r"b_0002\.nii\.gz: channel 2 but dataset.json declares 2"):
        list_cases(tmp_path, "Tr")
    (tmp_path / "imagesTr" / "b_0002.nii.gz").rename(tmp_path / "imagesTr" / "b.nii.gz")
    with pytest.raises(DataError, match=r"b\.nii\.gz: image file not named"):
        list_cases(tmp_path, "Tr")


def test_list_cases_broken_symlink_is_an_error(tmp_path: Path) -> None:
    # Defect: a dangling link in imagesTr was skipped silently, so its case vanished from training/evaluation.
    write_dataset_json(tmp_path, _info())
    for k in range(2):
        _touch(tmp_path / "imagesTr" / f"a_{k:04d}.nii.gz")
        (tmp_path / "imagesTr" / f"b_{k:04d}.nii.gz").symlink_to(tmp_path / "moved" / f"b_{k:04d}.nii.gz")
    with pytest.raises(DataError, match=r"imagesTr/b_0000\.nii\.gz: broken symbolic link"):
        list_cases(tmp_path, "Tr")
    # A split holding nothing but broken links is still present: listing it must fail, not skip it.
    (tmp_path / "imagesTs").mkdir()
    (tmp_path / "imagesTs" / "c_0000.nii.gz").symlink_to(tmp_path / "moved" / "c_0000.nii.gz")
    assert has_split(tmp_path, "Ts")
    # Links that work are fine.
    for k in range(2):
        _touch(tmp_path / "moved" / f"b_{k:04d}.nii.gz")
    assert list_cases(tmp_path, "Tr") == ["a", "b"]


def test_colour_photo_is_read_from_the_channel_names() -> None:
    """Three channels are a photo only when they are red, green and blue; three scan sequences are not (they get
    the grey appearance candidates, not the colour-aware ones)."""
    def info(names: dict[str, str]) -> DatasetInfo:
        return DatasetInfo(name="x", channel_names=names, labels={"background": 0, "a": 1})

    assert info({"0": "R", "1": "G", "2": "B"}).is_colour_photo
    assert info({"2": "blue", "0": "red", "1": "green"}).is_colour_photo  # order by index, case-insensitive
    assert not info({"0": "T1", "1": "T2", "2": "FLAIR"}).is_colour_photo
    assert not info({"0": "B", "1": "G", "2": "R"}).is_colour_photo  # BGR is not what the importers write
    assert not info({"0": "MRI"}).is_colour_photo

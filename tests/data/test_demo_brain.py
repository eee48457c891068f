"""Tests of the embedded demo dataset generator (tiny grid and few subjects, so they run in seconds)."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from diffuse_uda.data import demo_brain
from diffuse_uda.data.demo_brain import (
    DEMO_LABELS,
    SOURCE_DATASET,
    TARGET_DATASET,
    DemoBrainConfig,
    generate_demo_brain,
)
from diffuse_uda.errors import ConfigError, DataError

TINY = DemoBrainConfig(n_source=2, n_target_train=2, n_target_test=1, shape=(24, 24, 16), seed=3)


def _no_network(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("the demo generator tried to use the network")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """Generate the tiny demo once, with networking disabled and nilearn's files read afresh."""
    root = tmp_path_factory.mktemp("demo")
    demo_brain._grid_for.cache_clear()
    demo_brain._load_template.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        source, target = generate_demo_brain(root, TINY, progress=False)
    return root, source, target


def _cases(folder: Path, split: str = "Tr") -> list[str]:
    return sorted(p.name[: -len(".nii.gz")] for p in (folder / f"labels{split}").glob("*.nii.gz"))


def _pair(folder: Path, case: str, split: str = "Tr") -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    image = nib.load(folder / f"images{split}" / f"{case}_0000.nii.gz")
    label = nib.load(folder / f"labels{split}" / f"{case}.nii.gz")
    return image, label


def _all_pairs(source: Path, target: Path) -> list[tuple[str, nib.Nifti1Image, nib.Nifti1Image]]:
    out = []
    for folder, split in ((source, "Tr"), (target, "Tr"), (target, "Ts")):
        for case in _cases(folder, split):
            out.append((folder.name, *_pair(folder, case, split)))
    return out


def test_layout_and_dataset_json(generated: tuple[Path, Path, Path]) -> None:
    root, source, target = generated
    assert source == root / SOURCE_DATASET and target == root / TARGET_DATASET
    assert _cases(source) == ["demot1_000", "demot1_001"]
    assert _cases(target) == ["demot2_000", "demot2_001"]
    assert _cases(target, "Ts") == ["demot2_002"]
    assert not (source / "imagesTs").exists()
    for folder, split in ((source, "Tr"), (target, "Tr"), (target, "Ts")):
        for case in _cases(folder, split):
            assert (folder / f"images{split}" / f"{case}_0000.nii.gz").is_file()
    # Nothing half-written is left behind (temporary folders or files).
    assert sorted(p.name for p in root.iterdir()) == [SOURCE_DATASET, TARGET_DATASET]
    assert not [p for p in root.rglob(".*")]

    for folder, modality, n_train in ((source, "T1w", 2), (target, "T2w", 2)):
        meta = json.loads((folder / "dataset.json").read_text())
        assert meta["channel_names"] == {"0": modality}
        assert meta["labels"] == DEMO_LABELS
        assert meta["numTraining"] == n_train
        assert meta["file_ending"] == ".nii.gz"
        assert meta["name"] == folder.name
        assert meta["description"]
        prov = meta["provenance"]
        assert prov["seed"] == 3 and prov["config"]["shape"] == [24, 24, 16]
        assert prov["nilearn_version"]
        assert "McGill" in meta["license"]


def test_labels_shapes_affines_and_values(generated: tuple[Path, Path, Path]) -> None:
    _, source, target = generated
    affines = []
    for _, image, label in _all_pairs(source, target):
        img, lab = np.asarray(image.dataobj), np.asarray(label.dataobj)
        assert img.dtype == np.float32 and lab.dtype == np.uint8
        assert img.shape == lab.shape == TINY.shape
        np.testing.assert_allclose(image.affine, label.affine)
        affines.append(image.affine)
        assert np.isfinite(img).all() and img.min() >= 0.0
        assert set(np.unique(lab)) == {0, 1, 2, 3}
    for affine in affines[1:]:
        np.testing.assert_allclose(affine, affines[0])


def test_contrast_differs_between_domains(generated: tuple[Path, Path, Path]) -> None:
    _, source, target = generated
    for name, image, label in _all_pairs(source, target):
        img, lab = np.asarray(image.dataobj), np.asarray(label.dataobj)
        wm, csf = img[lab == DEMO_LABELS["WM"]].mean(), img[lab == DEMO_LABELS["CSF"]].mean()
        if name == SOURCE_DATASET:
            assert wm > csf + 0.2, (name, wm, csf)  # T1-like: white matter bright, CSF dark
        else:
            assert wm < csf - 0.02, (name, wm, csf)  # T2-like: inverted


def test_subjects_differ(generated: tuple[Path, Path, Path]) -> None:
    _, source, target = generated
    labels = [np.asarray(label.dataobj) for _, _, label in _all_pairs(source, target)]
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            # Distinct anatomy: a real fraction of voxels changes label, not just noise.
            assert (labels[i] != labels[j]).mean() > 0.01, (i, j)


def test_same_seed_identical_other_seed_differs(generated: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, source, _ = generated
    again, _ = generate_demo_brain(tmp_path / "again", TINY, progress=False)
    other, _ = generate_demo_brain(tmp_path / "other", TINY.model_copy(update={"seed": 4}), progress=False)
    for case in _cases(source):
        image, label = _pair(source, case)
        image2, label2 = _pair(again, case)
        np.testing.assert_array_equal(np.asarray(image.dataobj), np.asarray(image2.dataobj))
        np.testing.assert_array_equal(np.asarray(label.dataobj), np.asarray(label2.dataobj))
        image3, _ = _pair(other, case)
        assert not np.array_equal(np.asarray(image.dataobj), np.asarray(image3.dataobj))


def test_rerun_is_idempotent(generated: tuple[Path, Path, Path]) -> None:
    root, source, target = generated
    files = [p for p in root.rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    assert generate_demo_brain(root, TINY, progress=False) == (source, target)
    assert {p: p.stat().st_mtime_ns for p in files} == before
    assert sorted(p for p in root.rglob("*") if p.is_file()) == sorted(files)


def test_existing_folder_with_other_settings_is_an_error(generated: tuple[Path, Path, Path]) -> None:
    root, _, _ = generated
    with pytest.raises(DataError, match="generator settings"):
        generate_demo_brain(root, TINY.model_copy(update={"n_source": 3}), progress=False)


def test_other_domain_settings_do_not_invalidate_a_dataset(tmp_path: Path) -> None:
    source, _ = generate_demo_brain(tmp_path, TINY, progress=False)
    mtime = (source / "dataset.json").stat().st_mtime_ns
    # More target test subjects: the source dataset is reused as is, only the target is a mismatch.
    with pytest.raises(DataError, match=TARGET_DATASET):
        generate_demo_brain(tmp_path, TINY.model_copy(update={"n_target_test": 2}), progress=False)
    assert (source / "dataset.json").stat().st_mtime_ns == mtime


def test_incomplete_existing_dataset_is_an_error(generated: tuple[Path, Path, Path], tmp_path: Path) -> None:
    source, _ = generate_demo_brain(tmp_path, TINY, progress=False)
    (source / "labelsTr" / "demot1_001.nii.gz").unlink()
    with pytest.raises(DataError, match="incomplete"):
        generate_demo_brain(tmp_path, TINY, progress=False)


def test_files_respect_umask(generated: tuple[Path, Path, Path]) -> None:
    # Temporary files/folders must not leak a private mode (0600/0700) into the finished dataset.
    _, source, _ = generated
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(source.stat().st_mode) == 0o777 & ~umask
    for path in (source / "dataset.json", source / "imagesTr" / "demot1_000_0000.nii.gz"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_invalid_config() -> None:
    with pytest.raises(ConfigError):
        DemoBrainConfig(n_source=0)
    with pytest.raises(ConfigError):
        DemoBrainConfig(shape=(4, 64, 64))
    for bad in ({"max_scale": float("nan")}, {"tissue_sharpness": 0.0}, {"no_such": 1}, {"n_target_test": -1}):
        with pytest.raises(ConfigError, match="invalid DemoBrainConfig"):
            DemoBrainConfig(**bad)

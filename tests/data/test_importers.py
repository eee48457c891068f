"""Tests for the dataset importers (MS-CMRSeg, polyp pair, generic folder) on tiny fake layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffuse_uda.data.dataset_json import list_cases, load_dataset_json
from diffuse_uda.data.importers import import_folder, import_mscmrseg, import_polyp
from diffuse_uda.data.importers.mscmrseg import reverse_split
from diffuse_uda.data.importers.polyp import _split_cvc, cvc_case_sequence, cvc_sequence
from diffuse_uda.data.io import read_nifti, write_nifti
from diffuse_uda.data.validation import validate_dataset
from diffuse_uda.errors import ConfigError, DataError

REAL_DATA = Path(__file__).parents[2].parent / "shared" / "data"
MSCMR_AFFINE = np.array([[-0.8, -0.6, 7.1, 95.3], [-0.9, 0.1, -8.1, 212.2], [-0.3, 1.1, 5.3, -131.9],
                         [0.0, 0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------- MS-CMRSeg


def _fake_mscmr_case(folder: Path, patient: int, modality: str, rng: np.random.Generator,
                     extra_value: int | None = None) -> None:
    shape = (192, 192, 3)
    image = rng.random(shape, dtype=np.float32)
    label = np.zeros(shape, np.int16)
    label[40:60, 40:60, :] = 200
    label[60:80, 60:80, :] = 500
    label[90:100, 90:100, 1] = 600
    if extra_value is not None:
        label[0, 0, 0] = extra_value
    write_nifti(folder / f"patient{patient}_{modality}.nii.gz", image, MSCMR_AFFINE)
    write_nifti(folder / f"patient{patient}_{modality}_manual.nii.gz", label, MSCMR_AFFINE)


def make_fake_mscmr(root: Path, c0: tuple[int, ...] = (1, 2, 3, 4),
                    lge: tuple[int, ...] = (1, 2, 3, 4, 36, 37)) -> Path:
    rng = np.random.default_rng(0)
    for n in c0:
        _fake_mscmr_case(root / "C0", n, "C0", rng)
    for n in lge:
        _fake_mscmr_case(root / "LGE", n, "LGE", rng)
    return root


def test_mscmrseg_import_maps_labels_and_splits_by_patient(tmp_path: Path) -> None:
    src = make_fake_mscmr(tmp_path / "src")
    datasets = import_mscmrseg(src, tmp_path / "raw")
    source, target, reverse_source, reverse_target = datasets
    assert source == tmp_path / "raw" / "Dataset501_MSCMR_bSSFP"
    assert target == tmp_path / "raw" / "Dataset502_MSCMR_LGE"
    assert list_cases(source, "Tr") == [f"patient{n}" for n in (1, 2, 3, 4)]
    assert list_cases(target, "Tr") == [f"patient{n}" for n in (1, 2, 3, 4)]
    assert list_cases(target, "Ts") == ["patient36", "patient37"]
    assert not (source / "imagesTs").exists()

    label, affine = read_nifti(target / "labelsTs" / "patient36.nii.gz")
    assert label.dtype == np.uint8
    assert sorted(np.unique(label).tolist()) == [0, 1, 2, 3]
    assert label[50, 50, 0] == 1 and label[70, 70, 0] == 2 and label[95, 95, 1] == 3
    np.testing.assert_allclose(affine, MSCMR_AFFINE, atol=1e-5)
    image, _ = read_nifti(source / "imagesTr" / "patient1_0000.nii.gz")
    assert image.dtype == np.float32 and image.shape == (192, 192, 3)

    info = load_dataset_json(target)
    assert info.labels == {"background": 0, "Myo": 1, "LV": 2, "RV": 3}
    assert info.channel_names == {"0": "LGE"} and info.num_training == 4
    assert info.provenance["label_mapping"] == {"0": 0, "200": 1, "500": 2, "600": 3}
    assert "by patient" in info.provenance["split_rule"]
    assert info.provenance["source_dir"] == str(src.resolve())
    assert load_dataset_json(source).channel_names == {"0": "bSSFP"}
    for ds in (source, target):
        validate_dataset(ds, splits=("Tr", "Ts") if ds == target else ("Tr",))
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(d.name for d in datasets)

    # LGE -> bSSFP: the upper half of the C0 patients is the target (its upper half held out); the LGE
    # source holds every other patient, so nobody is in both domains.
    assert reverse_source.name == "Dataset503_MSCMR_LGE_source"
    assert reverse_target.name == "Dataset504_MSCMR_bSSFP_split"
    assert list_cases(reverse_target, "Tr") == ["patient3"] and list_cases(reverse_target, "Ts") == ["patient4"]
    assert list_cases(reverse_source, "Tr") == [f"patient{n}" for n in (1, 2, 36, 37)]
    assert load_dataset_json(reverse_source).channel_names == {"0": "LGE"}
    assert load_dataset_json(reverse_target).channel_names == {"0": "bSSFP"}
    validate_dataset(reverse_target, splits=("Tr", "Ts"))
    assert reverse_split(list(range(1, 36))) == (list(range(18, 27)), list(range(27, 36)))

    # Idempotent: a second run finds the complete datasets and rewrites nothing.
    stamp = (target / "imagesTr" / "patient1_0000.nii.gz").stat().st_mtime_ns
    assert import_mscmrseg(src, tmp_path / "raw") == datasets
    assert (target / "imagesTr" / "patient1_0000.nii.gz").stat().st_mtime_ns == stamp


def test_mscmrseg_unknown_label_value_names_file_and_leaves_nothing(tmp_path: Path) -> None:
    src = make_fake_mscmr(tmp_path / "src", c0=(1, 3, 4), lge=(1,))
    _fake_mscmr_case(src / "C0", 2, "C0", np.random.default_rng(1), extra_value=300)
    with pytest.raises(DataError) as exc:
        import_mscmrseg(src, tmp_path / "raw")
    assert "patient2_C0_manual.nii.gz" in str(exc.value)
    assert "300" in str(exc.value)
    assert list((tmp_path / "raw").iterdir()) == []  # no partial dataset, no temp folder


def test_mscmrseg_missing_manual_and_leaking_patient(tmp_path: Path) -> None:
    src = make_fake_mscmr(tmp_path / "src", lge=(1,))
    (src / "C0" / "patient1_C0_manual.nii.gz").unlink()
    with pytest.raises(DataError, match="patient1_C0_manual.nii.gz"):
        import_mscmrseg(src, tmp_path / "raw")
    src2 = make_fake_mscmr(tmp_path / "src2", c0=(1, 36), lge=(1,))
    with pytest.raises(DataError, match="patient36_C0.nii.gz.*overlap"):
        import_mscmrseg(src2, tmp_path / "raw2")
    with pytest.raises(DataError, match="nowhere"):
        import_mscmrseg(tmp_path / "nowhere", tmp_path / "raw3")
    # Too few C0 patients to split LGE -> bSSFP by patient: refused before anything is written.
    src4 = make_fake_mscmr(tmp_path / "src4", c0=(1, 2), lge=(1, 2, 36))
    with pytest.raises(DataError, match="C0: 2 C0 patient.*at least 4"):
        import_mscmrseg(src4, tmp_path / "raw4")
    assert not (tmp_path / "raw4").exists() or list((tmp_path / "raw4").iterdir()) == []


def test_incomplete_existing_output_is_an_error(tmp_path: Path) -> None:
    src = make_fake_mscmr(tmp_path / "src", lge=(1,))
    junk = tmp_path / "raw" / "Dataset501_MSCMR_bSSFP"
    junk.mkdir(parents=True)
    (junk / "notes.txt").write_text("user data")
    with pytest.raises(DataError, match="Dataset501_MSCMR_bSSFP: exists but is not a complete import"):
        import_mscmrseg(src, tmp_path / "raw")
    assert (junk / "notes.txt").read_text() == "user data"


# ----------------------------------------------------------------------------------------------- polyp

KVASIR_NAMES = ("cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0qx73cjw570799j4n5cjze",
                "cju0roawvklrq0799vmjorwfv", "cju0rx1idathl0835detmsp84")
CVC_FRAMES = (1, 2, 3, 26, 27, 51, 52, 53, 68, 79, 80)


def _save_pair(folder: Path, stem: str, rng: np.random.Generator, size: tuple[int, int] = (12, 16)) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / "images" / f"{stem}.jpg")
    mask = np.zeros((*size, 3), np.uint8)
    mask[3:8, 4:10] = 255
    Image.fromarray(mask).save(folder / "masks" / f"{stem}.jpg")


def make_fake_polyp(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for stem in KVASIR_NAMES:
        _save_pair(root / "Kvasir-SEG", stem, rng)
    for frame in CVC_FRAMES:
        _save_pair(root / "CVC-ClinicDB", str(frame), rng)
    return root


def test_polyp_import_splits_cvc_by_sequence(tmp_path: Path) -> None:
    src = make_fake_polyp(tmp_path / "src")
    kvasir, cvc = import_polyp(src, tmp_path / "raw", seed=0, test_fraction=0.3)
    assert kvasir.name == "Dataset511_KvasirSEG" and cvc.name == "Dataset512_CVCClinicDB"
    tr, ts = list_cases(cvc, "Tr"), list_cases(cvc, "Ts")
    assert tr and ts and len(tr) + len(ts) == len(CVC_FRAMES)
    assert "seq01_frame0001" in tr + ts and "seq05_frame0080" in tr + ts
    seq_of = {c: c.split("_")[0] for c in tr + ts}
    assert not {seq_of[c] for c in tr} & {seq_of[c] for c in ts}  # no sequence on both sides
    info = load_dataset_json(cvc)
    assert info.channel_names == {"0": "R", "1": "G", "2": "B"}
    assert info.labels == {"background": 0, "polyp": 1}
    assert sorted(f"seq{s:02d}" for s in info.provenance["test_sequences"]) == sorted({seq_of[c] for c in ts})
    assert info.case_groups == seq_of  # each frame's video sequence, for paired tests over sequences
    assert cvc_case_sequence("seq04_frame0068") == "seq04"
    with pytest.raises(ValueError, match="not a CVC-ClinicDB case id"):
        cvc_case_sequence("cju0qkwl35piu0993l0dewei2")

    k_tr, k_ts = list_cases(kvasir, "Tr"), list_cases(kvasir, "Ts")
    assert sorted(k_tr + k_ts) == sorted(KVASIR_NAMES) and len(k_ts) == 2  # round(0.3 * 5)
    assert "by image" in load_dataset_json(kvasir).provenance["split_rule"]
    assert load_dataset_json(kvasir).case_groups == {}  # no sequence or patient ids: each image counts once

    channel, affine = read_nifti(cvc / "imagesTr" / f"{tr[0]}_0002.nii.gz")
    assert channel.shape == (12, 16, 1) and channel.dtype == np.uint8
    np.testing.assert_array_equal(affine, np.eye(4))
    mask, _ = read_nifti(cvc / "labelsTr" / f"{tr[0]}.nii.gz")
    assert mask.dtype == np.uint8 and set(np.unique(mask).tolist()) == {0, 1}
    assert mask[5, 6, 0] == 1 and mask[0, 0, 0] == 0
    for ds in (kvasir, cvc):
        validate_dataset(ds, splits=("Tr", "Ts"))

    # Same settings: skipped. Different seed on the same output: refused, not silently reused.
    assert import_polyp(src, tmp_path / "raw", seed=0, test_fraction=0.3) == (kvasir, cvc)
    with pytest.raises(DataError, match="different settings"):
        import_polyp(src, tmp_path / "raw", seed=1, test_fraction=0.3)


def test_cvc_split_keeps_sequences_whole_for_many_seeds() -> None:
    frames = {f: (Path(f"{f}.jpg"), Path(f"{f}.jpg")) for f in range(1, 613)}
    assert cvc_sequence(1) == 1 and cvc_sequence(205) == 10 and cvc_sequence(612) == 29
    assert cvc_sequence(613) is None
    for seed in range(5):
        test_seqs, by_seq = _split_cvc(frames, seed, 0.2)
        assert len(by_seq) == 29 and sum(len(v) for v in by_seq.values()) == 612
        n_test = sum(len(by_seq[s]) for s in test_seqs)
        assert 0.15 * 612 <= n_test <= 0.25 * 612
    assert _split_cvc(frames, 3, 0.2) == _split_cvc(frames, 3, 0.2)


def test_polyp_errors(tmp_path: Path) -> None:
    src = make_fake_polyp(tmp_path / "src")
    (src / "CVC-ClinicDB" / "masks" / "27.jpg").unlink()
    with pytest.raises(DataError, match=r"27\.jpg: no mask"):
        import_polyp(src, tmp_path / "raw")
    _save_pair(src / "CVC-ClinicDB", "27", np.random.default_rng(0))
    _save_pair(src / "CVC-ClinicDB", "frame_x", np.random.default_rng(0))
    with pytest.raises(DataError, match=r"frame_x\.jpg: not a CVC-ClinicDB frame"):
        import_polyp(src, tmp_path / "raw")
    with pytest.raises(ConfigError):
        import_polyp(src, tmp_path / "raw", test_fraction=1.0)


# ---------------------------------------------------------------------------------------------- folder


def test_folder_png_masks_infer_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (8, 9), dtype=np.uint8)).save(tmp_path / "img" / f"s {i}.png")
        mask = np.zeros((8, 9), np.uint8)
        mask[2:4, 2:4] = 255
        Image.fromarray(mask).save(tmp_path / "msk" / f"s {i}_seg.png")
    out = import_folder(tmp_path / "img", tmp_path / "Dataset950_Grey", tmp_path / "msk", test_fraction=0.25)
    info = load_dataset_json(out)
    assert info.labels == {"background": 0, "label_1": 1}
    assert info.provenance["label_value_map"] == {"0": 0, "255": 1}
    assert info.channel_names == {"0": "image"} and info.name == "Dataset950_Grey"
    tr, ts = list_cases(out, "Tr"), list_cases(out, "Ts")
    assert sorted(tr + ts) == ["s_0", "s_1", "s_2", "s_3"] and len(ts) == 1  # spaces made safe
    mask, _ = read_nifti(out / "labelsTr" / f"{list_cases(out, 'Tr')[0]}.nii.gz")
    assert mask.shape == (8, 9, 1) and mask.max() == 1
    validate_dataset(out, splits=("Tr", "Ts"))


def test_folder_rgb_with_masks_alongside_and_declared_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (5, 6, 3), dtype=np.uint8)).save(tmp_path / f"c{i}.png")
        Image.fromarray(np.full((5, 6), 2, np.uint8)).save(tmp_path / f"c{i}_mask.png")
    with pytest.warns(UserWarning, match=r"declared label\(s\) \{'a': 1\} occur in no mask"):
        out = import_folder(tmp_path, tmp_path / "out" / "Dataset951_RGB", tmp_path,
                            labels={"background": 0, "a": 1, "b": 2}, name="RGB")
    assert list_cases(out, "Tr") == ["c0", "c1"]
    assert load_dataset_json(out).channel_names == {"0": "R", "1": "G", "2": "B"}
    validate_dataset(out)
    with pytest.raises(DataError, match=r"c0_mask\.png: mask values \[2\]"):
        import_folder(tmp_path, tmp_path / "out" / "Dataset952_X", tmp_path, labels={"background": 0, "a": 1})


def test_folder_nifti_volumes_keep_affine(tmp_path: Path) -> None:
    affine = np.diag([0.7, 0.7, 3.0, 1.0])
    for i in range(2):
        write_nifti(tmp_path / "img" / f"v{i}.nii.gz", np.full((4, 5, 3), i, np.int16), affine)
        write_nifti(tmp_path / "lab" / f"v{i}_label.nii", np.ones((4, 5, 3), np.float32), affine)
    out = import_folder(tmp_path / "img", tmp_path / "Dataset953_Vol", tmp_path / "lab",
                        labels={"background": 0, "organ": 1})
    image, out_affine = read_nifti(out / "imagesTr" / "v1_0000.nii.gz")
    assert image.dtype == np.float32 and image.shape == (4, 5, 3)
    np.testing.assert_allclose(out_affine, affine, atol=1e-6)
    validate_dataset(out)
    write_nifti(tmp_path / "lab" / "v1_label.nii", np.ones((4, 5, 3), np.float32), np.eye(4))
    with pytest.raises(DataError, match=r"v1_label\.nii: mask affine differs from image .*v1\.nii\.gz"):
        import_folder(tmp_path / "img", tmp_path / "Dataset955_Vol", tmp_path / "lab")


def test_folder_without_masks(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / f"u{i}.jpg")
    out = import_folder(tmp_path, tmp_path / "Dataset954_Unl", labels={"background": 0, "x": 1})
    assert list_cases(out, "Tr") == ["u0", "u1", "u2"] and not (out / "labelsTr").exists()
    validate_dataset(out, check_labels=False)


def test_folder_errors_name_files(tmp_path: Path) -> None:
    img, msk = tmp_path / "img", tmp_path / "msk"
    with pytest.raises(DataError, match="img: image folder does not exist"):
        import_folder(img, tmp_path / "o1", msk)
    img.mkdir()
    msk.mkdir()
    with pytest.raises(DataError, match="img: no image files"):
        import_folder(img, tmp_path / "o1", msk)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(img / "b.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(msk / "a.png")
    with pytest.raises(DataError, match=r"b\.png: no mask found"):
        import_folder(img, tmp_path / "o1", msk)
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(msk / "b.png")
    with pytest.raises(DataError) as exc:
        import_folder(img, tmp_path / "o1", msk)
    assert "msk/b.png" in str(exc.value) and "img/b.png" in str(exc.value) and "(9, 8, 1)" in str(exc.value)
    (msk / "b.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"b\.png: cannot read image"):
        import_folder(img, tmp_path / "o1", msk)
    # A mask folder that really holds photos: many distinct values.
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(msk / "b.png")
    with pytest.raises(DataError, match="more than 50 distinct values"):
        import_folder(img, tmp_path / "o1", msk)
    assert not (tmp_path / "o1").exists()

    vol = tmp_path / "vol"
    bad = np.zeros((3, 3, 2), np.float32)
    bad[1, 1, 1] = np.nan
    write_nifti(vol / "n.nii.gz", bad)
    with pytest.raises(DataError, match=r"n\.nii\.gz: image contains 1 NaN"):
        import_folder(vol, tmp_path / "o2")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # temp folders cleaned


# ------------------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_data_imports(tmp_path: Path) -> None:
    if not (REAL_DATA / "mscmrseg").is_dir() or not (REAL_DATA / "polyp").is_dir():
        pytest.skip(f"real data not available at {REAL_DATA}")
    source, target, reverse_source, reverse_target = import_mscmrseg(REAL_DATA / "mscmrseg", tmp_path)
    assert list_cases(reverse_target, "Ts") == [f"patient{n}" for n in sorted(range(27, 36), key=str)]
    assert len(list_cases(reverse_target, "Tr")) == 9 and len(list_cases(reverse_source, "Tr")) == 27
    source_people = set(list_cases(reverse_source, "Tr"))
    assert not source_people & set(list_cases(reverse_target, "Tr") + list_cases(reverse_target, "Ts"))
    assert len(list_cases(source, "Tr")) == 35
    assert len(list_cases(target, "Tr")) == 35
    assert list_cases(target, "Ts") == [f"patient{n}" for n in sorted(range(36, 46), key=str)]
    report = validate_dataset(target, splits=("Tr", "Ts"))
    assert report.n_cases == {"Tr": 35, "Ts": 10}
    validate_dataset(source)

    kvasir, cvc = import_polyp(REAL_DATA / "polyp", tmp_path)
    k_tr, k_ts = list_cases(kvasir, "Tr"), list_cases(kvasir, "Ts")
    c_tr, c_ts = list_cases(cvc, "Tr"), list_cases(cvc, "Ts")
    assert len(k_tr) + len(k_ts) == 1000 and len(k_ts) == 200
    assert len(c_tr) + len(c_ts) == 612 and 0.1 * 612 < len(c_ts) < 0.3 * 612
    assert not {c.split("_")[0] for c in c_tr} & {c.split("_")[0] for c in c_ts}
    meta = json.loads((cvc / "dataset.json").read_text())
    assert meta["numTraining"] == len(c_tr)


# ------------------------------------------------------------------------------- folder: mask defects


def _grey_images(folder: Path, stems: list[str], size: tuple[int, int] = (16, 16)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for stem in stems:
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(folder / f"{stem}.png")


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_folder_colour_photo_as_mask_is_an_error(tmp_path: Path, suffix: str) -> None:
    # Defect: a colour JPEG given as a mask was silently binarised (a colour PNG raised another message).
    _grey_images(tmp_path / "img", ["a", "b"])
    (tmp_path / "msk").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp_path / "msk" / f"a{suffix}")
    photo = np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "msk" / f"b{suffix}", quality=90)
    with pytest.raises(DataError, match=rf"msk/b\{suffix}: colour image given as a mask"):
        import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk")
    assert not (tmp_path / "out").exists()


def test_folder_grey_jpeg_mask_with_channel_noise_still_imports(tmp_path: Path) -> None:
    _grey_images(tmp_path / "img", ["a", "b"])
    (tmp_path / "msk").mkdir()
    rng = np.random.default_rng(3)
    for stem in ("a", "b"):
        grey = np.zeros((16, 16), np.int16)
        grey[4:12, 4:12] = 255
        # A grey mask saved as RGB with a few levels of per-channel noise (as lossy pipelines leave it).
        rgb = np.clip(grey[..., None] + rng.integers(-6, 7, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(tmp_path / "msk" / f"{stem}.jpg", quality=95)
    from diffuse_uda.data.io import read_mask_2d

    stored = read_mask_2d(tmp_path / "msk" / "a.jpg")
    assert stored.ndim == 3 and not np.array_equal(stored[..., 0], stored[..., 1])  # channels really differ
    out = import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk")
    mask, _ = read_nifti(out / "labelsTr" / "a.nii.gz")
    expected = np.zeros((16, 16, 1), np.uint8)
    expected[4:12, 4:12] = 1
    np.testing.assert_array_equal(mask, expected)
    assert load_dataset_json(out).labels == {"background": 0, "label_1": 1}
    # The same noise in a lossless file has no compression to explain it: refused, not guessed at.
    Image.fromarray(stored).save(tmp_path / "msk" / "b.png")
    (tmp_path / "msk" / "b.jpg").unlink()
    with pytest.raises(DataError, match=r"msk/b\.png: RGB mask whose channels differ by up to"):
        import_folder(tmp_path / "img", tmp_path / "out2", tmp_path / "msk")


def _binary_masks(folder: Path, values: dict[str, int], size: tuple[int, int] = (16, 16)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, value in values.items():
        mask = np.zeros(size, np.uint8)
        mask[2:6, 3:9] = value
        Image.fromarray(mask).save(folder / f"{stem}.png")


def test_folder_mixed_binary_encodings_need_binary(tmp_path: Path) -> None:
    # Defect: 0/1 and 0/255 masks in one folder became two classes (label_1 and label_2).
    _grey_images(tmp_path / "img", ["a", "b", "c"])
    _binary_masks(tmp_path / "msk", {"a": 1, "b": 255, "c": 1})
    with pytest.raises(DataError) as exc:
        import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk")
    message = str(exc.value)
    assert "msk/a.png" in message and "msk/b.png" in message and "--binary" in message, message
    assert not (tmp_path / "out").exists()

    out = import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk", binary=True)
    assert load_dataset_json(out).labels == {"background": 0, "label_1": 1}
    for stem in ("a", "b", "c"):
        mask, _ = read_nifti(out / "labelsTr" / f"{stem}.nii.gz")
        assert sorted(np.unique(mask).tolist()) == [0, 1] and mask[3, 4, 0] == 1
    validate_dataset(out)


def test_folder_binary_option_on_the_command_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from diffuse_uda.cli import app

    _grey_images(tmp_path / "img", ["a", "b"])
    _binary_masks(tmp_path / "msk", {"a": 1, "b": 255})
    args = ["import", "folder", str(tmp_path / "img"), "--masks", str(tmp_path / "msk"), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0 and not (tmp_path / "o").exists()
    result = CliRunner().invoke(app, [*args, "--binary"])
    assert result.exit_code == 0, result.output
    assert load_dataset_json(tmp_path / "o").provenance["mask_rule"] == "binary: every non-zero mask value -> 1"


def test_folder_one_class_per_mask_multiclass_and_declared_binary(tmp_path: Path) -> None:
    _grey_images(tmp_path / "img", ["a", "b"])
    # Not binary (one mask holds two non-zero values): genuinely several classes, inferred as before.
    _binary_masks(tmp_path / "msk", {"a": 1, "b": 2})
    mask = np.zeros((16, 16), np.uint8)
    mask[0, 0], mask[5, 5] = 1, 2
    Image.fromarray(mask).save(tmp_path / "msk" / "a.png")
    out = import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk")
    assert load_dataset_json(out).labels == {"background": 0, "label_1": 1, "label_2": 2}
    with pytest.raises(ConfigError, match="binary"):
        import_folder(tmp_path / "img", tmp_path / "o2", tmp_path / "msk", binary=True,
                      labels={"background": 0, "a": 1, "b": 2})


@pytest.mark.parametrize("how", ["inferred", "declared", "binary"])
def test_folder_every_mask_empty_is_an_error(tmp_path: Path, how: str) -> None:
    # Defect: all-zero masks gave a dataset whose only label is background, without a word.
    _grey_images(tmp_path / "img", ["a", "b", "c"])
    _binary_masks(tmp_path / "msk", {"a": 0, "b": 0, "c": 0})
    kwargs: dict[str, object] = {"labels": {"background": 0, "lesion": 1}} if how == "declared" else {}
    with pytest.raises(DataError, match=r"msk: every mask is empty"):
        import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk", binary=how == "binary", **kwargs)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    # A few empty masks among non-empty ones are normal (images without the structure).
    _binary_masks(tmp_path / "msk", {"b": 255})
    out = import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk", binary=how == "binary", **kwargs)
    mask, _ = read_nifti(out / "labelsTr" / "a.nii.gz")
    assert not mask.any() and read_nifti(out / "labelsTr" / "b.nii.gz")[0].max() == 1


# ------------------------------------------------------------------------- reporting skipped imports


def _cli(*args: str) -> list[str]:
    from typer.testing import CliRunner

    from diffuse_uda.cli import app

    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


def test_import_verbs_say_when_they_skipped(tmp_path: Path) -> None:
    # Defect: a second import printed "wrote ..." although it found the datasets and wrote nothing.
    mscmr = make_fake_mscmr(tmp_path / "mscmr", lge=(1, 36))
    polyp = make_fake_polyp(tmp_path / "polyp")
    _grey_images(tmp_path / "img", ["a", "b"])
    _binary_masks(tmp_path / "msk", {"a": 255, "b": 255})
    root = tmp_path / "data"
    runs = [
        (["mscmrseg", str(mscmr)], [root / "Dataset501_MSCMR_bSSFP", root / "Dataset502_MSCMR_LGE",
                                    root / "Dataset503_MSCMR_LGE_source", root / "Dataset504_MSCMR_bSSFP_split"]),
        (["polyp", str(polyp)], [root / "Dataset511_KvasirSEG", root / "Dataset512_CVCClinicDB"]),
        (["folder", str(tmp_path / "img"), "--masks", str(tmp_path / "msk")], [root / "Dataset600_Mine"]),
    ]
    for args, dirs in runs:
        out = ["--out", str(dirs[0] if args[0] == "folder" else root)]
        assert _cli("import", *args, *out) == [f"wrote {d}" for d in dirs]
        assert _cli("import", *args, *out) == [f"already imported, skipped: {d}" for d in dirs]


def test_importers_report_written_or_skipped(tmp_path: Path) -> None:
    src = make_fake_mscmr(tmp_path / "src", lge=(1, 36))
    reports: list[tuple[str, bool]] = []
    import_mscmrseg(src, tmp_path / "raw", on_dataset=lambda p, w: reports.append((p.name, w)))
    # Only the target dataset is missing now: the source is kept, the target rewritten.
    import shutil

    shutil.rmtree(tmp_path / "raw" / "Dataset502_MSCMR_LGE")
    import_mscmrseg(src, tmp_path / "raw", on_dataset=lambda p, w: reports.append((p.name, w)))
    forward = [("Dataset501_MSCMR_bSSFP", True), ("Dataset502_MSCMR_LGE", True)]
    reverse = [("Dataset503_MSCMR_LGE_source", True), ("Dataset504_MSCMR_bSSFP_split", True)]
    assert reports == [*forward, *reverse, ("Dataset501_MSCMR_bSSFP", False), ("Dataset502_MSCMR_LGE", True),
                       *[(name, False) for name, _ in reverse]]


@pytest.mark.parametrize("where", ["img", "msk"])
def test_folder_broken_symlink_is_an_error(tmp_path: Path, where: str) -> None:
    # Defect: a dangling link among the images was skipped silently (the case vanished); among the masks it
    # surfaced only as "no mask found" for the image.
    _grey_images(tmp_path / "img", ["a", "b"])
    _binary_masks(tmp_path / "msk", {"a": 255, "b": 255})
    if where == "img":
        (tmp_path / "img" / "c.png").symlink_to(tmp_path / "gone" / "c.png")
    else:
        (tmp_path / "msk" / "b.png").unlink()
        (tmp_path / "msk" / "b.png").symlink_to(tmp_path / "gone" / "b.png")
    with pytest.raises(DataError, match=rf"{where}/[bc]\.png: broken symbolic link"):
        import_folder(tmp_path / "img", tmp_path / "out", tmp_path / "msk")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------- leftovers of a killed import


def test_stale_staging_leftovers_are_removed_before_import(tmp_path: Path) -> None:
    # Defect: hidden staging folders and .tmp files of a killed import stayed next to the output for ever.
    import os
    import subprocess
    import sys
    import time

    _grey_images(tmp_path / "img", ["a", "b"])
    _binary_masks(tmp_path / "msk", {"a": 255, "b": 255})
    data = tmp_path / "data"
    out = data / "Dataset600_Mine"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def leftover(name: str, is_dir: bool = True, age_s: float = 3600.0) -> Path:
        path = data / name
        if is_dir:
            (path / "imagesTr").mkdir(parents=True)
            (path / "imagesTr" / "a_0000.nii.gz").write_bytes(b"half")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"half")
        stamp = time.time() - age_s
        os.utime(path, (stamp, stamp))
        return path

    stale = [
        leftover(".Dataset600_Mine.tmp-0123456789ab"),  # staging folder as named before pids were added
        leftover(f".Dataset600_Mine.tmp-{dead.pid}-0123456789ab"),  # its process is gone
        leftover(".Dataset600_Mine.0123456789ab.tmp.nii.gz", is_dir=False),  # an atomic write's temp file
    ]
    kept = [
        leftover(f".Dataset600_Mine.tmp-{os.getpid()}-fedcba987654"),  # a live process may still be writing
        leftover(".Dataset600_Mine.tmp-aaaaaaaaaaaa", age_s=-60),  # younger than this process
        leftover(".Dataset601_Other.tmp-0123456789ab"),  # another output's
        leftover(".Dataset600_Mine.notes"),  # not the staging name pattern
    ]
    import_folder(tmp_path / "img", out, tmp_path / "msk")
    assert [p for p in stale if p.exists()] == [] and all(p.exists() for p in kept)
    assert list_cases(out, "Tr") == ["a", "b"]
    # Also when the output is complete and the import is skipped.
    again = leftover(".Dataset600_Mine.tmp-bbbbbbbbbbbb")
    import_folder(tmp_path / "img", out, tmp_path / "msk")
    assert not again.exists()


# ------------------------------------------------- folder: declared labels, groups, test cases, orientation


def _cli_result(*args: str):
    from typer.testing import CliRunner

    from diffuse_uda.cli import app

    return CliRunner().invoke(app, list(args))


def test_folder_labels_option_names_the_mask_values(tmp_path: Path) -> None:
    # Defect: masks 1/2/3 became label_1..label_3, so a task with {Myo: 1, LV: 2, RV: 3} was refused.
    from scan_folders import write_centre

    write_centre(tmp_path / "A", ["patient01", "patient02"], "bright", seed=0)
    args = ["import", "folder", str(tmp_path / "A" / "images"), "--masks", str(tmp_path / "A" / "masks")]
    result = _cli_result(*args, "--labels", "Myo=1,LV=2,RV=3", "--out", str(tmp_path / "D1"))
    assert result.exit_code == 0, result.output
    assert load_dataset_json(tmp_path / "D1").labels == {"background": 0, "Myo": 1, "LV": 2, "RV": 3}
    assert "warning" not in result.output
    # A declared label that no mask holds is a warning, printed; the import still happens.
    result = _cli_result(*args, "--labels", "Myo=1,LV=2,RV=3,Scar=4", "--out", str(tmp_path / "D2"))
    assert result.exit_code == 0, result.output
    assert "warning:" in result.output and "'Scar': 4" in result.output and "occur in no mask" in result.output
    assert load_dataset_json(tmp_path / "D2").labels["Scar"] == 4
    # A mask value not declared is an error naming the mask file; nothing is written.
    result = _cli_result(*args, "--labels", "Myo=1,LV=2", "--out", str(tmp_path / "D3"))
    assert result.exit_code != 0 and isinstance(result.exception, DataError)
    assert "masks/patient01_frame01.nii.gz: mask values [3] are not among the declared labels" in str(result.exception)
    assert not (tmp_path / "D3").exists()
    with pytest.raises(ConfigError, match="'bg' has value 0, which is the background"):
        import_folder(tmp_path / "A" / "images", tmp_path / "D4", tmp_path / "A" / "masks",
                      labels={"bg": 0, "Myo": 1, "LV": 2, "RV": 3})


def test_folder_group_keeps_each_patient_on_one_side_of_the_split(tmp_path: Path) -> None:
    # Defect: the split was by image, so the two frames of one patient landed on both sides.
    from scan_folders import FRAMES, write_centre

    patients = [f"patient{i:02d}" for i in range(6)]
    write_centre(tmp_path / "A", patients, "bright", seed=0, shape=(8, 8, 2))
    ungrouped_leaks = 0
    for seed in range(6):
        out = import_folder(tmp_path / "A" / "images", tmp_path / f"G{seed}", tmp_path / "A" / "masks",
                            labels=LABELS_3, test_fraction=0.34, seed=seed, group=r"^(patient\d+)_")
        ts, tr = list_cases(out, "Ts"), list_cases(out, "Tr")
        assert {c.split("_")[0] for c in ts}.isdisjoint({c.split("_")[0] for c in tr}), (seed, ts, tr)
        assert len(ts) == 2 * 2  # round(0.34 * 6 groups) = 2 patients, both frames each
        prov = load_dataset_json(out).provenance
        assert prov["groups"]["patient00"] == [f"patient00_{f}" for f in FRAMES]
        assert sorted(prov["test_groups"]) == sorted({c.split("_")[0] for c in ts})
        assert "by group" in prov["split_rule"]
        assert load_dataset_json(out).case_groups == {c: c.split("_")[0] for c in ts + tr}  # for paired tests
        plain = import_folder(tmp_path / "A" / "images", tmp_path / f"P{seed}", tmp_path / "A" / "masks",
                              labels=LABELS_3, test_fraction=0.34, seed=seed)
        ts, tr = list_cases(plain, "Ts"), list_cases(plain, "Tr")
        ungrouped_leaks += bool({c.split("_")[0] for c in ts} & {c.split("_")[0] for c in tr})
    assert ungrouped_leaks  # without --group the same data does leak patients: the test can tell
    # A file name the regex does not match is an error naming the file.
    (tmp_path / "A" / "images" / "patient00_frame01.nii.gz").rename(tmp_path / "A" / "images" / "p0_frame01.nii.gz")
    (tmp_path / "A" / "masks" / "patient00_frame01.nii.gz").rename(tmp_path / "A" / "masks" / "p0_frame01.nii.gz")
    with pytest.raises(DataError, match=r"images/p0_frame01\.nii\.gz: file name does not match --group"):
        import_folder(tmp_path / "A" / "images", tmp_path / "Gx", tmp_path / "A" / "masks", labels=LABELS_3,
                      group=r"^(patient\d+)_")
    with pytest.raises(ConfigError, match="no capture group"):
        import_folder(tmp_path / "A" / "images", tmp_path / "Gy", tmp_path / "A" / "masks", group=r"^patient\d+_")
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        import_folder(tmp_path / "A" / "images", tmp_path / "Gz", tmp_path / "A" / "masks", group=r"^(patient")


LABELS_3 = {"Myo": 1, "LV": 2, "RV": 3}


def test_folder_test_cases_file_sets_the_split(tmp_path: Path) -> None:
    from scan_folders import write_centre

    write_centre(tmp_path / "B", ["patient01", "patient02", "patient03"], "dark", seed=1, shape=(8, 8, 2))
    images, masks = tmp_path / "B" / "images", tmp_path / "B" / "masks"
    ids = tmp_path / "test_patients.txt"
    ids.write_text("# held out by the study protocol\npatient02\n\n")
    # Group ids with --group; the list overrides --test-fraction.
    result = _cli_result("import", "folder", str(images), "--masks", str(masks), "--labels", "Myo=1,LV=2,RV=3",
                         "--group", r"^(patient\d+)_", "--test-cases", str(ids), "--test-fraction", "0.5",
                         "--out", str(tmp_path / "D1"))
    assert result.exit_code == 0, result.output
    assert list_cases(tmp_path / "D1", "Ts") == ["patient02_frame01", "patient02_frame08"]
    assert len(list_cases(tmp_path / "D1", "Tr")) == 4
    assert "explicit test groups" in load_dataset_json(tmp_path / "D1").provenance["split_rule"]
    # Case ids without --group.
    ids.write_text("patient01_frame08\npatient03_frame01\n")
    out = import_folder(images, tmp_path / "D2", masks, labels=LABELS_3, test_cases=ids)
    assert list_cases(out, "Ts") == ["patient01_frame08", "patient03_frame01"]
    # Unknown ids name the list file and the id; so does a list of every case.
    ids.write_text("patient02\npatient09\n")
    with pytest.raises(DataError, match=r"test_patients\.txt: unknown group id\(s\) patient09"):
        import_folder(images, tmp_path / "D3", masks, labels=LABELS_3, group=r"^(patient\d+)_", test_cases=ids)
    with pytest.raises(DataError, match=r"test_patients\.txt: unknown case id\(s\) patient02, patient09"):
        import_folder(images, tmp_path / "D3", masks, labels=LABELS_3, test_cases=ids)
    ids.write_text("patient01\npatient02\npatient03\n")
    with pytest.raises(DataError, match="holds every case"):
        import_folder(images, tmp_path / "D3", masks, labels=LABELS_3, group=r"^(patient\d+)_", test_cases=ids)
    ids.write_text("\n# nothing\n")
    with pytest.raises(DataError, match="lists no case ids"):
        import_folder(images, tmp_path / "D3", masks, labels=LABELS_3, test_cases=ids)
    assert not (tmp_path / "D3").exists()


def test_folder_reorients_nifti_to_ras_and_records_the_original(tmp_path: Path) -> None:
    # Defect: orientation was used as stored, so a centre storing LPS showed the anatomy flipped.
    from diffuse_uda.data.orientation import orientation_codes
    from scan_folders import write_centre

    truth = write_centre(tmp_path / "B", ["patient01"], "dark", seed=2, stored="LPS")
    stored_image, stored_affine = read_nifti(tmp_path / "B" / "images" / "patient01_frame01.nii.gz")
    assert orientation_codes(stored_affine) == "LPS"
    out = import_folder(tmp_path / "B" / "images", tmp_path / "D", tmp_path / "B" / "masks", labels=LABELS_3)
    for stem, (image, mask) in truth.items():
        got_image, image_affine = read_nifti(out / "imagesTr" / f"{stem}_0000.nii.gz")
        got_mask, mask_affine = read_nifti(out / "labelsTr" / f"{stem}.nii.gz")
        assert orientation_codes(image_affine) == "RAS"
        np.testing.assert_allclose(image_affine, mask_affine)
        np.testing.assert_array_equal(got_mask, mask)  # the RAS voxel order the scans were made in
        np.testing.assert_allclose(got_image, image, rtol=1e-6)
    record = load_dataset_json(out).provenance["orientation"]
    assert record["rule"] == "ras"
    case = record["cases"]["patient01_frame01"]
    assert case["codes"] == "LPS" and case["shape"] == list(stored_image.shape)
    np.testing.assert_allclose(case["affine"], stored_affine, atol=1e-5)
    validate_dataset(out)
    # as-stored keeps the files' grid.
    kept = import_folder(tmp_path / "B" / "images", tmp_path / "K", tmp_path / "B" / "masks", labels=LABELS_3,
                         orientation="as-stored")
    assert orientation_codes(read_nifti(kept / "imagesTr" / "patient01_frame01_0000.nii.gz")[1]) == "LPS"
    with pytest.raises(ConfigError, match="orientation must be one of"):
        import_folder(tmp_path / "B" / "images", tmp_path / "X", orientation="LPS")  # type: ignore[arg-type]


def test_folder_warns_when_ras_moves_a_thick_slice_axis(tmp_path: Path) -> None:
    # Oblique cardiac stacks: the closest canonical orientation can turn the 8 mm slice axis into an
    # in-plane axis, which a 2D model would then slice across. ras-in-plane keeps the acquired slices.
    from diffuse_uda.data.orientation import orientation_codes

    affine = MSCMR_AFFINE  # stored P, S, R: the slice axis points to R
    for i in range(2):
        write_nifti(tmp_path / "img" / f"p{i}.nii.gz", np.random.default_rng(i).random((6, 7, 3), np.float32), affine)
    warned: list[str] = []
    out = import_folder(tmp_path / "img", tmp_path / "R", on_warning=warned.append)
    assert len(warned) == 1 and "moved the thick slice axis of 2 volume(s)" in warned[0]
    assert read_nifti(out / "imagesTr" / "p0_0000.nii.gz")[0].shape == (3, 6, 7)
    warned.clear()
    out = import_folder(tmp_path / "img", tmp_path / "I", orientation="ras-in-plane", on_warning=warned.append)
    image, new_affine = read_nifti(out / "imagesTr" / "p0_0000.nii.gz")
    assert not warned and image.shape == (6, 7, 3) and orientation_codes(new_affine)[2] == "R"

"""Synthetic data set writing: layout, labels, deformation, sharding, resumability, gallery."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from diffusion_helpers import NUM_CLASSES, make_pairs

from diffuse_uda.data.dataset_json import list_cases, load_dataset_json
from diffuse_uda.data.io import read_nifti
from diffuse_uda.diffusion.synthesize import GALLERY_NAME, synthesis_items, synthesize_dataset
from diffuse_uda.errors import ConfigError, DataError

LABELS = {"background": 0, "rim": 1, "core": 2}
CHANNELS = {"0": "MRI"}


def _masks(n: int = 3) -> list[tuple[str, np.ndarray]]:
    return [(p.case_id, p.mask) for p in make_pairs(n_source=n, n_target=0)]


def _refs(n: int = 3) -> list[tuple[str, np.ndarray]]:
    return [(p.case_id, p.image) for p in make_pairs(n_source=n, n_target=0)]


def _run(ckpt: Path, out: Path, **kw) -> Path:
    args = dict(labels=LABELS, channel_names=CHANNELS, times=2, steps=3, batch_size=4, seed=7, progress=False)
    return synthesize_dataset(ckpt, _masks(), out, **{**args, **kw})


def _files(out: Path) -> dict[str, np.ndarray]:
    return {
        str(p.relative_to(out)): read_nifti(p)[0]
        for p in sorted(out.rglob("*.nii.gz"))
    }


def test_items_order() -> None:
    items = synthesis_items(_masks(2), times=3)
    assert [(it.index, it.source_id, it.k) for it in items] == [
        (0, "case0", 0), (1, "case0", 1), (2, "case0", 2), (3, "case1", 0), (4, "case1", 1), (5, "case1", 2)
    ]
    assert items[4].case_id == "case1_syn1"
    with pytest.raises(ConfigError, match="unique"):
        synthesis_items([("a", np.zeros(2)), ("a", np.zeros(2))], 1)


def test_layout_labels_and_gallery(trained_checkpoint: Path, tmp_path: Path) -> None:
    out = _run(trained_checkpoint, tmp_path / "syn", reference_images=_refs())
    info = load_dataset_json(out)
    assert info.num_training == 6 and info.labels == LABELS and info.channel_names == CHANNELS
    prov = info.provenance
    assert prov["sampler"] == "ddim" and prov["steps"] == 3 and prov["times"] == 2 and prov["seed"] == 7
    assert prov["deform"] is False and prov["mask_sources"] == ["case0", "case1", "case2"]
    assert Path(prov["checkpoint"]) == trained_checkpoint.resolve()
    assert list_cases(out, "Tr") == [f"case{i}_syn{k}" for i in range(3) for k in range(2)]
    for mid, mask in _masks():
        for k in range(2):
            label, _ = read_nifti(out / "labelsTr" / f"{mid}_syn{k}.nii.gz")
            image, _ = read_nifti(out / "imagesTr" / f"{mid}_syn{k}_0000.nii.gz")
            assert label.shape == image.shape == (16, 16, 1)
            np.testing.assert_array_equal(label[..., 0], mask)
            assert image.dtype == np.float32 and image.min() >= 0 and image.max() <= 1
    # different k -> different noise -> different images for the same mask
    a = read_nifti(out / "imagesTr" / "case0_syn0_0000.nii.gz")[0]
    b = read_nifti(out / "imagesTr" / "case0_syn1_0000.nii.gz")[0]
    assert not np.array_equal(a, b)
    assert (out / GALLERY_NAME).stat().st_size > 1000


def test_deformed_masks_are_the_labels(trained_checkpoint: Path, tmp_path: Path) -> None:
    out_a = _run(trained_checkpoint, tmp_path / "a", deform=True, sampler="ddpm")
    out_b = _run(trained_checkpoint, tmp_path / "b", deform=True, sampler="ddpm", batch_size=1)
    fa, fb = _files(out_a), _files(out_b)
    assert fa.keys() == fb.keys()
    masks = dict(_masks())
    n_changed = 0
    for name, arr in fa.items():
        if name.startswith("labelsTr"):
            np.testing.assert_array_equal(arr, fb[name])  # seeded per item: batch size does not matter
            assert set(np.unique(arr)) <= set(range(NUM_CLASSES))
            n_changed += not np.array_equal(arr[..., 0], masks[name.split("/")[1].split("_syn")[0]])
        else:
            np.testing.assert_allclose(arr, fb[name], atol=1e-5)
    assert n_changed >= 4  # fresh deformation per item
    assert json.loads((out_a / "dataset.json").read_text())["provenance"]["deform"] is True


def test_shards_equal_single_process_and_resume(trained_checkpoint: Path, tmp_path: Path) -> None:
    single = _run(trained_checkpoint, tmp_path / "single", deform=True)
    sharded = tmp_path / "sharded"
    _run(trained_checkpoint, sharded, deform=True, shard=(0, 2))
    assert not (sharded / "dataset.json").exists()  # shard 1 still missing
    assert not (sharded / GALLERY_NAME).exists()
    _run(trained_checkpoint, sharded, deform=True, shard=(1, 2))
    assert (sharded / "dataset.json").read_text() == (single / "dataset.json").read_text().replace(
        str(single.name), str(sharded.name))
    fs, fh = _files(single), _files(sharded)
    assert fs.keys() == fh.keys() and len(fs) == 12
    for name in fs:
        np.testing.assert_allclose(fs[name], fh[name], atol=1e-5, err_msg=name)

    # resumable: only missing items are produced again
    victim = sharded / "imagesTr" / "case1_syn0_0000.nii.gz"
    victim.unlink()
    keep = sharded / "labelsTr" / "case2_syn1.nii.gz"
    mtime = keep.stat().st_mtime_ns
    _run(trained_checkpoint, sharded, deform=True)
    assert victim.is_file() and keep.stat().st_mtime_ns == mtime
    np.testing.assert_allclose(read_nifti(victim)[0], fs["imagesTr/case1_syn0_0000.nii.gz"], atol=1e-5)


def test_rejects_inconsistent_inputs(trained_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="labels"):
        _run(trained_checkpoint, tmp_path, labels={"background": 0, "x": 1})
    with pytest.raises(ConfigError, match="channel"):
        _run(trained_checkpoint, tmp_path, channel_names={"0": "T1", "1": "T2"})
    with pytest.raises(ConfigError, match="shard"):
        _run(trained_checkpoint, tmp_path, shard=(2, 2))
    with pytest.raises(DataError, match="shape"):
        synthesize_dataset(trained_checkpoint, [("m", np.zeros((8, 8), np.int64))], tmp_path, LABELS, CHANNELS,
                           progress=False)


def test_refuses_to_resume_with_other_settings(trained_checkpoint: Path, tmp_path: Path) -> None:
    masks = _masks(1)
    synthesize_dataset(trained_checkpoint, masks, tmp_path, LABELS, CHANNELS, steps=2, seed=1, progress=False)
    # same settings, more repetitions: allowed (existing items keep their seeds)
    synthesize_dataset(trained_checkpoint, masks, tmp_path, LABELS, CHANNELS, steps=2, seed=1, times=2,
                       progress=False)
    assert load_dataset_json(tmp_path).num_training == 2
    with pytest.raises(ConfigError, match="seed"):
        synthesize_dataset(trained_checkpoint, masks, tmp_path, LABELS, CHANNELS, steps=2, seed=2, progress=False)


def test_gallery_rows_spread_over_all_items() -> None:
    from diffuse_uda.diffusion.synthesize import gallery_items

    items = synthesis_items([(f"m{i}", np.zeros((4, 4), np.uint8)) for i in range(20)], times=2)
    picked = gallery_items(items, 8)
    assert len(picked) == 8 and picked[0] is items[0] and picked[-1] is items[-1]
    assert len({it.mask_index for it in picked}) == 8
    assert gallery_items(items[:3], 8) == items[:3]


def test_items_start_from_their_masks_images(trained_checkpoint: Path, tmp_path: Path) -> None:
    """init_strength < 1: each image starts from its mask's own image, deformed with it; the labels are the very
    masks a synthesis from noise makes (same seed), the images stay near the (deformed) real ones."""
    refs = dict(_refs())
    noise = _run(trained_checkpoint, tmp_path / "noise", deform=True)
    kept = _run(trained_checkpoint, tmp_path / "kept", deform=True, init_images=refs, init_strength=0.05)
    fn, fk = _files(noise), _files(kept)
    assert fn.keys() == fk.keys()
    near = far = 0.0
    for name, arr in fk.items():
        if name.startswith("labelsTr"):
            np.testing.assert_array_equal(arr, fn[name])
        else:
            # the deformed real image carries the label's intensities (make_pairs: 0.15 + 0.35 * label)
            label = fk[name.replace("imagesTr", "labelsTr").replace("_0000.nii.gz", ".nii.gz")]
            expected = 0.15 + 0.35 * label
            near += float(np.abs(arr - expected).mean())
            far += float(np.abs(fn[name] - expected).mean())
    assert near < far / 2
    assert load_dataset_json(kept).provenance["init_strength"] == 0.05
    assert "init_strength" not in load_dataset_json(noise).provenance  # from noise: recorded as before
    with pytest.raises(ConfigError, match="other settings"):
        _run(trained_checkpoint, tmp_path / "kept", deform=True, init_images=refs, init_strength=0.5)


def test_starting_images_must_cover_every_mask(trained_checkpoint: Path, tmp_path: Path) -> None:
    refs = dict(_refs())
    with pytest.raises(ConfigError, match="no image for 1 mask"):
        _run(trained_checkpoint, tmp_path / "a", init_images={k: v for k, v in refs.items() if k != "case1"},
             init_strength=0.5)
    with pytest.raises(DataError, match="starting image of 'case0'"):
        _run(trained_checkpoint, tmp_path / "b", init_images={**refs, "case0": np.zeros((1, 8, 8), np.float32)},
             init_strength=0.5)

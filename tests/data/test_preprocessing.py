import numpy as np
import pytest
import torch

from diffuse_uda.config import PreprocessingConfig
from diffuse_uda.data.preprocessing import (
    normalise_intensity,
    prepare_split,
    resample_image,
    resample_label,
    restore_labels,
    stack_samples,
)


def test_normalise_clips_and_scales() -> None:
    img = np.concatenate([np.linspace(0, 1, 999), [1000.0]]).reshape(1, 10, 10, 10).astype(np.float32)
    out = normalise_intensity(img, (0.5, 99.5))
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.isclose(out.mean(), 0.5, atol=0.02)  # the outlier was clipped, not used for scaling
    assert not normalise_intensity(np.ones((1, 4, 4, 2), np.float32), (1, 99)).any()


@pytest.mark.parametrize("dims,size", [(2, (16, 12)), (3, (8, 8, 4))])
def test_resample_and_restore_round_trip(dims: int, size: tuple) -> None:
    cfg = PreprocessingConfig(spatial_dims=dims, size=size)
    label = np.zeros((32, 24, 6), np.uint8)
    label[8:24, 6:18] = 2
    img = resample_image(label[None].astype(np.float32), cfg)
    lab = resample_label(label, cfg)
    expected = (1, *size, 6) if dims == 2 else (1, *size)
    assert img.shape == expected and lab.shape == expected[1:]
    assert set(np.unique(lab)) <= {0, 2}
    onehot = torch.nn.functional.one_hot(torch.from_numpy(lab).long(), 3).movedim(-1, 0).float()
    back = restore_labels(onehot, label.shape, cfg)
    assert back.shape == label.shape
    dice = 2 * ((back == 2) & (label == 2)).sum() / ((back == 2).sum() + (label == 2).sum())
    assert dice > 0.9


def test_prepare_split_without_labels_never_opens_them(tiny_task) -> None:
    # Target labels replaced by garbage: preprocessing the target images must not notice.
    for f in (tiny_task.target_dir / "labelsTr").glob("*.nii.gz"):
        f.write_bytes(b"not a nifti")
    cases = prepare_split(tiny_task.target_dir, "Tr", tiny_task.preprocessing, with_labels=False, progress=False)
    assert all(c.label is None for c in cases)
    images, labels = stack_samples(cases, 2)
    assert labels is None and images.shape[1:] == (1, 16, 16)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


def test_prepare_split_cache_is_reused_and_invalidated(tiny_task, tmp_path) -> None:
    cache = tmp_path / "cache"
    a = prepare_split(tiny_task.source_dir, "Tr", tiny_task.preprocessing, True, cache, progress=False)
    files = list(cache.iterdir())
    assert len(files) == 1
    b = prepare_split(tiny_task.source_dir, "Tr", tiny_task.preprocessing, True, cache, progress=False)
    assert np.array_equal(a[0].image, b[0].image) and list(cache.iterdir()) == files
    # A changed input file gives a new cache entry.
    f = sorted((tiny_task.source_dir / "imagesTr").glob("*.nii.gz"))[0]
    f.touch()
    import os

    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    prepare_split(tiny_task.source_dir, "Tr", tiny_task.preprocessing, True, cache, progress=False)
    assert len(list(cache.iterdir())) == 2

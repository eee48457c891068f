"""HEAL (learning-free source-free UDA): numerics of each stage, and an end-to-end run that proves it
reads no source data and no label file and changes no weight."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from diffuse_uda.cli import app
from diffuse_uda.config import build_run_config
from diffuse_uda.data.io import read_nifti
from diffuse_uda.data.preprocessing import PreparedCase
from diffuse_uda.data.task import Task, TaskConfig
from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.trainer import PairSample, build_model, train_diffusion
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.methods import heal
from diffuse_uda.methods.heal import (
    HEALConfig,
    adapt_source_free,
    edge_agreement,
    entropy_map,
    hierarchical_denoise,
    local_entropy,
    nig_variance,
    select_sample,
    size_aware_fusion,
    smallest_class,
    train_source_diffusion,
)
from diffuse_uda.pipeline.train import train_method

FAST = {"n_samples": 2, "steps": 2, "batch_size": 8}


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    # Tiny tensors: intra-op threads only add overhead on a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------- hierarchical denoising
def test_entropy_is_log_k_for_uniform_and_zero_for_one_hot() -> None:
    uniform = np.full((4, 3, 3), 0.25, np.float32)
    assert np.allclose(entropy_map(uniform), 2.0)  # bits: log2(4)
    assert np.allclose(entropy_map(uniform, base=math.e), math.log(4))
    one_hot = np.zeros((4, 3, 3), np.float32)
    one_hot[2] = 1.0
    assert np.allclose(entropy_map(one_hot), 0.0)
    assert np.allclose(entropy_map(torch.from_numpy(uniform)), 2.0)  # tensors accepted too


def test_local_entropy_averages_a_3x3_neighbourhood_in_plane() -> None:
    h = np.zeros((5, 5, 3), np.float32)
    h[2, 2, 1] = 9.0
    e = local_entropy(h, spatial_dims=2, window=3)
    assert np.allclose(e[1:4, 1:4, 1], 1.0) and e[0, 0, 1] == 0.0
    assert np.allclose(e[..., 0], 0.0) and np.allclose(e[..., 2], 0.0)  # no leak across slices in 2D mode
    e3 = local_entropy(h, spatial_dims=3, window=3)
    assert np.isclose(e3[2, 2, 0], 9.0 / 27.0)


def test_nig_variance_grows_with_local_entropy_and_with_discrepancy() -> None:
    e = np.linspace(0.0, 1.0, 21)
    var = nig_variance(e)
    assert np.all(np.diff(var) > 0)
    tau2 = HEALConfig().variance_threshold
    assert var[0] <= tau2 < var[-1]  # confident neighbourhoods pass, uncertain ones do not
    changed = nig_variance(e, discrepancy=np.ones_like(e, dtype=bool))
    assert np.all(changed > var) and np.all(changed > tau2)


def _probs_with_regions() -> np.ndarray:
    """(2, 16, 16, 1) softmax: a confident foreground square, an uncertain foreground patch, and a
    single confident foreground voxel inside an uncertain neighbourhood."""
    p_fg = np.full((16, 16, 1), 0.01, np.float32)
    p_fg[2:8, 2:8] = 0.99  # confident structure
    p_fg[10:15, 10:15] = 0.6  # low confidence: H(0.6) = 0.97 bits > 0.2
    p_fg[12, 12] = 0.99  # confident voxel, uncertain neighbours
    return np.stack([1.0 - p_fg, p_fg])


def test_hierarchical_denoising_removes_low_confidence_voxels() -> None:
    hd = hierarchical_denoise(_probs_with_regions(), spatial_dims=2)
    assert (hd.initial[10:15, 10:15] == 1).all()
    # entropy stage: the uncertain patch goes to background, the lone confident voxel stays ...
    assert hd.entropy_labels[11, 11, 0] == 0 and hd.entropy_labels[12, 12, 0] == 1
    # ... the NIG stage removes it too (uncertain neighbourhood), and keeps the confident core.
    assert hd.labels[12, 12, 0] == 0
    assert (hd.labels[3:7, 3:7] == 1).all()
    assert not ((hd.labels != 0) & (hd.entropy_labels == 0)).any()  # hierarchical: Y* within Y^entropy
    by_entropy, by_nig = hd.removed_fractions()
    assert by_entropy > 0 and by_nig > 0


def test_entropy_quantile_sets_the_threshold_from_the_case() -> None:
    hd = hierarchical_denoise(_probs_with_regions(), config=HEALConfig(entropy_quantile=1.0))
    assert hd.entropy_threshold == pytest.approx(float(hd.entropy[hd.initial == 1].max()))
    assert (hd.entropy_labels == hd.initial).all()  # nothing above the max: the entropy stage removes nothing
    # tau_2 is the variance of an agreeing voxel whose regional entropy is tau_1 (normalised; K = 2 here).
    assert hd.variance_threshold == pytest.approx(float(nig_variance(np.array([hd.entropy_threshold]))[0]), rel=1e-5)


def _blob_probs(temperature: float, size: int = 32) -> np.ndarray:
    """A two-class (K, H, W, 1) softmax of a disc whose logit margin falls off toward its rim, at ``temperature``
    (higher = a less confident segmenter with the same ranking of voxels)."""
    yy, xx = np.mgrid[:size, :size]
    margin = 8.0 - np.hypot(yy - size / 2, xx - size / 2)  # > 0 inside the disc
    logits = np.stack([np.zeros_like(margin), margin])[..., None] / temperature
    e = np.exp(logits - logits.max(0, keepdims=True))
    return (e / e.sum(0, keepdims=True)).astype(np.float32)


def test_calibrated_thresholds_keep_the_same_share_whatever_the_confidence() -> None:
    kept_paper, kept_calibrated = [], []
    for temperature in (0.5, 2.0, 6.0):
        probs = _blob_probs(temperature)
        foreground = max(int((probs.argmax(0) == 1).sum()), 1)
        kept_paper.append(int((hierarchical_denoise(probs).labels == 1).sum()) / foreground)
        hd = hierarchical_denoise(probs, config=HEALConfig(entropy_quantile=0.9))
        kept_calibrated.append(int((hd.labels == 1).sum()) / foreground)
        assert hd.removed_fractions()[0] == pytest.approx(0.1, abs=0.05)  # the entropy stage: 1 - q
    # The fixed tau = 0.2 bits drops most of a less confident model's prediction; the quantile rule
    # keeps a share that depends on the ranking of the voxels, not on the temperature.
    assert kept_paper[0] > 0.5 and kept_paper[-1] < 0.05
    assert max(kept_calibrated) - min(kept_calibrated) < 0.1 and min(kept_calibrated) > 0.5


def test_config_rejects_impossible_settings() -> None:
    for bad in ({"n_samples": 0}, {"sampler": "euler"}, {"edge_metric": "iou"}, {"local_window": 2},
                {"kappa": 0.0}, {"entropy_quantile": 1.5}, {"batch_size": 0}, {"canny_sigma": float("nan")},
                {"no_such_setting": 1}, {"entropy_quantile": 0.9, "variance_threshold": 0.3},
                {"entropy_quantile": 0.9, "entropy_threshold": 0.5}):
        with pytest.raises(ConfigError):
            HEALConfig(**bad)
    assert HEALConfig.paper().sampler == "ddpm" and HEALConfig.paper().steps is None
    assert HEALConfig().n_samples == 6 and HEALConfig().entropy_threshold == 0.2
    # A saved calibrated config lists the (unused) default thresholds and must load again.
    calibrated = HEALConfig(entropy_quantile=0.9)
    assert HEALConfig(**calibrated.to_dict()) == calibrated


# ---------------------------------------------------------------------- edge-guided selection
def _square_mask(size: int = 32) -> np.ndarray:
    mask = np.zeros((size, size), np.int64)
    mask[8:24, 8:24] = 1
    mask[13:19, 13:19] = 2
    return mask


def test_edge_agreement_prefers_a_sample_aligned_with_its_condition() -> None:
    mask = _square_mask()
    aligned = (0.1 + 0.35 * mask)[None].astype(np.float32)  # (C, H, W)
    shifted = np.roll(aligned, shift=(5, 4), axis=(1, 2))
    for metric in ("recall", "f1"):
        cfg = HEALConfig(edge_metric=metric)
        good, bad = edge_agreement(aligned, mask, cfg), edge_agreement(shifted, mask, cfg)
        assert good > 0.9 and good > bad + 0.3, (metric, good, bad)
    assert edge_agreement(aligned, np.zeros_like(mask)) == 0.0  # nothing to agree with


def test_edge_agreement_works_per_slice_for_volumes() -> None:
    mask = np.stack([_square_mask()] * 3, axis=-1)
    image = (0.1 + 0.35 * mask)[None].astype(np.float32)
    good = edge_agreement(image, mask)
    assert good > 0.9 and edge_agreement(np.roll(image, (5, 4), axis=(1, 2)), mask) < good - 0.3


def test_select_sample_keeps_the_best_aligned_sample() -> None:
    mask = _square_mask()
    aligned = (0.1 + 0.35 * mask)[None].astype(np.float32)
    noise = np.random.default_rng(0).random((1, 32, 32)).astype(np.float32)
    samples = np.stack([np.roll(aligned, 6, axis=2), aligned, noise * 0.05])
    best, scores = select_sample(torch.from_numpy(samples), mask)
    assert best == 1 and len(scores) == 3 and scores[1] == max(scores)


# ---------------------------------------------------------------------- size-aware fusion
def test_size_aware_fusion_takes_the_smallest_class_from_the_refined_label() -> None:
    labels = {"background": 0, "big": 1, "small": 2, "absent": 3}
    refined = np.zeros((8, 8), np.uint8)
    refined[1:7, 1:7] = 1
    refined[3:5, 3:5] = 2
    seg = np.zeros((8, 8), np.uint8)
    seg[0:8, 1:8] = 1  # the sample's segmentation: larger class-1 region ...
    seg[5:7, 5:7] = 2  # ... and class 2 in the wrong place
    assert smallest_class(refined, labels) == 2  # class 3 is absent from Y*: not a candidate
    fused = size_aware_fusion(refined, seg, labels)
    assert ((fused == 2) == (refined == 2)).all()  # smallest class exactly from Y*
    assert (fused[0, 1:8] == 1).all() and fused[0, 0] == 0  # the rest from M_S(I_B)
    assert (fused[5:7, 5:7] == 0).all()  # stray class-2 voxels of the sample: background without probs
    probs = np.zeros((4, 8, 8), np.float32)
    probs[1], probs[2] = 0.3, 0.7
    assert (size_aware_fusion(refined, seg, labels, probs)[5:7, 5:7] == 1).all()  # ... or the runner-up
    assert (size_aware_fusion(np.zeros_like(refined), seg, labels) == seg).all()


# ---------------------------------------------------------------------- the per-case pipeline
@pytest.mark.parametrize("dims", [2, 3])
def test_adapter_handles_2d_and_3d_and_a_coarser_diffusion_grid(dims: int) -> None:
    """Untrained diffusion model, intensity-threshold "segmenter": checks shapes and bookkeeping, with
    the segmenter grid (20 px) finer than the diffusion grid (16 px)."""
    torch.manual_seed(0)
    dcfg = DiffusionConfig.smoke(dims)
    diffusion = build_model(dcfg, 3, 1).eval().requires_grad_(False)
    conv = torch.nn.Conv2d(1, 3, 1) if dims == 2 else torch.nn.Conv3d(1, 3, 1)
    with torch.no_grad():  # logits: background below 0.25, class 1 around 0.5, class 2 above 0.75
        conv.weight.copy_(torch.tensor([-20.0, 0.0, 20.0]).view(3, 1, *([1] * dims)))
        conv.bias.copy_(torch.tensor([5.0, 0.0, -15.0]))
    image = np.zeros((20, 20, 20 if dims == 3 else 4), np.float32)
    image[4:16, 4:16] = 0.5
    image[8:12, 8:12] = 1.0
    case = PreparedCase("c", image[None], None, image.shape, np.eye(4))
    cfg = HEALConfig(entropy_threshold=10.0, variance_threshold=1e9, **FAST)
    adapter = heal._Adapter(conv.eval(), diffusion, dcfg, 3, 1, {"background": 0, "a": 1, "b": 2}, dims, cfg,
                            torch.device("cpu"))
    final, record = adapter.adapt(case)
    assert final.shape == image.shape and final.dtype == np.uint8
    assert record["units_total"] == (1 if dims == 3 else 4) == record["units_sampled"]
    assert all(len(sel["scores"]) == 2 for sel in record["selections"])
    assert record["smallest_class"] == "b"
    assert ((final == 2) == (image == 1.0)).all()  # SAF: the smallest class comes from Y*
    assert heal._sampling_steps(HEALConfig(), dcfg) == dcfg.num_train_timesteps  # DDIM capped at T
    with pytest.raises(ConfigError):
        heal._sampling_steps(HEALConfig(sampler="ddpm", steps=3), dcfg)


def test_single_foreground_class_skips_size_aware_fusion() -> None:
    """With one foreground class (polyps) HEAL is HD + EGS, as in the paper: the answer is the
    selected sample's segmentation, not the HD label that SAF would hand back."""
    torch.manual_seed(0)
    dcfg = DiffusionConfig.smoke(2)
    diffusion = build_model(dcfg, 2, 1).eval().requires_grad_(False)
    conv = torch.nn.Conv2d(1, 2, 1)
    with torch.no_grad():  # foreground above 0.25
        conv.weight.copy_(torch.tensor([-20.0, 20.0]).view(2, 1, 1, 1))
        conv.bias.copy_(torch.tensor([5.0, -5.0]))
    image = np.zeros((20, 20, 2), np.float32)
    image[4:16, 4:16] = 0.5
    case = PreparedCase("c", image[None], None, image.shape, np.eye(4))
    labels = {"background": 0, "polyp": 1}
    full = heal._Adapter(conv.eval(), diffusion, dcfg, 2, 1, labels, 2,
                         HEALConfig(entropy_threshold=10.0, variance_threshold=1e9, **FAST), torch.device("cpu"))
    no_saf = heal._Adapter(conv.eval(), diffusion, dcfg, 2, 1, labels, 2,
                           HEALConfig(entropy_threshold=10.0, variance_threshold=1e9, size_aware_fusion=False, **FAST),
                           torch.device("cpu"))
    final, record = full.adapt(case)
    assert record["size_aware_fusion"].startswith("skipped")
    assert (final == no_saf.adapt(case)[0]).all()


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def source_models(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """Source-site step (segmenter + diffusion model from source pairs), then the source data is deleted."""
    root = tmp_path_factory.mktemp("heal")
    shutil.copytree(tiny_data_root, root / "data")
    config = TaskConfig(name="tiny", source="Dataset901_DemoBrainT1", target="Dataset902_DemoBrainT2",
                        labels={"background": 0, "CSF": 1, "GM": 2, "WM": 3},
                        preprocessing={"spatial_dims": 2, "size": (16, 16)})
    task = Task(config, root / "data" / config.source, root / "data" / config.target)
    cfg = build_run_config("smoke", 2, {"training": {"iterations": 2, "device": "cpu"}})
    run = train_method(task, "source-only", cfg, root / "segmenter", cache_dir=root / "cache", progress=False)
    ckpt = train_source_diffusion(task, root / "diffusion", DiffusionConfig.smoke(iterations=2), device="cpu",
                                  progress=False, cache_dir=root / "cache")
    shutil.rmtree(task.source_dir)
    shutil.rmtree(root / "cache")
    return task, run / "model.pt", ckpt


@pytest.fixture()
def watched(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Path]]:
    """Every path handed to nibabel.load and torch.load."""
    reads: dict[str, list[Path]] = {"nifti": [], "torch": []}
    nib_load, torch_load = nibabel.load, torch.load

    def load_nifti(filename, *args, **kwargs):
        reads["nifti"].append(Path(filename).resolve())
        return nib_load(filename, *args, **kwargs)

    def load_torch(f, *args, **kwargs):
        reads["torch"].append(Path(f).resolve())
        return torch_load(f, *args, **kwargs)

    monkeypatch.setattr(nibabel, "load", load_nifti)
    monkeypatch.setattr(torch, "load", load_torch)
    return reads


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_heal_is_source_free_label_free_and_learning_free(source_models, tmp_path, watched, monkeypatch) -> None:
    task, bundle, ckpt = source_models
    assert not task.source_dir.exists()
    digests = {p: _digest(p) for p in (bundle, ckpt)}

    # Snapshot every weight right after loading, to compare after adaptation.
    loaded: dict[str, tuple[torch.nn.Module, dict[str, torch.Tensor]]] = {}
    load_bundle, load_diffusion = heal.load_bundle, heal.load_diffusion

    def spy_bundle(*args, **kwargs):
        b = load_bundle(*args, **kwargs)
        loaded["segmenter"] = (b.network, copy.deepcopy(b.network.state_dict()))
        return b

    def spy_diffusion(*args, **kwargs):
        model, cfg, info = load_diffusion(*args, **kwargs)
        loaded["diffusion"] = (model, copy.deepcopy(model.state_dict()))
        return model, cfg, info

    monkeypatch.setattr(heal, "load_bundle", spy_bundle)
    monkeypatch.setattr(heal, "load_diffusion", spy_diffusion)
    # Loose thresholds so that the barely trained segmenter leaves foreground to condition on.
    config = HEALConfig(entropy_threshold=10.0, variance_threshold=1e9, **FAST)
    out = adapt_source_free(bundle, ckpt, task.target_dir, tmp_path / "pred", split="Ts", config=config,
                            device="cpu", progress=False)
    nifti_reads, torch_reads = list(watched["nifti"]), list(watched["torch"])

    preds = sorted(out.glob("*.nii.gz"))
    assert len(preds) == 2
    for pred in preds:
        ref, _ = read_nifti(task.target_dir / "labelsTs" / pred.name)
        arr, _ = read_nifti(pred)
        assert arr.shape == ref.shape and set(np.unique(arr)) <= {0, 1, 2, 3}
    report = json.loads((out / heal.HEAL_JSON).read_text())
    assert [c["case"] for c in report["cases"]] == [p.name.removesuffix(".nii.gz") for p in preds]
    assert sum(c["units_sampled"] for c in report["cases"]) > 0, "the diffusion path was not exercised"
    for case in report["cases"]:
        for sel in case["selections"]:
            assert len(sel["scores"]) == FAST["n_samples"] and sel["best_score"] == max(sel["scores"])

    # Read: target images only (no source file, no label file), and only the two model files.
    assert nifti_reads and all(p.parent.name == "imagesTs" for p in nifti_reads)
    assert all(task.target_dir.resolve() in p.parents for p in nifti_reads)
    assert not [p for p in nifti_reads if task.source_dir.name in str(p) or "labels" in str(p)]
    assert set(torch_reads) == {bundle.resolve(), ckpt.resolve()}

    # Learning-free: no weight changed, in memory or on disk.
    for name, (module, before) in loaded.items():
        after = module.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before), name
        assert all(p.grad is None for p in module.parameters()), name
    assert {p: _digest(p) for p in digests} == digests


def test_ablation_rows_and_reproducibility(source_models, tmp_path) -> None:
    task, bundle, ckpt = source_models
    # HD only: no diffusion at all, so the checkpoint is not even needed.
    hd_only = HEALConfig(edge_guided_selection=False, size_aware_fusion=False)
    out = adapt_source_free(bundle, tmp_path / "missing.pt", task.target_dir, tmp_path / "hd", config=hd_only,
                            device="cpu", progress=False)
    assert len(list(out.glob("*.nii.gz"))) == 2
    assert json.loads((out / heal.HEAL_JSON).read_text())["diffusion"]["used"] is False
    # Full HEAL twice with the same seed: identical predictions (noise is seeded per case/slice/sample).
    cfg = HEALConfig(entropy_threshold=10.0, variance_threshold=1e9, **FAST)
    a = adapt_source_free(bundle, ckpt, task.target_dir, tmp_path / "a", split="Tr", config=cfg, device="cpu",
                          progress=False)
    b = adapt_source_free(bundle, ckpt, task.target_dir, tmp_path / "b", split="Tr",
                          config=HEALConfig(**{**cfg.to_dict(), "batch_size": 3}), device="cpu", progress=False)
    for pa in sorted(a.glob("*.nii.gz")):
        assert np.array_equal(read_nifti(pa)[0], read_nifti(b / pa.name)[0])
    # HD + EGS without SAF, and no HD: both run.
    for flags in ({"size_aware_fusion": False}, {"hierarchical_denoising": False}):
        out = adapt_source_free(bundle, ckpt, task.target_dir, tmp_path / str(len(flags)) / str(flags),
                                config=HEALConfig(**{**cfg.to_dict(), **flags}), device="cpu", progress=False)
        assert len(list(out.glob("*.nii.gz"))) == 2


def test_mismatched_diffusion_model_is_reported_with_its_path(source_models, tmp_path) -> None:
    task, bundle, _ = source_models
    other = train_diffusion(
        [PairSample(np.zeros((1, 16, 16), np.float32), np.ones((16, 16), np.uint8), "source", "x")],
        2, DiffusionConfig.smoke(iterations=1), tmp_path / "other", progress=False)
    with pytest.raises(DataError, match="classes") as err:
        adapt_source_free(bundle, other, task.target_dir, tmp_path / "pred", device="cpu", progress=False)
    assert err.value.path == other


def test_cli_adapt_source_free(source_models, tmp_path) -> None:
    task, bundle, ckpt = source_models
    runner = CliRunner()
    r = runner.invoke(app, ["adapt-source-free", "--help"])
    assert r.exit_code == 0 and "--n-samples" in r.output and "--no-saf" in r.output
    r = runner.invoke(app, ["adapt-source-free", "--model", str(bundle), "--diffusion", str(ckpt), "--images",
                            str(task.target_dir), "--out", str(tmp_path / "pred"), "--n-samples", "2",
                            "--steps", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "pred").glob("*.nii.gz"))) == 2
    report = json.loads((tmp_path / "pred" / "heal.json").read_text())
    assert report["config"]["n_samples"] == 2

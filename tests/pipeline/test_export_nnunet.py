"""`diffuse-uda export nnunet`: a finished smoke pipeline run as an nnU-Net v2 raw dataset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from diffuse_uda.cli import app
from diffuse_uda.data.dataset_json import list_cases, load_dataset_json
from diffuse_uda.data.io import read_nifti, spacing_from_affine, write_nifti
from diffuse_uda.data.task import Task, TaskConfig
from diffuse_uda.data.validation import validate_dataset
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.pipeline import export_nnunet as export_module
from diffuse_uda.pipeline.export_nnunet import export_nnunet, read_export_provenance, synthetic_affine
from diffuse_uda.pipeline.pseudolabel import CONFIDENCE_DIR
from diffuse_uda.pipeline.run import PipelineConfig, pipeline_stage_folders, run_pipeline

SMOKE = PipelineConfig(profile="smoke",
                       segmentation={"training": {"iterations": 2, "device": "cpu"},
                                     "method": {"appearance_candidates": ["paper", "bezier"]}},
                       diffusion={"iterations": 2}, synthesis={"steps": 2, "guidance_scale": 1.0})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory, tiny_data_root: Path):
    """(run folder, task) of a finished smoke pipeline, shared by this module's tests (read only, except
    the confidence maps set below). The target's label files are deleted afterwards: exporting must
    never need them."""
    root = tmp_path_factory.mktemp("export")
    shutil.copytree(tiny_data_root, root / "data")
    config = TaskConfig(name="tiny", source="Dataset901_DemoBrainT1", target="Dataset902_DemoBrainT2",
                        labels={"background": 0, "CSF": 1, "GM": 2, "WM": 3},
                        preprocessing={"spatial_dims": 2, "size": (16, 16)})
    task = Task(config, root / "data" / config.source, root / "data" / config.target)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIFFUSE_UDA_CACHE", str(root / "cache"))
        run_pipeline(task, root / "run", SMOKE, progress=False)
    for split in ("Tr", "Ts"):
        shutil.rmtree(task.target_dir / f"labels{split}")
    # Two seconds of training leave stage 1 unsure everywhere; give its confidence maps known values:
    # the first case fully confident, the second confident on half of its predicted foreground.
    pseudo = pipeline_stage_folders(root / "run")["2 pseudo-labels"]
    for i, case in enumerate(list_cases(pseudo, "Tr")):
        label, affine = read_nifti(pseudo / "labelsTr" / f"{case}.nii.gz")
        assert label.any(), "the smoke stage 1 predicted no foreground at all"
        conf = np.ones(label.shape, np.float32)
        if i == 1:
            fg = np.flatnonzero(label > 0)
            conf.flat[fg[: len(fg) // 2]] = 0.5
        write_nifti(pseudo / CONFIDENCE_DIR / f"{case}.nii.gz", conf, affine)
    return root / "run", task


def _export(*args: str):
    return CliRunner().invoke(app, ["export", "nnunet", *args])


def _check_pairs(out: Path) -> None:
    """Every case: images and label on one affine and one shape (what nnU-Net checks)."""
    info = load_dataset_json(out)
    for case in list_cases(out, "Tr"):
        label, label_affine = read_nifti(out / "labelsTr" / f"{case}.nii.gz")
        assert set(np.unique(label).tolist()) <= set(info.labels.values())
        for k in range(info.num_channels):
            image, image_affine = read_nifti(out / "imagesTr" / f"{case}_{k:04d}.nii.gz")
            assert image.shape == label.shape and np.array_equal(image_affine, label_affine), case


def test_export_holds_source_and_synthetic_pairs_with_their_provenance(finished_run, tmp_path: Path) -> None:
    run, task = finished_run
    out = tmp_path / "nnUNet_raw" / "Dataset702_TinyAdapted"
    result = _export("--run", str(run), "--out", str(out))
    assert result.exit_code == 0, (result.output, result.exception)
    assert f"wrote {out}" in result.output and "nnUNetv2_plan_and_preprocess -d 702" in result.output
    info = load_dataset_json(out)
    assert info.labels == {"background": 0, "CSF": 1, "GM": 2, "WM": 3}
    assert info.channel_names == load_dataset_json(task.source_dir).channel_names and info.file_ending == ".nii.gz"
    cases = list_cases(out, "Tr")
    assert info.num_training == len(cases) and not (out / "imagesTs").exists()
    synthetic = pipeline_stage_folders(run)["4 synthesis"]
    assert sorted(c for c in cases if c.startswith("src_")) == [f"src_{c}" for c in list_cases(task.source_dir, "Tr")]
    assert sorted(c for c in cases if c.startswith("syn_")) == [f"syn_{c}" for c in list_cases(synthetic, "Tr")]
    assert all(c.startswith(("src_", "syn_")) for c in cases)  # no pseudo-labels unless asked
    _check_pairs(out)
    validate_dataset(out)

    # 2D synthetic pairs: (H, W, 1) with the field of view of the slice whose mask drew them.
    provenance = read_export_provenance(out)
    assert provenance is not None and set(provenance.cases) == set(cases)
    syn_id = next(c for c in cases if c.startswith("syn_source_"))
    record = provenance.cases[syn_id]
    assert record.origin == "synthetic" and Path(record.stage) == synthetic.resolve()
    assert Path(record.label) == synthetic.resolve() / "labelsTr" / f"{syn_id[4:]}.nii.gz"
    image, affine = read_nifti(out / "imagesTr" / f"{syn_id}_0000.nii.gz")
    ref_image, ref_affine = read_nifti(record.details["geometry_from"])
    assert image.shape == (16, 16, 1)
    spacing, ref_spacing = spacing_from_affine(affine), spacing_from_affine(ref_affine)
    np.testing.assert_allclose(spacing[:2], np.array(ref_spacing[:2]) * np.array(ref_image.shape[:2]) / 16)
    src_record = provenance.cases[sorted(c for c in cases if c.startswith("src_"))[0]]
    assert src_record.origin == "source" and Path(src_record.stage) == task.source_dir.resolve()
    assert provenance.counts == {"source": 2, "synthetic": len(list_cases(synthetic, "Tr")), "pseudo-label": 0}

    # The same export again is skipped; nothing is rewritten.
    stamp = (out / "dataset.json").stat().st_mtime_ns
    result = _export("--run", str(run), "--out", str(out))
    assert result.exit_code == 0 and f"already exported, skipped: {out}" in result.output, result.output
    assert (out / "dataset.json").stat().st_mtime_ns == stamp


def test_pseudo_labels_are_only_the_reliable_cases(finished_run, tmp_path: Path) -> None:
    run, _ = finished_run
    pseudo = pipeline_stage_folders(run)["2 pseudo-labels"]
    first, second = list_cases(pseudo, "Tr")
    # Reliability (confident fraction of the predicted foreground): 1.0 for the first, ~0.5 for the second.
    strict = export_nnunet(run, tmp_path / "Dataset703_Strict", pseudo_labels=True, min_reliability=0.9,
                           progress=False)
    cases = list_cases(strict.out_dir, "Tr")
    assert f"pl_{first}" in cases and f"pl_{second}" not in cases
    assert strict.skipped_pseudo_labels[second].startswith("reliability 0.5")
    provenance = read_export_provenance(strict.out_dir)
    assert provenance is not None and provenance.cases[f"pl_{first}"].details["reliability"] == 1.0
    assert provenance.cases[f"pl_{first}"].origin == "pseudo-label"
    assert Path(provenance.cases[f"pl_{first}"].stage) == pseudo.resolve()
    # The exported label is stage 1's pseudo-label (the target's own labels no longer exist).
    exported, _ = read_nifti(strict.out_dir / "labelsTr" / f"pl_{first}.nii.gz")
    np.testing.assert_array_equal(exported, read_nifti(pseudo / "labelsTr" / f"{first}.nii.gz")[0])
    _check_pairs(strict.out_dir)
    lenient = export_nnunet(run, tmp_path / "Dataset704_Lenient", pseudo_labels=True, min_reliability=0.4,
                            progress=False)
    assert {f"pl_{first}", f"pl_{second}"} <= set(list_cases(lenient.out_dir, "Tr"))
    assert lenient.counts["pseudo-label"] == 2 and not lenient.skipped_pseudo_labels
    with pytest.raises(ConfigError, match="min_reliability"):
        export_nnunet(run, tmp_path / "Dataset705_X", pseudo_labels=True, min_reliability=1.5)


def test_export_refuses_bad_names_other_datasets_and_id_clashes(finished_run, tmp_path: Path) -> None:
    run, _ = finished_run
    for name in ("Mine", "Dataset7_Mine", "Dataset0700_Mine", "Dataset700_"):
        with pytest.raises(ConfigError, match="DatasetXXX_Name"):
            export_nnunet(run, tmp_path / name, progress=False)
    # A folder that is not this export is never overwritten.
    user = tmp_path / "raw" / "Dataset710_Mine"
    user.mkdir(parents=True)
    (user / "notes.txt").write_text("my data")
    with pytest.raises(DataError, match="not a diffuse-uda export"):
        export_nnunet(run, user, progress=False)
    assert (user / "notes.txt").read_text() == "my data"
    out = tmp_path / "raw" / "Dataset711_Tiny"
    export_nnunet(run, out, progress=False)
    with pytest.raises(DataError, match="holds an export of other options"):
        export_nnunet(run, out, pseudo_labels=True, min_reliability=0.0, progress=False)
    # nnU-Net finds datasets by id: a second folder with id 711 would be ambiguous.
    with pytest.raises(DataError, match="id 711 is already used"):
        export_nnunet(run, tmp_path / "raw" / "Dataset711_Other", progress=False)
    with pytest.raises(DataError, match="not a pipeline run"):
        export_nnunet(tmp_path / "raw", tmp_path / "raw" / "Dataset712_X", progress=False)


def test_a_failed_export_leaves_nothing_behind(finished_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = finished_run
    calls = []
    original = export_module._write_case

    def fail_on_third(job):
        calls.append(job[0].case_id)
        if len(calls) == 3:
            raise OSError("disk full")
        original(job)

    monkeypatch.setattr(export_module, "_write_case", fail_on_third)
    monkeypatch.setattr(export_module, "map_progress", lambda fn, items, desc: [fn(i) for i in items])
    with pytest.raises(OSError, match="disk full"):
        export_nnunet(run, tmp_path / "Dataset720_Tiny", progress=False)
    assert list(tmp_path.iterdir()) == []  # no dataset, no half-written staging folder


def test_synthetic_geometry_keeps_the_field_of_view() -> None:
    ref = np.array([[0.0, -1.2, 0.1, 10.0], [1.1, 0.0, 0.0, -5.0], [0.0, 0.1, 7.9, 30.0], [0, 0, 0, 1]])
    ref_shape = (24, 30, 10)

    def corners(affine: np.ndarray, shape: tuple[int, ...], dims: int) -> np.ndarray:
        """World positions of the outer voxel edges along the resized axes."""
        lo, hi = np.full(3, -0.5), np.array(shape, float) - 0.5
        lo[dims:] = hi[dims:] = 0.0
        return np.stack([affine[:3, :3] @ v + affine[:3, 3] for v in (lo, hi)])

    # 2D: slice 4 drawn at 16 x 16, one voxel thick, covers the same in-plane extent at slice 4.
    syn = synthetic_affine(ref, ref_shape, (16, 16, 1), z=4)
    ref_slice = ref.copy()
    ref_slice[:3, 3] = ref[:3, :3] @ np.array([0, 0, 4.0]) + ref[:3, 3]
    np.testing.assert_allclose(corners(syn, (16, 16, 1), 2), corners(ref_slice, ref_shape, 2), atol=1e-9)
    expected = (1.1 * 24 / 16, np.hypot(1.2, 0.1) * 30 / 16, np.hypot(0.1, 7.9))  # in-plane scaled, slice kept
    np.testing.assert_allclose(spacing_from_affine(syn), expected)
    # 3D: the whole volume's extent at another resolution.
    syn3 = synthetic_affine(ref, ref_shape, (16, 16, 16), z=None)
    np.testing.assert_allclose(corners(syn3, (16, 16, 16), 3), corners(ref, ref_shape, 3), atol=1e-9)


def test_nnunet_accepts_the_export(finished_run, tmp_path: Path, capfd: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """nnU-Net's own dataset integrity check on an export with every origin (needs the `nnunet` extra)."""
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
    integrity = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity")
    run, _ = finished_run
    out = tmp_path / "nnUNet_raw" / "Dataset730_TinyAdapted"
    result = export_nnunet(run, out, pseudo_labels=True, min_reliability=0.4, progress=False)
    assert all(result.counts.values())
    capfd.readouterr()
    integrity.verify_dataset_integrity(str(out), num_processes=1)
    output = "".join(capfd.readouterr())
    assert "verify_dataset_integrity Done" in output
    # nnU-Net reports geometry disagreements between an image and its label as warnings only.
    assert "Warning" not in output and "Error" not in output, output

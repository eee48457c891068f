"""The label-free synthetic check before stage 3: agreement, the rule, and what the pipeline does with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

from diffuse_uda.diffusion.fidelity import _segment
from diffuse_uda.diffusion.trainer import PairSample
from diffuse_uda.pipeline import synthetic_check
from diffuse_uda.pipeline.export_nnunet import export_nnunet
from diffuse_uda.pipeline.manifest import read_manifest
from diffuse_uda.pipeline.run import (
    CHECK_STAGE,
    GENERATION_ABLATION,
    MODEL_STAGE,
    PAPER_PIPELINE,
    STAGE3,
    PipelineConfig,
    conditioning_samples,
    pipeline_model,
    read_pipeline_record,
    run_pipeline,
    stage3_folder,
)
from diffuse_uda.pipeline.synthetic_check import (
    CHECK_FILE,
    agreement,
    check_config,
    check_synthetic_pairs,
    read_check,
    source_mask_pairs,
)
from diffuse_uda.pipeline.train import train_method
from diffuse_uda.training.bundle import load_bundle


def _target_pairs(task) -> list[PairSample]:
    # The target's own labels stand in for a pseudo-label set here (test data; the pipeline passes stage 1's).
    _, target = conditioning_samples(task, task.target_dir, 1.0, (16, 16), None, False)
    return target


def test_agreement_is_full_against_the_runs_own_segmentation_and_drops_with_other_masks(
        tiny_task, smoke_config, tmp_path: Path) -> None:
    run = train_method(tiny_task, "source-only", smoke_config, tmp_path / "run", progress=False)
    pairs = _target_pairs(tiny_task)
    network = load_bundle(run, torch.device("cpu")).network
    images = torch.from_numpy(np.stack([p.image for p in pairs]))
    own = _segment(network.eval(), images, (16, 16)).numpy().astype(np.uint8)
    keep = [i for i in range(len(pairs)) if own[i].any()]
    assert keep, "the tiny model segments no foreground at all"
    as_own = [PairSample(pairs[i].image, own[i], "target", pairs[i].case_id) for i in keep]
    assert agreement(run, as_own, tiny_task.num_classes, torch.device("cpu")) == 100.0
    # Every foreground class moved one label up (the last to the first): the masks no longer match.
    shifted = [PairSample(p.image, np.where(p.mask > 0, p.mask % 3 + 1, 0).astype(np.uint8), "target", p.case_id)
               for p in as_own]
    assert agreement(run, shifted, tiny_task.num_classes, torch.device("cpu")) < 100.0


def _as_synthetic(dataset: Path, out: Path, prefix: str = "source_") -> Path:
    """A dataset's pairs under the names synthesis gives pairs drawn from its masks (``source_<case>``)."""
    for sub in ("imagesTr", "labelsTr"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for f in (dataset / sub).iterdir():
            shutil.copyfile(f, out / sub / f"{prefix}{f.name}")
    shutil.copyfile(dataset / "dataset.json", out / "dataset.json")
    return out


def test_only_the_pairs_drawn_from_source_masks_are_kept(tiny_task, tmp_path: Path) -> None:
    synthetic = _as_synthetic(tiny_task.source_dir, tmp_path / "synthetic")
    _as_synthetic(tiny_task.source_dir, synthetic, prefix="target_")  # pairs drawn from pseudo-label masks
    subset = source_mask_pairs(synthetic, tmp_path / "subset")
    names = sorted(p.name for p in (subset / "labelsTr").iterdir())
    assert names and all(n.startswith("source_") for n in names)
    assert len(names) == len(list((tiny_task.source_dir / "labelsTr").iterdir()))
    assert json.loads((subset / "dataset.json").read_text())["numTraining"] == len(names)
    assert all(p.name.startswith("source_") for p in (subset / "imagesTr").iterdir())


def test_with_nothing_to_judge_the_check_says_why_and_keeps_the_pairs(tiny_task, smoke_config,
                                                                     tmp_path: Path) -> None:
    # Only pairs drawn from pseudo-label masks (synthesis.masks=target): nothing the check may judge, nothing trained.
    only_target = _as_synthetic(tiny_task.source_dir, tmp_path / "synthetic", prefix="target_")
    result = check_synthetic_pairs(tiny_task, only_target, _target_pairs(tiny_task), smoke_config,
                                   tmp_path / "check", torch.device("cpu"), progress=False)
    assert result.use_synthetic and result.synthetic_agreement is None and "source mask" in result.not_judged
    assert not (tmp_path / "check" / "synthetic-only").exists() and read_check(tmp_path / "check") == result
    # Source-mask pairs, but no target image with a pseudo-labelled foreground to compare on.
    both = _as_synthetic(tiny_task.source_dir, only_target)
    result = check_synthetic_pairs(tiny_task, both, [], smoke_config, tmp_path / "check2", torch.device("cpu"),
                                   progress=False)
    assert result.use_synthetic and "pseudo-labelled foreground" in result.not_judged


def test_check_trains_one_recipe_on_each_labelled_set_and_ties_keep_the_synthetic_pairs(
        tiny_task, smoke_config, tmp_path: Path) -> None:
    # The ascplus options stage 3 carries are not the recipe's: they are dropped, the rest is stage 3's.
    stage3 = smoke_config.model_copy(update={"method": {"appearance": "bezier"}})
    assert check_config(stage3).method == {} and check_config(stage3).training == stage3.training
    # "Synthetic" pairs that are the source pairs themselves: same data, recipe and seed, so the same agreement.
    synthetic = _as_synthetic(tiny_task.source_dir, tmp_path / "synthetic")
    result = check_synthetic_pairs(tiny_task, synthetic, _target_pairs(tiny_task), stage3,
                                   tmp_path / "check", torch.device("cpu"), progress=False)
    assert result.synthetic_agreement == result.source_agreement and result.use_synthetic
    for name in ("synthetic-only", "source-only"):
        manifest = json.loads((tmp_path / "check" / name / "run.json").read_text())
        assert manifest["status"] == "complete" and manifest["request"]["method"] == "source-only"
    assert read_check(tmp_path / "check") == result
    assert read_check(tmp_path / "elsewhere") is None


def _rigged(synthetic: float, source: float):
    """An agreement that says ``synthetic`` for the synthetic-only run and ``source`` for the source-only one."""
    def fake(run_dir: Path, *args, **kwargs) -> float:
        return synthetic if Path(run_dir).name == "synthetic-only" else source
    return fake


def _pipeline_config() -> PipelineConfig:
    return PipelineConfig(profile="smoke", diffusion={"iterations": 2}, synthetic_check=True,
                          segmentation={"training": {"iterations": 3, "device": "cpu"},
                                        "method": {"appearance_candidates": ["paper", "bezier"]}})


def test_a_failed_check_skips_stage_3_and_the_pipeline_ends_with_stage_1(tiny_task, tmp_path: Path,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(synthetic_check, "agreement", _rigged(30.0, 50.0))
    run = tmp_path / "run"
    report = run_pipeline(tiny_task, run, _pipeline_config(), progress=False)
    assert not (run / STAGE3).exists()
    verdict = read_check(run / CHECK_STAGE)
    assert verdict is not None and not verdict.use_synthetic
    assert json.loads((run / CHECK_STAGE / CHECK_FILE).read_text())["synthetic_agreement"] == 30.0
    record = read_pipeline_record(run)
    assert record is not None
    model = [st for st in record.stages if st.stage == MODEL_STAGE]
    assert len(model) == 1 and model[0].seconds == 0.0 and Path(model[0].folder) == (run / "1_ascplus").resolve()
    assert stage3_folder(run) == (run / "1_ascplus").resolve()
    # Stage 1 is counted once in the total.
    assert record.total_seconds == sum(st.seconds for st in record.stages if st.seconds is not None)
    text = report.read_text()
    assert "Synthetic check (label-free)" in text and "stage 3 not trained" in text and "diffuse-uda" not in text
    # The run folder stands for stage 1's model (predict, report), and an export says why its syn_ pairs are weak.
    assert pipeline_model(run) == (run / "1_ascplus").resolve() and pipeline_model(run / "2_pseudolabels") == \
        run / "2_pseudolabels"
    exported = export_nnunet(run, tmp_path / "nnUNet_raw" / "Dataset990_Check", progress=False)
    assert exported.counts["synthetic"] > 0 and any("synthetic check" in n for n in exported.notes)
    # Finished: a rerun trains nothing (the check and every stage are complete).
    started = read_manifest(run / CHECK_STAGE).started
    run_pipeline(tiny_task, run, _pipeline_config(), progress=False)
    assert read_manifest(run / CHECK_STAGE).started == started and not (run / STAGE3).exists()


def test_a_passed_check_trains_stage_3_and_the_check_is_on_by_default_but_never_for_the_paper_rows(
        tiny_task, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(synthetic_check, "agreement", _rigged(60.0, 50.0))
    run_pipeline(tiny_task, tmp_path / "run", _pipeline_config(), progress=False)
    assert read_manifest(tmp_path / "run" / STAGE3).status == "complete"
    assert stage3_folder(tmp_path / "run") == pipeline_model(tmp_path / "run") == (tmp_path / "run" / STAGE3).resolve()
    assert "Synthetic check (label-free)" in (tmp_path / "run" / "report" / "report.md").read_text()
    assert PipelineConfig().synthetic_check  # the default since rule X passed (BENCHMARKS.md, sessions 35-36)
    # The paper's pipeline and its Table-3 rows compare what stage 3 makes of the pairs: they always train it.
    assert PAPER_PIPELINE["synthetic_check"] is False
    assert all(row["synthetic_check"] is False for row in GENERATION_ABLATION.values())
    off = _pipeline_config().model_copy(update={"synthetic_check": False})
    run_pipeline(tiny_task, tmp_path / "off", off, progress=False)
    assert not (tmp_path / "off" / CHECK_STAGE).exists()
    assert read_manifest(tmp_path / "off" / STAGE3).status == "complete"

"""Composite bench entries: the Diffuse-UDA pipeline reuses the bench's ascplus run as stage 1 and
its ablation rows share identical stages; HEAL reuses the bench's source-only model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diffuse_uda.config import build_run_config
from diffuse_uda.errors import ConfigError
from diffuse_uda.pipeline.appearance_choice import candidate_config, read_choice
from diffuse_uda.pipeline.bench import run_bench
from diffuse_uda.pipeline.bench_entries import is_composite
from diffuse_uda.pipeline.manifest import read_manifest
from diffuse_uda.pipeline.run import reusable_stage1
from diffuse_uda.pipeline.run_folder import RunFolder, file_input

SMOKE = {"training": {"iterations": 2, "device": "cpu"}}
# The bench's ascplus row without its longer training and self-training rounds (fewer runs; the pipeline's stage 1
# has the same settings, so it is still the row).
NO_ROUND = {**SMOKE, "method": {"self_training_rounds": 0, "longer_training": 0}}


def test_entry_names() -> None:
    assert is_composite("diffuse-uda") and is_composite("diffuse-uda-M3") and is_composite("heal-HD")
    assert not is_composite("diffuse-uda-M9") and not is_composite("ascplus")


def test_pipeline_rows_reuse_stage1_and_share_stages(tiny_task, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    out = run_bench(tiny_task, ["ascplus", "diffuse-uda-M2", "diffuse-uda-M3"], 1, tmp_path / "bench",
                    profile="smoke", overrides=NO_ROUND, progress=False)
    bench = out
    ascplus = bench / "ascplus" / "seed0"
    m2, m3 = bench / "diffuse-uda-M2" / "seed0", bench / "diffuse-uda-M3" / "seed0"
    # Stage 1 is the bench's ascplus run: not retrained inside the pipeline folders.
    assert not (m2 / "1_ascplus").exists() and not (m3 / "1_ascplus").exists()
    for row in (m2, m3):
        stages = json.loads((row / "pipeline.json").read_text())["stages"]
        assert Path(stages[0]["folder"]).resolve() == ascplus.resolve() and stages[0]["reused"]
    # M3 differs from M2 only in the synthesis masks: pseudo-labels and the generator are M2's.
    assert not (m3 / "3_diffusion").exists() and not (m3 / "2_pseudolabels").exists()
    assert read_manifest(m3 / "4_synthetic").config["synthesis"]["masks"] == "both"
    assert read_manifest(m2 / "4_synthetic").config["synthesis"]["masks"] == "source"
    rows = {r["method"]: r for r in json.loads((out / "bench.json").read_text())["rows"]}
    total = json.loads((m2 / "pipeline.json").read_text())["total_seconds"]
    assert rows["diffuse-uda-M2"]["train_seconds"][0] == pytest.approx(total)
    stage_seconds = rows["diffuse-uda-M2"]["stage_seconds"]
    assert list(stage_seconds) == ["1 ascplus", "2 pseudo-labels", "3 diffusion", "4 synthesis",
                                   "5 ascplus + synthetic"]
    assert sum(v[0] for v in stage_seconds.values()) == pytest.approx(total)
    assert rows["ascplus"]["stage_seconds"] is None
    assert "Wall time per pipeline stage" in (out / "bench.md").read_text()


def test_stage1_run_must_match_the_pipeline_settings(tiny_task, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    run_bench(tiny_task, ["ascplus", "source-only"], 1, tmp_path / "bench", profile="smoke", overrides=SMOKE,
              progress=False)
    cfg = build_run_config("smoke", 2, {**SMOKE, "training": {**SMOKE["training"], "seed": 0}})
    assert reusable_stage1(tmp_path / "bench" / "ascplus" / "seed0", tiny_task, cfg)
    with pytest.raises(ConfigError, match="training.iterations: 2 -> 3"):
        reusable_stage1(tmp_path / "bench" / "ascplus" / "seed0", tiny_task,
                        build_run_config("smoke", 2, {"training": {"iterations": 3, "device": "cpu"}}))
    with pytest.raises(ConfigError, match="method 'source-only'"):
        reusable_stage1(tmp_path / "bench" / "source-only" / "seed0", tiny_task, cfg)


def test_a_self_training_round_is_a_stage1_run_with_the_pick_fixed(tiny_task, tmp_path: Path, monkeypatch) -> None:
    """A round (trained with the chosen transfer fixed, on its own pseudo-labels) may be the pipeline's stage 1; not
    under the automatic choice's settings, and not once its pseudo-labels have changed."""
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    run = run_bench(tiny_task, ["ascplus"], 1, tmp_path / "bench", profile="smoke", overrides=SMOKE,
                    progress=False) / "ascplus" / "seed0"
    cfg = build_run_config("smoke", 2, {**SMOKE, "training": {**SMOKE["training"], "seed": 0}})
    fixed = candidate_config(cfg, read_choice(run).chosen)
    round2 = run / "self_training" / "round2"
    assert reusable_stage1(round2, tiny_task, fixed) == round2
    with pytest.raises(ConfigError, match="stage1_run is not a complete ascplus run"):
        reusable_stage1(round2, tiny_task, cfg)
    label = sorted((run / "self_training" / "round2_pseudolabels" / "labelsTr").iterdir())[0]
    label.write_bytes(label.read_bytes() + b"\0")
    with pytest.raises(ConfigError, match="extra_labelled_0"):
        reusable_stage1(round2, tiny_task, fixed)


def test_heal_rows_reuse_the_source_model_and_one_generator(tiny_task, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    out = run_bench(tiny_task, ["source-only", "heal-HD", "heal"], 1, tmp_path / "bench", profile="smoke",
                    overrides=SMOKE, progress=False)
    source = out / "source-only" / "seed0"
    for entry in ("heal-HD", "heal"):
        manifest = RunFolder(out / entry / "seed0").manifest()
        assert manifest.status == "complete" and manifest.details["source_segmenter"] == str(source.resolve())
        assert (out / entry / "seed0" / "evaluation" / "per_case.csv").is_file()
    assert RunFolder(out / "heal-HD" / "seed0").manifest().details["generator_seconds"] == 0.0
    assert (out / "heal-source-generator" / "seed0" / "diffusion_last.pt").is_file()
    assert [r["method"] for r in json.loads((out / "bench.json").read_text())["rows"]] == \
        ["source-only", "heal-HD", "heal"]
    # A rerun reuses the finished rows; a row made with other HEAL settings is stale: refused, or
    # redone with force.
    heal_run = out / "heal-HD" / "seed0" / "run.json"
    first = json.loads(heal_run.read_text())
    run_bench(tiny_task, ["source-only", "heal-HD"], 1, tmp_path / "bench", profile="smoke", overrides=SMOKE,
              progress=False)
    assert json.loads(heal_run.read_text())["details"]["adapt_seconds"] == first["details"]["adapt_seconds"]
    stale = json.loads(json.dumps(first))
    stale["request"]["config"]["heal"]["entropy_threshold"] = 123.0
    heal_run.write_text(json.dumps(stale))
    with pytest.raises(ConfigError, match="heal.entropy_threshold: 123.0 -> 0.2"):
        run_bench(tiny_task, ["source-only", "heal-HD"], 1, tmp_path / "bench", profile="smoke", overrides=SMOKE,
                  progress=False)
    run_bench(tiny_task, ["source-only", "heal-HD"], 1, tmp_path / "bench", profile="smoke", overrides=SMOKE,
              progress=False, force=True)
    assert json.loads(heal_run.read_text())["request"]["config"]["heal"] == first["request"]["config"]["heal"]


def test_generator_settings_reach_the_pipeline_row_only(tiny_task, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    overrides = {**NO_ROUND, "diffusion": {"iterations": 3}, "synthesis": {"times": 2}}
    out = run_bench(tiny_task, ["ascplus", "diffuse-uda"], 1, tmp_path / "bench", profile="smoke",
                    overrides=overrides, progress=False)
    row = out / "diffuse-uda" / "seed0"
    assert read_manifest(row / "3_diffusion").config["diffusion"]["iterations"] == 3
    assert read_manifest(row / "4_synthetic").config["synthesis"]["times"] == 2
    # The segmentation rows are the runs they would be without the generator settings: the bench's
    # ascplus run is still stage 1, and it matches a bench made with the segmentation settings alone.
    stages = json.loads((row / "pipeline.json").read_text())["stages"]
    assert stages[0]["reused"] and Path(stages[0]["folder"]).resolve() == (out / "ascplus" / "seed0").resolve()
    cfg = build_run_config("smoke", 2, {**NO_ROUND, "training": {**SMOKE["training"], "seed": 0}})
    assert reusable_stage1(out / "ascplus" / "seed0", tiny_task, cfg)


def test_pipeline_stage1_is_the_ascplus_default(tiny_task, tmp_path: Path, monkeypatch) -> None:
    """Rule R (session 28): on scans the pipeline's stage 1 is the default ``ascplus``, longer training and
    self-training rounds included, so the bench's ``ascplus`` row is reused as it is and nothing is trained again."""
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    out = run_bench(tiny_task, ["ascplus", "diffuse-uda"], 1, tmp_path / "bench", profile="smoke", overrides=SMOKE,
                    progress=False)
    ascplus = out / "ascplus" / "seed0"
    details = RunFolder(ascplus).manifest().details
    assert details["self_training_rounds"] == 2 and details["longer_training"] == 2
    row = out / "diffuse-uda" / "seed0"
    assert not (row / "1_ascplus").exists()
    stages = json.loads((row / "pipeline.json").read_text())["stages"]
    assert stages[0]["reused"] and Path(stages[0]["folder"]).resolve() == ascplus.resolve()
    # Its pseudo-labels come from the model the rounds ended with (the row's model.pt is round 2's).
    pseudo = read_manifest(row / "2_pseudolabels")
    assert pseudo.inputs["stage1_model"].digest == file_input(ascplus / "self_training" / "round2" / "model.pt").digest


def test_pipeline_stage1_other_than_the_row_reuses_the_bench_candidates(tiny_task, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """A pipeline asked for another stage 1 than the bench's ``ascplus`` row (here the choice alone) makes its own
    from the bench's ``ascplus-<preset>`` candidates without training any again, and chooses as the row did."""
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    out = run_bench(tiny_task, ["ascplus"], 1, tmp_path / "bench", profile="smoke", overrides=SMOKE, progress=False)
    candidate_runs = {p: p.stat().st_mtime_ns for p in out.glob("ascplus-*/seed0/run.json")}
    assert len(candidate_runs) >= 2
    run_bench(tiny_task, ["diffuse-uda"], 1, tmp_path / "bench", profile="smoke", overrides=NO_ROUND, progress=False)
    stage1 = out / "diffuse-uda" / "seed0" / "1_ascplus"
    assert RunFolder(stage1).manifest().details["self_training_rounds"] == 0
    assert not (stage1 / "candidates").exists()
    assert {p.stat().st_mtime_ns for p in candidate_runs} == set(candidate_runs.values())
    choice = json.loads((stage1 / "appearance_choice.json").read_text())
    assert {Path(p).resolve() for p in choice["candidates"].values()} == {p.parent.resolve() for p in candidate_runs}
    assert choice["chosen"] == json.loads((out / "ascplus" / "seed0" / "appearance_choice.json").read_text())["chosen"]


@pytest.mark.parametrize(("entries", "section"), [(["source-only", "ascplus"], "diffusion"),
                                                  (["source-only", "heal-HD"], "diffusion"),
                                                  (["source-only", "heal"], "synthesis")])
def test_generator_settings_no_entry_reads_are_refused_before_any_work(tiny_task, tmp_path: Path,
                                                                       entries: list[str], section: str) -> None:
    overrides = {**SMOKE, section: {"times" if section == "synthesis" else "iterations": 3}}
    with pytest.raises(ConfigError, match=f"--set {section}.* configures the generator"):
        run_bench(tiny_task, entries, 1, tmp_path / "bench", profile="smoke", overrides=overrides, progress=False)
    assert not (tmp_path / "bench").exists()

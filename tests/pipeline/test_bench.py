import json
from pathlib import Path

import pytest

from diffuse_uda.errors import ConfigError
from diffuse_uda.pipeline.bench import run_bench
from diffuse_uda.pipeline.bench_entries import COMPONENT_ABLATION, bench_entries, resolve_method
from diffuse_uda.pipeline.run_folder import RunFolder, RunManifest, RunRequest


def test_resolve_method_presets() -> None:
    assert resolve_method("fda") == ("fda", {})
    method, options = resolve_method("ascplus-M3")
    assert method == "ascplus" and options["app_target"] and not options["app_restyled"]
    with pytest.raises(ConfigError):
        resolve_method("ascplus-M9")
    assert resolve_method("ad-no-DRS") == ("ad", {"drs": False})
    assert resolve_method("glua-no-local-alignment") == ("glua", {"local_alignment": False})


def test_bench_writes_one_table_for_all_methods(tiny_task, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    out = run_bench(tiny_task, ["source-only", "target-supervised", "ascplus-M2"], 1, tmp_path / "bench",
                    profile="smoke", overrides={"training": {"iterations": 2, "device": "cpu"}}, progress=False)
    md = (out / "bench.md").read_text()
    assert "target-supervised (oracle, upper bound)" in md and "ascplus-M2" in md
    rows = json.loads((out / "bench.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["source-only", "target-supervised", "ascplus-M2"]
    assert all(r["seeds"] == 1 for r in rows)
    assert (out / "bench.csv").read_text().count("\n") == 4
    # A rerun reuses the finished runs (same table, no retraining).
    before = (out / "source-only" / "seed0" / "run.json").stat().st_mtime_ns
    run_bench(tiny_task, ["source-only"], 1, tmp_path / "bench", profile="smoke",
              overrides={"training": {"iterations": 2, "device": "cpu"}}, progress=False)
    assert (out / "source-only" / "seed0" / "run.json").stat().st_mtime_ns == before


def test_every_component_ablation_is_a_valid_method_setting() -> None:
    from diffuse_uda.methods.registry import create_method

    for entry in COMPONENT_ABLATION:
        method, options = resolve_method(entry)
        created = create_method(method, options)
        for key, value in options.items():
            assert getattr(created.options, key) == value, entry


def _fake_run(folder: Path, hd95: float) -> Path:
    (folder / "evaluation").mkdir(parents=True)
    RunFolder(folder).write(RunManifest(request=RunRequest(method="m", config={}), display_name="m",
                                        status="complete", train_seconds=1.0, peak_rss_mb=10.0))
    rows = ["case,class,dice,hd95,assd,nsd"] + [f"c{i},fg,0.5,{hd95},{hd95},0.5" for i in range(3)]
    (folder / "evaluation" / "per_case.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_bench_table_says_when_a_distance_mean_covers_fewer_seeds(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from diffuse_uda.pipeline.bench import write_bench_table

    task = SimpleNamespace(name="t", labels={"background": 0, "fg": 1})
    # Seed 1 missed the class in every case (HD95 undefined): its mean must not pass for 3 seeds' mean.
    runs = {"m": {s: _fake_run(tmp_path / f"m{s}", h) for s, h in enumerate([4.0, float("nan"), 6.0])}}
    md = (write_bench_table(task, runs, tmp_path / "out") / "bench.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| m |"))
    assert "5.0 ± 1.0 (2 of 3 seeds)" in row
    full = {"m": {s: _fake_run(tmp_path / f"f{s}", 4.0) for s in range(2)}}
    md = (write_bench_table(task, full, tmp_path / "out2") / "bench.md").read_text()
    assert "seeds)" not in next(line for line in md.splitlines() if line.startswith("| m |"))


def test_bench_significance_counts_each_declared_case_group_once(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from diffuse_uda.data.dataset_json import DatasetInfo, write_dataset_json
    from diffuse_uda.pipeline.bench import write_bench_table

    cases = [f"seq{s}_frame{f}" for s in range(4) for f in range(30)]
    target = tmp_path / "Dataset999_Frames"
    write_dataset_json(target, DatasetInfo(name="f", channel_names={"0": "R"}, labels={"background": 0, "fg": 1},
                                           case_groups={c: c.split("_")[0] for c in cases}))

    def run(folder: Path, better: bool) -> Path:
        (folder / "evaluation").mkdir(parents=True)
        RunFolder(folder).write(RunManifest(request=RunRequest(method="m", config={}), display_name="m",
                                            status="complete", train_seconds=1.0, peak_rss_mb=10.0))
        # Three of four sequences a bit better, one worse: every frame differs, the sequences barely do.
        dice = {c: 0.5 + ((0.1 if int(c[3]) < 3 else -0.1) + 0.001 * int(c.split("frame")[1]) if better else 0)
                for c in cases}
        rows = ["case,class,dice,hd95,assd,nsd"] + [f"{c},fg,{d},1,1,0.5" for c, d in dice.items()]
        (folder / "evaluation" / "per_case.csv").write_text("\n".join(rows) + "\n")
        return folder

    task = SimpleNamespace(name="t", labels={"background": 0, "fg": 1}, target_dir=target)
    runs = {"a": {0: run(tmp_path / "a", True)}, "b": {0: run(tmp_path / "b", False)}}
    out = write_bench_table(task, runs, tmp_path / "out")
    significance = json.loads((out / "bench.json").read_text())["significance"]
    assert significance["n_cases"] == 120 and significance["n_groups"] == 4
    assert significance["p_value"] < 1e-3 < 0.05 < significance["p_value_groups"]
    assert "over the 4 case groups" in (out / "bench.md").read_text()


def test_every_listed_entry_resolves_and_unknown_ones_are_refused_before_any_work(tiny_task, tmp_path: Path,
                                                                                 monkeypatch) -> None:
    """Defect: `bench --methods source-only,nosuch` trained source-only before it rejected `nosuch`."""
    from diffuse_uda.pipeline.bench_entries import is_composite

    for entry in bench_entries():
        if not is_composite(entry):
            resolve_method(entry)
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ConfigError, match="unknown bench entry 'nosuch'"):
        run_bench(tiny_task, ["source-only", "nosuch"], 1, tmp_path / "bench", profile="smoke",
                  overrides={"training": {"iterations": 2, "device": "cpu"}}, progress=False)
    assert not (tmp_path / "bench" / "source-only").exists()

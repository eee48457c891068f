import json
from pathlib import Path

import pytest

from diffuse_uda.errors import ConfigError
from diffuse_uda.pipeline.bench import resolve_method, run_bench


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
    from diffuse_uda.pipeline.bench import COMPONENT_ABLATION

    for entry in COMPONENT_ABLATION:
        method, options = resolve_method(entry)
        created = create_method(method, options)
        for key, value in options.items():
            assert getattr(created.options, key) == value, entry

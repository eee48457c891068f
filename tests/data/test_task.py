from pathlib import Path

import pytest

from diffuse_uda.data.task import load_task, shipped_tasks
from diffuse_uda.errors import ConfigError, DataError


def test_shipped_tasks_load(tmp_path: Path) -> None:
    names = shipped_tasks()
    assert {"mscmr-bssfp2lge", "mscmr-lge2bssfp", "polyp-kvasir2cvc", "polyp-cvc2kvasir",
            "demo-brain-t1t2"} <= set(names)
    for name in names:
        task = load_task(name, tmp_path)
        assert task.labels["background"] == 0
        assert task.source_dir.parent == tmp_path


def test_unknown_task_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown task"):
        load_task("nope", tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsource: a\ntarget: b\nlabels: {background: 0}\nunknown_key: 1\n")
    with pytest.raises(DataError, match="bad.yaml"):
        load_task(bad, tmp_path)


def test_check_names_missing_dataset(tmp_path: Path) -> None:
    task = load_task("mscmr-bssfp2lge", tmp_path)
    with pytest.raises(DataError, match="Dataset501_MSCMR_bSSFP"):
        task.check()


def test_check_label_map_mismatch(tiny_task) -> None:
    tiny_task.check()
    import json

    ds = tiny_task.target_dir / "dataset.json"
    d = json.loads(ds.read_text())
    d["labels"]["extra"] = 9
    ds.write_text(json.dumps(d))
    with pytest.raises(DataError, match="dataset.json"):
        tiny_task.check()


def test_benchmark_task_files_load_and_name_their_datasets(tmp_path: Path) -> None:
    """The held-out tasks of BENCHMARKS.md session 16 are task files beside the benchmarks (made by
    benchmarks/heldout_demo.py, not shipped): each loads, and its datasets are the ones that script writes."""
    import sys

    folder = Path(__file__).resolve().parents[2] / "benchmarks"
    sys.path.insert(0, str(folder))
    try:
        from heldout_demo import TASKS
    finally:
        sys.path.remove(str(folder))
    files = sorted((folder / "tasks").glob("*.yaml"))
    assert {f.stem for f in files} == set(TASKS)
    for f in files:
        task = load_task(f, data_root=tmp_path)
        _, source, target = TASKS[task.name]
        assert (task.source_dir, task.target_dir) == (tmp_path / source, tmp_path / target)
        assert task.name not in shipped_tasks() and task.num_classes == 4

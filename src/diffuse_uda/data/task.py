"""A UDA task: a labelled source dataset, a target dataset, the shared label map and preprocessing.

Declared in a small YAML file (see ``src/diffuse_uda/tasks/``). The target dataset's
``imagesTr`` are the unlabelled training images; its ``imagesTs``/``labelsTs`` are the held-out
test split that only :mod:`diffuse_uda.evaluation` reads labels from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from diffuse_uda.config import PreprocessingConfig, StrictModel
from diffuse_uda.data.dataset_json import load_dataset_json
from diffuse_uda.errors import ConfigError, DataError

DATA_ROOT_ENV = "DIFFUSE_UDA_DATA"


class TaskConfig(StrictModel):
    name: str
    description: str = ""
    source: str
    target: str
    labels: dict[str, int]
    preprocessing: PreprocessingConfig = PreprocessingConfig()


def shipped_tasks() -> dict[str, Path]:
    """Task YAML files installed with the package, by name."""
    folder = resources.files("diffuse_uda") / "tasks"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def default_data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV, "data"))


@dataclass(frozen=True)
class Task:
    config: TaskConfig
    source_dir: Path
    target_dir: Path
    yaml_path: Path | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def labels(self) -> dict[str, int]:
        return dict(self.config.labels)

    @property
    def num_classes(self) -> int:
        return max(self.config.labels.values()) + 1

    @property
    def preprocessing(self) -> PreprocessingConfig:
        return self.config.preprocessing

    @property
    def num_channels(self) -> int:
        return load_dataset_json(self.source_dir).num_channels

    @property
    def is_colour_photo(self) -> bool:
        return load_dataset_json(self.source_dir).is_colour_photo

    def check(self) -> None:
        """Both datasets exist and agree with the task's label map and each other's channels."""
        for role, folder in (("source", self.source_dir), ("target", self.target_dir)):
            if not folder.is_dir():
                raise DataError(folder, f"{role} dataset of task {self.name!r} does not exist "
                                        "(import it first: see `diffuse-uda import --help`)")
            info = load_dataset_json(folder)
            if info.labels != self.config.labels:
                raise DataError(folder / "dataset.json",
                                f"labels {info.labels} differ from task {self.name!r} labels {self.config.labels}")
        src, tgt = load_dataset_json(self.source_dir), load_dataset_json(self.target_dir)
        if src.num_channels != tgt.num_channels:
            raise DataError(self.target_dir / "dataset.json",
                            f"{tgt.num_channels} channels but the source has {src.num_channels}")

    def with_preprocessing(self, overrides: dict[str, Any]) -> Task:
        """The same task with some preprocessing settings replaced (validated)."""
        if not overrides:
            return self
        merged = {**self.config.preprocessing.model_dump(), **overrides}
        try:
            prep = PreprocessingConfig.model_validate(merged)
        except ValidationError as exc:
            raise ConfigError(f"invalid preprocessing override {overrides}: {exc}") from exc
        return Task(self.config.model_copy(update={"preprocessing": prep}), self.source_dir, self.target_dir,
                    self.yaml_path)

    def resolved(self) -> Task:
        """The same task with absolute dataset folders (so a record of it does not depend on the cwd)."""
        return Task(self.config, self.source_dir.resolve(), self.target_dir.resolve(), self.yaml_path)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.model_dump(mode="json"), "source_dir": str(self.source_dir),
                "target_dir": str(self.target_dir)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Task:
        return cls(TaskConfig.model_validate(d["config"]), Path(d["source_dir"]), Path(d["target_dir"]))


def _resolve_dataset(value: str, data_root: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else data_root / path


def load_task(name_or_path: str | Path, data_root: str | Path | None = None) -> Task:
    """Load a task by shipped name (``mscmr-bssfp2lge``) or YAML path; dataset folders resolve
    against ``data_root`` (default: ``$DIFFUSE_UDA_DATA`` or ``./data``)."""
    root = Path(data_root) if data_root is not None else default_data_root()
    path = Path(name_or_path)
    if not path.suffix:
        tasks = shipped_tasks()
        if str(name_or_path) not in tasks:
            raise ConfigError(f"unknown task {name_or_path!r}; shipped tasks: {', '.join(sorted(tasks))}, "
                              "or give a path to a task YAML file")
        path = tasks[str(name_or_path)]
    if not path.is_file():
        raise DataError(path, "task file does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
        config = TaskConfig.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        raise DataError(path, f"invalid task file: {exc}") from exc
    if config.labels.get("background", None) != 0:
        raise DataError(path, "labels must map 'background' to 0")
    return Task(config, _resolve_dataset(config.source, root), _resolve_dataset(config.target, root), path)

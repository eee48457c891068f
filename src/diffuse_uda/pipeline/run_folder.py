"""The run-folder contract: what a run was asked to be, and whether a folder may be reused for it.

A run folder holds ``run.json`` (a :class:`RunManifest`), the model bundle, the resume checkpoint,
the training log and, after evaluation, ``evaluation/`` and ``predictions_target_test/``. Its
manifest records the *request* it was made for (:class:`RunRequest`: method, resolved settings,
task and the content fingerprints of every input dataset) next to what it produced.

The rule every caller goes through (:meth:`RunFolder.open`): a folder is reused only when its
recorded request equals the new one. A complete match is reused, an incomplete match resumes, and
anything else is refused with an error that says what differs, unless ``force`` is given, in which
case the old outputs are removed and the run is made again. Nothing is ever silently reused.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from diffuse_uda.data.fingerprint import dataset_fingerprint, path_fingerprint
from diffuse_uda.data.io import atomic_write_json, remove_stale_temporaries
from diffuse_uda.errors import ConfigError, DataError

RUN_MANIFEST = "run.json"
MANIFEST_FORMAT = 2
EVALUATION = "evaluation"
PREDICTIONS = "predictions_target_test"
# Everything a run writes into its folder (extra method outputs are recorded in the manifest).
STANDARD_OUTPUTS: tuple[str, ...] = ("model.pt", "checkpoint_last.pt", "training_log.csv", EVALUATION, PREDICTIONS)

OpenState = Literal["fresh", "resume", "complete"]


class InputRecord(BaseModel):
    """One input of a run: its resolved absolute path and a digest of its contents."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str
    digest: str


# Sections of recorded settings (a stage's {"diffusion": ..., "synthesis": ...}) and how to read an older
# record with the current schema. Registered by the modules that own those settings.
_SECTION_SCHEMAS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register_settings_section(key: str, upgrade: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """``upgrade(record)`` returns the record as the current schema writes it (new fields at their defaults)."""
    _SECTION_SCHEMAS[key] = upgrade


def _upgrade_section(upgrade: Callable[[dict[str, Any]], dict[str, Any]], record: Any) -> Any:
    if not isinstance(record, dict):
        return record
    try:
        return json.loads(json.dumps(upgrade(record)))
    except (ValueError, TypeError):  # not valid under the current schema: left as recorded (it will not match)
        return record


def _upgrade_run_config(record: dict[str, Any]) -> dict[str, Any]:
    from diffuse_uda.config import RunConfig

    return RunConfig.model_validate(record, context={"stored": True}).model_dump(mode="json")


register_settings_section("segmentation", _upgrade_run_config)


def dataset_input(dataset_dir: Path, with_labels: bool) -> InputRecord:
    """A canonical dataset as an input: dataset.json and imagesTr (+ labelsTr when ``with_labels``)."""
    return InputRecord(path=str(Path(dataset_dir).resolve()),
                       digest=dataset_fingerprint(Path(dataset_dir), ("Tr",), with_labels))


def file_input(path: Path) -> InputRecord:
    """A file (or every file of a folder) as an input."""
    return InputRecord(path=str(Path(path).resolve()), digest=path_fingerprint(Path(path)))


class RunRequest(BaseModel):
    """What a run is asked to be. Two requests are the same run exactly when they are equal."""

    model_config = ConfigDict(extra="forbid")
    method: str
    config: dict[str, Any]
    # The method's options with every default filled in: a changed default is a different request.
    options: dict[str, Any] = Field(default_factory=dict)
    task: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, InputRecord] = Field(default_factory=dict)

    @field_validator("config", "options", "task")
    @classmethod
    def _as_stored(cls, value: dict[str, Any]) -> dict[str, Any]:
        # The form it has once written to JSON (tuples become lists), so comparisons are exact.
        return json.loads(json.dumps(value))

    def upgraded(self) -> RunRequest:
        """This (recorded) request read with the current schema: a setting or method option added after it
        was recorded takes its default value, which by the toolkit's rule is the behaviour the run had
        before the setting existed. A changed value, or a changed default of an existing field, still
        differs. Records that do not validate are left as they are (and so do not match)."""
        config = dict(self.config)
        if {"network", "training"} <= set(config):  # a training run's RunConfig
            config = _upgrade_section(_upgrade_run_config, config)
        else:
            config = {k: _upgrade_section(_SECTION_SCHEMAS[k], v) if k in _SECTION_SCHEMAS else v
                      for k, v in config.items()}
        options = self.options
        if options:
            from diffuse_uda.methods.registry import available_methods

            method = available_methods().get(self.method)
            if method is not None:
                options = _upgrade_section(lambda o: method.Options.model_validate(o).model_dump(mode="json"),
                                           options)
        return self.model_copy(update={"config": config, "options": options})

    def differences(self, other: RunRequest) -> list[str]:
        """Human-readable list of what differs from ``other`` (empty when equal)."""
        if self.method != other.method:  # the rest would differ too and only hide the point
            return [f"method {other.method!r} (requested {self.method!r})"]
        out: list[str] = []
        if self.config != other.config:
            out.append("settings: " + ", ".join(_dict_diff(other.config, self.config)[:6]))
        if self.options != other.options:
            out.append("method options: " + ", ".join(_dict_diff(other.options, self.options)[:6]))
        if self.task != other.task:
            out.append("task: " + ", ".join(_dict_diff(other.task, self.task)[:6]))
        for role in sorted(set(self.inputs) | set(other.inputs)):
            mine, theirs = self.inputs.get(role), other.inputs.get(role)
            if mine == theirs:
                continue
            if mine is None or theirs is None:
                out.append(f"input {role!r} {'added' if theirs is None else 'removed'}")
            elif mine.path != theirs.path:
                out.append(f"input {role!r} is {mine.path} (was {theirs.path})")
            else:
                out.append(f"input {role!r} ({mine.path}) changed content")
        return out


def _dict_diff(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, e.g. ['training.lr: 0.001 -> 0.002']."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _dict_diff(old.get(key, "<unset>"), new.get(key, "<unset>"), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]


class RunManifest(BaseModel):
    """``run.json``: the request, the status and what the run produced."""

    model_config = ConfigDict(extra="forbid")
    format: int = MANIFEST_FORMAT
    status: Literal["running", "complete"] = "running"
    request: RunRequest
    # The task with its resolved dataset folders (Task.to_dict), for readers such as the report.
    task: dict[str, Any] = Field(default_factory=dict)
    display_name: str
    method_summary: str = ""
    oracle: bool = False
    extra_labelled: list[str] = Field(default_factory=list)
    n_labelled_samples: int | None = None
    n_target_samples: int | None = None
    preprocessing_seconds: float | None = None
    train_seconds: float | None = None
    peak_rss_mb: float | None = None
    resumed_from_step: int | None = None
    iterations: int | None = None
    device: str | None = None
    peak_gpu_memory_mb: float | None = None
    # Processes that trained it (torchrun); the batch size in the request is the global one.
    world_size: int | None = None
    # Method-specific facts (e.g. HEAL: adaptation and generator seconds, the source segmenter used).
    details: dict[str, Any] = Field(default_factory=dict)
    # Files the run wrote besides the standard ones (removed with it by --force).
    outputs: list[str] = Field(default_factory=list)

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def config(self) -> dict[str, Any]:
        return self.request.config


class RunFolder:
    """One run folder. Every reader and writer of ``run.json`` goes through this class."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def manifest_path(self) -> Path:
        return self.path / RUN_MANIFEST

    @property
    def bundle_path(self) -> Path:
        return self.path / "model.pt"

    @property
    def evaluation_dir(self) -> Path:
        return self.path / EVALUATION

    @property
    def predictions_dir(self) -> Path:
        return self.path / PREDICTIONS

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> RunManifest:
        """The manifest; DataError when there is none or it is not one this version can read."""
        if not self.manifest_path.is_file():
            raise DataError(self.path, f"not a run folder (no {RUN_MANIFEST})")
        try:
            raw = json.loads(self.manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(self.manifest_path, f"unreadable run manifest ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
            raise DataError(self.manifest_path, "run manifest of an older diffuse-uda version (format "
                                                f"{raw.get('format') if isinstance(raw, dict) else '?'}, this "
                                                f"version writes {MANIFEST_FORMAT}); rerun with --force to redo it")
        try:
            return RunManifest.model_validate(raw)
        except ValidationError as exc:
            raise DataError(self.manifest_path, f"invalid run manifest: {exc}") from None

    def is_complete(self) -> bool:
        try:
            return self.manifest().status == "complete"
        except DataError:
            return False

    def matches(self, request: RunRequest) -> bool:
        """True when the folder holds (complete or not) a run of exactly ``request``."""
        try:
            return self.manifest().request.upgraded() == request
        except DataError:
            return False

    def open(self, request: RunRequest, force: bool = False) -> OpenState:
        """Decide what to do with this folder for ``request`` (see the module docstring).

        Returns "complete" (reuse), "resume" (same request, unfinished) or "fresh" (empty, or cleared
        because ``force`` was given). Raises ConfigError on a mismatch without ``force``."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path}: run folder path is a file, not a folder")
        if not self.path.exists():
            return "fresh"
        remove_stale_temporaries(self.path)
        if not self.manifest_path.is_file():
            leftovers = [n for n in STANDARD_OUTPUTS if (self.path / n).exists()]
            if leftovers and not force:
                raise ConfigError(f"{self.path}: holds run outputs ({', '.join(leftovers)}) but no {RUN_MANIFEST}; "
                                  "pass --force to replace them, or choose another output folder")
            self.clear()
            return "fresh"
        try:
            previous = self.manifest()
        except DataError as exc:
            if not force:
                raise ConfigError(f"{exc}") from None
            self.clear()
            return "fresh"
        diffs = request.differences(previous.request.upgraded())
        if diffs:
            if not force:
                raise ConfigError(
                    f"{self.path} holds a {previous.status} {previous.method!r} run made with other settings or "
                    f"inputs ({'; '.join(diffs)}). Pass --force to replace it, or choose another output folder.")
            self.clear(previous)
            return "fresh"
        if previous.status == "complete":
            return "complete"
        return "resume"

    def clear(self, previous: RunManifest | None = None) -> None:
        """Remove everything a run writes here (the folder itself and unrelated files stay)."""
        names = set(STANDARD_OUTPUTS) | {RUN_MANIFEST}
        if previous is not None:
            names |= set(previous.outputs)
        for name in names:
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()

    def write(self, manifest: RunManifest) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.manifest_path, manifest.model_dump(mode="json"))

"""Stage manifests: every pipeline stage writes into its own folder and records what it was made
from in ``stage.json`` (a :class:`StageManifest`): its settings, the content fingerprints of its
inputs (keyed by role, each with its resolved path), its seed and timings.

The reuse rule is the run folder's (:mod:`diffuse_uda.pipeline.run_folder`): a stage whose manifest
says ``complete`` for exactly these settings and inputs is skipped; an unfinished one with the same
request resumes (training stages from their last checkpoint, writing stages file by file, each file
atomically); a stage made from anything else is refused with the differences, or, with ``force``,
emptied and made again. It is never silently reused.

Under torchrun rank 0 makes these decisions and writes the manifests; a stage's work runs on every
rank when the stage is distributed (training, synthesis), else on rank 0 alone while the others wait.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from diffuse_uda.data.io import atomic_write_json, read_json_record, remove_stale_temporaries
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.pipeline.run_folder import InputRecord, RunRequest
from diffuse_uda.training import distributed

STAGE_MANIFEST = "stage.json"


class StageManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: str
    status: Literal["running", "complete"] = "running"
    config: dict[str, Any]
    inputs: dict[str, InputRecord]
    seed: int
    started: str
    seconds: float | None = None
    result: dict[str, Any] = Field(default_factory=dict)

    def request(self) -> RunRequest:
        return RunRequest(method=self.stage, config=self.config, inputs=self.inputs)


def read_manifest(folder: Path) -> StageManifest | None:
    """The stage manifest of ``folder``, None when there is none; DataError when it is unreadable."""
    return read_json_record(Path(folder) / STAGE_MANIFEST, StageManifest, "not a stage manifest of this diffuse-uda "
                            "version", "; rerun with --force to redo the stage")


def _complete_for(folder: Path, request: RunRequest) -> bool:
    try:
        previous = read_manifest(folder)
    except DataError:
        return False
    return bool(previous and previous.status == "complete" and previous.request().upgraded() == request)


def _clear(folder: Path) -> None:
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def run_stage(name: str, folder: Path, config: dict[str, Any], inputs: dict[str, InputRecord], seed: int,
              fn: Callable[[Path], Any], log: Callable[[str], None] = print,
              shared: Sequence[Path] = (), force: bool = False, on_all_ranks: bool = False) -> Path:
    """Run ``fn(folder)`` unless the stage is complete for these settings and inputs.

    ``shared``: the same stage's folders in other runs (e.g. the rows of an ablation). One that is
    complete for exactly this request is returned instead of recomputing it; it is only read, never
    written. ``on_all_ranks``: under torchrun, ``fn`` runs on every rank (a distributed stage; rank 0's
    result is recorded); else on rank 0 alone while the others wait.
    """
    prepared = distributed.on_main(_prepare, name, Path(folder), config, inputs, seed, log, shared, force)
    if isinstance(prepared, Path):
        return prepared
    folder = Path(folder)
    t0 = time.perf_counter()
    result = fn(folder) if on_all_ranks else distributed.on_main(fn, folder)
    distributed.on_main(_complete, folder, prepared, result, time.perf_counter() - t0)
    return folder


def _prepare(name: str, folder: Path, config: dict[str, Any], inputs: dict[str, InputRecord], seed: int,
             log: Callable[[str], None], shared: Sequence[Path], force: bool) -> Path | StageManifest:
    """The folder to reuse, or the manifest of a stage to run (written as "running")."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: stage folder path is a file, not a folder")
    config = json.loads(json.dumps(config))  # the form it has once stored, so comparisons are exact
    request = RunRequest(method=name, config=config, inputs=inputs)
    try:
        previous = read_manifest(folder)
    except DataError as exc:
        if not force:
            raise
        log(f"[{name}] {exc}: redoing it (--force)")
        previous = None
        _clear(folder)
    if previous is not None:
        diffs = request.differences(previous.request().upgraded())
        if not diffs and previous.status == "complete":
            log(f"[{name}] complete, skipped ({folder})")
            return folder
        if diffs:
            if not force:
                raise ConfigError(f"[{name}] {folder} was made with other settings or inputs ({'; '.join(diffs)}). "
                                  "Pass --force to redo it, or choose another output folder.")
            log(f"[{name}] settings or inputs changed ({'; '.join(diffs)}): redoing it (--force)")
            _clear(folder)
            previous = None
    elif folder.is_dir() and any(folder.iterdir()) and not force:
        raise ConfigError(f"[{name}] {folder} holds files but no {STAGE_MANIFEST}; pass --force to replace them")
    for other in shared:
        if Path(other).resolve() != folder.resolve() and _complete_for(Path(other), request):
            log(f"[{name}] identical stage complete in {other}, reused")
            return Path(other)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    manifest = StageManifest(stage=name, config=config, inputs=inputs, seed=seed,
                             started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_json(folder / STAGE_MANIFEST, manifest.model_dump(mode="json"))
    log(f"[{name}] {'resuming' if previous is not None else 'running'} -> {folder}")
    return manifest


def _complete(folder: Path, manifest: StageManifest, result: Any, seconds: float) -> None:
    manifest.status = "complete"
    manifest.seconds = seconds
    if isinstance(result, dict):
        manifest.result = json.loads(json.dumps(result, default=str))
    atomic_write_json(folder / STAGE_MANIFEST, manifest.model_dump(mode="json"))

"""Stage manifests: every pipeline stage writes into its own folder and records its config, the
checksums of its inputs, its seed and timings in ``stage.json``. A stage whose manifest says
``complete`` with the same config and inputs is skipped on a rerun; an incomplete one is resumed
(training stages from their last checkpoint, writing stages file by file, each file atomically).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from diffuse_uda.data.io import atomic_write_json

STAGE_MANIFEST = "stage.json"


def fingerprint(paths: Sequence[Path]) -> dict[str, str]:
    """Checksums of a stage's inputs: sha256 of files; for folders, of their sorted names, sizes and
    the content of their small metadata files (dataset.json, stage.json, run.json)."""
    out: dict[str, str] = {}
    for path in paths:
        path = Path(path)
        h = hashlib.sha256()
        if path.is_file():
            with path.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and not p.name.startswith("."):
                    h.update(f"{p.relative_to(path)}:{p.stat().st_size}".encode())
                    if p.name in ("dataset.json", STAGE_MANIFEST, "run.json") and p.parent == path:
                        h.update(p.read_bytes())
        else:
            h.update(b"missing")
        out[str(path)] = h.hexdigest()[:16]
    return out


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / STAGE_MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def _complete_for(folder: Path, config: dict[str, Any], checksums: dict[str, str]) -> bool:
    previous = read_manifest(folder)
    return bool(previous and previous.get("status") == "complete" and previous.get("config") == config
                and previous.get("inputs") == checksums)


def run_stage(name: str, folder: Path, config: dict[str, Any], inputs: Sequence[Path], seed: int,
              fn: Callable[[Path], Any], log: Callable[[str], None] = print,
              shared: Sequence[Path] = ()) -> Path:
    """Run ``fn(folder)`` unless the stage is complete for this config and these inputs.

    ``shared``: the same stage's folders in other runs (e.g. the rows of an ablation). One that is
    complete for exactly this config and these inputs is returned instead of recomputing it; it
    is only read, never written.
    """
    folder = Path(folder)
    checksums = fingerprint(inputs)
    if _complete_for(folder, config, checksums):
        log(f"[{name}] complete, skipped ({folder})")
        return folder
    for other in shared:
        if Path(other).resolve() != folder.resolve() and _complete_for(Path(other), config, checksums):
            log(f"[{name}] identical stage complete in {other}, reused")
            return Path(other)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {"stage": name, "status": "running", "config": config, "inputs": checksums, "seed": seed,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    atomic_write_json(folder / STAGE_MANIFEST, manifest)
    log(f"[{name}] running -> {folder}")
    t0 = time.perf_counter()
    result = fn(folder)
    manifest.update(status="complete", seconds=time.perf_counter() - t0)
    if isinstance(result, dict):
        manifest["result"] = result
    atomic_write_json(folder / STAGE_MANIFEST, manifest)
    return folder

"""Content fingerprints of the files a run or stage was made from.

A finished run is reused only when what it was made from is unchanged, so its inputs are recorded
as digests of file *contents* (sha256), not of names or timestamps alone. Hashing every file of a
dataset on every call would cost seconds per bench row, so digests are cached on disk keyed by the
resolved path, size and modification time: an edited file (new mtime or size) is hashed again, an
untouched one is looked up.

The cache is an SQLite file (safe for the two benchmark processes that run side by side).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from diffuse_uda.data.dataset_json import image_paths, label_path, list_cases
from diffuse_uda.errors import DataError

DIGEST_CACHE_ENV = "DIFFUSE_UDA_DIGEST_CACHE"
_lock = threading.Lock()


def _cache_path() -> Path:
    explicit = os.environ.get(DIGEST_CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("DIFFUSE_UDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "diffuse-uda")
    return Path(base) / "digests.sqlite"


def _connect() -> sqlite3.Connection | None:
    """The digest cache, or None when it cannot be opened (digests are then always computed)."""
    path = _cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30.0)
        conn.execute("CREATE TABLE IF NOT EXISTS digests (path TEXT PRIMARY KEY, size INTEGER, "
                     "mtime_ns INTEGER, sha256 TEXT)")
        return conn
    except (OSError, sqlite3.Error):
        return None


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(paths: Iterable[Path]) -> dict[Path, str]:
    """sha256 of each file's contents (resolved path -> hex digest), through the on-disk cache."""
    resolved = [Path(p).resolve() for p in paths]
    out: dict[Path, str] = {}
    with _lock:
        conn = _connect()
        try:
            for path in resolved:
                try:
                    st = path.stat()
                except FileNotFoundError:
                    raise DataError(path, "input file does not exist (a broken link, or removed while running)")\
                        from None
                if not path.is_file():
                    raise DataError(path, "input is not a file")
                row = None
                if conn is not None:
                    row = conn.execute("SELECT size, mtime_ns, sha256 FROM digests WHERE path = ?",
                                       (str(path),)).fetchone()
                if row is not None and row[0] == st.st_size and row[1] == st.st_mtime_ns:
                    out[path] = row[2]
                    continue
                digest = _hash_file(path)
                out[path] = digest
                if conn is not None:
                    conn.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?)",
                                 (str(path), st.st_size, st.st_mtime_ns, digest))
            if conn is not None:
                conn.commit()
        finally:
            if conn is not None:
                conn.close()
    return out


def combined_digest(root: Path, files: Sequence[Path]) -> str:
    """One digest over the files' names (relative to ``root``) and contents, in a stable order."""
    root = Path(root).resolve()
    digests = file_digests(files)
    h = hashlib.sha256()
    for path in sorted(digests, key=lambda p: str(p.relative_to(root)) if p.is_relative_to(root) else str(p)):
        name = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        h.update(f"{name}\0{digests[path]}\n".encode())
    return h.hexdigest()[:20]


def dataset_fingerprint(dataset_dir: Path, splits: Sequence[str] = ("Tr",), with_labels: bool = True) -> str:
    """Digest of a canonical dataset as a run reads it: dataset.json plus the images (and, when
    ``with_labels``, the labels) of ``splits``. Unlabelled target data is fingerprinted with
    ``with_labels=False``, so no target label file is opened to decide whether a run is reusable."""
    from diffuse_uda.data.dataset_json import load_dataset_json

    dataset_dir = Path(dataset_dir)
    info = load_dataset_json(dataset_dir)
    files: list[Path] = [dataset_dir / "dataset.json"]
    for split in splits:
        for case in list_cases(dataset_dir, split):
            files += image_paths(dataset_dir, split, case, info.num_channels)
            if with_labels:
                files.append(label_path(dataset_dir, split, case, info.file_ending))
    return combined_digest(dataset_dir, files)


# Manifests record timings and start dates; a folder's fingerprint is about what it holds.
MANIFEST_NAMES: tuple[str, ...] = ("stage.json", "run.json", "pipeline.json")


def folder_fingerprint(folder: Path, exclude: Sequence[str] = MANIFEST_NAMES) -> str:
    """Digest of every non-hidden file under ``folder`` (names and contents); ``exclude``: top-level
    names to leave out (by default the manifests, which record timings)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "input folder does not exist")
    files = [p for p in folder.rglob("*")
             if not any(part.startswith(".") for part in p.relative_to(folder).parts)
             and p.relative_to(folder).parts[0] not in exclude and (p.is_file() or p.is_symlink())]
    return combined_digest(folder, files)


def path_fingerprint(path: Path) -> str:
    """A file's content digest, or a folder's (see :func:`folder_fingerprint`)."""
    path = Path(path)
    if path.is_dir():
        return folder_fingerprint(path)
    return file_digests([path])[path.resolve()][:20]

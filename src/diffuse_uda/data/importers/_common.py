"""Shared machinery for importers: staged (all-or-nothing) dataset creation, idempotency,
seeded splits and parallel per-file conversion with a progress bar."""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from diffuse_uda.data.dataset_json import DatasetInfo, load_dataset_json, write_dataset_json
from diffuse_uda.data.io import write_nifti
from diffuse_uda.errors import ConfigError, DataError

T = TypeVar("T")
R = TypeVar("R")
# Told (dataset folder, written) once per output dataset; written is False when an existing complete
# import with the same settings was kept and no work was done.
ImportReport = Callable[[Path, bool], None]

# Threads suffice: JPEG decoding and gzip compression release the GIL, and the machine may be shared.
MAX_WORKERS = 4
FOLDERS: tuple[str, ...] = ("imagesTr", "labelsTr", "imagesTs", "labelsTs")
_CASE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# When this process (near enough) started: leftovers older than it cannot be this process's work.
_STARTED = time.time()


def check_test_fraction(test_fraction: float) -> None:
    """ConfigError unless 0 <= test_fraction < 1."""
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")


def check_case_id(case_id: str, source: Path) -> None:
    """Case ids become file names: keep them to a portable character set."""
    if not _CASE_ID_RE.match(case_id):
        raise DataError(source, f"cannot derive a case id from this name ({case_id!r}); use letters, digits, "
                                "'_', '-' and '.' only")


def count_files(dataset_dir: Path) -> dict[str, int]:
    """Number of visible files in each canonical sub-folder (0 when absent)."""
    counts: dict[str, int] = {}
    for name in FOLDERS:
        folder = dataset_dir / name
        counts[name] = sum(1 for p in folder.iterdir() if not p.name.startswith(".")) if folder.is_dir() else 0
    return counts


def _staging_pattern(out_dir: Path) -> re.Pattern[str]:
    """Names of `out_dir`'s temporaries: staging folders ``.{name}.tmp-[{pid}-]{hex}`` (the pid since
    it was added) and io's atomic-write files ``.{name}.{hex}.tmp{suffix}``."""
    name = re.escape(out_dir.name)
    return re.compile(rf"^\.{name}\.(?:tmp-(?:(?P<pid>\d+)-)?[0-9a-f]{{12}}|[0-9a-f]{{12}}\.tmp(?:\..*)?)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or cannot tell: assume alive
    return True


def remove_stale_staging(out_dir: Path) -> list[Path]:
    """Delete the temporaries a killed import of `out_dir` left next to it; return what was removed.

    Stale means: named like our staging folders or atomic-write temp files for this output, last
    modified before this process started, and (when the name records one) from a process that is
    gone. A concurrent import's staging folder is younger or has a live pid, so it is left alone.
    """
    parent = out_dir.parent
    if not parent.is_dir():
        return []
    pattern = _staging_pattern(out_dir)
    removed = []
    for path in parent.iterdir():
        m = pattern.match(path.name)
        if m is None:
            continue
        try:
            if path.lstat().st_mtime >= _STARTED or (m["pid"] is not None and _pid_alive(int(m["pid"]))):
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            continue  # another process cleaned it up first
        removed.append(path)
    return removed


def already_imported(out_dir: Path, settings: dict[str, Any]) -> bool:
    """True when `out_dir` holds a complete import made with the same settings.

    First removes stale leftovers of a killed import of `out_dir` (see remove_stale_staging).
    An absent or empty folder means "not yet"; anything else that is not a matching complete
    import is an error rather than something to overwrite (it may be the user's data).
    """
    remove_stale_staging(out_dir)
    if not out_dir.exists() or (out_dir.is_dir() and not any(out_dir.iterdir())):
        return False
    if not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    try:
        info = load_dataset_json(out_dir)
    except DataError as exc:
        raise DataError(out_dir, f"exists but is not a complete import ({exc.problem}); "
                                 "remove it and run the import again") from exc
    previous = info.provenance.get("import_settings")
    if previous != settings:
        raise DataError(out_dir, f"exists from an import with different settings ({previous}, now {settings}); "
                                 "remove it or choose another output folder")
    expected = info.provenance.get("file_counts")
    if expected != count_files(out_dir):
        raise DataError(out_dir, f"exists but its file counts {count_files(out_dir)} differ from those recorded "
                                 f"in dataset.json ({expected}); remove it and run the import again")
    return True


@contextmanager
def staged_dataset(out_dir: Path) -> Iterator[Path]:
    """Yield a hidden temp folder next to `out_dir`, renamed onto it only if the block succeeds.

    Readers therefore see either no dataset or a complete one, never a partial import.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out_dir)
    # The pid lets a later run tell a killed import's leftovers from a running one's.
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    try:
        yield tmp
        if out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        try:
            os.replace(tmp, out_dir)
        except OSError as exc:
            # Another process may have finished the same import meanwhile; its result stands.
            if not (out_dir / "dataset.json").is_file():
                raise DataError(out_dir, f"cannot move the finished import into place: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def finish_dataset(tmp_dir: Path, info: DatasetInfo, settings: dict[str, Any]) -> None:
    """Record settings and file counts in the provenance and write dataset.json (last, as a marker)."""
    info.provenance["import_settings"] = settings
    info.provenance["file_counts"] = count_files(tmp_dir)
    write_dataset_json(tmp_dir, info)


def single_channel_info(out_dir: Path, modality: str, labels: dict[str, int], num_training: int,
                        description: str, reference: str, provenance: dict[str, Any]) -> DatasetInfo:
    """dataset.json content of a one-channel dataset named after its folder (``Dataset5xx_Name`` -> ``Name``)."""
    return DatasetInfo(name=out_dir.name.split("_", 1)[1], channel_names={"0": modality}, labels=dict(labels),
                       num_training=num_training, description=description, reference=reference,
                       provenance=provenance)


def write_split_dataset(out_dir: Path, cases: Mapping[str, tuple[str, T]],
                        convert: Callable[[T, Path, Path, str], R],
                        describe: Callable[[list[str], list[str], dict[str, R]], DatasetInfo],
                        settings: dict[str, Any], desc: str) -> None:
    """Stage and write one dataset of volumes: ``cases`` maps a case id to (split "Tr"/"Ts", its source);
    ``convert(source, images_dir, labels_dir, case_id)`` writes one case and returns its record;
    ``describe(train_ids, test_ids, records by case id)`` gives the dataset.json. All or nothing."""
    items = list(cases.items())
    with staged_dataset(out_dir) as tmp:
        jobs = [(src, tmp / f"images{split}", tmp / f"labels{split}", case_id) for case_id, (split, src) in items]
        records = map_progress(lambda job: convert(*job), jobs, desc=desc)
        train = [case_id for case_id, (split, _) in items if split == "Tr"]
        test = [case_id for case_id, (split, _) in items if split == "Ts"]
        by_case = {case_id: r for (case_id, _), r in zip(items, records, strict=True)}
        finish_dataset(tmp, describe(train, test, by_case), settings)


def map_progress(fn: Callable[[T], R], items: Iterable[T], desc: str) -> list[R]:
    """Apply `fn` to every item (in a small thread pool) with a progress bar; results keep input order.

    The first failure (in input order) is re-raised and pending work is cancelled.
    """
    items = list(items)
    workers = min(MAX_WORKERS, os.cpu_count() or 1, len(items))
    bar = tqdm(total=len(items), desc=desc, leave=False, disable=None)
    try:
        if workers <= 1:
            out = []
            for item in items:
                out.append(fn(item))
                bar.update()
            return out
        pool = ThreadPoolExecutor(max_workers=workers)
        try:
            futures = [pool.submit(fn, item) for item in items]
            results: list[R] = []
            for fut in futures:
                results.append(fut.result())
                bar.update()
            return results
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()


def seeded_permutation(n: int, seed: int, salt: int) -> np.ndarray:
    """A permutation of range(n) from (seed, salt): each dataset gets its own stream."""
    return np.random.default_rng([int(seed), int(salt)]).permutation(n)


def n_test_items(n: int, test_fraction: float) -> int:
    """round(test_fraction * n), but at least 1 when test_fraction > 0 and never all n."""
    if test_fraction <= 0 or n < 2:
        return 0
    return int(min(max(round(test_fraction * n), 1), n - 1))


def write_photo_channels(folder: Path, case_id: str, image: np.ndarray) -> int:
    """Write an (H, W) or (H, W, C) photo as C files {case}_{k:04d}.nii.gz of shape (H, W, 1).

    Identity affine (1 mm pixels): photos carry no physical geometry. Returns C.
    """
    channels = image[..., None] if image.ndim == 2 else image
    for k in range(channels.shape[2]):
        write_nifti(folder / f"{case_id}_{k:04d}.nii.gz", np.ascontiguousarray(channels[..., k : k + 1]))
    return int(channels.shape[2])

"""The training log: one long-format CSV (``step,key,value``) per run.

Long format, because methods log different keys in different phases (pseudo-label self-training
logs one loss during its warm-up and three after), and a wide CSV with one header row cannot hold
that. Rows after the checkpoint a run resumes from are dropped (they will be logged again), and a
run that starts from step 0 starts a new log, so a crash never leaves duplicated rows.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

from diffuse_uda.errors import DataError

HEADER = ("step", "key", "value")


class TrainingLog:
    """Appends ``step,key,value`` rows; opened at the step training (re)starts from."""

    def __init__(self, path: Path, start_step: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_step == 0:
            self.path.unlink(missing_ok=True)
        else:
            self._truncate(start_step)
        new = not self.path.is_file() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(HEADER)
            self._file.flush()

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        with self.path.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or tuple(rows[0]) != HEADER:
            # A log in another layout (older version): start over rather than mix layouts.
            self.path.unlink()
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with tmp.open("w", newline="") as fh:
            csv.writer(fh).writerows(kept)
        os.replace(tmp, self.path)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        for key, value in values.items():
            self._writer.writerow([step, key, f"{float(value):.6g}"])
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_training_log(path: Path) -> dict[str, list[tuple[int, float]]]:
    """key -> [(step, value), ...] in logged order."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "training log not found")
    out: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) != HEADER:
            raise DataError(path, f"not a training log (expected the header {','.join(HEADER)}, got {header})")
        for row in reader:
            try:
                step, key, value = int(row[0]), row[1], float(row[2])
            except (IndexError, ValueError) as exc:
                raise DataError(path, f"malformed training log row {row} ({exc})") from None
            out.setdefault(key, []).append((step, value))
    return out


def training_log_records(path: Path) -> list[dict[str, float]]:
    """The log as one record per step ({"step": s, key: value, ...}), for plotting."""
    by_step: dict[int, dict[str, float]] = {}
    for key, points in read_training_log(path).items():
        for step, value in points:
            by_step.setdefault(step, {"step": float(step)})[key] = value
    return [by_step[s] for s in sorted(by_step)]

"""Error types shown to users. Every message names the offending file and the problem."""

from __future__ import annotations

from pathlib import Path


class DiffuseUDAError(Exception):
    """Base class for errors that the CLI prints without a traceback."""


class DataError(DiffuseUDAError, ValueError):
    """Bad input data: names the file (or folder) and what is wrong with it."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")


class ConfigError(DiffuseUDAError, ValueError):
    """Invalid configuration or command-line option."""

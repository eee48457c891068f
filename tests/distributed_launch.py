"""Run a function on several local CPU processes joined the way torchrun joins them (gloo), for the
distributed tests; and watch which files a process writes.

``run_ranks(fn, *args)`` spawns ``world`` processes with torchrun's environment variables (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so the code under test joins the
process group exactly as under ``torchrun``; ``fn(rank, *args)`` must be a module-level function, and
what it returns comes back in rank order.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

# Kept short: a test that deadlocks fails within minutes instead of the production default (hours).
TIMEOUT_MIN = "3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, world: int, port: int, fn: Callable[..., Any], args: tuple, results: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), DIFFUSE_UDA_DIST_TIMEOUT_MIN=TIMEOUT_MIN)
    torch.set_num_threads(1)  # tiny models; and the ranks share the machine's cores
    from diffuse_uda.training import distributed

    try:
        torch.save(fn(rank, *args), Path(results) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


def run_ranks(fn: Callable[..., Any], *args: Any, world: int = 2) -> list[Any]:
    """``[fn(0, *args), ..., fn(world - 1, *args)]``, each computed in its own process of one group.
    A process that fails or dies makes this raise (torch.multiprocessing's Process*Exception)."""
    with tempfile.TemporaryDirectory() as results:
        mp.spawn(_entry, args=(world, free_port(), fn, args, results), nprocs=world, join=True)
        return [torch.load(Path(results) / f"rank{r}.pt", weights_only=False) for r in range(world)]


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def watch_writes(roots: Sequence[Path]) -> list[tuple[str, str]]:
    """From now on, record ``(event, path)`` for every file or folder this process creates, writes,
    renames, or removes under ``roots`` (Python audit events: this sees the writes of every library
    that goes through Python's file functions, and the renames that finish atomic writes)."""
    prefixes = tuple(str(Path(r).resolve()) + os.sep for r in roots)
    seen: list[tuple[str, str]] = []

    def under(path: Any) -> str | None:
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str | os.PathLike):
            return None
        full = os.path.abspath(os.fspath(path))
        return full if (full + os.sep).startswith(prefixes) else None

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
            if writing and (full := under(path)):
                seen.append((event, full))
        elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
            target = args[1] if event == "os.rename" else args[0]
            if full := under(target):
                seen.append((event, full))

    sys.addaudithook(hook)
    return seen

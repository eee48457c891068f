"""One process or many: the torchrun environment, ranks, and the few collectives the trainers use.

``torchrun --nproc-per-node N -m diffuse_uda.cli train ...`` starts N processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; the first helper called here then
joins the process group (:func:`setup`). Without those variables (or with ``WORLD_SIZE=1``) every helper
is the single-process identity: rank 0 of 1, no process group, no communication. Single-process runs
are therefore exactly those of code that never heard of distribution.

Backends: NCCL when every process on the node can have a GPU of its own (each process on the GPU of
its ``LOCAL_RANK``), gloo otherwise, with the processes computing on the CPU under ``device=auto``
(more processes than GPUs on a node: NCCL cannot share a GPU between ranks);
``DIFFUSE_UDA_DIST_BACKEND`` overrides. Barriers and small Python objects always go through a gloo
group, so CPU tensors can be reduced in an NCCL job, and rank 0 may run a long CPU-side stage
(evaluation, a report) while the others wait: that wait is bounded by ``DIFFUSE_UDA_DIST_TIMEOUT_MIN``
(default 180 minutes).

Rank 0 writes. :func:`on_main` runs a function on rank 0 while the other ranks wait and receive its
result (or its failure). Inside such a section this process behaves as a single process (world size
1), so a stage that is not distributed (pseudo-labelling, evaluation, the report) runs exactly as it
would alone, even when it trains a network.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from diffuse_uda.errors import ConfigError, DiffuseUDAError

__all__ = [
    "RankFailed",
    "all_gather_object",
    "all_reduce_",
    "all_reduce_gradients",
    "barrier",
    "broadcast_modules_",
    "default_backend",
    "gpu_per_process",
    "is_distributed",
    "is_main",
    "local_device",
    "local_rank",
    "main_first",
    "on_main",
    "rank",
    "rank_seed",
    "setup",
    "shard",
    "shutdown",
    "world_size",
]

T = TypeVar("T")

DEFAULT_TIMEOUT_MIN = 180.0


class RankFailed(DiffuseUDAError):
    """Rank 0 failed in a section the other ranks were waiting for (its error is in the message)."""


@dataclass
class _State:
    coordination: Any = None  # the gloo group for barriers and objects
    owns_group: bool = False  # we initialised the default group (and so destroy it)
    solo: int = 0  # depth of main-only sections this process is in
    warned_cpu: bool = False  # said once that device=auto computes on the CPU (too few GPUs)


_STATE = _State()


def _env_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _local_world() -> int:
    """Processes on this node (torchrun's ``LOCAL_WORLD_SIZE``; the world size when it is not set)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))


def gpu_per_process() -> bool:
    """Whether every process on this node can compute on a CUDA GPU of its own."""
    return torch.cuda.is_available() and torch.cuda.device_count() >= _local_world()


def default_backend() -> str:
    """``DIFFUSE_UDA_DIST_BACKEND`` if set; NCCL when each process has a GPU of its own, else gloo."""
    return os.environ.get("DIFFUSE_UDA_DIST_BACKEND") or ("nccl" if gpu_per_process() else "gloo")


def setup() -> bool:
    """Join the torchrun process group when this process was started as one of several; idempotent.
    Returns whether the process is part of a multi-process group."""
    if _env_world() <= 1 and not dist.is_initialized():
        return False
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    timeout = timedelta(minutes=float(os.environ.get("DIFFUSE_UDA_DIST_TIMEOUT_MIN", DEFAULT_TIMEOUT_MIN)))
    if not dist.is_initialized():
        backend = default_backend()
        if gpu_per_process():
            torch.cuda.set_device(local_rank())
        dist.init_process_group(backend=backend, timeout=timeout)  # env:// from torchrun's variables
        _STATE.owns_group = True
    if dist.get_world_size() <= 1:
        return False
    if _STATE.coordination is None:
        _STATE.coordination = (dist.group.WORLD if dist.get_backend() == "gloo"
                               else dist.new_group(backend="gloo", timeout=timeout))
    return True


def shutdown(synchronise: bool = True) -> None:
    """Leave the process group this module joined (at the end of a command). After a clean run every rank first
    waits for the others: a rank that tears gloo down while a peer still talks to it can abort the peer at exit
    (seen as "terminate called without an active exception"). After an error nobody waits (the peers may be gone)."""
    if _STATE.owns_group and dist.is_initialized():
        if synchronise and _STATE.coordination is not None:  # set only when several ranks share the group
            dist.barrier(group=_STATE.coordination)
        dist.destroy_process_group()
    _STATE.coordination, _STATE.owns_group = None, False


def is_distributed() -> bool:
    """True when this process shares its work with other ranks right now (not inside :func:`on_main`)."""
    return _STATE.solo == 0 and setup()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """Rank 0: the process that writes checkpoints, logs, manifests and bundles."""
    return rank() == 0


def local_rank() -> int:
    """This process's index on its node (its GPU), also inside a main-only section."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def local_device(name: str = "auto") -> torch.device:
    """The device this process computes on: ``auto`` is CUDA when available, else the CPU; under
    torchrun ``auto`` and ``cuda`` mean the GPU of this process's local rank. With more processes on a
    node than GPUs, ``auto`` is the CPU (a warning says so) and ``cuda`` an error. An explicit
    ``cuda:N`` is kept."""
    multi = _env_world() > 1
    if name == "auto":
        name = "cuda" if (gpu_per_process() if multi else torch.cuda.is_available()) else "cpu"
        if multi and name == "cpu" and torch.cuda.is_available() and not _STATE.warned_cpu:
            _STATE.warned_cpu = True
            warnings.warn(f"{_local_world()} processes on this node but {torch.cuda.device_count()} CUDA GPU(s): "
                          "device=auto computes on the CPU; start at most one process per GPU to use them",
                          stacklevel=2)
    if name == "cuda" and multi:
        if not gpu_per_process():
            raise ConfigError(f"device 'cuda' with {_local_world()} processes on this node but "
                              f"{torch.cuda.device_count()} CUDA GPU(s) visible: start at most one process per GPU "
                              "(torchrun --nproc-per-node), or use device=cpu")
        return torch.device("cuda", local_rank())
    return torch.device(name)


def rank_seed(seed: int, rank_: int) -> int:
    """The seed of a rank's own random stream: ``seed`` itself on rank 0 (so one process draws exactly
    what it always drew), a hash of (seed, rank) on the others."""
    if rank_ == 0:
        return seed
    digest = hashlib.sha256(f"diffuse-uda/{seed}/rank{rank_}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def shard(global_batch: int, what: str) -> slice:
    """This rank's slice of a global batch of ``global_batch`` items (equal shares; ConfigError when the
    batch does not split evenly, since unequal shares would weigh samples unequally in the averaged
    gradient)."""
    world = world_size()
    if global_batch % world:
        raise ConfigError(f"{what}={global_batch} is the global batch and must be divisible by the number of "
                          f"processes ({world})")
    per_rank = global_batch // world
    return slice(rank() * per_rank, (rank() + 1) * per_rank)


# ---------------------------------------------------------------------- sections
@contextlib.contextmanager
def _solo() -> Iterator[None]:
    _STATE.solo += 1
    try:
        yield
    finally:
        _STATE.solo -= 1


@dataclass
class _Outcome:
    ok: bool
    value: Any = None
    error: str = ""


def _run_on_main(fn: Callable[..., T], args: Sequence[Any], kwargs: dict[str, Any], share: bool) -> T | None:
    """Rank 0 runs ``fn`` (as a single process) while the others wait; they get its result when
    ``share``, and raise :class:`RankFailed` when it failed."""
    box: list[Any] = [None]
    result: Any = None
    if rank() == 0:
        try:
            with _solo():
                result = fn(*args, **kwargs)
        except BaseException as exc:
            box[0] = _Outcome(False, error=f"{type(exc).__name__}: {exc}")
            dist.broadcast_object_list(box, src=0, group=_STATE.coordination)
            raise
        box[0] = _Outcome(True, result if share else None)
    dist.broadcast_object_list(box, src=0, group=_STATE.coordination)
    outcome: _Outcome = box[0]
    if not outcome.ok:
        raise RankFailed(f"rank 0 failed while rank {rank()} waited for it: {outcome.error}")
    return result if rank() == 0 else outcome.value


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on rank 0 only; every rank returns its (picklable) result. The other
    ranks wait, and raise :class:`RankFailed` if rank 0 raised. In one process: just ``fn(...)``."""
    if not is_distributed():
        return fn(*args, **kwargs)
    return _run_on_main(fn, args, kwargs, share=True)  # type: ignore[return-value]


def main_first(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` on rank 0 first, then on the other ranks (each gets its own result, nothing is sent):
    for work that fills a cache only rank 0 may write, such as preprocessing."""
    if not is_distributed():
        return fn(*args, **kwargs)
    result = _run_on_main(fn, args, kwargs, share=False)
    return result if rank() == 0 else fn(*args, **kwargs)  # type: ignore[return-value]


def barrier() -> None:
    if is_distributed():
        dist.barrier(group=_STATE.coordination)


# ---------------------------------------------------------------------- collectives
def _group_for(tensor: torch.Tensor) -> Any:
    # CUDA tensors go through the default (NCCL) group; CPU tensors through gloo, which every job has.
    return None if tensor.is_cuda else _STATE.coordination


def all_reduce_(tensor: torch.Tensor, mean: bool = False) -> torch.Tensor:
    """Sum (or average) ``tensor`` over the ranks, in place; returns it."""
    if is_distributed():
        dist.all_reduce(tensor, group=_group_for(tensor))
        if mean:
            tensor.div_(dist.get_world_size())
    return tensor


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=_STATE.coordination)
    return out


@torch.no_grad()
def all_reduce_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average ``.grad`` over the ranks, in place: one flat all-reduce per device and dtype, no host sync.

    Parameters without a gradient are left alone. Every rank must have gradients for the same
    parameters, which holds when the ranks run the same code on equally shaped batches (as
    ``DistributedDataParallel`` also requires without ``find_unused_parameters``).
    """
    if not is_distributed():
        return
    unique = {id(p): p for p in params if p.grad is not None}
    groups: dict[tuple[str, torch.dtype], list[nn.Parameter]] = {}
    for p in unique.values():
        groups.setdefault((str(p.device), p.grad.dtype), []).append(p)
    for key in sorted(groups, key=str):  # the same order on every rank
        ps = groups[key]
        flat = torch.cat([p.grad.reshape(-1) for p in ps])
        dist.all_reduce(flat, group=_group_for(flat))
        flat.div_(dist.get_world_size())
        offset = 0
        for p in ps:
            n = p.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


@torch.no_grad()
def broadcast_modules_(modules: Iterable[nn.Module]) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``modules`` (identical starting weights)."""
    if not is_distributed():
        return
    seen: set[int] = set()
    for module in modules:
        for t in [*module.parameters(), *module.buffers()]:
            if id(t) not in seen:
                seen.add(id(t))
                dist.broadcast(t.data, src=0, group=_group_for(t))


def split_micro_batches(batch_size: int, accumulation: int, what: str) -> tuple[int, int]:
    """Per rank: (micro-batches per update, items per micro-batch) for an update of ``batch_size *
    accumulation`` items in total, however many processes share it. A rank's micro-batches are never
    larger than ``batch_size`` (memory), and all are equal (an unweighted mean stays the global mean)."""
    world = world_size()
    total = batch_size * accumulation
    if total % world:
        raise ConfigError(f"{what}: an update of {batch_size} x {accumulation} items cannot be shared equally by "
                          f"{world} processes; make batch_size x grad_accumulation a multiple of {world}")
    per_rank = total // world
    size = math.gcd(per_rank, batch_size)
    return per_rank // size, size

"""The distributed helpers in one process, and the segmentation trainer on two gloo processes (DDP)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from diffuse_uda.config import build_run_config
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import create_method
from diffuse_uda.training import distributed
from diffuse_uda.training.context import Batch, TrainContext, TrainingData
from diffuse_uda.training.log import read_training_log
from diffuse_uda.training.trainer import CHECKPOINT_NAME, LOG_NAME, Trainer
from distributed_launch import run_ranks, watch_writes

# ---------------------------------------------------------------------- one process


def test_one_process_is_rank_0_of_1_and_every_helper_is_the_identity() -> None:
    assert "WORLD_SIZE" not in os.environ
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    assert not distributed.is_distributed()
    assert distributed.on_main(lambda a, b: a + b, 2, b=3) == 5
    assert distributed.main_first(lambda: "x") == "x"
    distributed.barrier()
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce_(t, mean=True), torch.tensor([1.0, 2.0]))
    assert distributed.all_gather_object({"a": 1}) == [{"a": 1}]
    assert distributed.shard(4, "batch") == slice(0, 4)
    assert distributed.split_micro_batches(3, 2, "update") == (2, 3)  # exactly the configured update
    assert distributed.local_device("cpu") == torch.device("cpu")


def test_rank_seeds_keep_rank_0_and_differ_between_ranks() -> None:
    assert distributed.rank_seed(7, 0) == 7
    seeds = {distributed.rank_seed(7, r) for r in range(1, 5)} | {distributed.rank_seed(8, 1)}
    assert len(seeds) == 5 and 7 not in seeds


def _node(monkeypatch: pytest.MonkeyPatch, gpus: int, processes: int, local_rank: int) -> None:
    """Pretend to be process ``local_rank`` of ``processes`` on a node with ``gpus`` CUDA GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setenv("WORLD_SIZE", str(processes))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.delenv("DIFFUSE_UDA_DIST_BACKEND", raising=False)
    monkeypatch.setattr(distributed._STATE, "warned_cpu", False)


def test_each_process_gets_a_gpu_of_its_own_or_the_cpu_never_a_missing_gpu(monkeypatch) -> None:
    # Seen on a 1-GPU machine: two gloo ranks asked for GPU 1 and died ("invalid device ordinal").
    _node(monkeypatch, gpus=2, processes=2, local_rank=1)
    assert distributed.default_backend() == "nccl"
    assert distributed.local_device("auto") == distributed.local_device("cuda") == torch.device("cuda", 1)
    _node(monkeypatch, gpus=1, processes=2, local_rank=1)
    assert distributed.default_backend() == "gloo" and not distributed.gpu_per_process()
    with pytest.warns(UserWarning, match="2 processes on this node but 1 CUDA GPU"):
        assert distributed.local_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="at most one process per GPU"):
        distributed.local_device("cuda")
    assert distributed.local_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("DIFFUSE_UDA_DIST_BACKEND", "nccl")
    assert distributed.default_backend() == "nccl"  # the override wins
    _node(monkeypatch, gpus=0, processes=2, local_rank=0)
    assert distributed.default_backend() == "gloo" and distributed.local_device("auto") == torch.device("cpu")


def _as_rank(monkeypatch: pytest.MonkeyPatch, rank: int, world: int) -> None:
    monkeypatch.setattr(distributed, "rank", lambda: rank)
    monkeypatch.setattr(distributed, "world_size", lambda: world)


@pytest.mark.parametrize("rank, expected", [(0, slice(0, 2)), (1, slice(2, 4))])
def test_each_rank_takes_its_equal_share_of_the_global_batch(monkeypatch, rank: int, expected: slice) -> None:
    _as_rank(monkeypatch, rank, 2)
    assert distributed.shard(4, "training.batch_size") == expected
    with pytest.raises(ConfigError, match="training.batch_size=3 is the global batch"):
        distributed.shard(3, "training.batch_size")


@pytest.mark.parametrize("batch, accumulation, world, per_rank", [
    (1, 2, 2, (1, 1)),  # the paper's generator: 1 pair x 2 accumulated -> one pair on each of two ranks
    (8, 1, 2, (1, 4)),  # quick: one micro-batch of 8 -> 4 pairs on each rank
    (2, 2, 4, (1, 1)),
    (4, 3, 2, (3, 2)),  # never a larger micro-batch than configured (memory)
])
def test_an_update_is_shared_by_the_ranks(monkeypatch, batch: int, accumulation: int, world: int,
                                          per_rank: tuple[int, int]) -> None:
    _as_rank(monkeypatch, 0, world)
    micro, size = distributed.split_micro_batches(batch, accumulation, "update")
    assert (micro, size) == per_rank and micro * size * world == batch * accumulation


def test_an_update_that_does_not_split_equally_is_refused(monkeypatch) -> None:
    _as_rank(monkeypatch, 0, 4)
    with pytest.raises(ConfigError, match="multiple of 4"):
        distributed.split_micro_batches(1, 2, "diffusion batch_size x grad_accumulation")


# ---------------------------------------------------------------------- two gloo processes


def _data(n: int = 6, size: int = 16) -> TrainingData:
    g = torch.Generator().manual_seed(0)
    labels = torch.zeros(n, size, size, dtype=torch.long)
    labels[:, 4:12, 4:12] = 1
    labels[::2, 6:9, 6:9] = 2
    images = (labels[:, None].float() * 0.3 + 0.2 + 0.05 * torch.randn(n, 1, size, size, generator=g)).clamp(0, 1)
    return TrainingData(images, labels, target_images=1 - images)


class _CrossEntropy(Method):
    """Plain cross-entropy: a batch's loss is the mean of its samples' losses, so the average of two
    half-batches' gradients is the full batch's gradient (the Dice of the shared methods pools over
    the batch, which makes a half-batch loss a different function)."""

    name = "cross-entropy"

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None
        return {"loss": F.cross_entropy(self.student(batch.source_image).float(), batch.source_label)}


# SGD: Adam divides by the gradient's running scale, which turns rounding noise in near-zero gradients
# into full-size steps; SGD keeps two runs that differ by rounding within rounding of each other.
_EQUIVALENCE = {"iterations": 5, "batch_size": 4, "augment": False, "optimizer": "sgd", "lr": 0.05,
                "momentum": 0.9, "log_every": 1, "device": "cpu"}


def _ce_run(rank: int, out: Path) -> dict[str, Any]:
    cfg = build_run_config("smoke", 2, {"training": _EQUIVALENCE})
    trainer = Trainer(_CrossEntropy(), _data(), cfg, out, 2, 3, progress=False)
    trainer.fit()
    log = read_training_log(out / LOG_NAME)["loss"] if rank == 0 else None
    return {"student": trainer.method.student.state_dict(), "loss": log}


def test_ddp_loss_and_weights_match_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    """Two ranks each take half of the same global batch of 4 (the shared index stream); the averaged
    gradient equals the one process's gradient up to float rounding. Tolerance: the logged losses agree
    to 1e-5 (relative) after every one of 5 SGD steps, the weights to 1e-6."""
    one = _ce_run(0, tmp_path / "one")
    two = run_ranks(_ce_run, tmp_path / "two")
    steps = [s for s, _ in one["loss"]]
    assert steps == [1, 2, 3, 4, 5] and [s for s, _ in two[0]["loss"]] == steps
    assert [v for _, v in two[0]["loss"]] == pytest.approx([v for _, v in one["loss"]], rel=1e-5)
    assert one["loss"][-1][1] < one["loss"][0][1]  # it learned: the comparison is not of constants
    for name, w in one["student"].items():
        torch.testing.assert_close(two[0]["student"][name], w, rtol=0, atol=1e-6)
        assert torch.equal(two[0]["student"][name], two[1]["student"][name])  # the ranks hold one model


# The teacher-student run (ascplus: EMA teacher, snapshot ensemble, per-rank augmentation streams).
_ASCPLUS = {"iterations": 6, "checkpoint_every": 2, "epoch_length": 2, "device": "cpu", "batch_size": 2}


def _ascplus_run(rank: int, out: Path, kill_rank1_after: int | None = None) -> dict[str, Any]:
    writes = watch_writes([out])
    options = {"appearance": "fourier"}
    cfg = build_run_config("smoke", 2, {"training": _ASCPLUS, "method": options})
    trainer = Trainer(create_method("ascplus", options), _data(), cfg, out, 2, 3, progress=False)
    if kill_rank1_after is not None and rank == 1:
        original = trainer.method.after_optimizer_step

        def die(ctx: TrainContext) -> None:
            original(ctx)
            if ctx.step == kill_rank1_after:
                os.kill(os.getpid(), signal.SIGKILL)  # a node lost mid-run: no cleanup, no message

        trainer.method.after_optimizer_step = die  # type: ignore[method-assign]
    stats = trainer.fit()
    m = trainer.method
    return {"student": m.student.state_dict(), "teacher": m.teacher.state_dict(), "snapshots": m.snapshots,
            "stats": stats, "writes": list(writes),
            "log": read_training_log(out / LOG_NAME)["loss"] if rank == 0 else None}


@pytest.fixture(scope="module")
def ascplus_two_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return run_ranks(_ascplus_run, tmp_path_factory.mktemp("ddp_ascplus"))


def test_ddp_teacher_student_keeps_every_rank_identical_and_only_rank_0_writes(ascplus_two_ranks) -> None:
    r0, r1 = ascplus_two_ranks
    assert r0["stats"]["world_size"] == 2
    for key in ("student", "teacher"):
        for name, w in r0[key].items():
            assert torch.equal(w, r1[key][name]), f"{key}.{name} differs between the ranks"
    # The EMA teacher moved away from the student (it is updated, and identically on both ranks).
    assert any(not torch.equal(w, r0["student"][n]) for n, w in r0["teacher"].items() if w.is_floating_point())
    # Snapshot ensemble: the last epochs' teachers, the same on both ranks.
    assert len(r0["snapshots"]) == len(r1["snapshots"]) == 2
    for a, b in zip(r0["snapshots"], r1["snapshots"], strict=True):
        assert all(torch.equal(a[n], b[n]) for n in a)
    assert [s for s, _ in r0["log"]] == [1, 2, 3, 4, 5, 6]
    written = {Path(p).name for _, p in r0["writes"]}
    assert {LOG_NAME, CHECKPOINT_NAME} <= written
    assert r1["writes"] == []


def test_ddp_resume_after_a_rank_is_killed_finishes_like_an_uninterrupted_run(ascplus_two_ranks,
                                                                            tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises((mp.ProcessExitedException, mp.ProcessRaisedException)):
        run_ranks(_ascplus_run, out, 3)  # rank 1 dies after step 3; rank 0 cannot go on alone
    assert torch.load(out / CHECKPOINT_NAME, weights_only=True)["step"] == 2
    resumed = run_ranks(_ascplus_run, out)
    assert resumed[0]["stats"]["resumed_from_step"] == 2
    # Every rank resumed its own random streams from the checkpoint: bit-for-bit the uninterrupted run.
    for r, reference in zip(resumed, ascplus_two_ranks, strict=True):
        for key in ("student", "teacher"):
            for name, w in reference[key].items():
                assert torch.equal(r[key][name], w), f"{key}.{name} differs from the uninterrupted run"
    assert [s for s, _ in resumed[0]["log"]] == [1, 2, 3, 4, 5, 6]  # no step logged twice
    assert resumed[1]["writes"] == []


def _own_optimizers_run(rank: int, out: Path) -> dict[str, Any]:
    """GLUA (style autoencoder, PatchGAN, D1 and D2 stepped by the method's own optimizers) and A&D
    (DRS statistics of the batch) on two ranks."""
    states = {}
    glua = {"style_channels": 4, "style_res_blocks": 1, "style_mlp_hidden": 8, "style_disc_channels": 4,
            "style_batch_size": 2, "d1_channels": 4, "d2_channels": 4, "style_fraction": 0.5}
    for name, options in (("glua", glua), ("ad", {"ddim_steps": 2, "timesteps": 20, "tau": 1})):
        cfg = build_run_config("smoke", 2, {"training": {"iterations": 4, "device": "cpu", "batch_size": 2},
                                            "method": options})
        trainer = Trainer(create_method(name, options), _data(), cfg, out / name, 2, 3, progress=False)
        before = {k: v.clone() for k, v in trainer.method.student.state_dict().items()}
        trainer.fit()
        states[name] = {"state": trainer.method.state_dict(), "before": before,
                        "student": trainer.method.student.state_dict()}
    return states


def _tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _tensors(value, f"{prefix}.{key}").items()}
    if isinstance(obj, list | tuple):
        return {k: v for i, value in enumerate(obj) for k, v in _tensors(value, f"{prefix}.{i}").items()}
    return {}


def test_ddp_methods_with_optimizers_of_their_own_keep_the_ranks_identical(tmp_path: Path) -> None:
    r0, r1 = run_ranks(_own_optimizers_run, tmp_path)
    for name in ("glua", "ad"):
        a, b = _tensors(r0[name]["state"]), _tensors(r1[name]["state"])
        assert a.keys() == b.keys() and len(a) > 10
        # equal_nan: A&D's Dice window starts as NaN ("not yet seen").
        different = [k for k in a if not torch.allclose(a[k].float(), b[k].float(), rtol=0, atol=0, equal_nan=True)]
        assert different == [], f"{name}: {different[:5]} differ between the ranks"
        trained = r0[name]["student"]
        assert any(not torch.equal(w, r0[name]["before"][k]) for k, w in trained.items()), f"{name} did not train"
    # GLUA's style networks were stepped too (their optimizer states exist and agree).
    assert any(k.startswith(".style_opt") for k in _tensors(r0["glua"]["state"]))

"""The generator's trainer and synthesis on two gloo processes (DDP)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusion_helpers import NUM_CLASSES, make_pairs

from diffuse_uda.data.io import read_nifti
from diffuse_uda.diffusion import trainer as diffusion_trainer
from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.synthesize import synthesis_items, synthesize_dataset
from diffuse_uda.diffusion.trainer import CHECKPOINT_NAME, LOG_NAME, train_diffusion
from distributed_launch import run_ranks, watch_writes

LABELS = {"background": 0, "rim": 1, "core": 2}
CHANNELS = {"0": "MRI"}
# 1 pair x 4 accumulated per update: each of two ranks makes two micro-batches of one pair (no_sync on the
# first); a domain ratio and deformation of both domains draw from every rank's stream.
CONFIG = DiffusionConfig.smoke(iterations=4, checkpoint_every=2, log_every=1, batch_size=1, grad_accumulation=4,
                               source_target_ratio=0.5, deform="both", ema_start=1)


def _masks() -> list[tuple[str, np.ndarray]]:
    return [(p.case_id, p.mask) for p in make_pairs()]


def _generator_run(rank: int, out: Path) -> dict[str, Any]:
    writes = watch_writes([out])
    trained: dict[str, torch.nn.Module] = {}
    original = diffusion_trainer.update_ema

    def spy(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
        trained.update(ema=ema, model=model)  # this rank's networks, to compare across ranks
        original(ema, model, decay)

    diffusion_trainer.update_ema = spy
    pairs = make_pairs()
    ckpt = train_diffusion(pairs, NUM_CLASSES, CONFIG, out / "full", progress=False)
    states = {k: {n: t.detach().clone() for n, t in m.state_dict().items()} for k, m in trained.items()}
    # Resumed under two ranks: half the run, then the rest from its checkpoint.
    train_diffusion(pairs, NUM_CLASSES, CONFIG.replace(iterations=2), out / "resumed", progress=False)
    train_diffusion(pairs, NUM_CLASSES, CONFIG, out / "resumed", progress=False)
    # Synthesis: the ranks share the items (shard=None).
    synthesize_dataset(ckpt, _masks(), out / "synthetic", LABELS, CHANNELS, times=2, steps=2, seed=3, batch_size=4,
                       progress=False)
    return {**states, "writes": list(writes)}


def _read_log(folder: Path) -> list[list[str]]:
    with open(folder / LOG_NAME, newline="") as fh:
        return list(csv.reader(fh))


def test_ddp_generator_trains_identically_on_every_rank_resumes_exactly_and_shares_synthesis(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r0, r1 = run_ranks(_generator_run, out)
    saved = torch.load(out / "full" / CHECKPOINT_NAME, weights_only=True)
    assert saved["iteration"] == 4 and len(saved["rng"]["rank_generators"]) == 2
    for key in ("model", "ema"):
        for name, w in saved[key].items():
            # DDP averaged the gradients: both ranks hold the weights rank 0 saved, and the same EMA.
            assert torch.equal(r0[key][name], w) and torch.equal(r1[key][name], w), f"{key}.{name}"
    assert any(not torch.equal(w, saved["model"][n]) for n, w in saved["ema"].items())
    resumed = torch.load(out / "resumed" / CHECKPOINT_NAME, weights_only=True)
    for key in ("model", "ema", "optimizer"):
        a, b = saved[key], resumed[key]
        if key == "optimizer":
            a, b = {i: s["exp_avg"] for i, s in a["state"].items()}, {i: s["exp_avg"] for i, s in b["state"].items()}
        assert all(torch.equal(a[n], b[n]) for n in a), f"resumed {key} differs from the uninterrupted run"
    assert _read_log(out / "full") == _read_log(out / "resumed")
    assert [int(r[0]) for r in _read_log(out / "full")[1:]] == [1, 2, 3, 4]

    # Synthesis: every item once, each from the rank of its index, the files of one process (labels exactly;
    # images up to float rounding: a rank batches other items together, as the shard test allows too).
    items = synthesis_items(_masks(), 2)
    single = synthesize_dataset(out / "full" / CHECKPOINT_NAME, _masks(), tmp_path / "single", LABELS, CHANNELS,
                                times=2, steps=2, seed=3, batch_size=4, progress=False)
    for it in items:
        for sub, name in (("imagesTr", f"{it.case_id}_0000.nii.gz"), ("labelsTr", f"{it.case_id}.nii.gz")):
            shared, alone = read_nifti(out / "synthetic" / sub / name)[0], read_nifti(single / sub / name)[0]
            np.testing.assert_allclose(shared, alone, rtol=0, atol=1e-5 if sub == "imagesTr" else 0, err_msg=name)
    assert (out / "synthetic" / "dataset.json").is_file() and (out / "synthetic" / "gallery.png").is_file()

    # Rank 0 wrote the checkpoints, logs, settings, dataset.json and gallery; rank 1 only its own items.
    syn = out / "synthetic"
    rank1 = [(event, Path(p)) for event, p in r1["writes"]]
    finished = {p for event, p in rank1 if event == "os.rename"}  # atomic writes end in a rename
    mine = {it.case_id for it in items if it.index % 2 == 1}
    assert finished == {syn / "imagesTr" / f"{c}_0000.nii.gz" for c in mine} | {syn / "labelsTr" / f"{c}.nii.gz"
                                                                                for c in mine}
    # Besides those: only their temporary files and the item folders.
    assert all(p.name.startswith(".") or p in (syn, syn / "imagesTr", syn / "labelsTr") for _, p in rank1
               if p not in finished)
    rank0_names = {Path(p).name for _, p in r0["writes"]}
    assert {CHECKPOINT_NAME, LOG_NAME, "dataset.json", "gallery.png", "synthesis_settings.json"} <= rank0_names

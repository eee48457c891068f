from __future__ import annotations

from pathlib import Path

import numpy as np

from diffuse_uda.pipeline.train import train_method
from diffuse_uda.report.feature_embedding import embed_domains, knn_domain_accuracy, plot_domain_embeddings


def test_knn_domain_accuracy_separates_and_mixes() -> None:
    rng = np.random.default_rng(0)
    domains = np.array(["source"] * 40 + ["target"] * 40)
    apart = np.concatenate([rng.normal(0, 1, (40, 8)), rng.normal(6, 1, (40, 8))])
    mixed = rng.normal(0, 1, (80, 8))
    assert knn_domain_accuracy(apart, domains) == 1.0
    assert 0.25 < knn_domain_accuracy(mixed, domains) < 0.75


def test_embedding_of_a_trained_model(tiny_task, smoke_config, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DIFFUSE_UDA_CACHE", str(tmp_path / "cache"))
    run = train_method(tiny_task, "source-only", smoke_config, tmp_path / "run", progress=False)
    # No target label may be needed: remove them.
    for folder in tiny_task.target_dir.glob("labels*"):
        for f in folder.iterdir():
            f.unlink()
    (emb,) = embed_domains({"source-only": run}, tiny_task.source_dir, tiny_task.target_dir, max_samples=20)
    assert emb.points.shape == (len(emb.domains), 2) and np.isfinite(emb.points).all()
    assert set(emb.domains) == {"source", "target"} and (emb.domains == "source").sum() <= 20
    assert 0.0 <= emb.knn_domain_accuracy <= 1.0
    png = plot_domain_embeddings([emb, emb], tmp_path / "tsne.png")
    assert png.read_bytes()[:4] == b"\x89PNG"

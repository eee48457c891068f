"""Where source and target images land in a model's encoder space (the paper's Fig. 2c).

For each model, the pooled bottleneck features of the same source and target *images* (no labels
of either domain are read) are embedded with t-SNE and drawn as one panel, source and target in
two colours. A number goes with each picture: the leave-one-out accuracy of a 5-nearest-neighbour
domain classifier in the (unprojected) feature space. 100 % means the domains are fully separable,
~50 % (with balanced samples) that the encoder maps them to the same region.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from diffuse_uda.config import PreprocessingConfig
from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.networks.segmenter import encoder_features
from diffuse_uda.report.plots import _new_figure, _save_png
from diffuse_uda.training.bundle import load_bundle

DOMAIN_COLORS = {"source": "#1f77b4", "target": "#d62728"}


@dataclass(frozen=True)
class DomainEmbedding:
    """t-SNE coordinates of one model's features (``points``: (N, 2)) with the domain of each."""

    label: str
    points: np.ndarray
    domains: np.ndarray
    knn_domain_accuracy: float


def _sample_images(dataset: Path, preprocessing: PreprocessingConfig, max_samples: int, rng: np.random.Generator,
                   cache_dir: Path | None) -> torch.Tensor:
    cases = prepare_split(dataset, "Tr", preprocessing, with_labels=False, cache_dir=cache_dir, progress=False)
    images, _ = stack_samples(cases, preprocessing.spatial_dims)
    if images.shape[0] > max_samples:
        images = images[np.sort(rng.choice(images.shape[0], max_samples, replace=False))]
    return images


def knn_domain_accuracy(features: np.ndarray, domains: np.ndarray, k: int = 5) -> float:
    """Leave-one-out accuracy of a k-NN classifier predicting the domain from the features."""
    z = (features - features.mean(0)) / (features.std(0) + 1e-8)
    d = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    neighbours = np.argsort(d, axis=1)[:, :k]
    votes = (domains[neighbours] == "target").mean(1)
    return float(((votes > 0.5) == (domains == "target")).mean())


def embed_domains(runs: Mapping[str, Path], source_dir: Path, target_dir: Path, max_samples: int = 150,
                  seed: int = 0, batch_size: int = 32, cache_dir: Path | None = None) -> list[DomainEmbedding]:
    """One embedding per model (label -> run folder); models that are not SegResNet-based are skipped."""
    from sklearn.manifold import TSNE

    out = []
    for label, run in runs.items():
        bundle = load_bundle(run, "cpu")
        rng = np.random.default_rng(seed)  # same images for every model
        src = _sample_images(Path(source_dir), bundle.preprocessing, max_samples, rng, cache_dir)
        tgt = _sample_images(Path(target_dir), bundle.preprocessing, max_samples, rng, cache_dir)
        network = bundle.network.eval()
        try:
            feats = [encoder_features(network, batch) for batch in torch.cat([src, tgt]).split(batch_size)]
        except TypeError:
            continue
        features = torch.cat(feats).float().numpy()
        domains = np.array(["source"] * src.shape[0] + ["target"] * tgt.shape[0])
        perplexity = float(min(30, max(2, features.shape[0] // 4)))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
        out.append(DomainEmbedding(label, points, domains, knn_domain_accuracy(features, domains)))
    return out


def plot_domain_embeddings(embeddings: Sequence[DomainEmbedding], out_path: Path) -> Path:
    fig = _new_figure(4.0 * max(1, len(embeddings)), 4.2)
    for i, emb in enumerate(embeddings):
        ax = fig.add_subplot(1, len(embeddings), i + 1)
        for domain, color in DOMAIN_COLORS.items():
            sel = emb.domains == domain
            ax.scatter(emb.points[sel, 0], emb.points[sel, 1], s=6, c=color, alpha=0.6, label=domain)
        ax.set_title(f"{emb.label}\n5-NN domain accuracy {100 * emb.knn_domain_accuracy:.0f}%", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 0:
            ax.legend(loc="best", fontsize=8, markerscale=2)
    return _save_png(fig, out_path)

"""Label-free fidelity measures of the label-conditioned generator.

They score already generated images (``(N, C, *S)`` in ``[0, 1]``), whatever sampler made them, so
that choices such as the guidance scale, the sampler or the checkpoint can be made without any
target label, and so that reports can show them:

* **Mask fidelity** (:func:`mask_fidelity`): does the image show the anatomy of its conditioning
  mask? A segmenter segments each synthetic image; the score is the mean foreground Dice of its
  argmax prediction against the conditioning mask. In use the segmenter is the stage-1 target model
  (ASCPlus), which read no target label. The oracle target-supervised model may be plugged in the
  same way for a post-hoc figure only (it was trained on target labels).
* **Style fidelity** (:func:`train_domain_classifier`, :func:`style_fidelity`): do the images look
  like the target domain? A small domain classifier is trained on real source images (class 0)
  against real target images (class 1): domain membership is known, no segmentation label is read.
  The score is the share of synthetic images it calls target. Its held-out accuracy on real images
  says whether it separates the domains at all; near 50 % the score means nothing. A classifier
  that separates real images may still judge off-distribution synthetic images arbitrarily, so
  read the score next to the other measures.
* **Frechet distance** (:func:`frechet_distance`) between the feature statistics of synthetic and
  real images: MONAI's FID formula (``monai.metrics.fid.compute_frechet_distance``), with the matrix
  square root taken by symmetric eigendecomposition in torch, because MONAI 1.6.1 takes it with
  ``scipy.linalg.sqrtm(..., disp=False)``, an argument that newer scipy releases no longer accept
  (seen on the GPU image: every pipeline run failed there). No Inception network is downloaded: the features
  are the stage-1 segmenter's pooled bottleneck features (:func:`real_image_features`, a SegResNet
  or a snapshot ensemble of them). That network was trained on this very task, so its features
  describe the anatomy and appearance that matter for it. The numbers are therefore comparable
  only within one task, one feature network and one sample size (the estimate is biased upward
  for few images); never with published FID values.

Real images given to these functions should be at the generator's resolution, resampled as the
generator's training images were, so that synthetic and real images differ only by the generator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from pydantic import Field
from torch import Tensor, nn

from diffuse_uda.config import StrictModel
from diffuse_uda.networks.segmenter import encoder_features

__all__ = [
    "MIN_HELDOUT_ACCURACY",
    "DomainClassifier",
    "FidelityReport",
    "fidelity_report",
    "frechet_distance",
    "mask_fidelity",
    "mean_foreground_dice",
    "real_image_features",
    "style_fidelity",
    "train_domain_classifier",
]

# Below this held-out (balanced) accuracy on real images the domain classifier is taken not to
# separate the domains, and style fidelity is flagged as meaningless.
MIN_HELDOUT_ACCURACY = 0.75
# Ridge added to both feature covariances, relative to their mean variance (see frechet_distance).
COVARIANCE_RIDGE = 1e-6


# ---------------------------------------------------------------------- shared helpers
def _spatial_dims(images: Tensor) -> int:
    if images.ndim not in (4, 5):
        raise ValueError(f"images must be (N, C, H, W) or (N, C, X, Y, Z), got shape {tuple(images.shape)}")
    return images.ndim - 2


def _module_device(module: nn.Module, default: torch.device) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else default


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _resize(x: Tensor, size: Sequence[int] | None) -> Tensor:
    """Linear resize of ``(B, C, *S)`` to ``size`` (no-op when ``size`` is None or already met)."""
    if size is None or tuple(x.shape[2:]) == tuple(size):
        return x
    mode = "bilinear" if x.ndim == 4 else "trilinear"
    return F.interpolate(x, size=tuple(size), mode=mode, align_corners=False)


# ---------------------------------------------------------------------- mask fidelity
def mean_foreground_dice(pred: Tensor, ref: Tensor, num_classes: int) -> Tensor:
    """Per-sample mean Dice over the foreground classes present in either map.

    ``pred`` and ``ref`` are ``(B, *S)`` label maps. A class present in neither map is skipped for
    that sample; a sample whose maps are both all background scores NaN.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background + foreground), got {num_classes}")
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from reference {tuple(ref.shape)}")
    pred, ref = pred.flatten(1), ref.flatten(1)
    scores = []
    for k in range(1, num_classes):
        p, r = pred == k, ref == k
        denom = p.sum(1) + r.sum(1)
        scores.append(torch.where(denom > 0, 2 * (p & r).sum(1) / denom.clamp(min=1), torch.nan))
    return torch.stack(scores, 1).nanmean(1)


def _label_maps(masks: Tensor, images: Tensor) -> Tensor:
    """``(N, *S)`` label maps from ``(N, *S)`` or ``(N, 1, *S)`` masks matching the images."""
    if masks.is_floating_point():
        raise TypeError(f"masks must be integer label maps, got dtype {masks.dtype}")
    if masks.ndim == images.ndim and masks.shape[1] == 1:
        masks = masks[:, 0]
    if masks.shape[0] != images.shape[0] or tuple(masks.shape[1:]) != tuple(images.shape[2:]):
        raise ValueError(f"masks {tuple(masks.shape)} do not match images {tuple(images.shape)}")
    return masks


@torch.no_grad()
def _segment(segmenter: nn.Module, images: Tensor, input_size: Sequence[int] | None) -> Tensor:
    """Argmax label maps ``(B, *S)`` on the images' grid; the segmenter sees ``input_size``."""
    out = segmenter(_resize(images, input_size)).float()
    if tuple(out.shape[2:]) != tuple(images.shape[2:]):
        # Interpolate probabilities, not labels (as restore_labels does): smooth edges.
        out = _resize(out.softmax(1), images.shape[2:])
    return out.argmax(1)


@torch.no_grad()
def mask_fidelity(
    segmenter: nn.Module,
    images: Tensor,
    masks: Tensor,
    num_classes: int,
    batch_size: int = 32,
    input_size: Sequence[int] | None = None,
) -> Tensor:
    """Per-image mean foreground Dice between the segmenter's prediction on each synthetic image and
    its conditioning mask.

    Args:
        segmenter: any network returning ``(B, K, *S)`` logits or log-probabilities (evaluated in
            eval mode on its own device; its mode is restored afterwards).
        images: ``(N, C, *S)`` synthetic images in ``[0, 1]``.
        masks: ``(N, *S)`` or ``(N, 1, *S)`` integer conditioning masks.
        num_classes: classes of the masks (background included).
        batch_size: images per forward pass.
        input_size: spatial size the segmenter was trained at; images are resized to it and its
            probabilities back to the masks' grid. None: the images' own size.

    Returns:
        ``(N,)`` float scores on the images' device; NaN for an image whose mask and prediction are
        both empty (exclude those from means, e.g. with ``nanmean``).
    """
    _spatial_dims(images)
    masks = _label_maps(masks, images)
    device = _module_device(segmenter, images.device)
    scores = []
    with _eval_mode(segmenter):
        for img, msk in zip(images.split(batch_size), masks.split(batch_size), strict=True):
            pred = _segment(segmenter, img.to(device).float(), input_size)
            scores.append(mean_foreground_dice(pred, msk.to(device), num_classes))
    return torch.cat(scores).to(images.device)


# ---------------------------------------------------------------------- style fidelity
class DomainClassifier(nn.Module):
    """A few strided convolutions and global average pooling: logit of "target domain" per image.

    No normalisation layers: instance or group norm would divide out the intensity statistics
    (contrast, brightness) that most of a domain's style is made of.

    Attributes:
        heldout_accuracy: balanced accuracy on held-out real images, set by
            :func:`train_domain_classifier` (None for an untrained classifier).
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        layers, c = [], in_channels
        for out in channels:
            layers.append(Convolution(spatial_dims, c, out, strides=2, kernel_size=3,
                                      act=("leakyrelu", {"negative_slope": 0.2}), norm=None))
            c = out
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)
        self.heldout_accuracy: float | None = None

    def forward(self, images: Tensor) -> Tensor:
        """``(B, C, *S)`` images in ``[0, 1]`` -> ``(B,)`` logits (positive: target)."""
        pooled = self.features(images * 2.0 - 1.0).flatten(2).mean(-1)
        return self.head(pooled).squeeze(1)


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Random per-sample flips along every spatial axis and light intensity scale/shift, so the
    classifier cannot key on orientation or an exact intensity level. Branch-free: no host sync."""
    b, dev = x.shape[0], x.device
    view = (b, *([1] * (x.ndim - 1)))
    for axis in range(2, x.ndim):
        flip = torch.rand(b, generator=generator, device=dev) < 0.5
        x = torch.where(flip.view(view), x.flip(axis), x)
    scale = 1.0 + 0.1 * (2 * torch.rand(b, generator=generator, device=dev) - 1)
    shift = 0.05 * (2 * torch.rand(b, generator=generator, device=dev) - 1)
    return x * scale.view(view) + shift.view(view)


def _split(images: Tensor, holdout: float, domain: str) -> tuple[Tensor, Tensor]:
    """(training, held-out): the held-out images are the last ``holdout`` share, so the slices of
    one volume (kept together by ``stack_samples``) are split between the two sets at most once."""
    n = images.shape[0]
    if n < 2:
        raise ValueError(f"the {domain} domain needs at least 2 images (training + held out), got {n}")
    n_hold = min(n - 1, max(1, round(holdout * n)))
    return images[: n - n_hold], images[n - n_hold:]


@torch.no_grad()
def _target_probability(classifier: DomainClassifier, images: Tensor, batch_size: int) -> Tensor:
    device = _module_device(classifier, images.device)
    with _eval_mode(classifier):
        return torch.cat([classifier(b.to(device).float()).sigmoid() for b in images.split(batch_size)])


def train_domain_classifier(
    source: Tensor,
    target: Tensor,
    spatial_dims: int,
    steps: int = 300,
    seed: int = 0,
    device: torch.device | str | None = None,
    batch_size: int = 32,
    lr: float = 1e-3,
    holdout: float = 0.2,
) -> DomainClassifier:
    """Train a :class:`DomainClassifier` on real source (0) against real target (1) images.

    Fixed budget (``steps`` Adam updates on balanced batches, half from each domain, drawn with
    replacement and augmented by :func:`_augment`), deterministic from ``seed`` on one device type.
    The last ``holdout`` share of each domain is held out; the classifier's balanced accuracy on it
    is stored in ``heldout_accuracy``.

    Args:
        source, target: ``(N, C, *S)`` real images in ``[0, 1]`` at the resolution of the images
            to score later (the generator's); same channels and spatial size.
        spatial_dims: 2 or 3.
        device: where to train; None: the source images' device.
    """
    for name, x in (("source", source), ("target", target)):
        if x.ndim != spatial_dims + 2:
            raise ValueError(f"{name} images must be (N, C, *S) with {spatial_dims} spatial dims, "
                             f"got shape {tuple(x.shape)}")
    if source.shape[1:] != target.shape[1:]:
        raise ValueError(f"source images {tuple(source.shape[1:])} and target images {tuple(target.shape[1:])} "
                         "differ in channels or size")
    if steps < 1 or batch_size < 2:
        raise ValueError(f"need steps >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    device = torch.device(device) if device is not None else source.device
    src_train, src_hold = _split(source, holdout, "source")
    tgt_train, tgt_hold = _split(target, holdout, "target")
    src_train, tgt_train = src_train.to(device).float(), tgt_train.to(device).float()

    # Initial weights from the seed without touching the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        classifier = DomainClassifier(spatial_dims, source.shape[1])
    classifier.to(device).train()
    optimizer = torch.optim.Adam(classifier.parameters(), lr=lr)
    generator = torch.Generator(device=device).manual_seed(seed)
    half = batch_size // 2
    labels = torch.cat([torch.zeros(half, device=device), torch.ones(half, device=device)])
    for _ in range(steps):
        i = torch.randint(0, src_train.shape[0], (half,), generator=generator, device=device)
        j = torch.randint(0, tgt_train.shape[0], (half,), generator=generator, device=device)
        x = _augment(torch.cat([src_train[i], tgt_train[j]]), generator)
        loss = F.binary_cross_entropy_with_logits(classifier(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    classifier.requires_grad_(False).eval()

    # Balanced accuracy: the domains' sizes may differ a lot, and 50 % must mean "no separation".
    src_ok = (_target_probability(classifier, src_hold, batch_size) <= 0.5).float().mean()
    tgt_ok = (_target_probability(classifier, tgt_hold, batch_size) > 0.5).float().mean()
    classifier.heldout_accuracy = float((src_ok + tgt_ok) / 2)
    return classifier


def style_fidelity(classifier: DomainClassifier, images: Tensor, batch_size: int = 64) -> float:
    """Share of ``images`` (``(N, C, *S)`` in ``[0, 1]``) the classifier calls target (p > 0.5)."""
    if _spatial_dims(images) != classifier.spatial_dims or images.shape[1] != classifier.in_channels:
        raise ValueError(f"images {tuple(images.shape)} do not fit a {classifier.spatial_dims}D classifier "
                         f"of {classifier.in_channels}-channel images")
    if images.shape[0] == 0:
        raise ValueError("no images to score")
    return float((_target_probability(classifier, images, batch_size) > 0.5).float().mean())


# ---------------------------------------------------------------------- Frechet distance
@torch.no_grad()
def real_image_features(
    segmenter: nn.Module, images: Tensor, batch_size: int = 32, input_size: Sequence[int] | None = None
) -> Tensor:
    """``(N, F)`` pooled bottleneck features (:func:`encoder_features`) of a SegResNet or a snapshot
    ensemble of them, on the images' device. Used alike for real and synthetic images.

    ``input_size``: the size the segmenter was trained at (images are resized to it).
    """
    _spatial_dims(images)
    device = _module_device(segmenter, images.device)
    with _eval_mode(segmenter):
        feats = [encoder_features(segmenter, _resize(b.to(device).float(), input_size))
                 for b in images.split(batch_size)]
    return torch.cat(feats).float().to(images.device)


def _trace_sqrt_product(cov_a: Tensor, cov_b: Tensor) -> Tensor:
    """``tr((A B)^1/2)`` for symmetric positive semi-definite ``A``, ``B``: ``A B`` is similar to
    ``A^1/2 B A^1/2``, which is symmetric positive semi-definite, so the trace is the sum of the square
    roots of its eigenvalues (rounding below 0 clipped)."""
    eigenvalues, vectors = torch.linalg.eigh(cov_a)
    root_a = (vectors * eigenvalues.clamp_min(0).sqrt()) @ vectors.T
    inner = root_a @ cov_b @ root_a
    return torch.linalg.eigvalsh((inner + inner.T) / 2).clamp_min(0).sqrt().sum()


def frechet_distance(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet distance between Gaussians fitted to two ``(N, F)`` feature sets (MONAI's FID formula).

    Each set needs at least 2 samples. With ``N <= F`` a covariance estimate is singular (rank
    ``N - 1``) and the matrix square root in the formula is ill-conditioned; so a ridge of
    ``1e-6`` times the mean feature variance is always added to both covariances. It shifts the
    distance by a negligible amount and makes it well defined; the distance of identical sets stays
    ~0. Tiny negative values from rounding are clipped to 0. Computed in float64 on the CPU.
    """
    if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
        raise ValueError(f"features must be (N, F) with the same F, got {tuple(features_a.shape)} and "
                         f"{tuple(features_b.shape)}")
    if min(features_a.shape[0], features_b.shape[0]) < 2:
        raise ValueError(f"the Frechet distance needs at least 2 samples per set, got {features_a.shape[0]} "
                         f"and {features_b.shape[0]}")
    a, b = features_a.detach().double().cpu(), features_b.detach().double().cpu()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("features must be finite")

    def moments(x: Tensor) -> tuple[Tensor, Tensor]:
        centred = x - x.mean(0)
        return x.mean(0), centred.T @ centred / (x.shape[0] - 1)  # (F, F) even for F = 1

    (mu_a, cov_a), (mu_b, cov_b) = moments(a), moments(b)
    dims = a.shape[1]
    mean_var = float(cov_a.diagonal().sum() + cov_b.diagonal().sum()) / (2 * dims)
    ridge = COVARIANCE_RIDGE * (mean_var if mean_var > 0 else 1.0) * torch.eye(dims, dtype=torch.float64)
    cov_a, cov_b = cov_a + ridge, cov_b + ridge
    distance = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * _trace_sqrt_product(cov_a, cov_b)
    return max(float(distance), 0.0)


# ---------------------------------------------------------------------- report
class FidelityReport(StrictModel):
    """Label-free fidelity of one set of synthetic images (one generator / sampler / setting).

    Undefined values are None (a report holds no NaN): mask fidelity when no image has foreground in
    its mask or prediction, style fidelity without a classifier, a distance without real features.
    """

    n_images: int = Field(ge=1)
    mask_fidelity_mean: float | None = Field(None, description="mean per-image foreground Dice vs the mask")
    mask_fidelity_std: float | None = None
    n_mask_scored: int = Field(0, ge=0, description="images with foreground in the mask or the prediction")
    style_fidelity: float | None = Field(None, description="share of images the domain classifier calls target")
    classifier_heldout_accuracy: float | None = Field(None, description="balanced, on held-out real images")
    style_fidelity_meaningful: bool | None = Field(
        None, description=f"held-out accuracy >= {MIN_HELDOUT_ACCURACY}: the classifier separates real domains")
    frechet_distance_target: float | None = Field(None, description="vs real target images")
    frechet_distance_source: float | None = Field(None, description="vs real source images")
    seconds_per_image: float | None = None
    notes: list[str] = Field(default_factory=list)


def fidelity_report(
    images: Tensor,
    masks: Tensor,
    segmenter: nn.Module,
    classifier: DomainClassifier | None,
    real_target_features: Tensor | None,
    real_source_features: Tensor | None,
    num_classes: int,
    seconds_per_image: float | None = None,
    *,
    input_size: Sequence[int] | None = None,
    batch_size: int = 32,
) -> FidelityReport:
    """All label-free measures of ``images`` generated for ``masks``.

    Args:
        images, masks: synthetic images ``(N, C, *S)`` in ``[0, 1]`` and their conditioning masks.
        segmenter: the stage-1 target model: segments the images (mask fidelity) and gives the
            features of the Frechet distances (SegResNet or snapshot ensemble of them).
        classifier: from :func:`train_domain_classifier`; None skips style fidelity.
        real_target_features, real_source_features: :func:`real_image_features` of real images
            with the same segmenter and ``input_size``; None skips that distance.
        input_size: the size the segmenter was trained at.
    """
    notes: list[str] = []
    dice = mask_fidelity(segmenter, images, masks, num_classes, batch_size, input_size)
    scored = dice[~dice.isnan()]
    n_scored = int(scored.numel())
    mean = float(scored.mean()) if n_scored else None
    std = float(scored.std()) if n_scored >= 2 else None
    if n_scored < dice.numel():
        notes.append(f"{dice.numel() - n_scored} image(s) with empty mask and prediction excluded from mask fidelity")

    style = accuracy = meaningful = None
    if classifier is not None:
        style = style_fidelity(classifier, images)
        accuracy = classifier.heldout_accuracy
        if accuracy is None:
            notes.append("domain classifier has no held-out accuracy: style fidelity cannot be interpreted")
        else:
            meaningful = accuracy >= MIN_HELDOUT_ACCURACY
            if not meaningful:
                notes.append(f"domain classifier held-out accuracy {accuracy:.0%} < {MIN_HELDOUT_ACCURACY:.0%}: "
                             "it does not separate real source from real target, style fidelity is meaningless")

    fd_target = fd_source = None
    if real_target_features is not None or real_source_features is not None:
        synth = real_image_features(segmenter, images, batch_size, input_size)
        if real_target_features is not None:
            fd_target = frechet_distance(synth, real_target_features)
        if real_source_features is not None:
            fd_source = frechet_distance(synth, real_source_features)
        if synth.shape[0] <= synth.shape[1]:
            notes.append(f"Frechet distances from {synth.shape[0]} images in {synth.shape[1]} feature dimensions: "
                         "singular covariances were regularised; compare only at the same number of images")

    return FidelityReport(
        n_images=int(images.shape[0]), mask_fidelity_mean=mean, mask_fidelity_std=std, n_mask_scored=n_scored,
        style_fidelity=style, classifier_heldout_accuracy=accuracy, style_fidelity_meaningful=meaningful,
        frechet_distance_target=fd_target, frechet_distance_source=fd_source,
        seconds_per_image=seconds_per_image, notes=notes,
    )

"""A&D (comparator): Aggregating & Decoupling, "Towards Generic Semi-Supervised Framework for Volumetric
Medical Image Segmentation" (Wang & Li, NeurIPS 2023), reimplemented from the paper's text (Sec. 3,
Algorithm 1, Appendix A.1) for UDA: labelled = source, unlabelled = target.

One step of the shared trainer (Algorithm 1):

1. **SVDA** (Sec. 3.2): ``n_aug`` = 3 operations drawn without replacement from a spatial set (random
   crop, rotation, scaling) and an intensity set (Gaussian blur, brightness, contrast, gamma), applied
   to the labelled batch (image and label resampled together, with the spatial operations composed
   into one resampling) and, independently drawn, to the unlabelled batch.
2. **Denoising flow** ``E + D(xi)`` (Eq. 1-2): the one-hot source label is noised to ``y_t`` (DDPM
   forward process, ``t`` uniform in ``[0, T)``) and, with the image and ``t``, the encoder + denoising
   decoder predict the clean label; L_deno = Dice-CE.
3. **Difficulty-aware flow** ``E + D(psi)`` (Eq. 3-6, DRS): per-class Dice ``lambda_k`` of the denoising
   decoder's map on the labelled batch is kept for the last ``tau`` iterations; the learning speed
   ``du_k = sum min(delta, 0) ln(lambda_e / lambda_{e-1})`` (un-learned) and ``dl_k`` (learned, max) give
   the difficulty ``d_k = du_k / dl_k``; the reversed Dice ``w_lambda_k`` is the mean of ``1 - lambda_k``
   over the window; ``w_k = w_lambda_k * d_k ** alpha`` weights the class terms of L_diff.
4. **Pseudo-labels** (Eq. 7, RS): the denoising flow is run on the target image from pure noise with
   ``ddim_steps`` deterministic DDIM steps (``p^{u;xi}``); ``D(psi)`` gives ``p^{u;psi}`` on the target
   features (stopped gradient). ``y = argmax(G(GumbelSoftmax(p^{u;xi})) + softmax(p^{u;psi}))`` with a
   Gaussian smoothing ``G`` of the re-parameterised map.
5. **Unlabelled flow** ``E + D(theta)`` (Eq. 8): Dice-CE against the pseudo-labels, weighted by
   ``mu(t) = mu * exp(-5 (1 - t / rampup)^2)`` (Eq. 9: L = L_deno + L_diff + mu L_u).
6. After every optimizer step, ``theta <- w_ema theta + (1 - w_ema) (xi + psi) / 2`` (Sec. 3.3).

Prediction uses only the encoder + ``D(theta)`` (:class:`~diffuse_uda.networks.ad_network.ADInferenceNetwork`).

Ablation switches (the paper's Table 6 columns "w/o SVDA", "w/o Diffusion", "w/o DRS", "w/o RS"):

* ``svda=False``: no SVDA (the trainer's light shared augmentation still applies, as for every method).
* ``diffusion=False``: the diffusion model is removed: no denoising decoder, no noisy-label input, no
  L_deno, no DDIM; pseudo-labels are ``argmax softmax(p^{u;psi})``, DRS statistics come from ``D(psi)``'s
  own Dice, and ``theta`` receives the EMA of ``psi`` alone. (The paper motivates this row with the
  diffusion model's role in learning invariant features, so the whole flow goes, not only its share
  of the pseudo-labels.)
* ``drs=False``: uniform class weights in L_diff (the Dice history is still kept, for logging).
* ``rs=False``: pseudo-labels ``argmax(softmax(p^{u;xi}) + softmax(p^{u;psi}))``, no Gumbel, no smoothing.

Choices the paper leaves open, or that we simplify (see also the options' descriptions):

* Loss: ``L_DiceCE = (CE + Dice) / 2`` (paper's definition) with background in the Dice term, which
  averages over the classes present in the batch (the toolkit's convention for every method); in
  L_diff each class's share of CE and its Dice term are multiplied by ``w_k``. The weights are
  normalised to mean 1 over classes so L_diff keeps the scale of L_deno (only the relative emphasis
  changes), and are uniform until ``tau + 1`` Dice values have been recorded (``d_k`` is defined on an
  accumulation window). ``lambda_k`` is the soft Dice of the denoising map (the hard Dice is 0 early
  on, where the log-ratio is undefined); classes absent from a batch leave a gap in the history.
* Label diffusion: ``T = 1000`` (Table 7's best), a linear beta schedule (DDPM's; not stated),
  one-hot labels in {0, 1} as in Eq. 1, the decoder predicts ``y_0`` directly (Diff-UNet style), and
  ``ddim_steps`` (10 by default; not stated) deterministic DDIM steps at pseudo-labelling.
* Pseudo-labels are computed on the augmented target view the unlabelled decoder is trained on, so
  they are aligned with it.
* Gumbel temperature (1) and smoothing sigma (1 voxel) are not given in the paper.
* Ramp-up length: a fraction of the run (the toolkit's mean-teacher default, 0.4) instead of epochs.
* Architecture: a residual encoder/decoder of MONAI SegResNet blocks with ``len(network.blocks_down)``
  levels and ``network.init_filters`` base width (for a like-for-like comparison with the shared
  backbone) instead of a V-Net with F = 32 and four downsamplings; the time step enters the shared
  encoder only, so the three decoders are identical and the EMA transfer is well defined.
* The shared trainer's optimizer and poly schedule; the paper's SGD is ``--set training.optimizer=sgd
  training.momentum=0.9``. Model selection: the last step (no target labels).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from monai.networks.schedulers import DDPMScheduler
from pydantic import Field
from torch import Tensor, nn

from diffuse_uda.config import StrictModel
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import register
from diffuse_uda.networks.ad_network import ADNetwork
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import IGNORE_INDEX, sigmoid_rampup
from diffuse_uda.transforms.deformation import DeformationParams, RandomDeformation

# Every step returns all of these (the training log's header is written once).
LOSS_KEYS = ("loss", "deno", "diff", "unsup", "mu", "dice_labelled", "class_weight_min", "class_weight_max")


class ADOptions(StrictModel):
    # Ablation switches (Table 6).
    svda: bool = Field(True, description="Sampling-based volumetric data augmentation.")
    diffusion: bool = Field(True, description="The denoising flow (decoder xi, L_deno, DDIM pseudo-labels).")
    drs: bool = Field(True, description="Difficulty-aware re-weighting of L_diff.")
    rs: bool = Field(True, description="Re-parameterise (Gumbel-softmax) & smooth the diffusion map in Eq. 7.")
    # Network (None = the run's network config, like the shared SegResNet).
    features: int | None = Field(None, ge=1, description="Base width F; None = network.init_filters (paper: 32).")
    levels: int | None = Field(None, ge=1, description="Resolution levels; None = len(network.blocks_down).")
    # Label diffusion.
    timesteps: int = Field(1000, ge=2, description="Diffusion steps T (Table 7: 1000 is best).")
    noise_schedule: Literal["linear_beta", "scaled_linear_beta", "sigmoid_beta", "cosine"] = "linear_beta"
    ddim_steps: int = Field(10, ge=1, description="DDIM steps when the diffusion flow pseudo-labels targets.")
    # DRS (Eq. 3-5).
    tau: int = Field(50, ge=1, description="Accumulation window of the Dice history (iterations).")
    alpha: float = Field(0.2, ge=0.0, description="Exponent of the difficulty d_k (paper: 1/5).")
    # RS (Eq. 7).
    gumbel_temperature: float = Field(1.0, gt=0.0)
    smoothing_sigma: float = Field(1.0, ge=0.0, description="Gaussian smoothing of the Gumbel map, voxels.")
    # Unsupervised flow (Eq. 8-9) and the EMA transfer.
    mu: float = Field(10.0, ge=0.0, description="Weight of L_u after ramp-up.")
    rampup_fraction: float = Field(0.4, ge=0.0, le=1.0, description="Gaussian ramp-up length / run length.")
    ema_transfer: bool = Field(True, description="theta <- w theta + (1 - w) (xi + psi) / 2 after every step.")
    shared_init: bool = Field(True, description="Start the three decoders from one initialisation, so the mean of "
                              "xi and psi is a working decoder (False: independent inits, the behaviour before "
                              "session 6).")
    transfer_decay: float = Field(0.99, ge=0.0, le=1.0, description="w_ema of the transfer.")
    # SVDA (nnU-Net-like ranges; the paper names the operations only).
    n_aug: int = Field(3, ge=0, le=7, description="Operations drawn per batch (paper: 3).")
    rotation_degrees: float = Field(30.0, ge=0.0)
    scale_range: tuple[float, float] = Field((0.7, 1.4), description="Content zoom factor (>1 enlarges).")
    crop_fraction_range: tuple[float, float] = Field((0.7, 0.9), description="Crop side / image side (resized back).")
    blur_sigma_range: tuple[float, float] = (0.5, 1.0)
    brightness_range: tuple[float, float] = (0.75, 1.25)
    contrast_range: tuple[float, float] = (0.75, 1.25)
    gamma_range: tuple[float, float] = (0.7, 1.5)


# --------------------------------------------------------------------------- helpers


def _one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """(B, *S) int -> (B, K, *S) float; values outside [0, K) (IGNORE) give all-zero vectors."""
    classes = torch.arange(num_classes, device=labels.device).view(1, num_classes, *([1] * (labels.ndim - 1)))
    return (labels.unsqueeze(1) == classes).float()


def _draw(shape: tuple[int, ...], generator: torch.Generator, device: torch.device, normal: bool = False) -> Tensor:
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=generator.device).to(device, non_blocking=True)


def gaussian_blur(x: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Per-sample separable Gaussian blur of (B, C, *S) with ``sigma`` (B,) voxels, replicate padding."""
    b, c = x.shape[:2]
    d = x.ndim - 2
    if radius <= 0:
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma.float().clamp_min(1e-3)[:, None] ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 2r+1)
    h = F.pad(x.float().reshape(1, b * c, *x.shape[2:]), [radius] * (2 * d), mode="replicate")
    conv = F.conv2d if d == 2 else F.conv3d
    for axis in range(d):  # valid convolution along each axis undoes that axis's padding
        shape = [b * c, 1] + [1] * d
        shape[2 + axis] = 2 * radius + 1
        h = conv(h, kernel.view(shape), groups=b * c)
    return h.reshape(x.shape).to(x.dtype)


def dice_ce(logits: Tensor, labels: Tensor, class_weights: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """``(CE + Dice) / 2`` (the paper's L_DiceCE), background included, IGNORE voxels skipped; the Dice
    term averages over the classes present in ``labels``.

    With ``class_weights`` (K,), class k's share of the cross-entropy and its Dice term are multiplied
    by ``w_k`` (Eq. 6); without, this is the plain Dice-CE of Eq. 2 and 8.
    """
    k = logits.shape[1]
    labels = labels.long()
    valid = (labels != IGNORE_INDEX).unsqueeze(1).float()
    onehot = _one_hot(labels, k)  # IGNORE voxels are all-zero rows
    logp = F.log_softmax(logits.float(), 1)
    dims = [0, *range(2, logits.ndim)]
    ce_k = -(onehot * logp).sum(dims) / valid.sum().clamp_min(1.0)  # sums over k to the usual mean CE
    probs = logp.exp() * valid
    inter = (probs * onehot).sum(dims)
    dice_k = 1.0 - (2 * inter + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)
    # Dice averages over the classes present in the batch (the toolkit's convention, see
    # training.losses.soft_dice_loss): for an absent class the smoothed Dice rewards predicting nothing.
    present = (onehot.sum(dims) > 0).float()
    w = torch.ones(k, device=logits.device) if class_weights is None else class_weights.float()
    return 0.5 * ((w * ce_k).sum() + (w * dice_k * present).sum() / present.sum().clamp_min(1.0))


@torch.no_grad()
def class_dice(probs: Tensor, labels: Tensor, eps: float = 1e-6,
               reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Soft Dice per class (K,) over the batch; NaN for classes absent from ``labels``.

    ``reduce`` sums the per-class sums over the ranks of a distributed run, so the Dice (and the DRS
    statistics built on it) is that of the global batch, the same on every rank."""
    k = probs.shape[1]
    valid = (labels != IGNORE_INDEX).unsqueeze(1).float()
    onehot = _one_hot(labels.long(), k)
    probs = probs.float() * valid
    dims = [0, *range(2, probs.ndim)]
    inter, p_sum, o_sum = (probs * onehot).sum(dims), probs.sum(dims), onehot.sum(dims)
    if reduce is not None:
        inter, p_sum, o_sum = reduce(torch.stack([inter, p_sum, o_sum]))
    dice = 2 * inter / (p_sum + o_sum).clamp_min(eps)
    return torch.where(o_sum > 0, dice, torch.full_like(dice, math.nan))


def push_history(history: Tensor, dice: Tensor) -> Tensor:
    """Append one (K,) Dice row to the (tau + 1, K) window, dropping the oldest."""
    return torch.cat([history[1:], dice[None].to(history)])


def difficulty_weights(history: Tensor, alpha: float, eps: float = 1e-8) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. 3-5 on a (tau + 1, K) Dice history (oldest first, NaN = unknown).

    Returns ``(d, w_lambda, w)``: difficulty ``d_k = du_k / dl_k``, reversed-Dice weight ``w_lambda_k``
    (mean of ``1 - lambda_k`` over the window) and ``w_k = w_lambda_k * d_k ** alpha`` (unnormalised).
    """
    prev, cur = history[:-1], history[1:]
    delta = cur - prev
    known = torch.isfinite(delta)
    log_ratio = torch.log(cur.clamp_min(eps) / prev.clamp_min(eps))
    zero = torch.zeros((), device=history.device, dtype=history.dtype)
    # min(delta, 0) * ln(ratio) >= 0: how much was un-learned; max(delta, 0) * ln(ratio) >= 0: learned.
    du = torch.where(known, delta.clamp(max=0) * log_ratio, zero).sum(0)
    dl = torch.where(known, delta.clamp(min=0) * log_ratio, zero).sum(0)
    d = (du + eps) / (dl + eps)
    seen = torch.isfinite(cur)
    w_lambda = torch.where(seen, 1.0 - cur, zero).sum(0) / seen.sum(0).clamp_min(1)
    w_lambda = torch.where(seen.any(0), w_lambda, torch.ones_like(w_lambda))
    return d, w_lambda, w_lambda * d.pow(alpha)


def normalise_weights(w: Tensor) -> Tensor:
    """Scale to mean 1 over classes (uniform if every weight is 0)."""
    total = w.sum()
    return torch.where(total > 0, w * w.numel() / total.clamp_min(1e-12), torch.ones_like(w))


def gumbel_softmax(logits: Tensor, temperature: float, generator: torch.Generator) -> Tensor:
    """Softmax of ``(logits + Gumbel noise) / temperature`` along channels, noise from ``generator``."""
    u = _draw(tuple(logits.shape), generator, logits.device).clamp(1e-10, 1.0 - 1e-7)
    return ((logits.float() - torch.log(-torch.log(u))) / temperature).softmax(1)


def rs_pseudo_label(logits_xi: Tensor | None, logits_psi: Tensor, generator: torch.Generator, rs: bool = True,
                    temperature: float = 1.0, sigma: float = 1.0) -> Tensor:
    """Eq. 7: ``argmax(Smooth(GumbelSoftmax(p^{u;xi})) + softmax(p^{u;psi}))`` as (B, *S) labels."""
    p_psi = logits_psi.float().softmax(1)
    if logits_xi is None:
        return p_psi.argmax(1)
    if not rs:
        return (logits_xi.float().softmax(1) + p_psi).argmax(1)
    # Eq. 7 applies Gumbel-softmax to the probability map p itself (as its logits), not to log p: with
    # log p the draw is a sample of Categorical(p), which stays one-hot where the diffusion map is
    # over-confident, and the randomness meant to let a confident p^{u;psi} override it would vanish.
    q = gumbel_softmax(logits_xi.float().softmax(1), temperature, generator)
    if sigma > 0:
        q = gaussian_blur(q, torch.full((q.shape[0],), sigma, device=q.device), math.ceil(3 * sigma))
    return (q + p_psi).argmax(1)


class SVDA:
    """Sampling-based volumetric data augmentation: ``n_ops`` operations drawn without replacement.

    Spatial operations resample image and label with one grid (label by one-hot + argmax, through
    :class:`RandomDeformation`); IGNORE voxels ride along as an extra class. Parameters are drawn per
    sample; images stay in [0, 1].
    """

    SPATIAL = ("crop", "rotation", "scaling")
    INTENSITY = ("blur", "brightness", "contrast", "gamma")
    OPS = SPATIAL + INTENSITY

    def __init__(self, num_classes: int, n_ops: int = 3, rotation_degrees: float = 30.0,
                 scale_range: tuple[float, float] = (0.7, 1.4), crop_fraction_range: tuple[float, float] = (0.7, 0.9),
                 blur_sigma_range: tuple[float, float] = (0.5, 1.0),
                 brightness_range: tuple[float, float] = (0.75, 1.25),
                 contrast_range: tuple[float, float] = (0.75, 1.25),
                 gamma_range: tuple[float, float] = (0.7, 1.5)) -> None:
        if not 0 <= n_ops <= len(self.OPS):
            raise ValueError(f"n_ops must be in [0, {len(self.OPS)}], got {n_ops}")
        for name, (lo, hi) in {"scale_range": scale_range, "crop_fraction_range": crop_fraction_range,
                               "blur_sigma_range": blur_sigma_range, "brightness_range": brightness_range,
                               "contrast_range": contrast_range, "gamma_range": gamma_range}.items():
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must satisfy 0 < low <= high, got {(lo, hi)}")
        if crop_fraction_range[1] > 1:
            raise ValueError(f"crop_fraction_range must stay <= 1, got {crop_fraction_range}")
        self.num_classes = num_classes
        self.n_ops = n_ops
        self.rotation = RandomDeformation(DeformationParams(rotation_degrees=rotation_degrees, scale_range=(1.0, 1.0),
                                                            shift_fraction=0.0, alpha=0.0), num_classes + 1)
        self.scale_range, self.crop_fraction_range = scale_range, crop_fraction_range
        self.blur_sigma_range, self.brightness_range = blur_sigma_range, brightness_range
        self.contrast_range, self.gamma_range = contrast_range, gamma_range

    def sample_ops(self, cpu_generator: torch.Generator) -> tuple[str, ...]:
        idx = torch.randperm(len(self.OPS), generator=cpu_generator)[: self.n_ops]
        return tuple(self.OPS[i] for i in idx.tolist())

    @staticmethod
    def _uniform(n: int, bounds: tuple[float, float], generator: torch.Generator, device: torch.device) -> Tensor:
        return bounds[0] + (bounds[1] - bounds[0]) * _draw((n,), generator, device)

    def _zoom_grid(self, scale: Tensor, offset: Tensor, spatial: tuple[int, ...]) -> Tensor:
        """Grid sampling ``scale * x + offset`` (normalised coords): < 1 zooms in."""
        b, d = scale.shape[0], len(spatial)
        eye = torch.eye(d, device=scale.device)
        theta = torch.cat([scale.view(b, 1, 1) * eye, offset.view(b, d, 1)], 2)
        return F.affine_grid(theta, [b, 1, *spatial], align_corners=False)

    def _spatial_grid(self, op: str, b: int, spatial: tuple[int, ...], generator: torch.Generator,
                      device: torch.device) -> Tensor:
        if op == "rotation":
            return self.rotation.sample_grid(b, spatial, device=device, generator=generator)
        d = len(spatial)
        if op == "scaling":  # content zoom z -> grid scale 1/z, centred
            scale = 1.0 / self._uniform(b, self.scale_range, generator, device)
            return self._zoom_grid(scale, torch.zeros(b, d, device=device), spatial)
        # crop: a box of side ``fraction`` anywhere inside the image, resized to the full size
        scale = self._uniform(b, self.crop_fraction_range, generator, device)
        offset = (2 * _draw((b, d), generator, device) - 1) * (1 - scale)[:, None]
        return self._zoom_grid(scale, offset, spatial)

    def _intensity(self, op: str, image: Tensor, generator: torch.Generator) -> Tensor:
        b, dev = image.shape[0], image.device
        view = (b,) + (1,) * (image.ndim - 1)
        if op == "blur":
            sigma = self._uniform(b, self.blur_sigma_range, generator, dev)
            out = gaussian_blur(image, sigma, math.ceil(3 * self.blur_sigma_range[1]))
        elif op == "brightness":
            out = image * self._uniform(b, self.brightness_range, generator, dev).view(view)
        elif op == "contrast":
            mean = image.mean(dim=tuple(range(1, image.ndim)), keepdim=True)
            out = (image - mean) * self._uniform(b, self.contrast_range, generator, dev).view(view) + mean
        else:  # gamma
            out = image.clamp(0, 1).pow(self._uniform(b, self.gamma_range, generator, dev).view(view))
        return out.clamp(0, 1)

    def __call__(self, image: Tensor, label: Tensor | None, generator: torch.Generator,
                 ops: tuple[str, ...]) -> tuple[Tensor, Tensor | None]:
        """Apply ``ops`` to ``image`` (B, C, *S) and, spatially, to ``label`` (B, *S).

        The spatial operations are composed into one sampling grid (one interpolation, so the label is
        discretised once and stays exactly aligned with the image); intensity operations follow in order.
        """
        unknown = set(ops) - set(self.OPS)
        if unknown:
            raise ValueError(f"unknown SVDA operations {sorted(unknown)}; known: {self.OPS}")
        spatial = tuple(image.shape[2:])
        grid: Tensor | None = None
        for op in (o for o in ops if o in self.SPATIAL):
            g = self._spatial_grid(op, image.shape[0], spatial, generator, image.device)
            # Applying op1 then op2 samples the input at g1(g2(p)): resample g1's coordinates at g2.
            grid = g if grid is None else F.grid_sample(grid.movedim(-1, 1), g, mode="bilinear",
                                                        padding_mode="border", align_corners=False).movedim(1, -1)
        if grid is not None:
            extra = self.num_classes  # IGNORE carried as one extra class through the resampling
            lab = None if label is None else torch.where(label == IGNORE_INDEX, extra, label)
            out, lab = self.rotation.apply(grid, image, lab)
            assert out is not None
            image = out
            label = None if lab is None else torch.where(lab == extra, IGNORE_INDEX, lab)
        for op in (o for o in ops if o in self.INTENSITY):
            image = self._intensity(op, image, generator)
        return image, label


# --------------------------------------------------------------------------- the method


@register
class AggregatingDecoupling(Method):
    name = "ad"
    summary = ("A&D (GenericSSL) comparator: Aggregating & Decoupling, a diffusion-conditioned shared encoder "
               "with denoising and difficulty-aware decoders on source labels and a pseudo-labelled target "
               "decoder used alone for prediction.")
    Options = ADOptions
    uses_target_images = True

    def build(self, ctx: TrainContext) -> None:
        o = self.options
        self.num_classes = ctx.num_classes
        self.features = o.features or ctx.config.network.init_filters
        self.levels = o.levels or len(ctx.config.network.blocks_down)
        self.net = ADNetwork(ctx.spatial_dims, ctx.in_channels, ctx.num_classes, self.features, self.levels,
                             diffusion=o.diffusion, shared_init=o.shared_init).to(ctx.device)
        self.student = self.net.core
        scheduler = DDPMScheduler(num_train_timesteps=o.timesteps, schedule=o.noise_schedule)
        self.alphas_cumprod = scheduler.alphas_cumprod.to(ctx.device, torch.float32)
        self.svda = (SVDA(ctx.num_classes, o.n_aug, o.rotation_degrees, tuple(o.scale_range),
                          tuple(o.crop_fraction_range), tuple(o.blur_sigma_range), tuple(o.brightness_range),
                          tuple(o.contrast_range), tuple(o.gamma_range)) if o.svda else None)
        # DRS state (resumed from checkpoints): the Dice window and how many rows were recorded.
        self.dice_history = torch.full((o.tau + 1, ctx.num_classes), math.nan, device=ctx.device)
        self.dice_updates = 0
        self.class_weights = torch.ones(ctx.num_classes, device=ctx.device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    # ----------------------------------------------------------------- diffusion
    def noisy_label(self, labels: Tensor, t: Tensor, generator: torch.Generator) -> Tensor:
        """Eq. 1: ``y_t = sqrt(abar_t) y_0 + sqrt(1 - abar_t) eps`` on the one-hot label."""
        y0 = _one_hot(labels.long(), self.num_classes)
        abar = self.alphas_cumprod[t].view(-1, *([1] * (y0.ndim - 1)))
        return abar.sqrt() * y0 + (1 - abar).sqrt() * _draw(tuple(y0.shape), generator, y0.device, normal=True)

    @torch.no_grad()
    def ddim_sample(self, image: Tensor, generator: torch.Generator) -> Tensor:
        """Deterministic DDIM from pure noise; returns the last step's ``y_0`` logits (``p^{u;xi}``)."""
        o = self.options
        steps = min(o.ddim_steps, o.timesteps)
        stride = o.timesteps // steps
        b = image.shape[0]
        y = _draw((b, self.num_classes, *image.shape[2:]), generator, image.device, normal=True)
        logits = y
        for i in range(steps):
            t = o.timesteps - 1 - i * stride
            abar = self.alphas_cumprod[t]
            abar_prev = self.alphas_cumprod[t - stride] if t - stride >= 0 else abar.new_tensor(1.0)
            logits = self.net.denoise(image, y, torch.full((b,), t, device=image.device, dtype=torch.long))
            y0 = logits.float().softmax(1)
            eps = (y - abar.sqrt() * y0) / (1 - abar).sqrt()
            y = abar_prev.sqrt() * y0 + (1 - abar_prev).sqrt() * eps
        return logits

    # ----------------------------------------------------------------- DRS
    @torch.no_grad()
    def update_difficulty(self, probs: Tensor, labels: Tensor,
                          reduce: Callable[[Tensor], Tensor] | None = None) -> Tensor:
        """Record this step's class Dice and refresh the class weights of L_diff; returns the Dice.
        ``reduce``: sums over the ranks (see :func:`class_dice`)."""
        dice = class_dice(probs, labels, reduce=reduce)
        self.dice_history = push_history(self.dice_history, dice)
        self.dice_updates += 1
        if self.options.drs and self.dice_updates > self.options.tau:
            _, _, w = difficulty_weights(self.dice_history, self.options.alpha)
            self.class_weights = normalise_weights(w)
        return dice

    @staticmethod
    def _global_sum(ctx: TrainContext) -> Callable[[Tensor], Tensor] | None:
        # One process: no reduction at all, so its numbers stay exactly those it always computed.
        return ctx.all_reduce_sum if ctx.world_size > 1 else None

    def unsup_weight(self, ctx: TrainContext) -> float:
        return self.options.mu * sigmoid_rampup(ctx.step, int(self.options.rampup_fraction * ctx.total_steps))

    # ----------------------------------------------------------------- step
    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, Tensor]:
        assert batch.target_image is not None
        o = self.options
        x_l, y_l, x_u = batch.source_image, batch.source_label, batch.target_image
        if self.svda is not None:
            x_l, y_l_aug = self.svda(x_l, y_l, ctx.generator, self.svda.sample_ops(ctx.cpu_generator))
            assert y_l_aug is not None
            y_l = y_l_aug
            x_u, _ = self.svda(x_u, None, ctx.generator, self.svda.sample_ops(ctx.cpu_generator))
        n = x_l.shape[0]
        zero = torch.zeros((), device=x_l.device)

        # Image-only flows share one encoder pass (GroupNorm: batching changes nothing per sample).
        feats = self.net.encoder(torch.cat([x_l, x_u]))
        f_l, f_u = [f[:n] for f in feats], [f[n:] for f in feats]
        logits_psi = self.net.psi(f_l)
        logits_theta = self.net.theta(f_u)

        if o.diffusion:
            t = torch.randint(0, o.timesteps, (n,), generator=ctx.generator, device=ctx.generator.device)
            t = t.to(x_l.device)
            logits_xi = self.net.denoise(x_l, self.noisy_label(y_l, t, ctx.generator), t)
            deno = dice_ce(logits_xi, y_l)
            dice = self.update_difficulty(logits_xi.detach().float().softmax(1), y_l, self._global_sum(ctx))
        else:
            deno = zero
            dice = self.update_difficulty(logits_psi.detach().float().softmax(1), y_l, self._global_sum(ctx))
        diff = dice_ce(logits_psi, y_l, self.class_weights)

        with torch.no_grad():  # pseudo-labels: stopped gradient, current weights
            psi_u = self.net.psi([f.detach() for f in f_u])
            xi_u = self.ddim_sample(x_u, ctx.generator) if o.diffusion else None
            pseudo = rs_pseudo_label(xi_u, psi_u, ctx.generator, o.rs, o.gumbel_temperature, o.smoothing_sigma)
        unsup = dice_ce(logits_theta, pseudo)
        mu = self.unsup_weight(ctx)
        loss = deno + diff + mu * unsup
        return {"loss": loss, "deno": deno.detach(), "diff": diff.detach(), "unsup": unsup.detach(), "mu": zero + mu,
                "dice_labelled": torch.nan_to_num(dice, nan=0.0).sum() / torch.isfinite(dice).sum().clamp_min(1),
                "class_weight_min": self.class_weights.min(), "class_weight_max": self.class_weights.max()}

    @torch.no_grad()
    def after_optimizer_step(self, ctx: TrainContext) -> None:
        """EMA transfer of the labelled decoders into the unlabelled one (decoders have no buffers)."""
        if not self.options.ema_transfer:
            return
        sources = [m for m in (self.net.xi, self.net.psi) if m is not None]
        keep = self.options.transfer_decay
        for p_theta, *p_src in zip(self.net.theta.parameters(), *(m.parameters() for m in sources), strict=True):
            mean = p_src[0] if len(p_src) == 1 else torch.stack(p_src).mean(0)
            p_theta.lerp_(mean, 1.0 - keep)

    # ----------------------------------------------------------------- inference / bundle
    def inference_network(self) -> nn.Module:
        return self.net.core

    def bundle_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Tell :func:`segmenter_from_spec` to rebuild the encoder + unlabelled decoder."""
        return {**spec, "architecture": "ad", "ad": {"features": self.features, "levels": self.levels}}

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {"network": self.net.state_dict(), "dice_history": self.dice_history.clone(),
                "dice_updates": self.dice_updates, "class_weights": self.class_weights.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["network"])
        device = self.dice_history.device
        self.dice_history = state["dice_history"].to(device)
        self.dice_updates = int(state["dice_updates"])
        self.class_weights = state["class_weights"].to(device)

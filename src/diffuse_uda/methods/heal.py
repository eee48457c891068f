"""HEAL: learning-free, source-free UDA (hierarchical denoising, edge-guided selection, size-aware fusion).

HEAL adapts by inference alone. At the source site a segmenter ``M_S`` and a label-conditioned
diffusion model are trained on the labelled source data (:func:`train_source_diffusion` trains the
latter); at the target site only those two frozen models and the unlabelled target images are used:

1. **Hierarchical denoising (HD, Sec. 2.1).** ``Y_T = argmax M_S(X_T)``. Entropy denoising (Eqs. 1-2)
   resets voxels whose entropy ``H(v)`` (bits) exceeds ``tau_1`` to background; NIG denoising
   (Eqs. 3-5) then resets voxels whose Normal-Inverse-Gamma variance, driven by the regional
   entropy ``E(v)`` (3x3 mean of ``H``) and by the entropy stage's changes, exceeds ``tau_2``.
   The result is the refined pseudo-label ``Y_T*``; removed voxels hold background (0), exactly as
   the paper's indicator products do.
2. **Edge-guided selection (EGS, Sec. 2.2).** ``n`` images are sampled from the diffusion model
   conditioned on ``Y_T*``; the one whose Canny edges best cover the edges of ``Y_T*`` (Eq. 7) is
   kept as ``I_B`` and segmented by ``M_S``.
3. **Size-aware fusion (SAF, Sec. 2.3).** The foreground class with the fewest voxels in ``Y_T*``
   is taken from ``Y_T*``; every other class from ``M_S(I_B)``.

The flags of :class:`HEALConfig` reproduce the paper's ablation rows: HD only (no diffusion),
HD + EGS (output ``M_S(I_B)``) and HEAL (HD + EGS + SAF); switching HD off conditions the
diffusion model on the raw pseudo-label instead.

In 2D mode (``preprocessing.spatial_dims == 2``) a volume is processed slice by slice: one set of
``n`` samples and one selection per axial slice; in 3D mode per volume (Canny per slice, counts
summed). No weight is updated: both networks are frozen (``requires_grad_(False)``, ``eval()``)
and only run under ``torch.no_grad``.

NIG parameterisation (Eqs. 3-5, as implemented here)
    Eq. 3 is the Normal-Inverse-Gamma density of evidential regression with ``(gamma, omega,
    alpha, beta)`` in the roles of ``(mu_0, nu, alpha, beta)``. Read literally, Eqs. 4-5 do not
    give a usable variance: ``alpha = kappa |Y_T - Y_T^entropy| + eps`` equals ``eps < 1`` at every
    voxel the entropy stage kept, so ``alpha - 1 < 0`` and ``Var = omega / (beta (alpha - 1))`` is
    negative (every such voxel passes any threshold), and ``omega / beta`` is not monotone in
    ``E(v)``. We therefore keep ``beta`` and ``omega`` of Eq. 4 and fix the two inconsistencies:

    * ``E(v)`` is the 3x3 (3x3x3 in 3D mode) mean of the entropy normalised by ``log2 K`` so it
      lies in [0, 1] and ``beta`` stays positive for any number of classes ``K``;
    * ``beta = zeta_1 (1 - E) + zeta_2`` is read as the *rate* of the Gamma prior on the precision
      ``1 / sigma^2`` and ``omega = 1 / (eta_1 E + eta_2)`` as the pseudo-count of ``mu``, which
      gives ``Var[mu] = E[sigma^2] / omega = 1 / (omega * beta * (alpha - 1))
      = (eta_1 E + eta_2) / ((zeta_1 (1 - E) + zeta_2) (alpha - 1))``, strictly increasing in ``E``;
    * ``alpha = 1 + eps + kappa (1 - d(v))`` with ``d(v) = 1[Y_T(v) != Y_T^entropy(v)]`` (class
      indices are nominal, so the discrepancy is binarised): agreement adds ``kappa`` units of
      evidence, a voxel the entropy stage changed keeps only ``eps`` and so gets a huge variance.
      Hence ``Y_T* = Y_T * 1[Var <= tau_2]`` (Eq. 5, applied to ``Y_T`` as printed) is contained
      in ``Y_T^entropy``: the two stages are hierarchical (we also AND the entropy mask explicitly
      so this holds for any constants).

    The paper gives only ``tau_2 = 0.2``; ``kappa, eps, zeta, eta`` are ours, chosen so that with
    ``tau_2 = 0.2`` a voxel with confident neighbours (``E = 0``, ``Var ~ 0.024``) passes and the
    cut-off lies at a regional normalised entropy of about 0.26.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, NonNegativeInt, PositiveInt, field_validator, model_validator
from scipy import ndimage
from scipy.special import xlogy
from skimage.feature import canny
from tqdm.auto import tqdm

from diffuse_uda.config import ConfigModel
from diffuse_uda.data.dataset_json import list_cases, load_dataset_json
from diffuse_uda.data.io import atomic_write_json, ensure_output_dir, write_nifti
from diffuse_uda.data.preprocessing import PreparedCase, prepare_case, prepare_split, restore_labels, stack_samples
from diffuse_uda.data.task import Task
from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.samplers import DEFAULT_DDIM_STEPS, sample_images
from diffuse_uda.diffusion.trainer import PairSample, load_diffusion, train_diffusion
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.evaluation.prediction_info import write_prediction_info
from diffuse_uda.inference.predict import predict_probabilities
from diffuse_uda.training import distributed
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.trainer import resolve_device

__all__ = [
    "HEAL_JSON",
    "HDResult",
    "HEALConfig",
    "adapt_source_free",
    "edge_agreement",
    "entropy_map",
    "hierarchical_denoise",
    "image_edges",
    "local_entropy",
    "mask_edges",
    "nig_variance",
    "select_sample",
    "size_aware_fusion",
    "smallest_class",
    "source_pairs",
    "train_source_diffusion",
]

HEAL_JSON = "heal.json"
EDGE_METRICS: tuple[str, ...] = ("recall", "f1")
BACKGROUND = 0


class HEALConfig(ConfigModel):
    """Settings of HEAL (paper Sec. 3.1.2 where it gives them).

    Attributes:
        entropy_threshold: ``tau_1`` on the voxel-wise entropy in bits (paper: 0.2).
        entropy_quantile: if set, the label-free calibrated thresholds: ``tau_1`` is this quantile of
            the entropy over the case's voxels predicted as foreground, so the entropy stage removes
            the same share ``1 - q`` of the most uncertain foreground whatever the segmenter's
            confidence on the target; and ``tau_2`` is the NIG variance of an agreeing voxel whose
            regional entropy equals ``tau_1`` (normalised), so the NIG stage cuts regions at the same
            level instead of at the fixed ``E ~ 0.26``. ``None``: the paper's fixed thresholds.
        variance_threshold: ``tau_2`` on the NIG variance (paper: 0.2; derived from ``tau_1`` when
            ``entropy_quantile`` is set).
        kappa, epsilon: evidence per agreeing voxel and the offset of ``alpha`` (module docstring).
        zeta1, zeta2: slope and offset of ``beta`` in the regional entropy.
        eta1, eta2: slope and offset of ``1 / omega`` in the regional entropy.
        local_window: side of the neighbourhood of the regional entropy ``E(v)`` (paper: 3).
        n_samples: diffusion samples per condition ``n`` (paper: 6).
        sampler: ``"ddim"`` or ``"ddpm"``. The paper samples Med-DDPM with its 250 training steps
            (``sampler="ddpm", steps=None``, see :meth:`paper`); the default is 50 DDIM steps, ~5x
            cheaper, which matters for ``n`` samples per slice.
        steps: reverse steps (``None``: all training steps for DDPM, 50 for DDIM; DDIM is capped at the
            model's training steps ``T``, DDPM must run all of them).
        eta: DDIM stochasticity (0 = deterministic given the initial noise, which still differs
            between the ``n`` samples).
        canny_sigma: Gaussian width of the Canny detector.
        canny_threshold: Canny hysteresis low threshold on the gradient magnitude of images in
            [0, 1] (paper: 0.1); the high threshold is twice it (scikit-image's default ratio).
        edge_tolerance: pixels an edge may be off and still count as aligned (0 = exact overlap
            as in Eq. 7; 1 absorbs the one-pixel jitter between two independently smoothed
            Canny maps).
        edge_metric: ``"recall"`` (Eq. 7: ``|E_I & E_Y| / |E_Y|``) or ``"f1"`` (also penalises
            spurious edges in the sample).
        batch_size: diffusion samples generated per forward pass.
        seed: seed of the sampling noise (each sample's noise depends only on seed, case, slice and
            sample index, so results do not depend on ``batch_size``).
        hierarchical_denoising: HD on (else the raw pseudo-label conditions the diffusion model).
        edge_guided_selection: EGS on (else a single sample is drawn and used).
        size_aware_fusion: SAF on (skipped when there is one foreground class, as the paper does for
            polyps: it would return the HD label). With EGS and SAF both off no diffusion is used.
    """

    model_config = ConfigDict(frozen=True)

    entropy_threshold: float = Field(0.2, ge=0.0)
    entropy_quantile: float | None = Field(None, ge=0.0, le=1.0)
    variance_threshold: float = Field(0.2, ge=0.0)
    kappa: float = Field(2.0, gt=0.0)
    epsilon: float = Field(1e-3, gt=0.0)
    zeta1: float = Field(1.0, gt=0.0)
    zeta2: float = Field(0.05, gt=0.0)
    eta1: float = Field(1.0, gt=0.0)
    eta2: float = Field(0.05, gt=0.0)
    local_window: PositiveInt = 3
    n_samples: PositiveInt = 6
    sampler: Literal["ddpm", "ddim"] = "ddim"
    steps: PositiveInt | None = 50
    eta: float = Field(0.0, ge=0.0)
    canny_sigma: float = Field(1.0, gt=0.0)
    canny_threshold: float = Field(0.1, gt=0.0)
    edge_tolerance: NonNegativeInt = 1
    edge_metric: Literal["recall", "f1"] = "recall"
    batch_size: PositiveInt = 48
    seed: NonNegativeInt = 0
    hierarchical_denoising: bool = True
    edge_guided_selection: bool = True
    size_aware_fusion: bool = True

    @field_validator("local_window")
    @classmethod
    def _odd_window(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"local_window must be an odd number, got {value}")
        return value

    @model_validator(mode="after")
    def _thresholds_from_one_source(self) -> HEALConfig:
        # With the quantile rule both thresholds are derived per case, so a fixed tau set beside it
        # would be silently ignored. The defaults are accepted: a saved config lists every field.
        default = type(self).model_fields
        fixed = {name: getattr(self, name) for name in ("entropy_threshold", "variance_threshold")
                 if getattr(self, name) != default[name].default}
        if self.entropy_quantile is not None and fixed:
            raise ValueError(f"entropy_quantile derives tau_1 and tau_2 from each case; {fixed} would be "
                             "ignored: set either entropy_quantile or the fixed thresholds")
        return self

    @classmethod
    def paper(cls, **overrides: Any) -> HEALConfig:
        """The paper's sampling (DDPM over all training steps) and exact edge overlap."""
        return cls(**{"sampler": "ddpm", "steps": None, "edge_tolerance": 0, **overrides})

    @property
    def uses_diffusion(self) -> bool:
        """Whether the diffusion model is sampled at all (not in the HD-only ablation)."""
        return self.edge_guided_selection or self.size_aware_fusion

    def checked(self) -> HEALConfig:
        """Kept for callers that validated explicitly: a HEALConfig is validated when it is made."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# ---------------------------------------------------------------------- hierarchical denoising
def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().float().cpu().numpy()
    return np.asarray(array)


def entropy_map(probs: np.ndarray | torch.Tensor, base: float = 2.0) -> np.ndarray:
    """Voxel-wise entropy ``H(v) = -sum_c p_c log p_c`` (Eq. 1) of class probabilities ``(K, *S)``.

    In bits by default (the paper's ``log2``): uniform probabilities give ``log2 K``, one-hot 0.
    """
    p = np.clip(_as_numpy(probs).astype(np.float64), 0.0, 1.0)
    return (-xlogy(p, p).sum(axis=0) / math.log(base)).astype(np.float32)


def local_entropy(entropy: np.ndarray, spatial_dims: int = 2, window: int = 3) -> np.ndarray:
    """Regional entropy ``E(v)``: mean of ``entropy`` over a ``window``-wide neighbourhood.

    2D mode averages in-plane only (``window x window`` per slice of the last axis when the array
    is a stack of slices), 3D mode over ``window^3``. Borders repeat the edge values, so a border
    voxel is not made to look confident by zero padding.
    """
    entropy = np.asarray(entropy, dtype=np.float32)
    size = (window, window) + (1,) * (entropy.ndim - 2) if spatial_dims == 2 else (window,) * entropy.ndim
    return ndimage.uniform_filter(entropy, size=size, mode="nearest")


def nig_variance(local_entropy: np.ndarray, discrepancy: np.ndarray | None = None,
                 config: HEALConfig | None = None) -> np.ndarray:
    """NIG variance ``(eta1 E + eta2) / ((zeta1 (1 - E) + zeta2) (alpha - 1))`` (see module docstring).

    Args:
        local_entropy: regional entropy ``E(v)``, normalised to [0, 1] (clipped to it).
        discrepancy: where the entropy stage changed the label (bool); ``None`` = nowhere.
        config: constants ``kappa, epsilon, zeta*, eta*``.
    """
    cfg = config or HEALConfig()
    e = np.clip(np.asarray(local_entropy, dtype=np.float64), 0.0, 1.0)
    d = np.zeros(e.shape, dtype=np.float64) if discrepancy is None else np.asarray(discrepancy, dtype=np.float64)
    alpha = 1.0 + cfg.epsilon + cfg.kappa * (1.0 - d)
    beta = cfg.zeta1 * (1.0 - e) + cfg.zeta2
    omega = 1.0 / (cfg.eta1 * e + cfg.eta2)
    return (1.0 / (omega * beta * (alpha - 1.0))).astype(np.float32)


@dataclass
class HDResult:
    """Output of :func:`hierarchical_denoise` (all arrays on the grid of the probabilities).

    Attributes:
        labels: refined pseudo-label ``Y_T*`` (uint8); unreliable voxels hold background (0).
        initial: ``Y_T = argmax`` of the probabilities.
        entropy_labels: ``Y_T^entropy`` (Eq. 2).
        entropy: voxel-wise entropy in bits.
        local_entropy: regional entropy ``E(v)`` normalised to [0, 1].
        variance: NIG variance (Eq. 5).
        entropy_threshold: the ``tau_1`` used (differs from the config with ``entropy_quantile``).
        variance_threshold: the ``tau_2`` used (likewise).
    """

    labels: np.ndarray
    initial: np.ndarray
    entropy_labels: np.ndarray
    entropy: np.ndarray
    local_entropy: np.ndarray
    variance: np.ndarray
    entropy_threshold: float
    variance_threshold: float

    def removed_fractions(self) -> tuple[float, float]:
        """Fractions of the initially-foreground voxels reset by the entropy and by the NIG stage."""
        fg = self.initial != BACKGROUND
        n = max(int(fg.sum()), 1)
        by_entropy = int((fg & (self.entropy_labels == BACKGROUND)).sum())
        by_nig = int((fg & (self.entropy_labels != BACKGROUND) & (self.labels == BACKGROUND)).sum())
        return by_entropy / n, by_nig / n


def hierarchical_denoise(probs: np.ndarray | torch.Tensor, spatial_dims: int = 2,
                         config: HEALConfig | None = None) -> HDResult:
    """Entropy then NIG-variance denoising of the pseudo-label of softmax ``probs`` ``(K, *S)``.

    Unreliable voxels are filled with background (0): Eqs. 2 and 5 multiply the label by an
    indicator, and background is also the safest condition for the diffusion model (it renders
    no structure there rather than a wrong one).
    """
    cfg = config or HEALConfig()
    p = _as_numpy(probs).astype(np.float32)
    num_classes = p.shape[0]
    initial = p.argmax(0).astype(np.uint8)
    h = entropy_map(p)
    max_entropy = max(math.log2(num_classes), 1e-12)
    tau1, tau2 = cfg.entropy_threshold, cfg.variance_threshold
    if cfg.entropy_quantile is not None and (initial != BACKGROUND).any():
        tau1 = float(np.quantile(h[initial != BACKGROUND], cfg.entropy_quantile))
        # The regional cut-off at the same (normalised) level as the voxel cut-off: Var is increasing in E.
        tau2 = float(nig_variance(np.array([tau1 / max_entropy]), None, cfg)[0])
    confident = h <= tau1
    entropy_labels = np.where(confident, initial, BACKGROUND).astype(np.uint8)
    # Normalised by the maximum entropy so E(v) is in [0, 1] whatever K is.
    e = local_entropy(h / max_entropy, spatial_dims, cfg.local_window)
    variance = nig_variance(e, initial != entropy_labels, cfg)
    keep = (variance <= tau2) & confident
    labels = np.where(keep, initial, BACKGROUND).astype(np.uint8)
    return HDResult(labels, initial, entropy_labels, h, e, variance, float(tau1), float(tau2))


# ---------------------------------------------------------------------- edge-guided selection
def _canny(image: np.ndarray, config: HEALConfig) -> np.ndarray:
    return canny(image.astype(np.float64), sigma=config.canny_sigma, low_threshold=config.canny_threshold,
                 high_threshold=2.0 * config.canny_threshold)


def _slices(array: np.ndarray) -> list[np.ndarray]:
    """2D slices of a 2D array (itself) or of a 3D array (along the last axis)."""
    return [array] if array.ndim == 2 else [array[..., z] for z in range(array.shape[-1])]


def image_edges(image: np.ndarray, config: HEALConfig | None = None) -> np.ndarray:
    """Canny edges (bool) of one image channel ``(*S)``; 3D arrays are processed per slice (last axis)."""
    cfg = config or HEALConfig()
    img = np.asarray(image, dtype=np.float64)
    return np.stack([_canny(s, cfg) for s in _slices(img)], axis=-1).reshape(img.shape)


def mask_edges(mask: np.ndarray, config: HEALConfig | None = None) -> np.ndarray:
    """Canny edges (bool) of a label map ``(*S)``: the union over one binary image per class.

    Splitting by class makes every class boundary a unit step (a label-valued image would make a
    1|2 border weaker than a 0|3 one, and its detection would depend on the label numbering).
    """
    mask = np.asarray(mask)
    out = np.zeros(mask.shape, dtype=bool)
    for value in np.unique(mask):
        out |= image_edges((mask == value).astype(np.float64), config)
    return out


def _dilate(edges: np.ndarray, tolerance: int) -> np.ndarray:
    """In-plane dilation by ``tolerance`` pixels (square neighbourhood, per slice)."""
    if tolerance <= 0 or not edges.any():
        return edges
    size = 2 * tolerance + 1
    structure = np.ones((size, size) + (1,) * (edges.ndim - 2), dtype=bool)
    return ndimage.binary_dilation(edges, structure=structure)


def edge_agreement(sample_image: np.ndarray | torch.Tensor, condition_mask: np.ndarray | torch.Tensor,
                   config: HEALConfig | None = None, condition_edges: np.ndarray | None = None) -> float:
    """Structural consistency ``S_i`` (Eq. 7) of a generated image with its condition.

    Args:
        sample_image: ``(C, *S)`` or ``(*S)`` image in [0, 1] (``S`` 2D, or 3D = slices on the
            last axis).
        condition_mask: ``(*S)`` label map the sample was generated from.
        config: Canny settings, ``edge_tolerance`` and ``edge_metric``.
        condition_edges: :func:`mask_edges` of the condition, when already computed.

    Returns:
        ``|E_I & E_Y| / |E_Y|`` (recall, the paper) or the F1 of the two edge maps, where an edge
        pixel counts as matched within ``edge_tolerance`` pixels; 0 when the condition has no edge.
    """
    cfg = config or HEALConfig()
    mask = _as_numpy(condition_mask)
    img = _as_numpy(sample_image).astype(np.float64)
    if img.ndim == mask.ndim:
        img = img[None]
    if tuple(img.shape[1:]) != tuple(mask.shape):
        raise ValueError(f"sample shape {img.shape} does not match condition shape {mask.shape}")
    edges_y = mask_edges(mask, cfg) if condition_edges is None else condition_edges
    n_y = int(edges_y.sum())
    if n_y == 0:
        return 0.0
    edges_i = np.zeros(mask.shape, dtype=bool)
    for channel in img:  # an edge in any channel is an edge of the image
        edges_i |= image_edges(channel, cfg)
    recall = float((_dilate(edges_i, cfg.edge_tolerance) & edges_y).sum()) / n_y
    if cfg.edge_metric == "recall":
        return recall
    n_i = int(edges_i.sum())
    precision = float((edges_i & _dilate(edges_y, cfg.edge_tolerance)).sum()) / n_i if n_i else 0.0
    return 0.0 if precision + recall == 0 else 2.0 * precision * recall / (precision + recall)


def select_sample(samples: np.ndarray | torch.Tensor, condition_mask: np.ndarray | torch.Tensor,
                  config: HEALConfig | None = None) -> tuple[int, list[float]]:
    """Index of the sample ``(n, C, *S)`` with the highest :func:`edge_agreement`, and all scores.

    Ties keep the earliest sample, so the choice is deterministic.
    """
    arr = _as_numpy(samples)
    mask = _as_numpy(condition_mask)
    edges_y = mask_edges(mask, config)  # shared by the n samples
    scores = [edge_agreement(arr[i], mask, config, condition_edges=edges_y) for i in range(arr.shape[0])]
    return int(np.argmax(scores)), scores


# ---------------------------------------------------------------------- size-aware fusion
def _foreground_values(labels: Mapping[str, int] | Sequence[int]) -> list[int]:
    values = labels.values() if isinstance(labels, Mapping) else labels
    return sorted({int(v) for v in values if int(v) != BACKGROUND})


def smallest_class(refined: np.ndarray, labels: Mapping[str, int] | Sequence[int]) -> int | None:
    """The foreground class with the fewest voxels in ``refined`` (``v_min`` of Eq. 8).

    Classes absent from ``refined`` are not candidates: there is nothing reliable to take from
    it for them, so they come from the segmentation of the selected sample. Ties go to the lower
    label value; ``None`` when ``refined`` holds no foreground.
    """
    counts = {v: int((refined == v).sum()) for v in _foreground_values(labels)}
    present = {v: n for v, n in counts.items() if n > 0}
    if not present:
        return None
    return min(present, key=lambda v: (present[v], v))


def size_aware_fusion(refined: np.ndarray, selected_seg: np.ndarray, labels: Mapping[str, int] | Sequence[int],
                      selected_probs: np.ndarray | None = None) -> np.ndarray:
    """Eq. 8: the smallest class from the refined pseudo-label, all other classes from ``M_S(I_B)``.

    Voxels that ``selected_seg`` gives to the smallest class but ``refined`` does not are handed
    to the runner-up class of ``selected_probs`` ``(K, *S)`` when given (keeps nested structures
    such as tumour core around enhancing tumour closed), else to background. The inverse-size
    weights ``lambda_k`` of Eq. 8 scale indicators of disjoint classes, so they do not change a
    hard label map and are not needed here.
    """
    refined = np.asarray(refined)
    fused = np.asarray(selected_seg).astype(np.uint8, copy=True)
    if refined.shape != fused.shape:
        raise ValueError(f"refined shape {refined.shape} differs from selected segmentation {fused.shape}")
    k = smallest_class(refined, labels)
    if k is None:
        return fused
    stray = (fused == k) & (refined != k)
    if stray.any():
        if selected_probs is not None:
            p = np.array(selected_probs, dtype=np.float32, copy=True)
            p[k] = -np.inf
            fused[stray] = p.argmax(0).astype(np.uint8)[stray]
        else:
            fused[stray] = BACKGROUND
    fused[refined == k] = k
    return fused


# ---------------------------------------------------------------------- adaptation
def _resize(x: torch.Tensor, size: tuple[int, ...], nearest: bool) -> torch.Tensor:
    """Resize ``(N, C, *S)``: nearest for label maps, (bi/tri)linear for images."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if nearest:
        return F.interpolate(x, size=size, mode="nearest-exact")
    dims = x.ndim - 2
    return F.interpolate(x, size=size, mode="bilinear" if dims == 2 else "trilinear", align_corners=False,
                         antialias=dims == 2)


def _noise_seed(seed: int, case_id: str, unit: int, index: int) -> int:
    """Seed of one sample's noise: independent of batching, distinct per case/slice/sample."""
    state = np.random.SeedSequence([seed, zlib.crc32(case_id.encode()), unit, index]).generate_state(2)
    return int(state[0]) << 32 | int(state[1])


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    t = torch.from_numpy(labels.astype(np.int64))
    return F.one_hot(t, num_classes).movedim(-1, 0).float()


def _sampling_steps(config: HEALConfig, diffusion_config: DiffusionConfig) -> int:
    """Reverse steps actually run: DDIM capped at the model's ``T``; DDPM always runs all ``T``."""
    T = diffusion_config.num_train_timesteps
    if config.sampler == "ddpm":
        if config.steps not in (None, T):
            raise ConfigError(f"DDPM sampling runs all {T} training steps of this model (got steps={config.steps}); "
                              "use sampler='ddim' for fewer")
        return T
    return min(config.steps or DEFAULT_DDIM_STEPS, T)


class _Adapter:
    """Per-case HEAL with the frozen networks loaded once."""

    def __init__(self, network: torch.nn.Module, diffusion: torch.nn.Module | None,
                 diffusion_config: DiffusionConfig | None, num_classes: int, image_channels: int,
                 labels: Mapping[str, int], spatial_dims: int, config: HEALConfig, device: torch.device) -> None:
        self.network = network
        self.diffusion = diffusion
        self.dcfg = diffusion_config
        self.num_classes = num_classes
        self.image_channels = image_channels
        self.labels = dict(labels)
        self.dims = spatial_dims
        self.cfg = config
        self.device = device
        self.steps = _sampling_steps(config, diffusion_config) if diffusion_config is not None else None

    def segment(self, images: torch.Tensor) -> np.ndarray:
        """Softmax of the segmenter for a batch ``(B, C, *S)`` of preprocessed images -> ``(B, K, *S)``."""
        if self.dims == 2:
            probs = predict_probabilities(self.network, images.permute(1, 2, 3, 0), 2, self.device)
            return probs.permute(3, 0, 1, 2).cpu().numpy()
        return np.stack([predict_probabilities(self.network, im, 3, self.device).cpu().numpy() for im in images])

    def adapt(self, case: PreparedCase) -> tuple[np.ndarray, dict[str, Any]]:
        """Final label map on the preprocessed grid and the case's record for heal.json."""
        cfg = self.cfg
        probs = predict_probabilities(self.network, case.image, self.dims, self.device).float().cpu().numpy()
        record: dict[str, Any] = {"case": case.case_id}
        if cfg.hierarchical_denoising:
            hd = hierarchical_denoise(probs, self.dims, cfg)
            refined = hd.labels
            by_entropy, by_nig = hd.removed_fractions()
            record.update(entropy_threshold=hd.entropy_threshold, variance_threshold=hd.variance_threshold,
                          removed_by_entropy=by_entropy, removed_by_nig=by_nig)
        else:
            refined = probs.argmax(0).astype(np.uint8)
        if not cfg.uses_diffusion:
            return refined, record

        # Units: the slices (2D mode) or the volume (3D mode) the diffusion model generates.
        masks = np.moveaxis(refined, -1, 0) if self.dims == 2 else refined[None]
        grid = tuple(masks.shape[1:])
        # Conditions without foreground are skipped: a sample of an empty mask holds no structure,
        # and its segmentation would only add hallucinations; the refined label (background) stays.
        active = [u for u in range(masks.shape[0]) if masks[u].any()]
        selected_seg = masks.copy()
        selected_probs = np.stack([_one_hot(m, self.num_classes).numpy() for m in masks])
        n = cfg.n_samples if cfg.edge_guided_selection else 1
        per_chunk = max(1, cfg.batch_size // n)
        selections = []
        for start in range(0, len(active), per_chunk):
            chunk = active[start:start + per_chunk]
            best, picks = self._generate_and_select(case.case_id, chunk, masks[chunk], n)
            seg_probs = self.segment(_resize(best, grid, nearest=False).clamp(0.0, 1.0))
            for j, u in enumerate(chunk):
                selected_probs[u] = seg_probs[j]
                selected_seg[u] = seg_probs[j].argmax(0).astype(np.uint8)
            selections += picks
        if self.dims == 2:
            selected_seg = np.moveaxis(selected_seg, 0, -1)  # (Z, H, W) -> (H, W, Z)
            selected_probs = np.moveaxis(selected_probs, 0, -1)  # (Z, K, H, W) -> (K, H, W, Z)
        else:
            selected_seg, selected_probs = selected_seg[0], selected_probs[0]
        record["units_total"] = int(masks.shape[0])
        record["units_sampled"] = len(active)
        record["selections"] = selections
        best_scores = [s["best_score"] for s in selections]
        record["mean_best_score"] = float(np.mean(best_scores)) if best_scores else None
        foreground_classes = [v for v in self.labels.values() if v != BACKGROUND]
        if cfg.size_aware_fusion and len(foreground_classes) < 2:
            # With one foreground class SAF would hand the whole answer back to the HD label; the paper
            # applies HEAL to single-class tasks (polyps) without SAF, i.e. as HD + EGS.
            record["size_aware_fusion"] = "skipped: single foreground class (as in the paper)"
        elif cfg.size_aware_fusion:
            k = smallest_class(refined, self.labels)
            names = {v: name for name, v in self.labels.items()}
            record["smallest_class"] = names.get(k, k) if k is not None else None
            return size_aware_fusion(refined, selected_seg, self.labels, selected_probs), record
        return selected_seg.astype(np.uint8), record

    def _generate_and_select(self, case_id: str, units: list[int], masks: np.ndarray,
                             n: int) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        """``n`` samples per unit mask; returns the chosen sample per unit ``(b, C, *Sd)`` and the scores."""
        assert self.diffusion is not None and self.dcfg is not None
        dsize = tuple(self.dcfg.image_size)
        cond = _resize(torch.from_numpy(masks.astype(np.int64))[:, None].float(), dsize, nearest=True)[:, 0].long()
        cond = cond.repeat_interleave(n, dim=0).to(self.device)
        gens = [torch.Generator(device=self.device).manual_seed(_noise_seed(self.cfg.seed, case_id, u, i))
                for u in units for i in range(n)]
        samples = sample_images(self.diffusion, cond, self.num_classes, self.image_channels,
                                sampler=self.cfg.sampler, steps=self.steps,
                                num_train_timesteps=self.dcfg.num_train_timesteps, schedule=self.dcfg.schedule,
                                generator=gens, eta=self.cfg.eta)
        samples_np = samples.float().cpu().numpy()
        cond_np = cond.cpu().numpy()
        chosen, picks = [], []
        for j, u in enumerate(units):
            block = slice(j * n, (j + 1) * n)
            if self.cfg.edge_guided_selection:
                idx, scores = select_sample(samples_np[block], cond_np[j * n], self.cfg)
            else:
                idx, scores = 0, [edge_agreement(samples_np[j * n], cond_np[j * n], self.cfg)]
            chosen.append(j * n + idx)
            picks.append({"unit": u, "scores": [float(s) for s in scores], "best": idx,
                          "best_score": float(scores[idx])})
        return samples[chosen].float(), picks


def adapt_source_free(segmenter_bundle: Path, diffusion_checkpoint: Path, target_dataset: Path, out_dir: Path,
                      split: str = "Ts", config: HEALConfig = HEALConfig(), device: str = "auto",
                      progress: bool = True) -> Path:
    """Segment ``target_dataset/images{split}`` with HEAL; writes ``out_dir/{case}.nii.gz`` and ``heal.json``.

    Predictions are in each image's original space (the contract of
    :func:`diffuse_uda.inference.predict.predict_dataset`). Reads only the segmenter bundle, the
    diffusion checkpoint (not at all in the HD-only ablation) and the target dataset's
    ``dataset.json`` and images: no source data and no label file. No weight is changed.

    Returns:
        ``out_dir``.
    """
    config.checked()
    dev = resolve_device(device)
    target_dataset, out_dir = Path(target_dataset), Path(out_dir)
    bundle = load_bundle(segmenter_bundle, dev)
    network = bundle.network.eval().requires_grad_(False)
    cfg = bundle.preprocessing
    dims = cfg.spatial_dims
    num_classes = int(bundle.spec["num_classes"])
    info = load_dataset_json(target_dataset)
    if int(bundle.spec["in_channels"]) != info.num_channels:
        raise DataError(target_dataset / "dataset.json",
                        f"{info.num_channels} channel(s) but the segmenter {bundle.path} expects "
                        f"{bundle.spec['in_channels']}")
    diffusion = dcfg = None
    diffusion_info: dict[str, Any] = {"checkpoint": str(diffusion_checkpoint), "used": config.uses_diffusion}
    if config.uses_diffusion:
        diffusion, dcfg, dinfo = load_diffusion(diffusion_checkpoint, dev)
        diffusion.eval().requires_grad_(False)
        diffusion_info.update(iteration=dinfo["iteration"], image_size=list(dcfg.image_size))
        if dcfg.spatial_dims != dims:
            raise DataError(diffusion_checkpoint, f"diffusion model is {dcfg.spatial_dims}D but the segmenter "
                                                  f"{bundle.path} works in {dims}D")
        if dinfo["num_classes"] != num_classes:
            raise DataError(diffusion_checkpoint, f"diffusion model has {dinfo['num_classes']} classes, the "
                                                  f"segmenter {bundle.path} has {num_classes}")
        if dinfo["image_channels"] != info.num_channels:
            raise DataError(diffusion_checkpoint, f"diffusion model makes {dinfo['image_channels']}-channel "
                                                  f"images, {target_dataset.name} has {info.num_channels}")
    adapter = _Adapter(network, diffusion, dcfg, num_classes, info.num_channels, bundle.labels, dims, config, dev)
    if adapter.steps is not None:
        diffusion_info["sampling_steps"] = adapter.steps
    ensure_output_dir(out_dir, "prediction folder")
    write_prediction_info(out_dir, bundle.labels, model=str(bundle.path.resolve()), method="heal",
                          dataset=str(target_dataset.resolve()), split=split)
    records = []
    for case_id in tqdm(list_cases(target_dataset, split), desc=f"HEAL {target_dataset.name}/images{split}",
                        disable=not progress, leave=False):
        case = prepare_case(target_dataset, split, case_id, cfg, info.num_channels, labels=None)
        final, record = adapter.adapt(case)
        labels = restore_labels(_one_hot(final, num_classes), case.original_shape, cfg)
        write_nifti(out_dir / f"{case_id}.nii.gz", labels, case.affine)
        records.append(record)
    atomic_write_json(out_dir / HEAL_JSON, {
        "method": "heal", "config": config.to_dict(), "segmenter": str(bundle.path), "diffusion": diffusion_info,
        "target_dataset": str(target_dataset), "split": split, "device": str(dev), "cases": records,
    })
    return out_dir


# ---------------------------------------------------------------------- source-site preparation
def source_pairs(cases: Sequence[PreparedCase], spatial_dims: int, size: tuple[int, ...]) -> list[PairSample]:
    """Labelled samples (slices in 2D mode, volumes in 3D) at the diffusion model's resolution.

    Only samples with foreground are kept: the model is meant to render structures, and HEAL never
    samples from an empty condition.
    """
    pairs = []
    for case in cases:
        images, labels = stack_samples([case], spatial_dims)
        if labels is None:
            raise DataError(None, f"case {case.case_id}: source pairs need labels")
        images = _resize(images, tuple(size), nearest=False).clamp(0.0, 1.0)
        labels = _resize(labels[:, None].float(), tuple(size), nearest=True)[:, 0].long()
        for i in range(images.shape[0]):
            if bool((labels[i] > 0).any()):
                sid = f"{case.case_id}_z{i:03d}" if spatial_dims == 2 else case.case_id
                pairs.append(PairSample(images[i].numpy(), labels[i].numpy().astype(np.uint8), "source", sid))
    return pairs


def train_source_diffusion(task: Task, out_dir: Path, config: DiffusionConfig, device: str = "auto",
                           progress: bool = True, cache_dir: Path | None = None) -> Path:
    """HEAL's preparation step at the source site: the source-only label-conditioned diffusion model.

    Trains on every source training slice (2D) or volume (3D) that holds foreground, resized to
    ``config.image_size``. Returns the checkpoint path (``out_dir/diffusion_last.pt``).
    """
    config.checked()
    if config.spatial_dims != task.preprocessing.spatial_dims:
        raise ConfigError(f"diffusion spatial_dims={config.spatial_dims} but task {task.name!r} is "
                          f"{task.preprocessing.spatial_dims}D")
    # Under torchrun rank 0 fills the preprocessing cache first; every rank then trains (distributed).
    cases = distributed.main_first(prepare_split, task.source_dir, "Tr", task.preprocessing, with_labels=True,
                                   cache_dir=cache_dir, progress=progress, expected_labels=task.labels)
    pairs = source_pairs(cases, config.spatial_dims, tuple(config.image_size))
    if not pairs:
        raise DataError(task.source_dir / "labelsTr", "no source sample holds foreground")
    return train_diffusion(pairs, task.num_classes, config, Path(out_dir), device=resolve_device(device),
                           progress=progress)

"""Synthesis of an image-mask data set with a trained conditional diffusion model (paper Sec. 4.3.2).

For every conditioning mask (source labels and target pseudo-labels) and every ``k < times`` the
mask is optionally deformed (Algorithm 1) and an image is sampled for it: from pure noise (the paper), or,
with ``init_strength < 1``, from the real image the mask belongs to, deformed with the mask and noised part of
the way (SDEdit; :func:`~diffuse_uda.diffusion.samplers.sample_images`). Outputs follow the
nnU-Net v2 raw layout::

    out_dir/imagesTr/{id}_syn{k}_{channel:04d}.nii.gz
    out_dir/labelsTr/{id}_syn{k}.nii.gz
    out_dir/dataset.json
    out_dir/gallery.png

Every item draws its randomness from its own generators, seeded from ``(seed, id, k)``, so the
result of an item does not depend on which shard or batch produced it, and a rerun skips items
whose files already exist. Under torchrun the ranks share the items automatically (rank r makes the
items with ``index % world_size == r``); rank 0 writes the settings, dataset.json and the gallery.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from diffuse_uda.data.dataset_json import DatasetInfo, image_paths, label_path, write_dataset_json
from diffuse_uda.data.io import atomic_write_json, read_nifti, write_nifti
from diffuse_uda.diffusion.samplers import SAMPLERS, check_sampler, sample_images
from diffuse_uda.diffusion.trainer import load_diffusion
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.networks.conditional_unet import DOMAIN_INDEX
from diffuse_uda.training import distributed
from diffuse_uda.transforms.deformation import DeformationParams, RandomDeformation

__all__ = ["GALLERY_NAME", "SynthesisItem", "as_stored", "item_seed", "synthesis_items", "synthesize_dataset"]

GALLERY_NAME = "gallery.png"
SETTINGS_NAME = "synthesis_settings.json"
GALLERY_ROWS = 8
FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class SynthesisItem:
    """One synthetic pair to produce.

    Attributes:
        index: position in the deterministic global order (shards take ``index % n == i``).
        mask_index: position of the conditioning mask in the input list.
        source_id: id of the conditioning mask.
        k: repetition index ``0 <= k < times``.
    """

    index: int
    mask_index: int
    source_id: str
    k: int

    @property
    def case_id(self) -> str:
        """Case id of the synthetic pair: ``{source_id}_syn{k}``."""
        return f"{self.source_id}_syn{self.k}"


def synthesis_items(masks: Sequence[tuple[str, np.ndarray]], times: int) -> list[SynthesisItem]:
    """All items in their deterministic order: mask by mask, then ``k = 0..times-1``."""
    if times < 1:
        raise ConfigError(f"times must be >= 1, got {times}")
    ids = [mid for mid, _ in masks]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"conditioning mask ids must be unique; repeated: {', '.join(dup[:5])}")
    return [
        SynthesisItem(index=m * times + k, mask_index=m, source_id=mid, k=k)
        for m, mid in enumerate(ids)
        for k in range(times)
    ]


def item_seed(seed: int, case_id: str, purpose: str) -> int:
    """A 63-bit seed from (seed, synthetic case id, purpose); independent of order and sharding."""
    digest = hashlib.sha256(f"{seed}/{case_id}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _item_paths(out_dir: Path, item: SynthesisItem, num_channels: int) -> list[Path]:
    return [
        *image_paths(out_dir, "Tr", item.case_id, num_channels, FILE_ENDING),
        label_path(out_dir, "Tr", item.case_id, FILE_ENDING),
    ]


def _is_done(out_dir: Path, item: SynthesisItem, num_channels: int) -> bool:
    return all(p.is_file() for p in _item_paths(out_dir, item, num_channels))


def as_stored(array: np.ndarray) -> np.ndarray:
    """2D arrays are stored as (H, W, 1) NIfTI volumes."""
    return array[..., None] if array.ndim == 2 else array


def synthesize_dataset(
    checkpoint: Path,
    masks: Sequence[tuple[str, np.ndarray]],
    out_dir: Path,
    labels: dict[str, int],
    channel_names: dict[str, str],
    times: int = 1,
    deform: bool = False,
    shard: tuple[int, int] | None = None,
    sampler: str = "ddim",
    steps: int | None = 50,
    batch_size: int = 8,
    seed: int = 0,
    device: torch.device | str = "cpu",
    reference_images: Sequence[tuple[str, np.ndarray]] | None = None,
    progress: bool = True,
    deformation: DeformationParams | None = None,
    domain: str | None = None,
    guidance_scale: float = 1.0,
    eta: float = 0.0,
    target_examples: Sequence[np.ndarray] = (),
    init_images: Mapping[str, np.ndarray] | None = None,
    init_strength: float = 1.0,
) -> Path:
    """Sample a synthetic data set conditioned on ``masks``.

    Args:
        checkpoint: diffusion checkpoint (its EMA weights are used).
        masks: ``(id, (*S) integer class-index array)`` at the model's resolution.
        out_dir: data set folder (nnU-Net v2 raw layout).
        labels: label names to values for dataset.json; values must be ``0..K-1``.
        channel_names: channel index (as string) to name for dataset.json.
        times: synthetic pairs per mask.
        deform: deform each mask (Algorithm 1) before sampling, a fresh deformation per item.
        shard: ``(i, n)``: process only items with ``index % n == i`` (independent processes); ``None``:
            this process's share under torchrun, ``(rank, world_size)``, so every item once (all of
            them in one process).
        sampler: one of :data:`~diffuse_uda.diffusion.samplers.SAMPLERS` (``"euler"`` for a rectified-flow
            generator, and only for one).
        steps: DDIM reverse steps (capped at the training step count; ``None`` = 50). DDPM always
            runs all training steps and ignores this.
        batch_size: items sampled together.
        seed: seed of the per-item noise and deformation.
        device: device to sample on.
        reference_images: ``(id, (C, *S) or (*S) array)`` real images shown next to the synthetic
            ones in the gallery (matched by the conditioning mask's id).
        progress: show a progress bar.
        deformation: deformation ranges; default: the ones the model was trained with.
        domain: the domain to draw (``"target"``) with a domain-conditioned generator; ``None``: the
            paper's generator (no domain input).
        guidance_scale: classifier-free guidance toward ``domain`` (1 = none).
        eta: DDIM stochasticity (0: deterministic; 1: as much fresh noise per step as ancestral sampling).
        target_examples: real target images ``(C, *S)`` shown in the gallery's last column, so the synthetic
            images can be compared with the style they should have.

    Returns:
        ``out_dir``. dataset.json and gallery.png are written once every shard's files exist.
    """
    out_dir = Path(out_dir)
    checkpoint = Path(checkpoint)
    if shard is None:
        shard = (distributed.rank(), distributed.world_size())
    elif distributed.is_distributed():
        raise ConfigError("an explicit shard under torchrun would make the same items on every rank; pass "
                          "shard=None to share the items among the ranks")
    shard_i, shard_n = int(shard[0]), int(shard[1])
    if shard_n < 1 or not 0 <= shard_i < shard_n:
        raise ConfigError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if sampler not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    device = torch.device(device)
    model, config, info = load_diffusion(checkpoint, device, use_ema=True)
    num_classes, num_channels = info["num_classes"], info["image_channels"]
    try:
        check_sampler(config.prediction_type, sampler)
    except ValueError as exc:
        raise ConfigError(f"{checkpoint}: {exc}") from exc
    if sorted(int(v) for v in labels.values()) != list(range(num_classes)):
        raise ConfigError(
            f"labels {labels} must have the values 0..{num_classes - 1} (the model has {num_classes} classes)"
        )
    if len(channel_names) != num_channels:
        raise ConfigError(f"{len(channel_names)} channel name(s) given, the model generates {num_channels}")
    for mid, mask in masks:
        mask = np.asarray(mask)
        if tuple(mask.shape) != config.image_size:
            raise DataError(None, f"conditioning mask {mid!r}: shape {mask.shape}, model size {config.image_size}")
        if not np.issubdtype(mask.dtype, np.integer):
            raise DataError(None, f"conditioning mask {mid!r}: must hold integers, got {mask.dtype}")
        if mask.size and (mask.min() < 0 or mask.max() >= num_classes):
            raise DataError(None, f"conditioning mask {mid!r}: values outside 0..{num_classes - 1}")

    if not 0.0 < init_strength <= 1.0:
        raise ConfigError(f"init_strength must be in (0, 1], got {init_strength}")
    from_images = init_strength < 1.0
    if from_images:
        missing = [mid for mid, _ in masks if mid not in (init_images or {})]
        if missing:
            raise ConfigError(f"init_strength {init_strength} starts each item from its mask's image; no image for "
                              f"{len(missing)} mask(s), e.g. {', '.join(missing[:3])}")
        for mid, _ in masks:
            image = np.asarray(init_images[mid])  # type: ignore[index]
            if tuple(image.shape) != (num_channels, *config.image_size):
                raise DataError(None, f"starting image of {mid!r}: shape {image.shape}, the model makes "
                                      f"{(num_channels, *config.image_size)}")
    T = config.num_train_timesteps
    eff_steps = T if sampler == "ddpm" else min(50 if steps is None else int(steps), T)
    if domain is not None and not config.domain_conditioning:
        raise ConfigError(f"{checkpoint}: the generator has no domain input; synthesise with domain=None")
    domain_id = None if domain is None else DOMAIN_INDEX[domain]
    items = synthesis_items(masks, times)
    todo = [it for it in items if it.index % shard_n == shard_i and not _is_done(out_dir, it, num_channels)]
    deform_params = deformation or config.deformation
    deformer = RandomDeformation(deform_params, num_classes=num_classes) if deform else None
    settings = {
        "checkpoint": str(checkpoint.resolve()),
        "checkpoint_iteration": info["iteration"],
        "weights": info["weights"],
        "sampler": sampler,
        "steps": eff_steps,
        "deform": deform,
        "deformation": (
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(deform_params).items()}
            if deform
            else None
        ),
        "seed": seed,
        "domain": domain,
        "guidance_scale": float(guidance_scale),
        "eta": float(eta),
    }
    if from_images:  # only then: folders made before the option existed keep resuming
        settings["init_strength"] = float(init_strength)
    distributed.on_main(_record_settings, out_dir, settings)
    label_dtype = np.uint8 if num_classes <= 256 else np.int16

    bar = tqdm(total=len(todo), desc=f"synthesis {shard_i}/{shard_n}", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        conds, start_images = [], []
        gens = []
        for it in chunk:
            mid = masks[it.mask_index][0]
            mask = torch.from_numpy(np.asarray(masks[it.mask_index][1]).astype(np.int64)).to(device)
            first = (torch.from_numpy(np.asarray(init_images[mid], dtype=np.float32)).to(device)  # type: ignore[index]
                     if from_images else None)
            if deformer is not None:
                # The same grid moves the image and its mask (and the mask alone exactly as without an image).
                g_def = torch.Generator(device=device).manual_seed(item_seed(seed, it.case_id, "deform"))
                moved, deformed = deformer(None if first is None else first[None], mask[None, None], generator=g_def)
                assert deformed is not None
                mask = deformed[0, 0]
                first = None if moved is None else moved[0]
            conds.append(mask)
            start_images.append(first)
            gens.append(torch.Generator(device=device).manual_seed(item_seed(seed, it.case_id, "noise")))
        cond = torch.stack(conds)
        images = sample_images(
            model, cond, num_classes, num_channels, sampler=sampler, steps=eff_steps,
            num_train_timesteps=T, schedule=config.schedule,
            generator=gens, amp=config.amp, domain=domain_id, guidance_scale=guidance_scale, eta=eta,
            init=torch.stack(start_images).clamp_(0.0, 1.0) if from_images else None, strength=init_strength,
        )
        images_np = images.float().cpu().numpy()
        cond_np = cond.cpu().numpy().astype(label_dtype)
        for j, it in enumerate(chunk):
            paths = _item_paths(out_dir, it, num_channels)
            for c in range(num_channels):
                write_nifti(paths[c], as_stored(images_np[j, c].astype(np.float32)))
            # the label last: an item counts as done only once all its files exist
            write_nifti(paths[-1], as_stored(cond_np[j]))
        bar.update(len(chunk))
    bar.close()
    distributed.barrier()  # every rank's items are written before rank 0 looks for them
    distributed.on_main(_finish, out_dir, items, masks, num_channels, num_classes, labels, channel_names, settings,
                        times, reference_images, target_examples)
    return out_dir


def _record_settings(out_dir: Path, settings: dict) -> None:
    """Write the settings, or check them against those of the files already there (resume): files made
    otherwise are never mixed in."""
    settings_path = out_dir / SETTINGS_NAME
    if settings_path.is_file():
        previous = json.loads(settings_path.read_text(encoding="utf-8"))
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise ConfigError(
                f"{out_dir} holds a synthesis made with other settings ({', '.join(changed)} differ); "
                "use another output folder or delete it"
            )
    else:
        atomic_write_json(settings_path, settings)


def _finish(out_dir: Path, items: Sequence[SynthesisItem], masks: Sequence[tuple[str, np.ndarray]], num_channels: int,
            num_classes: int, labels: dict[str, int], channel_names: dict[str, str], settings: dict, times: int,
            reference_images: Sequence[tuple[str, np.ndarray]] | None,
            target_examples: Sequence[np.ndarray] = ()) -> None:
    """dataset.json and the gallery, once every item of every shard exists."""
    if all(_is_done(out_dir, it, num_channels) for it in items):
        provenance = {
            "generator": "diffuse-uda conditional diffusion",
            **settings,
            "times": times,
            "mask_sources": [mid for mid, _ in masks],
        }
        info_json = DatasetInfo(
            name=out_dir.name,
            channel_names={str(k): str(v) for k, v in channel_names.items()},
            labels={str(k): int(v) for k, v in labels.items()},
            file_ending=FILE_ENDING,
            num_training=len(items),
            description="Synthetic image-mask pairs sampled from a mask-conditioned diffusion model (Diffuse-UDA).",
            provenance=provenance,
        )
        write_dataset_json(out_dir, info_json)
        _write_gallery(out_dir, gallery_items(items, GALLERY_ROWS), masks, num_channels, num_classes,
                       reference_images, target_examples)


def gallery_items(items: Sequence[SynthesisItem], rows: int) -> list[SynthesisItem]:
    """``rows`` items spread evenly over the whole list (so source and target masks both show)."""
    if len(items) <= rows:
        return list(items)
    return [items[round(i * (len(items) - 1) / (rows - 1))] for i in range(rows)] if rows > 1 else [items[0]]


def _display(image: np.ndarray) -> tuple[np.ndarray, dict]:
    """(C, *S) -> a 2D grey view (first channel) or, for 3 channels, an RGB view; imshow settings."""
    if image.shape[0] == 3:
        return np.clip(np.moveaxis(np.stack([_middle_slice(c) for c in image]), 0, -1), 0, 1), {}
    return _middle_slice(image[0]), {"cmap": "gray", "vmin": 0, "vmax": 1}


def _middle_slice(a: np.ndarray) -> np.ndarray:
    """2D view: squeeze a trailing singleton axis, else the middle slice along the last axis."""
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[..., 0] if a.shape[-1] == 1 else a[..., a.shape[-1] // 2]
    return a


def _write_gallery(
    out_dir: Path,
    items: Sequence[SynthesisItem],
    masks: Sequence[tuple[str, np.ndarray]],
    num_channels: int,
    num_classes: int,
    reference_images: Sequence[tuple[str, np.ndarray]] | None,
    target_examples: Sequence[np.ndarray] = (),
) -> Path:
    """gallery.png: one row per item: conditioning mask | synthetic image | the real image of that mask (if
    any) | a real target image (if given)."""
    from matplotlib.figure import Figure

    refs = dict(reference_images or [])
    cols = 2 + bool(refs) + bool(len(target_examples))
    fig = Figure(figsize=(2.4 * cols, 2.4 * max(len(items), 1)))
    axes = fig.subplots(max(len(items), 1), cols, squeeze=False)
    for r, it in enumerate(items):
        paths = _item_paths(out_dir, it, num_channels)
        label, _ = read_nifti(paths[-1])
        synthetic, synthetic_kw = _display(np.stack([read_nifti(path)[0] for path in paths[:-1]]))
        panels = [
            (_middle_slice(label), {"cmap": "tab10", "vmin": 0, "vmax": max(num_classes - 1, 1)}, "mask"),
            (synthetic, synthetic_kw, "synthetic"),
        ]
        if refs:
            ref = refs.get(it.source_id)
            if ref is not None:
                ref = np.asarray(ref, dtype=np.float32)
                spatial = np.asarray(masks[it.mask_index][1]).ndim
                real, real_kw = _display(ref if ref.ndim == spatial + 1 else ref[None])
                panels.append((real, real_kw, "real"))
            else:
                panels.append((None, {}, "real (none)"))
        if len(target_examples):
            example = np.asarray(target_examples[(r * 7) % len(target_examples)], dtype=np.float32)
            spatial = np.asarray(masks[it.mask_index][1]).ndim
            real, real_kw = _display(example if example.ndim == spatial + 1 else example[None])
            panels.append((real, real_kw, "a real target image"))
        for c, (img, kw, title) in enumerate(panels):
            ax = axes[r, c]
            ax.set_axis_off()
            if img is not None:
                ax.imshow(img, interpolation="nearest", **kw)
            ax.set_title(f"{it.case_id}: {title}" if c == 0 else title, fontsize=7)
    path = out_dir / GALLERY_NAME
    tmp = out_dir / f".{GALLERY_NAME}.{uuid.uuid4().hex[:12]}.tmp.png"
    fig.tight_layout()
    fig.savefig(tmp, dpi=80)
    os.replace(tmp, path)
    return path

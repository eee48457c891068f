"""Losses shared by the methods."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor | None = None,
                   include_background: bool = False, eps: float = 1e-5) -> torch.Tensor:
    """Batch soft Dice on softmax probabilities; ``labels`` (B, *S) int, ``valid`` (B, *S) bool mask."""
    num_classes = logits.shape[1]
    probs = logits.float().softmax(1)
    safe = labels.clamp(max=num_classes - 1) if valid is not None else labels
    onehot = F.one_hot(safe.long(), num_classes).movedim(-1, 1).float()
    if valid is not None:
        w = valid[:, None].float()
        probs, onehot = probs * w, onehot * w
    dims = [0, *range(2, logits.ndim)]
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (denom + eps)
    # Average only over classes present in this batch's labels: for an absent class the smoothed
    # Dice rewards predicting nothing, which on small batches teaches a structure away (e.g. the
    # RV on apical slices). Cross-entropy still covers absent classes. No host sync.
    present = (onehot.sum(dims) > 0).float()
    if not include_background:
        dice, present = dice[1:], present[1:]
    return 1.0 - (dice * present).sum() / present.sum().clamp(min=1.0)


def dice_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Dice + cross-entropy; voxels labelled ``IGNORE_INDEX`` (e.g. low-confidence pseudo-labels) are skipped."""
    labels = labels.long()
    valid = labels != IGNORE_INDEX
    ce = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
    # An all-ignored batch gives NaN cross-entropy; nan_to_num keeps the step finite without a host sync.
    ce = torch.nan_to_num(ce, nan=0.0)
    return ce + soft_dice_loss(logits, labels, valid)


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Consistency between two predictions: mean squared difference of class probabilities."""
    return F.mse_loss(student_logits.float().softmax(1), teacher_logits.float().softmax(1).detach())


def sigmoid_rampup(step: int, rampup_steps: int) -> float:
    """exp(-5 (1 - t)^2), the usual consistency ramp-up, t = step / rampup_steps clipped to [0, 1]."""
    if rampup_steps <= 0:
        return 1.0
    t = min(max(step / rampup_steps, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)

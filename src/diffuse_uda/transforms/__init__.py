"""Batched, device-resident augmentations: Fourier style transfer, CutMix and random deformation."""

from diffuse_uda.transforms.cutmix import cutmix, random_box_mask
from diffuse_uda.transforms.deformation import DeformationParams, RandomDeformation
from diffuse_uda.transforms.fourier import (
    HIST_DISTANCE_MAX,
    FourierStyleTransfer,
    adaptive_beta,
    fda_amplitude_swap,
    histogram_distance,
    low_frequency_mask,
)

__all__ = [
    "HIST_DISTANCE_MAX",
    "DeformationParams",
    "FourierStyleTransfer",
    "RandomDeformation",
    "adaptive_beta",
    "cutmix",
    "fda_amplitude_swap",
    "histogram_distance",
    "low_frequency_mask",
    "random_box_mask",
]

"""Batched, device-resident augmentations: appearance transfer (Fourier, Bezier, GIN, histogram matching),
CutMix and random deformation."""

from diffuse_uda.transforms.appearance import (
    APPEARANCE_TRANSFERS,
    AppearanceTransfer,
    available_appearance_transfers,
    build_appearance_transfer,
)
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
    "APPEARANCE_TRANSFERS",
    "HIST_DISTANCE_MAX",
    "AppearanceTransfer",
    "DeformationParams",
    "FourierStyleTransfer",
    "RandomDeformation",
    "adaptive_beta",
    "available_appearance_transfers",
    "build_appearance_transfer",
    "cutmix",
    "fda_amplitude_swap",
    "histogram_distance",
    "low_frequency_mask",
    "random_box_mask",
]

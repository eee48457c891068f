"""Light, batched, on-device augmentation of labelled batches, shared by every method.

Small affine (through the deformation module with no elastic part) plus random gamma and
contrast. The same for all methods so that comparisons measure the method, not the augmentation.
"""

from __future__ import annotations

import torch

from diffuse_uda.transforms.deformation import DeformationParams, RandomDeformation


class LabelledAugmentation:
    def __init__(self, num_classes: int, rotation_degrees: float = 10.0,
                 scale_range: tuple[float, float] = (0.9, 1.1), gamma_range: tuple[float, float] = (0.7, 1.5),
                 contrast_range: tuple[float, float] = (0.85, 1.15)) -> None:
        params = DeformationParams(rotation_degrees=rotation_degrees, scale_range=scale_range,
                                   shift_fraction=0.05, alpha=0.0)
        self.spatial = RandomDeformation(params, num_classes=num_classes)
        self.gamma_range = gamma_range
        self.contrast_range = contrast_range

    def intensity(self, image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Random gamma and contrast per sample; images stay in [0, 1]."""
        shape = (image.shape[0],) + (1,) * (image.ndim - 1)
        u = torch.rand((2, *shape), generator=generator, device=image.device)
        gamma = self.gamma_range[0] + (self.gamma_range[1] - self.gamma_range[0]) * u[0]
        contrast = self.contrast_range[0] + (self.contrast_range[1] - self.contrast_range[0]) * u[1]
        out = image.clamp(0, 1).pow(gamma)
        mean = out.mean(dim=tuple(range(1, image.ndim)), keepdim=True)
        return ((out - mean) * contrast + mean).clamp(0, 1)

    def __call__(self, image: torch.Tensor, label: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        image, label_out = self.spatial(image, label[:, None], generator=generator)
        assert image is not None and label_out is not None
        return self.intensity(image, generator), label_out[:, 0]

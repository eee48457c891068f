"""Access to reference (ground-truth) label maps.

:class:`ReferenceLabels` is the ONLY reader of target-domain label files in the package. Adaptation
and pseudo-labelling code never open target labels themselves, so target labels cannot leak into
training or model selection unnoticed. Every read states its purpose, and each purpose is tied to
one split:

* ``"evaluation"`` (default): the held-out test split ``"Ts"``;
* ``"pseudo-label-quality"``: the training split ``"Tr"``, to score pseudo-labels (never fed back);
* ``"oracle-training"``: the training split ``"Tr"``, for the target-supervised upper bound only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffuse_uda.data.dataset_json import DatasetInfo, label_path, list_cases, load_dataset_json
from diffuse_uda.data.io import read_nifti
from diffuse_uda.errors import ConfigError, DataError

# purpose -> the only split it may read; test labels can never be used for training this way.
PURPOSE_SPLITS: dict[str, str] = {
    "evaluation": "Ts",
    "pseudo-label-quality": "Tr",
    "oracle-training": "Tr",
}


class ReferenceLabels:
    """Reference label maps of one split of an nnU-Net v2 raw dataset.

    This is the single place in diffuse-uda that opens label files of a target dataset; keep it that
    way so honest evaluation stays a structural property rather than a convention.

    Args:
        dataset_dir: dataset folder containing dataset.json, imagesTs/labelsTs (and imagesTr/labelsTr).
        split: "Ts" (held-out test split, default) or "Tr".
        purpose: why labels are read (see :data:`PURPOSE_SPLITS`); defaults to "evaluation" for "Ts".
            Reading "Tr" needs an explicit "pseudo-label-quality" or "oracle-training".
    """

    def __init__(self, dataset_dir: Path, split: str = "Ts", *, purpose: str | None = None) -> None:
        if split not in ("Ts", "Tr"):
            raise ConfigError(f"reference split must be 'Ts' or 'Tr', got {split!r}")
        if purpose is None:
            if split == "Tr":
                raise ConfigError(
                    "target training labels (split 'Tr') may only be read with purpose "
                    "'pseudo-label-quality' or 'oracle-training'; evaluate results on the held-out 'Ts' split"
                )
            purpose = "evaluation"
        if purpose not in PURPOSE_SPLITS:
            raise ConfigError(f"unknown reference purpose {purpose!r} (known: {', '.join(PURPOSE_SPLITS)})")
        if PURPOSE_SPLITS[purpose] != split:
            raise ConfigError(
                f"purpose {purpose!r} may only read split {PURPOSE_SPLITS[purpose]!r}, not {split!r}"
            )
        self.purpose = purpose
        self.dataset_dir = Path(dataset_dir)
        self.split = split
        self.info: DatasetInfo = load_dataset_json(self.dataset_dir)
        self.labels: dict[str, int] = dict(self.info.labels)
        self._allowed = np.array(sorted({int(v) for v in self.labels.values()}), dtype=np.int64)
        self.case_ids: list[str] = sorted(list_cases(self.dataset_dir, split))
        if not self.case_ids:
            raise DataError(self.dataset_dir, f"no cases found in split {split!r}")
        # Fail before any prediction is scored if a reference label is missing.
        for case_id in self.case_ids:
            path = self.path(case_id)
            if not path.is_file():
                raise DataError(path, f"reference label of case {case_id!r} is missing")

    @property
    def name(self) -> str:
        """Dataset name from dataset.json (falls back to the folder name)."""
        return self.info.name or self.dataset_dir.name

    def __len__(self) -> int:
        return len(self.case_ids)

    def __repr__(self) -> str:
        return (
            f"ReferenceLabels({str(self.dataset_dir)!r}, split={self.split!r}, purpose={self.purpose!r}, "
            f"n_cases={len(self)})"
        )

    def path(self, case_id: str) -> Path:
        """Path of the label file of ``case_id`` in this split."""
        return label_path(self.dataset_dir, self.split, case_id, self.info.file_ending)

    def load(self, case_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Read and validate one label map; returns (integer label array, 4x4 affine)."""
        if case_id not in self.case_ids:
            raise KeyError(f"case {case_id!r} is not in split {self.split!r} of {self.dataset_dir}")
        path = self.path(case_id)
        array, affine = read_nifti(path)
        return validate_label_map(path, array, self._allowed), np.asarray(affine, dtype=np.float64)


def validate_label_map(
    path: Path, array: np.ndarray, allowed: np.ndarray, what: str = "label map"
) -> np.ndarray:
    """Check that ``array`` holds only integer values from ``allowed``; return it as a compact int array.

    Raises DataError naming ``path`` otherwise. Shared with the prediction checks of the evaluator.
    """
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer) and (
        not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array))
    ):
        raise DataError(path, f"{what} contains non-integer values")
    values = np.unique(array).astype(np.int64)
    unexpected = values[~np.isin(values, allowed)]
    if unexpected.size:
        raise DataError(
            path,
            f"{what} has label values {unexpected.tolist()} not declared in dataset.json "
            f"(allowed: {np.asarray(allowed).tolist()})",
        )
    # Smallest integer type that holds the declared labels keeps large volumes cheap.
    dtype = np.uint8 if int(np.max(allowed)) <= 255 and int(np.min(allowed)) >= 0 else np.int32
    return array.astype(dtype, copy=False)

"""nnU-Net v2 raw-dataset metadata (dataset.json) and the folder layout around it.

Layout: ``<dataset>/dataset.json``, ``images{Tr,Ts}/{case}_{k:04d}{ending}`` (one file per
channel k) and ``labels{Tr,Ts}/{case}{ending}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffuse_uda.data.io import atomic_write_json, check_not_broken_link
from diffuse_uda.errors import ConfigError, DataError

DATASET_JSON = "dataset.json"
SPLITS: tuple[str, ...] = ("Tr", "Ts")
SUPPORTED_FILE_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii")
REQUIRED_KEYS: tuple[str, ...] = ("channel_names", "labels", "numTraining", "file_ending")

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass
class DatasetInfo:
    """Contents of one dataset.json."""

    name: str
    channel_names: dict[str, str]
    labels: dict[str, int]
    file_ending: str = ".nii.gz"
    num_training: int = 0
    description: str = ""
    reference: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    # Optional: case id -> the unit its case is not independent of (a patient, a video sequence). Paired tests over
    # test cases average within a group first, because frames of one sequence are near-duplicates, not replicates.
    case_groups: dict[str, str] = field(default_factory=dict)

    @property
    def num_channels(self) -> int:
        """Number of image files per case."""
        return len(self.channel_names)

    @property
    def is_colour_photo(self) -> bool:
        """Whether the channels are a photo's red, green and blue (``R, G, B`` as the importers write them), not
        three scans (e.g. ``T1, T2, FLAIR``), which share a channel count but not a colour space."""
        names = [str(self.channel_names[k]).strip().upper() for k in sorted(self.channel_names, key=int)]
        return names in (["R", "G", "B"], ["RED", "GREEN", "BLUE"])

    def to_json(self) -> dict[str, Any]:
        """The nnU-Net v2 dataset.json dictionary."""
        return {
            "channel_names": {str(k): str(v) for k, v in self.channel_names.items()},
            "labels": {str(k): int(v) for k, v in self.labels.items()},
            "numTraining": int(self.num_training),
            "file_ending": self.file_ending,
            "name": self.name,
            "description": self.description,
            "reference": self.reference,
            "provenance": self.provenance,
            **({"case_groups": dict(self.case_groups)} if self.case_groups else {}),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], path: str | Path | None = None) -> DatasetInfo:
        """Parse and check a dataset.json dictionary; `path` (the json file) names errors."""
        where = Path(path) if path is not None else Path(DATASET_JSON)
        if not isinstance(d, Mapping):
            raise DataError(where, f"expected a JSON object at the top level, got {type(d).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            hint = " (this looks like an nnU-Net v1 file: 'modality' is now 'channel_names')" if (
                "modality" in d and "channel_names" in missing) else ""
            raise DataError(where, f"missing required key(s): {', '.join(missing)}{hint}")
        channel_names = _parse_channel_names(d["channel_names"], where)
        labels = _parse_labels(d["labels"], where)
        file_ending = d["file_ending"]
        if file_ending not in SUPPORTED_FILE_ENDINGS:
            supported = ", ".join(SUPPORTED_FILE_ENDINGS)
            raise DataError(where, f"unsupported file_ending {file_ending!r} (supported: {supported})")
        num_training = d["numTraining"]
        if isinstance(num_training, bool) or not isinstance(num_training, int) or num_training < 0:
            raise DataError(where, f"numTraining must be a non-negative integer, got {num_training!r}")
        provenance = d.get("provenance", {})
        if not isinstance(provenance, dict):
            raise DataError(where, f"provenance must be a JSON object, got {type(provenance).__name__}")
        for key in ("name", "description", "reference"):
            if key in d and not isinstance(d[key], str):
                raise DataError(where, f"{key} must be a string, got {type(d[key]).__name__}")
        case_groups = d.get("case_groups", {})
        if not isinstance(case_groups, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in case_groups.items()):
            raise DataError(where, "case_groups must map case ids to non-empty group names (strings), "
                                   "e.g. {\"seq04_frame0068\": \"seq04\"}")
        default_name = where.parent.name if path is not None else ""
        return cls(
            name=d.get("name") or default_name,
            channel_names=channel_names,
            labels=labels,
            file_ending=file_ending,
            num_training=num_training,
            description=d.get("description", ""),
            reference=d.get("reference", ""),
            provenance=dict(provenance),
            case_groups=dict(case_groups),
        )


def _parse_channel_names(raw: Any, where: Path) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not raw:
        raise DataError(where, "channel_names must be a non-empty map like {\"0\": \"MRI\"}")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not str(key).isdigit():
            raise DataError(where, f"channel_names key {key!r} is not a channel index")
        if not isinstance(value, str) or not value:
            raise DataError(where, f"channel_names[{key!r}] must be a non-empty string")
        out[str(int(key))] = value
    # Channel files are numbered _0000.._{n-1}: a gap would make list_cases look for files that
    # can never exist.
    expected = [str(i) for i in range(len(out))]
    if sorted(out, key=int) != expected:
        raise DataError(where, f"channel_names keys must be 0..{len(out) - 1}, got {sorted(out, key=int)}")
    return {k: out[k] for k in expected}


def _parse_labels(raw: Any, where: Path) -> dict[str, int]:
    if not isinstance(raw, Mapping) or not raw:
        raise DataError(where, "labels must be a non-empty map of label name -> integer value")
    labels: dict[str, int] = {}
    for name, value in raw.items():
        # bool is an int subclass and lists are nnU-Net region labels: neither is supported here.
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(where, f"labels must map names to integers; {name!r} maps to {value!r} "
                                   "(region labels are not supported)")
        if value < 0:
            raise DataError(where, f"label {name!r} has negative value {value}")
        labels[str(name)] = value
    if labels.get("background") != 0:
        got = labels.get("background", "missing")
        raise DataError(where, f"labels must contain \"background\": 0 (got {got})")
    seen: dict[int, str] = {}
    for name, value in labels.items():
        if value in seen:
            raise DataError(where, f"duplicate label value {value} for {seen[value]!r} and {name!r}")
        seen[value] = name
    return labels


def load_dataset_json(dataset_dir: str | Path) -> DatasetInfo:
    """Read and check ``dataset_dir/dataset.json``."""
    path = Path(dataset_dir) / DATASET_JSON
    if not path.is_file():
        raise DataError(path, "file does not exist" if not path.exists() else "is not a file")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON: {exc}") from exc
    except OSError as exc:
        raise DataError(path, f"cannot read: {exc}") from exc
    return DatasetInfo.from_json(raw, path=path)


def write_dataset_json(dataset_dir: str | Path, info: DatasetInfo) -> Path:
    """Atomically write ``dataset_dir/dataset.json``; returns its path."""
    path = Path(dataset_dir) / DATASET_JSON
    # Round-trip through the parser so we never write a file load_dataset_json would reject.
    DatasetInfo.from_json(info.to_json(), path=path)
    atomic_write_json(path, info.to_json())
    return path


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")


def image_paths(dataset_dir: str | Path, split: str, case_id: str, num_channels: int,
                file_ending: str = ".nii.gz") -> list[Path]:
    """Paths of a case's channel files (no I/O)."""
    _check_split(split)
    folder = Path(dataset_dir) / f"images{split}"
    return [folder / f"{case_id}_{k:04d}{file_ending}" for k in range(num_channels)]


def label_path(dataset_dir: str | Path, split: str, case_id: str, file_ending: str = ".nii.gz") -> Path:
    """Path of a case's label file (no I/O)."""
    _check_split(split)
    return Path(dataset_dir) / f"labels{split}" / f"{case_id}{file_ending}"


def has_split(dataset_dir: str | Path, split: str) -> bool:
    """True when ``images{split}`` exists and holds at least one (non-hidden) file."""
    _check_split(split)
    folder = Path(dataset_dir) / f"images{split}"
    if not folder.is_dir():
        return False
    # A broken link counts: the split is there, and listing it must fail rather than skip it.
    return any(not p.name.startswith(".") and (p.is_file() or p.is_symlink()) for p in folder.iterdir())


def list_cases(dataset_dir: str | Path, split: str) -> list[str]:
    """Sorted case ids in ``images{split}``; every case must have all its channel files."""
    _check_split(split)
    dataset_dir = Path(dataset_dir)
    info = load_dataset_json(dataset_dir)
    folder = dataset_dir / f"images{split}"
    if not folder.is_dir():
        raise DataError(folder, "folder does not exist" if not folder.exists() else "is not a folder")
    ending = info.file_ending
    channels: dict[str, set[int]] = {}
    for p in sorted(folder.iterdir()):
        # Hidden files are OS clutter or our own in-progress temp files.
        if p.name.startswith(".") or not p.name.endswith(ending):
            continue
        check_not_broken_link(p)
        if not p.is_file():
            continue
        m = _CHANNEL_RE.match(p.name[: -len(ending)])
        if m is None:
            raise DataError(p, f"image file not named {{case}}_{{channel:04d}}{ending}")
        k = int(m["channel"])
        if k >= info.num_channels:
            raise DataError(p, f"channel {k} but dataset.json declares {info.num_channels} channel(s)")
        channels.setdefault(m["case"], set()).add(k)
    if not channels:
        raise DataError(folder, f"no images (expected files named {{case}}_0000{ending})")
    for case_id, found in channels.items():
        for k, path in enumerate(image_paths(dataset_dir, split, case_id, info.num_channels, ending)):
            if k not in found:
                raise DataError(path, f"missing channel {k} of case {case_id!r}")
    return sorted(channels)

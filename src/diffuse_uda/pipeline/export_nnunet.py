"""``diffuse-uda export nnunet``: a finished pipeline run as an nnU-Net v2 raw dataset.

The dataset holds, each case id prefixed by its origin:

* ``src_``: the source image-label pairs the run trained on (the source dataset's imagesTr/labelsTr);
* ``syn_``: the synthetic target-styled pairs of the synthesis stage (4_synthetic). They were drawn
  at the generator's resolution; each gets the geometry of the scan its conditioning mask came
  from (same directions and field of view, spacing scaled to the generator's grid; 2D pairs are
  (H, W, 1) volumes at the slice's position), image and label on one affine;
* ``pl_`` (optional): target training images with stage 1's pseudo-labels (2_pseudolabels), only
  cases whose reliability (:func:`~diffuse_uda.pipeline.pseudolabel.pseudo_label_reliability` over
  the volume: the fraction of predicted foreground voxels at or above the run's confidence
  threshold) reaches ``min_reliability`` and that have predicted foreground. Target ground truth
  is never read.

``provenance.json`` records the request and, per case, its origin, original files and stage folder.
The dataset is written into a hidden folder next to ``out`` and renamed into place; an existing
dataset is never overwritten (the same export again is skipped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from diffuse_uda.data.dataset_json import (
    DatasetInfo,
    image_paths,
    label_path,
    list_cases,
    load_dataset_json,
    write_dataset_json,
)
from diffuse_uda.data.importers._common import map_progress, remove_stale_staging, staged_dataset
from diffuse_uda.data.io import atomic_write_json, read_nifti, read_nifti_header, write_nifti
from diffuse_uda.data.task import Task
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.pipeline.manifest import StageManifest, read_manifest
from diffuse_uda.pipeline.pseudolabel import pseudo_label_reliability
from diffuse_uda.pipeline.run import (
    CHECK_RECORD_STAGE,
    PIPELINE_MANIFEST,
    pipeline_stage_folders,
    read_pipeline_record,
)
from diffuse_uda.pipeline.run_folder import InputRecord, dataset_input, file_input
from diffuse_uda.pipeline.synthetic_check import read_check

DATASET_NAME = re.compile(r"^Dataset(?P<id>\d{3})_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)$")
PROVENANCE_FILE = "provenance.json"
FILE_ENDING = ".nii.gz"
EXPORT_VERSION = 1
Origin = Literal["source", "synthetic", "pseudo-label"]
PREFIXES: dict[str, str] = {"source": "src", "synthetic": "syn", "pseudo-label": "pl"}
DEFAULT_MIN_RELIABILITY = 0.9
# nnU-Net normalises a channel named "CT" with fixed Hounsfield statistics; synthetic images are in
# [0, 1], so such a channel is renamed to get nnU-Net's per-image z-score normalisation instead.
CT_CHANNEL_RENAMED = "CT_zscore"

_SYNTHETIC_ID = re.compile(r"^(?P<mask>.+)_syn(?P<k>\d+)$")
_MASK_ID_2D = re.compile(r"^(?P<domain>source|target)_(?P<case>.+)_z(?P<z>\d{3})$")
_MASK_ID_3D = re.compile(r"^(?P<domain>source|target)_(?P<case>.+)$")


class ExportRequest(BaseModel):
    """What an export was asked to be: the same request again is skipped, any other is refused."""

    model_config = ConfigDict(extra="forbid")
    version: int = EXPORT_VERSION
    run: str
    pseudo_labels: bool
    min_reliability: float | None
    inputs: dict[str, InputRecord]


class ExportedCase(BaseModel):
    model_config = ConfigDict(extra="forbid")
    origin: Origin
    stage: str  # the folder the case came from (a stage folder, or the source dataset)
    images: list[str]
    label: str
    details: dict[str, Any] = Field(default_factory=dict)


class ExportProvenance(BaseModel):
    """``provenance.json`` of an exported dataset."""

    model_config = ConfigDict(extra="forbid")
    exporter: str = "diffuse-uda export nnunet"
    request: ExportRequest
    task: dict[str, Any]
    counts: dict[str, int]
    cases: dict[str, ExportedCase]
    skipped_pseudo_labels: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


def read_export_provenance(dataset_dir: Path) -> ExportProvenance | None:
    """The provenance of an exported dataset; None when there is none; DataError when unreadable."""
    path = Path(dataset_dir) / PROVENANCE_FILE
    if not path.is_file():
        return None
    try:
        return ExportProvenance.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValidationError) as exc:
        raise DataError(path, f"not an export provenance of this diffuse-uda version "
                              f"({str(exc).splitlines()[0]})") from None


@dataclass
class _Case:
    case_id: str
    origin: Origin
    stage: Path
    images: list[Path]
    label: Path
    # Geometry given to the pair (synthetic pairs); None: the image file's own affine.
    affine: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ExportResult:
    out_dir: Path
    written: bool  # False: the same export was already there
    counts: dict[str, int]
    skipped_pseudo_labels: dict[str, str]
    notes: list[str] = field(default_factory=list)


def dataset_id(out_dir: Path) -> int:
    """The nnU-Net dataset id of ``DatasetXXX_Name``; ConfigError for any other folder name."""
    m = DATASET_NAME.match(Path(out_dir).name)
    if m is None:
        raise ConfigError(f"{out_dir}: an nnU-Net dataset folder must be named DatasetXXX_Name (three digits, then a "
                          "name of letters, digits, '_', '-' or '.'), e.g. nnUNet_raw/Dataset700_MyTarget")
    return int(m["id"])


def synthetic_affine(ref_affine: np.ndarray, ref_shape: tuple[int, ...], syn_shape: tuple[int, ...],
                     z: int | None) -> np.ndarray:
    """Affine of a synthetic pair drawn at ``syn_shape`` from a mask of a scan (``ref_affine``,
    ``ref_shape``): the scan's directions and field of view, spacing scaled by ref / synthetic size,
    voxel centres where an ``align_corners=False`` resize puts them; 2D (``z`` given): slice ``z``."""
    ref_affine = np.asarray(ref_affine, dtype=np.float64)
    n_resized = 2 if z is not None else 3
    scale, offset = np.ones(3), np.zeros(3)
    for i in range(n_resized):
        scale[i] = ref_shape[i] / syn_shape[i]
        offset[i] = 0.5 * scale[i] - 0.5
    if z is not None:
        offset[2] = z
    out = ref_affine.copy()
    out[:3, :3] = ref_affine[:3, :3] * scale  # scales each column (array axis)
    out[:3, 3] = ref_affine[:3, :3] @ offset + ref_affine[:3, 3]
    return out


def _complete_stage(folder: Path, what: str) -> StageManifest:
    manifest = read_manifest(folder)
    if manifest is None or manifest.status != "complete":
        raise DataError(folder, f"the {what} stage is not complete; finish the run with `diffuse-uda run` first")
    return manifest


def _source_cases(source_dir: Path) -> list[_Case]:
    info = load_dataset_json(source_dir)
    return [_Case(f"src_{c}", "source", source_dir,
                  image_paths(source_dir, "Tr", c, info.num_channels, info.file_ending),
                  label_path(source_dir, "Tr", c, info.file_ending))
            for c in list_cases(source_dir, "Tr")]


def _synthetic_cases(synthetic: Path, source_dir: Path, pseudo: Path, spatial_dims: int,
                     num_channels: int) -> list[_Case]:
    """The synthetic pairs, each with the geometry of the scan its conditioning mask came from (source
    scans from the source dataset; target scans from the pseudo-label dataset's copies of the images)."""
    info = load_dataset_json(synthetic)
    if info.num_channels != num_channels:
        raise DataError(synthetic / "dataset.json", f"{info.num_channels} channel(s), the source has {num_channels}")
    mask_re = _MASK_ID_2D if spatial_dims == 2 else _MASK_ID_3D
    headers: dict[Path, tuple[tuple[int, ...], np.ndarray]] = {}
    out = []
    for c in list_cases(synthetic, "Tr"):
        images = image_paths(synthetic, "Tr", c, num_channels, info.file_ending)
        m = _SYNTHETIC_ID.match(c)
        mask = mask_re.match(m["mask"]) if m is not None else None
        if mask is None:
            raise DataError(images[0], f"synthetic case id {c!r} does not name its conditioning mask "
                                       f"({'domain_case_zNNN' if spatial_dims == 2 else 'domain_case'}_synK)")
        ref_dir = source_dir if mask["domain"] == "source" else pseudo
        ref = image_paths(ref_dir, "Tr", mask["case"], num_channels)[0]
        if ref not in headers:
            headers[ref] = read_nifti_header(ref)
        ref_shape, ref_affine = headers[ref]
        syn_shape, _ = read_nifti_header(images[0])
        z = int(mask["z"]) if spatial_dims == 2 else None
        details = {"conditioning_mask": m["mask"] if m else c, "mask_domain": mask["domain"],
                   "mask_case": mask["case"], "geometry_from": str(ref)}
        if z is not None:
            details["slice"] = z
        out.append(_Case(f"syn_{c}", "synthetic", synthetic, images,
                         label_path(synthetic, "Tr", c, info.file_ending),
                         synthetic_affine(ref_affine, ref_shape, syn_shape, z), details))
    return out


def _pseudo_label_cases(pseudo: Path, num_channels: int, min_reliability: float,
                        skipped: dict[str, str]) -> list[_Case]:
    """Pseudo-labelled target training cases reliable enough; the others are recorded in ``skipped``."""
    info = load_dataset_json(pseudo)
    threshold = info.provenance.get("confidence_threshold")
    out = []
    for c in list_cases(pseudo, "Tr"):
        label = label_path(pseudo, "Tr", c, info.file_ending)
        # Volume-level: the fraction of predicted foreground voxels at or above the run's threshold.
        reliability = float(pseudo_label_reliability(pseudo, c, spatial_dims=3)[0])
        if not np.any(read_nifti(label)[0]):
            skipped[c] = "no foreground predicted (likely a missed structure, nothing to learn but background)"
        elif reliability < min_reliability:
            skipped[c] = f"reliability {reliability:.3f} below {min_reliability}"
        else:
            out.append(_Case(f"pl_{c}", "pseudo-label", pseudo,
                             image_paths(pseudo, "Tr", c, num_channels, info.file_ending), label,
                             details={"reliability": round(reliability, 4), "confidence_threshold": threshold}))
    return out


def _write_case(job: tuple[_Case, Path, np.ndarray]) -> None:
    """Images and label onto one affine (nnU-Net checks that they agree), labels as uint8."""
    case, root, allowed = job
    arrays = []
    for path in case.images:
        array, affine = read_nifti(path)
        arrays.append((array[..., None] if array.ndim == 2 else array, affine))
    label, _ = read_nifti(case.label)
    label = label[..., None] if label.ndim == 2 else label
    if label.shape != arrays[0][0].shape:
        raise DataError(case.label, f"label shape {label.shape} differs from image shape {arrays[0][0].shape}")
    unexpected = [int(v) for v in np.unique(label) if int(v) not in allowed]
    if unexpected:
        raise DataError(case.label, f"label values {unexpected} are not declared in the task's labels")
    affine = case.affine if case.affine is not None else arrays[0][1]
    for k, (array, _) in enumerate(arrays):
        write_nifti(root / "imagesTr" / f"{case.case_id}_{k:04d}{FILE_ENDING}", np.asarray(array, np.float32), affine)
    write_nifti(root / "labelsTr" / f"{case.case_id}{FILE_ENDING}", label.astype(np.uint8), affine)


def _check_out_dir(out_dir: Path, request: ExportRequest) -> bool:
    """True when ``out_dir`` already holds this very export; DataError when it holds anything else."""
    remove_stale_staging(out_dir)
    if not out_dir.exists():
        return False
    if not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    if not any(out_dir.iterdir()):
        return False
    try:
        previous = read_export_provenance(out_dir)
    except DataError:
        previous = None
    if previous is None:
        raise DataError(out_dir, f"exists and is not a diffuse-uda export (no readable {PROVENANCE_FILE}); refusing "
                                 "to overwrite it: remove it or choose another DatasetXXX_Name")
    if previous.request != request:
        what = ("another run" if previous.request.run != request.run else "other options or changed inputs")
        raise DataError(out_dir, f"holds an export of {what} ({previous.request.run}); refusing to overwrite it: "
                                 "remove it or choose another DatasetXXX_Name")
    return True


def _check_unique_id(out_dir: Path, number: int) -> None:
    """nnU-Net finds a dataset by its id: two folders with one id in nnUNet_raw would be ambiguous."""
    parent = out_dir.parent
    if not parent.is_dir():
        return
    for other in parent.iterdir():
        m = DATASET_NAME.match(other.name)
        if m is not None and int(m["id"]) == number and other.name != out_dir.name and other.is_dir():
            raise DataError(out_dir, f"nnU-Net dataset id {number:03d} is already used by {other}; nnU-Net needs "
                                     "one folder per id: choose another DatasetXXX_Name")


def export_nnunet(run: Path, out_dir: Path, pseudo_labels: bool = False,
                  min_reliability: float = DEFAULT_MIN_RELIABILITY, progress: bool = True) -> ExportResult:
    """Write the nnU-Net v2 raw dataset ``out_dir`` (``.../DatasetXXX_Name``) from the pipeline run ``run``."""
    run, out_dir = Path(run), Path(out_dir)
    number = dataset_id(out_dir)
    if not 0.0 <= float(min_reliability) <= 1.0:
        raise ConfigError(f"min_reliability must be in [0, 1], got {min_reliability}")
    record = read_pipeline_record(run)
    if record is None:
        raise DataError(run, f"not a pipeline run (no {PIPELINE_MANIFEST}); make one with `diffuse-uda run`")
    task = Task.from_dict(record.task)
    folders = pipeline_stage_folders(run)
    synthetic, pseudo = folders["4 synthesis"], folders["2 pseudo-labels"]
    synth_manifest = _complete_stage(synthetic, "synthesis")
    _complete_stage(pseudo, "pseudo-label")
    # The resolved source dataset the run used (the task record may hold a path relative to its cwd).
    source_dir = Path(synth_manifest.inputs["source"].path) if "source" in synth_manifest.inputs else \
        task.source_dir.resolve()
    inputs = {"source": dataset_input(source_dir, with_labels=True), "synthetic": file_input(synthetic)}
    if pseudo_labels:
        inputs["pseudo_labels"] = file_input(pseudo)
    request = ExportRequest(run=str(run.resolve()), pseudo_labels=pseudo_labels,
                            min_reliability=float(min_reliability) if pseudo_labels else None, inputs=inputs)
    if _check_out_dir(out_dir, request):
        previous = read_export_provenance(out_dir)
        assert previous is not None
        return ExportResult(out_dir, False, dict(previous.counts), dict(previous.skipped_pseudo_labels),
                            list(previous.notes))
    _check_unique_id(out_dir, number)

    source_info = load_dataset_json(source_dir)
    labels = dict(sorted(task.labels.items(), key=lambda kv: kv[1]))
    if sorted(labels.values()) != list(range(len(labels))):
        raise DataError(run / PIPELINE_MANIFEST, f"labels {labels} are not consecutive 0..K-1, as nnU-Net requires")
    skipped: dict[str, str] = {}
    cases = _source_cases(source_dir)
    cases += _synthetic_cases(synthetic, source_dir, pseudo, task.preprocessing.spatial_dims,
                              source_info.num_channels)
    if pseudo_labels:
        cases += _pseudo_label_cases(pseudo, source_info.num_channels, float(min_reliability), skipped)
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise DataError(run, f"case ids clash: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")

    notes = []
    verdict = read_check(folders[CHECK_RECORD_STAGE]) if CHECK_RECORD_STAGE in folders else None
    if verdict is not None and not verdict.use_synthetic:
        notes.append(f"the run's synthetic check found that {verdict.drop_reason()}, so its model is stage 1's; the "
                     f"syn_ cases are exported as made: leave them out to train on the source pairs alone")
    channel_names = dict(source_info.channel_names)
    for k, name in channel_names.items():
        if name.upper() == "CT":
            channel_names[k] = CT_CHANNEL_RENAMED
            notes.append(f"channel {k} 'CT' renamed {CT_CHANNEL_RENAMED!r}: the synthetic images are in [0, 1], so "
                         "nnU-Net's fixed CT normalisation would be wrong; per-image z-score instead")
    counts = {origin: sum(1 for c in cases if c.origin == origin) for origin in PREFIXES}
    allowed = np.array(sorted(labels.values()))
    provenance = ExportProvenance(
        request=request, task=record.task, counts=counts, skipped_pseudo_labels=skipped, notes=notes,
        cases={c.case_id: ExportedCase(origin=c.origin, stage=str(c.stage.resolve()),
                                       images=[str(p.resolve()) for p in c.images], label=str(c.label.resolve()),
                                       details=c.details) for c in cases})
    with staged_dataset(out_dir) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        map_progress(_write_case, [(c, tmp, allowed) for c in cases], desc=f"export {out_dir.name}")
        atomic_write_json(tmp / PROVENANCE_FILE, provenance.model_dump(mode="json"))
        described = ", ".join(f"{n} {origin}" for origin, n in counts.items() if n)
        write_dataset_json(tmp, DatasetInfo(
            name=out_dir.name, channel_names=channel_names, labels=labels, file_ending=FILE_ENDING,
            num_training=len(cases),
            description=f"diffuse-uda export of the pipeline run {run.resolve()} (task {task.name}): {described}",
            provenance={"exporter": "diffuse-uda export nnunet", "run": str(run.resolve()),
                        "case_prefixes": {PREFIXES[o]: o for o in PREFIXES}, "details": PROVENANCE_FILE}))
    return ExportResult(out_dir, True, counts, skipped, notes)

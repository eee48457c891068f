"""The ``train`` stage: task + method + config -> a run folder with a model bundle.

Run folder contents: ``model.pt`` (bundle), ``checkpoint_last.pt`` (resume), ``training_log.csv``,
``run.json`` (config, method, task, timing, peak memory, status).

Under torchrun every rank calls :func:`train_method`: rank 0 decides whether the folder is reused,
resumed or made afresh, fills the preprocessing cache (the others then read it) and writes the
manifest and the bundle; all ranks train together (:class:`~diffuse_uda.training.trainer.Trainer`).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from diffuse_uda.config import RunConfig
from diffuse_uda.data.io import atomic_torch_save, ensure_output_dir
from diffuse_uda.data.preprocessing import PreparedCase, prepare_split, resample_label, stack_samples
from diffuse_uda.data.task import Task
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.asc import AUTO
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import available_methods, create_method
from diffuse_uda.networks.ensemble import SnapshotEnsemble
from diffuse_uda.networks.segmenter import segmenter_spec
from diffuse_uda.pipeline.run_folder import (
    RUN_MANIFEST,
    InputRecord,
    OpenState,
    RunFolder,
    RunManifest,
    RunRequest,
    dataset_input,
)
from diffuse_uda.training import distributed
from diffuse_uda.training.bundle import save_bundle
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.trainer import Trainer

__all__ = ["RUN_MANIFEST", "build_training_data", "default_cache_dir", "peak_rss_mb", "run_request", "train_method"]


def default_cache_dir() -> Path:
    base = os.environ.get("DIFFUSE_UDA_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "diffuse-uda")
    return Path(base) / "preprocessed"


def peak_rss_mb() -> float:
    """Peak resident memory of this process (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _oracle_target_labels(task: Task, cases: list[PreparedCase]) -> list[PreparedCase]:
    """Target *training* labels for the oracle, read through the evaluation module's reader."""
    from diffuse_uda.evaluation.reference import ReferenceLabels

    reader = ReferenceLabels(task.target_dir, split="Tr", purpose="oracle-training")
    out = []
    for case in cases:
        label, _ = reader.load(case.case_id)
        if label.ndim == 2:
            label = label[..., None]
        out.append(PreparedCase(case.case_id, case.image, resample_label(np.asarray(label), task.preprocessing),
                                case.original_shape, case.affine))
    return out


def build_training_data(task: Task, uses_target_images: bool, uses_target_labels: bool,
                        extra_labelled: Sequence[Path] = (), cache_dir: Path | None = None,
                        progress: bool = True) -> TrainingData:
    """Labelled set = source (+ extra labelled datasets such as synthetic or pseudo-labelled ones).

    Target images are read without labels. Only the oracle gets target (training-split) labels.
    """
    cfg, dims = task.preprocessing, task.preprocessing.spatial_dims
    if uses_target_labels:
        images = prepare_split(task.target_dir, "Tr", cfg, with_labels=False, cache_dir=cache_dir, progress=progress)
        labelled = _oracle_target_labels(task, images)
    else:
        labelled = prepare_split(task.source_dir, "Tr", cfg, with_labels=True, cache_dir=cache_dir,
                                 progress=progress, expected_labels=task.labels)
    for extra in extra_labelled:
        labelled += prepare_split(Path(extra), "Tr", cfg, with_labels=True, cache_dir=cache_dir,
                                  progress=progress, expected_labels=task.labels)
    images_t, labels_t = stack_samples(labelled, dims)
    assert labels_t is not None
    target_t = None
    if uses_target_images:
        target_cases = prepare_split(task.target_dir, "Tr", cfg, with_labels=False, cache_dir=cache_dir,
                                     progress=progress)
        target_t, _ = stack_samples(target_cases, dims)
    return TrainingData(images_t, labels_t, target_t)


def resolve_task_defaults(task: Task, method_name: str, config: RunConfig) -> RunConfig:
    """``config`` with the method's task-dependent defaults filled in (:meth:`Method.task_defaults`): ASCPlus's
    self-training rounds when unset. Requests are made from the resolved settings, so a run made while the default
    was another value does not match a request made under today's."""
    method = create_method(method_name, config.method)
    updates = type(method).task_defaults(method.options, task)
    return config.model_copy(update={"method": {**config.method, **updates}}) if updates else config


def run_request(task: Task, method_name: str, config: RunConfig, extra_labelled: Sequence[Path] = ()) -> RunRequest:
    """The request a training run is made for: method, resolved settings, task and the fingerprints of
    every dataset it reads (target *images* only, unless the method is the oracle)."""
    method_cls = available_methods().get(method_name)
    if method_cls is None:
        create_method(method_name)  # raises the unknown-method error
        raise AssertionError  # unreachable
    task = task.with_preprocessing(config.preprocessing)
    config = resolve_task_defaults(task, method_name, config)
    inputs: dict[str, InputRecord] = {}
    if method_cls.uses_target_labels:
        inputs["target_labelled"] = dataset_input(task.target_dir, with_labels=True)
    else:
        inputs["source"] = dataset_input(task.source_dir, with_labels=True)
    if method_cls.uses_target_images:
        inputs["target_images"] = dataset_input(task.target_dir, with_labels=False)
    for i, extra in enumerate(extra_labelled):
        inputs[f"extra_labelled_{i}"] = dataset_input(Path(extra), with_labels=True)
    options = create_method(method_name, config.method).options.model_dump(mode="json")
    # Settings the method's options leave out of their own dump (ASCPlus's choice options once the transfer is
    # fixed) do not change the run: a candidate is the same run whichever choice it was trained for.
    config = config.model_copy(update={"method": {k: v for k, v in config.method.items() if k in options}})
    return RunRequest(method=method_name, config=config.model_dump(mode="json"), options=options,
                      task=task.config.model_dump(mode="json"), inputs=inputs)


def train_method(task: Task, method_name: str, config: RunConfig, out_dir: Path,
                 extra_labelled: Sequence[Path] = (), cache_dir: Path | None = None,
                 progress: bool = True, display_name: str | None = None, force: bool = False,
                 candidate_dirs: Mapping[str, Path] | None = None) -> Path:
    """Train (or resume) ``method_name`` on ``task``; returns the run folder.

    A folder holding a complete run of exactly this request is returned as it is; an unfinished one
    resumes; one made for anything else is refused unless ``force`` (see :mod:`run_folder`).
    ``ascplus`` with ``appearance="auto"`` (its default) trains the appearance candidates (into
    ``candidate_dirs``, see :mod:`appearance_choice`) and keeps the one the label-free rule picks."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: run folder path is a file, not a folder")
    distributed.on_main(ensure_output_dir, out_dir, "run folder")
    task = task.with_preprocessing(config.preprocessing)
    task.check()
    method = create_method(method_name, config.method)
    if getattr(method.options, "appearance", None) == AUTO:
        if extra_labelled:
            raise ConfigError("appearance 'auto' with extra labelled data is not supported: pass the appearance "
                              "chosen for stage 1 (method.appearance=...)")
        from diffuse_uda.pipeline.appearance_choice import train_with_appearance_choice

        return train_with_appearance_choice(task, config, out_dir, candidate_dirs, cache_dir, progress, display_name,
                                            force)
    # Rank 0 fingerprints the inputs and decides about the folder; every rank gets the same answer.
    request = distributed.on_main(run_request, task, method_name, config, extra_labelled)
    folder = RunFolder(out_dir)
    if distributed.on_main(_open_run, folder, request, force) == "complete":
        return out_dir
    t0 = time.perf_counter()
    data = distributed.main_first(build_training_data, task, method.uses_target_images, method.uses_target_labels,
                                  extra_labelled, cache_dir if cache_dir is not None else default_cache_dir(),
                                  progress and distributed.is_main())
    prep_seconds = time.perf_counter() - t0
    manifest = RunManifest(
        request=request, task=task.resolved().to_dict(), display_name=display_name or method_name,
        method_summary=method.summary,
        oracle=method.uses_target_labels, extra_labelled=[str(Path(p).resolve()) for p in extra_labelled],
        n_labelled_samples=int(data.source_images.shape[0]),
        n_target_samples=int(data.target_images.shape[0]) if data.target_images is not None else 0)
    distributed.on_main(folder.write, manifest)
    trainer = Trainer(method, data, config, out_dir, task.preprocessing.spatial_dims, task.num_classes, progress)
    stats = trainer.fit()
    distributed.on_main(_write_outputs, folder, method, method_name, task, config, data, manifest,
                        {"preprocessing_seconds": prep_seconds, **stats})
    return out_dir


def _open_run(folder: RunFolder, request: RunRequest, force: bool) -> OpenState:
    """The folder's state for ``request``; "complete" only when the bundle is there too."""
    state = folder.open(request, force=force)
    return "resume" if state == "complete" and not folder.bundle_path.is_file() else state


def _write_outputs(folder: RunFolder, method: Method, method_name: str, task: Task, config: RunConfig,
                   data: TrainingData, manifest: RunManifest, stats: dict) -> None:
    """The bundle, the method's extra outputs and the completed manifest (rank 0)."""
    out_dir = folder.path
    spec = segmenter_spec(task.preprocessing.spatial_dims, int(data.source_images.shape[1]), task.num_classes,
                          config.network)
    network = method.inference_network()
    if isinstance(network, SnapshotEnsemble):
        spec["ensemble"] = len(network.members)
    if hasattr(method, "bundle_spec"):  # methods with their own inference architecture (e.g. GLUA) extend it
        spec = method.bundle_spec(spec)
    save_bundle(out_dir, network, spec, task, method_name, config)
    outputs = []
    for name, value in method.extra_outputs().items():
        if isinstance(value, torch.Tensor | dict | list):
            atomic_torch_save(value, out_dir / f"{name}.pt")
            outputs.append(f"{name}.pt")
    manifest = manifest.model_copy(update={"status": "complete", "peak_rss_mb": peak_rss_mb(), "outputs": outputs,
                                           **stats})
    folder.write(RunManifest.model_validate(manifest.model_dump()))

"""Command-line interface: verbs only. Each verb parses, calls one function, prints where things went.

Under ``torchrun --nproc-per-node N -m diffuse_uda.cli VERB ...`` every process runs ``train``, ``run``,
``bench`` and ``synthesize``, which share the work (see :mod:`diffuse_uda.training.distributed`), and
only rank 0 prints to stdout. Every other verb runs on rank 0 as one process; the other ranks exit.
"""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from diffuse_uda.errors import ConfigError, DiffuseUDAError

app = typer.Typer(
    help="diffuse-uda: adapt a segmentation model from a labelled source centre to an unlabelled target "
         "centre (Diffuse-UDA and comparators), evaluate it honestly, and report.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Bring a raw dataset into the canonical nnU-Net v2 raw layout.", no_args_is_help=True)
app.add_typer(import_app, name="import")
export_app = typer.Typer(help="Hand a finished pipeline run's data over to another tool.", no_args_is_help=True)
app.add_typer(export_app, name="export")

DataRoot = Annotated[Path, typer.Option("--data-root", help="Folder holding the canonical datasets "
                                        "(default: $DIFFUSE_UDA_DATA or ./data).")]
Force = Annotated[bool, typer.Option(
    "--force", help="Replace finished or unfinished runs/stages in the output folder that were made with other "
                    "settings or inputs (default: refuse with the differences). Matching ones are still reused.")]
Overrides = Annotated[list[str] | None, typer.Option(
    "--set", help="Override any setting, e.g. --set training.iterations=200 --set method.beta=0.05 "
                  "--set preprocessing.size=[64,64] (sections: preprocessing, network, training, method; "
                  "bench also takes diffusion and synthesis, read by its generator rows only). Repeatable.")]


def _parse_label_map(text: str) -> dict[str, int]:
    """``background=0,Myo=1`` -> {"background": 0, "Myo": 1}."""
    from diffuse_uda.errors import ConfigError

    out: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"label map {text!r}: each item must look like NAME=INTEGER, got {item!r}")
    return out


class SplitChoice(str, Enum):
    Tr = "Tr"
    Ts = "Ts"
    all = "all"


def _data_root(value: Path | None) -> Path:
    from diffuse_uda.data.task import default_data_root

    return value if value is not None else default_data_root()


# ---------------------------------------------------------------- import
def _report_import(path: Path, written: bool) -> None:
    typer.echo(f"wrote {path}" if written else f"already imported, skipped: {path}")


@import_app.command("mscmrseg")
def import_mscmrseg_cmd(
    src: Annotated[Path, typer.Argument(help="MS-CMRSeg folder with C0/ and LGE/ subfolders.")],
    out: Annotated[Path, typer.Option("--out", help="Data root to write the datasets into.")] = Path("data"),
) -> None:
    """MS-CMRSeg 2019: bSSFP (C0, source, 35 patients) and LGE (target; patients 36-45 held out for test),
    and the reverse direction LGE -> bSSFP on disjoint patients (task mscmr-lge2bssfp)."""
    from diffuse_uda.data.importers.mscmrseg import import_mscmrseg

    import_mscmrseg(src, out, on_dataset=_report_import)


@import_app.command("polyp")
def import_polyp_cmd(
    src: Annotated[Path, typer.Argument(help="Folder with Kvasir-SEG/ and CVC-ClinicDB/ subfolders.")],
    out: Annotated[Path, typer.Option("--out", help="Data root to write the datasets into.")] = Path("data"),
    seed: Annotated[int, typer.Option(help="Seed of the train/test split.")] = 0,
    test_fraction: Annotated[float, typer.Option(help="Fraction held out as the labelled test split.")] = 0.2,
) -> None:
    """Kvasir-SEG and CVC-ClinicDB (CVC split by its 29 video sequences, never by frame)."""
    from diffuse_uda.data.importers.polyp import import_polyp

    import_polyp(src, out, seed=seed, test_fraction=test_fraction, on_dataset=_report_import)


@import_app.command("abdominal")
def import_abdominal_cmd(
    src: Annotated[Path, typer.Argument(help="Folder with CT/ and MR_T2/ subfolders (image_N/label_N.nii.gz).")],
    out: Annotated[Path, typer.Option("--out", help="Data root to write the datasets into.")] = Path("data"),
    seed: Annotated[int, typer.Option(help="Seed of the by-volume train/test splits.")] = 0,
) -> None:
    """Abdominal CT <-> MR T2-SPIR (liver, kidneys, spleen): datasets for CT -> MR (main) and MR -> CT."""
    from diffuse_uda.data.importers.abdominal import import_abdominal

    import_abdominal(src, out, seed=seed, on_dataset=_report_import)


class OrientationChoice(str, Enum):
    ras = "ras"
    ras_in_plane = "ras-in-plane"
    as_stored = "as-stored"


def _warn(message: str) -> None:
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


@import_app.command("folder")
def import_folder_cmd(
    images: Annotated[Path, typer.Argument(help="Folder of images (NIfTI, PNG or JPEG).")],
    out: Annotated[Path, typer.Option("--out", help="Dataset folder to create (e.g. data/Dataset600_Mine).")],
    masks: Annotated[Path | None, typer.Option(help="Folder of masks with the same file stems.")] = None,
    labels: Annotated[str | None, typer.Option(help="Label names and mask values, e.g. Myo=1,LV=2,RV=3 "
                                               "(background=0 implied). A mask value not declared is an error. "
                                               "Default: inferred from the masks (label_1, label_2, ...).")] = None,
    group: Annotated[str | None, typer.Option(help="Regex on the image file name whose first capture group is the "
                                              "patient / sequence id, e.g. '^(patient\\d+)_': the split keeps "
                                              "each group on one side.")] = None,
    test_cases: Annotated[Path | None, typer.Option("--test-cases", help="File of test case ids (group ids with "
                                                    "--group), one per line; overrides --test-fraction.")] = None,
    test_fraction: Annotated[float, typer.Option(help="Fraction (of images, or of groups with --group) held out "
                                                 "as imagesTs/labelsTs.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    binary: Annotated[bool, typer.Option("--binary", help="Every non-zero mask value is foreground (1), e.g. "
                                         "for masks mixing 0/1 and 0/255 encodings.")] = False,
    orientation: Annotated[OrientationChoice, typer.Option(
        help="NIfTI volumes: ras = closest canonical (RAS+); ras-in-plane = keep the stored slice axis last "
             "(thick-slice stacks for 2D models); as-stored = unchanged. Original affines are recorded "
             "either way.")] = OrientationChoice.ras,
) -> None:
    """Generic paired image/mask files -> canonical dataset (labels declared with --labels or inferred)."""
    from diffuse_uda.data.importers.folder import import_folder

    label_map = _parse_label_map(labels) if labels is not None else None
    import_folder(images, out, masks_dir=masks, labels=label_map, test_fraction=test_fraction, seed=seed,
                  binary=binary, on_dataset=_report_import, group=group, test_cases=test_cases,
                  orientation=orientation.value, on_warning=_warn)


@app.command("validate")
def validate_cmd(
    dataset: Annotated[Path | None, typer.Argument(help="Dataset folder in the canonical layout.")] = None,
    other: Annotated[Path | None, typer.Argument(help="A second dataset (e.g. the target of the first): both are "
                                                      "checked and their geometry compared.")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Check a task's source (with labels) and "
                                             "target (images only) and compare their geometry.")] = None,
    data_root: DataRoot = None,  # type: ignore[assignment]
    no_labels: Annotated[bool, typer.Option("--no-labels", help="Check images only (target data).")] = False,
    split: Annotated[SplitChoice, typer.Option("--split", help="Split to check; all: every split present in the "
                                               "folder.")] = SplitChoice.all,
) -> None:
    """Check a dataset: readable files, matching shapes/affines, declared label values, no NaN. With two
    datasets or --task, also warn (without failing) where source and target differ strongly in
    orientation or in-plane field of view."""
    from diffuse_uda.data.validation import compare_geometry, validate_dataset
    from diffuse_uda.errors import ConfigError

    if task is not None:
        from diffuse_uda.data.task import load_task

        if dataset is not None:
            raise ConfigError("give either --task or dataset folders, not both")
        t = load_task(task, _data_root(data_root))
        t.check()  # both datasets exist and declare exactly the task's label map
        # The target's labels are evaluation data: validate its images only.
        checks = [(t.source_dir, not no_labels), (t.target_dir, False)]
    elif dataset is None:
        raise ConfigError("give a dataset folder (or two, or --task TASK)")
    else:
        checks = [(d, not no_labels) for d in (dataset, other) if d is not None]
    reports = [validate_dataset(d, splits=split.value, check_labels=labels) for d, labels in checks]
    for report in reports:
        typer.echo(f"OK: {report}")
    if len(reports) == 2:
        for message in compare_geometry(*reports):
            _warn(message)


# ---------------------------------------------------------------- train / predict / evaluate
@app.command("methods")
def methods_cmd() -> None:
    """List the available methods."""
    from diffuse_uda.methods.registry import available_methods

    for name, cls in available_methods().items():
        typer.echo(f"{name:20s} {cls.summary}")


@app.command("train")
def train_cmd(
    method: Annotated[str, typer.Option("--method", "-m", help="Method name (see `diffuse-uda methods`).")],
    task: Annotated[str, typer.Option("--task", "-t", help="Shipped task name or task YAML path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (resumes if it holds a checkpoint).")],
    profile: Annotated[str, typer.Option(
        help="Size profile: smoke (seconds), quick (CPU), quick3d (CPU, 64x64x32 volumes), paper (GPU).")] = "quick",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    data_root: DataRoot = None,  # type: ignore[assignment]
    overrides: Overrides = None,
    extra_labelled: Annotated[list[Path] | None, typer.Option(
        "--extra-labelled", help="Extra labelled datasets (synthetic, pseudo-labelled) added to the source.")] = None,
    force: Force = False,
) -> None:
    """Train a segmentation model with METHOD on TASK. Never reads target labels (except the
    clearly marked target-supervised oracle, which reads target *training* labels only). A finished
    run in OUT is reused only if it was made with the same method, settings and inputs."""
    from diffuse_uda.config import build_run_config, parse_overrides
    from diffuse_uda.data.task import load_task
    from diffuse_uda.pipeline.train import train_method

    t = load_task(task, _data_root(data_root))
    ov = parse_overrides(overrides)
    ov.setdefault("training", {}).setdefault("seed", seed)
    cfg = build_run_config(profile, t.preprocessing.spatial_dims, ov)
    run = train_method(t, method, cfg, out, extra_labelled=extra_labelled or (), force=force)
    typer.echo(f"model bundle: {run / 'model.pt'}")


@app.command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Option("--model", help="Run folder or model.pt; a `diffuse-uda run` folder stands "
                                                        "for the model it ends with (stage 3's, or stage 1's where "
                                                        "the synthetic check skipped stage 3).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for {case}.nii.gz predictions.")],
    dataset: Annotated[Path | None, typer.Option(help="Dataset to segment (default: the task's target).")] = None,
    split: Annotated[str, typer.Option(help="Ts (held-out test images) or Tr (training images).")] = "Ts",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    original_orientation: Annotated[bool, typer.Option(
        "--original-orientation", help="Write each prediction in the orientation its scan had before `import "
                                       "folder` reoriented it (recorded in dataset.json). Default: the dataset's "
                                       "grid, the one its reference labels use.")] = False,
) -> None:
    """Segment images with a trained model; predictions are written on each image's grid in the dataset
    (the grid of its labels: `evaluate` accepts either)."""
    from diffuse_uda.inference.predict import predict_dataset
    from diffuse_uda.pipeline.run import pipeline_model
    from diffuse_uda.training.bundle import load_bundle

    model = pipeline_model(model)
    ds = dataset if dataset is not None else load_bundle(model).task.target_dir
    folder = predict_dataset(model, ds, out, split=split, device=device, original_orientation=original_orientation)
    typer.echo(f"predictions: {folder}")


@app.command("adapt-source-free")
def adapt_source_free_cmd(
    model: Annotated[Path, typer.Option("--model", help="Source-trained segmenter: run folder or model.pt "
                                                        "(e.g. a source-only run).")],
    diffusion: Annotated[Path, typer.Option("--diffusion", help="Source-trained label-conditioned diffusion "
                                                                "checkpoint (diffusion_last.pt).")],
    images: Annotated[Path, typer.Option("--images", help="Target dataset folder; only its dataset.json and "
                                                          "images{split} are read.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for {case}.nii.gz predictions and heal.json.")],
    split: Annotated[str, typer.Option(help="Ts (held-out test images) or Tr (training images).")] = "Ts",
    n_samples: Annotated[int, typer.Option("--n-samples", help="Diffusion samples per slice (2D) or "
                                                               "volume (3D) for edge-guided selection.")] = 6,
    sampler: Annotated[str, typer.Option(help="ddim (fast) or ddpm (the paper: all training steps).")] = "ddim",
    steps: Annotated[int | None, typer.Option(help="Reverse diffusion steps (default: 50 for ddim, all for "
                                                   "ddpm).")] = None,
    no_hd: Annotated[bool, typer.Option("--no-hd", help="Ablation: no hierarchical denoising.")] = False,
    no_egs: Annotated[bool, typer.Option("--no-egs", help="Ablation: one sample, no edge-guided selection.")] = False,
    no_saf: Annotated[bool, typer.Option("--no-saf", help="Ablation: no size-aware fusion (output the "
                                                          "segmentation of the selected sample).")] = False,
    entropy_quantile: Annotated[float | None, typer.Option(
        "--entropy-quantile", help="Label-free calibrated thresholds: tau_1 = this quantile of the entropy of "
                                   "the case's predicted foreground (0.9 drops its 10 % most uncertain voxels), "
                                   "tau_2 matched to it. Default: the paper's fixed tau_1 = tau_2 = 0.2.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampling noise.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """HEAL: learning-free, source-free adaptation. Segments target images with a frozen source model
    and a frozen source diffusion model only (no source data, no label, no weight update):
    hierarchical denoising of the pseudo-label, edge-guided selection of a source-like sample
    generated from it, size-aware fusion. --no-egs --no-saf gives the HD-only ablation (no
    diffusion sampling)."""
    from diffuse_uda.methods.heal import HEALConfig, adapt_source_free

    if steps is None and sampler == "ddim":
        steps = HEALConfig().steps
    config = HEALConfig(n_samples=n_samples, sampler=sampler, steps=steps, seed=seed,
                        hierarchical_denoising=not no_hd, edge_guided_selection=not no_egs,
                        size_aware_fusion=not no_saf, entropy_quantile=entropy_quantile)
    folder = adapt_source_free(model, diffusion, images, out, split=split, config=config, device=device)
    typer.echo(f"predictions: {folder} (per-case selection scores: {folder / 'heal.json'})")


@app.command("evaluate")
def evaluate_cmd(
    predictions: Annotated[Path, typer.Option("--predictions", "-p", help="Folder of {case}.nii.gz predictions.")],
    reference: Annotated[Path, typer.Option("--reference", "-r", help="Dataset folder with the reference labels.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for per_case.csv, summary.json, summary.md.")],
    split: Annotated[str, typer.Option(help="Ts = held-out test split; Tr = target training labels, for "
                                              "pseudo-label quality only.")] = "Ts",
    nsd_tolerance: Annotated[float, typer.Option(help="Normalised surface Dice tolerance in mm.")] = 2.0,
    labels: Annotated[str | None, typer.Option(help="Label map of the predictions, e.g. background=0,Myo=1,LV=2 "
                                                    "(only for predictions without the prediction.json that "
                                                    "`diffuse-uda predict` writes).")] = None,
) -> None:
    """Dice, HD95, ASSD and NSD per case and class (MONAI metrics, physical spacing). The only command
    that reads target labels. The predictions' label map must equal the reference's, names included."""
    from diffuse_uda.data.io import ensure_output_dir
    from diffuse_uda.evaluation.evaluate import evaluate_predictions
    from diffuse_uda.evaluation.reference import ReferenceLabels

    purpose = "pseudo-label-quality" if split == "Tr" else None
    label_map = _parse_label_map(labels) if labels is not None else None
    ensure_output_dir(out, "evaluation folder")
    evaluate_predictions(predictions, ReferenceLabels(reference, split=split, purpose=purpose), out,
                         nsd_tolerance_mm=nsd_tolerance, labels=label_map)
    typer.echo((out / "summary.md").read_text())


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(help="Run folders that hold an evaluation/ subfolder; a "
                                                    "`diffuse-uda run` folder stands for the model it ends with.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder (report.md + PNG figures).")],
) -> None:
    """Markdown report comparing runs: results table, per-class bar chart, overlays, training curves."""
    from diffuse_uda.pipeline.run import pipeline_model
    from diffuse_uda.report.run_report import write_comparison_report

    # A pipeline whose synthetic check skipped stage 3 ends with stage 1's model: listed once.
    folders = list(dict.fromkeys(pipeline_model(r).resolve() for r in runs))
    typer.echo(f"report: {write_comparison_report(folders, out)}")


@app.command("pseudolabel")
def pseudolabel_cmd(
    run: Annotated[Path, typer.Option("--run", help="Run folder of a trained model (e.g. ascplus).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder to write (imagesTr, labelsTr, "
                                                         "confidenceTr, dataset.json).")],
    dataset: Annotated[Path | None, typer.Option(help="Images to label (default: the task's target).")] = None,
    threshold: Annotated[float | None, typer.Option(help="Confidence threshold (default: the method's).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
) -> None:
    """Write target pseudo-labels and per-voxel confidence maps as a canonical dataset (they feed the
    diffusion stage). Reads no target label; score them afterwards with
    `diffuse-uda evaluate -p OUT/labelsTr -r TARGET --split Tr`."""
    from diffuse_uda.pipeline.pseudolabel import write_pseudolabels

    typer.echo(f"pseudo-labels: {write_pseudolabels(run, out, dataset, threshold, device)}")


@app.command("run")
def run_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="Shipped task name or task YAML path.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (stages resume / are skipped when done).")],
    profile: Annotated[str, typer.Option(
        help="smoke (seconds), quick (CPU), quick3d (CPU, 64x64x32 volumes) or paper (GPU).")] = "quick",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    ablation: Annotated[str | None, typer.Option(help="A Table-3 generation ablation row, M1..M6.")] = None,
    data_root: DataRoot = None,  # type: ignore[assignment]
    overrides: Overrides = None,
    force: Force = False,
) -> None:
    """The Diffuse-UDA pipeline: ASCPlus -> pseudo-labels -> diffusion training -> synthesis ->
    ASCPlus on source + synthetic -> predictions -> evaluation -> report. Overrides: sections
    segmentation.* (network/training/method of stages 1 and 3), diffusion.*, synthesis.*,
    diffusion_domains, training_fraction, stage1_run=RUN (use a finished ascplus run with the same
    settings as stage 1), share_stages_with=[RUN,...] (reuse identical finished stages of other runs)."""
    from diffuse_uda.config import _deep_update, parse_overrides
    from diffuse_uda.data.task import load_task
    from diffuse_uda.errors import ConfigError
    from diffuse_uda.pipeline.run import GENERATION_ABLATION, PipelineConfig, run_pipeline

    t = load_task(task, _data_root(data_root))
    settings: dict = {"profile": profile, "seed": seed}
    if ablation is not None:
        if ablation not in GENERATION_ABLATION:
            raise ConfigError(f"unknown ablation {ablation!r}; one of {', '.join(GENERATION_ABLATION)}")
        settings = _deep_update(settings, GENERATION_ABLATION[ablation])
    try:
        config = PipelineConfig.model_validate(_deep_update(settings, parse_overrides(overrides)))
    except ValueError as exc:
        raise ConfigError(f"invalid pipeline settings: {exc}") from exc
    typer.echo(f"report: {run_pipeline(t, out, config, force=force)}")


@app.command("synthesize")
def synthesize_cmd(
    # --run-dir: torchrun's own parser reads --run as an ambiguous abbreviation of its --run-path.
    run: Annotated[Path, typer.Option("--run", "--run-dir", help="Pipeline run folder (from `diffuse-uda run`) "
                                                                 "with a trained generator (under torchrun: "
                                                                 "--run-dir).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Synthetic dataset folder (imagesTr, labelsTr, "
                                                          "dataset.json, gallery.png).")],
    masks: Annotated[str, typer.Option(help="Conditioning masks: source (labels), target (pseudo-labels) "
                                            "or both.")] = "both",
    deform: Annotated[bool, typer.Option("--deform/--no-deform", help="Deform each mask (affine + elastic) "
                                                                      "before sampling.")] = True,
    times: Annotated[int, typer.Option(help="Synthetic pairs per mask (scale-up factor).")] = 1,
    sampler: Annotated[str, typer.Option(help="ddim (with --eta 1: stochastic, the default), dpm++2m / dpm++2m-sde "
                                              "(DPM-Solver++), ddpm (all training steps, the paper), or euler (a "
                                              "rectified-flow generator's, and only its).")] = "ddim",
    steps: Annotated[int, typer.Option(help="Reverse steps of ddim / dpm++ / euler (ddpm runs all).")] = 25,
    eta: Annotated[float, typer.Option(help="DDIM stochasticity: 1 = fresh noise each step, 0 = deterministic.")] = 1.0,
    guidance_scale: Annotated[str, typer.Option(help="Classifier-free guidance toward the target domain "
                                                     "(domain-guided generators; 1 = none), or auto: chosen "
                                                     "without labels by the label-free fidelity measures.")] = "auto",
    batch_size: Annotated[int, typer.Option(help="Images sampled together.")] = 16,
    init_strength: Annotated[float, typer.Option(help="1: each image from pure noise (the paper). Below 1 (e.g. "
                                                      "0.5): from the real image of its mask, noised that far "
                                                      "along the schedule (SDEdit), which keeps the object where "
                                                      "the mask says.")] = 1.0,
    shard: Annotated[str | None, typer.Option(help="i/n: this process makes every n-th item starting at i; run "
                                                   "the n shards anywhere, into the same --out. Default: every "
                                                   "item (under torchrun the processes share them).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise and deformations (per item, so sharding does "
                                           "not change results).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:1, ...")] = "auto",
) -> None:
    """Sample a labelled synthetic dataset in the target's appearance from a run's generator: K images
    per conditioning mask, written in the canonical layout with its provenance in dataset.json; files
    already written are skipped, so an interrupted job resumes."""
    from diffuse_uda.errors import ConfigError
    from diffuse_uda.pipeline.run import SynthesisOptions, synthesize_from_run

    try:
        parts = None if shard is None else tuple(int(x) for x in shard.split("/"))
        if parts is not None and len(parts) != 2:
            raise ValueError("expected i/n")
        options = SynthesisOptions(masks=masks, deform=deform, times=times, sampler=sampler, steps=steps,
                                   batch_size=batch_size, eta=eta, init_strength=init_strength,
                                   guidance_scale=guidance_scale if guidance_scale == "auto" else float(guidance_scale))
    except ValueError as exc:
        raise ConfigError(f"invalid synthesis settings (shard {shard!r}): {exc}") from exc
    synthesize_from_run(run, out, options, seed=seed, shard=parts, device=device)  # type: ignore[arg-type]


@export_app.command("nnunet")
def export_nnunet_cmd(
    run: Annotated[Path, typer.Option("--run", help="Finished pipeline run folder (from `diffuse-uda run`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="nnU-Net raw dataset folder to create, named "
                                                          "DatasetXXX_Name (e.g. nnUNet_raw/Dataset700_Mine).")],
    pseudo_labels: Annotated[bool, typer.Option("--pseudo-labels", help="Also export the target training images "
                                                "with stage 1's pseudo-labels (reliable cases only).")] = False,
    min_reliability: Annotated[float, typer.Option(
        "--min-reliability", help="With --pseudo-labels: export a case only when at least this fraction of its "
                                  "predicted foreground voxels reaches the run's confidence threshold.")] = 0.9,
) -> None:
    """An nnU-Net v2 raw dataset from a pipeline run: the source pairs (src_), the synthetic target-styled
    pairs (syn_) and optionally confident target pseudo-labels (pl_); provenance.json says where each case
    came from. Never reads target labels. Next: nnUNetv2_plan_and_preprocess -d XXX --verify_dataset_integrity."""
    from diffuse_uda.pipeline.export_nnunet import dataset_id, export_nnunet

    result = export_nnunet(run, out, pseudo_labels=pseudo_labels, min_reliability=min_reliability)
    counts = ", ".join(f"{n} {origin}" for origin, n in result.counts.items())
    if not result.written:
        typer.echo(f"already exported, skipped: {result.out_dir} ({counts})")
        return
    typer.echo(f"wrote {result.out_dir} ({counts})")
    for note in result.notes:
        typer.echo(f"note: {note}")
    if result.skipped_pseudo_labels:
        typer.echo(f"pseudo-labels not exported: {len(result.skipped_pseudo_labels)} case(s) (reasons in "
                   f"{result.out_dir / 'provenance.json'})")
    typer.echo(f"next: nnUNetv2_plan_and_preprocess -d {dataset_id(result.out_dir)} --verify_dataset_integrity "
               "(with nnUNet_raw set to the folder holding it)")


@app.command("bench")
def bench_cmd(
    task: Annotated[str, typer.Option("--task", "-t", help="Shipped task name or task YAML path.")],
    methods: Annotated[str, typer.Option(help="Comma-separated bench entries: methods, ablation rows and the "
                                              "pipeline `diffuse-uda` (all listed by `diffuse-uda bench-entries`)."
                                         )] = (
        "source-only,target-supervised,fda,pseudo-label,mean-teacher,cutmix,asc,ascplus"),
    seeds: Annotated[int, typer.Option(help="Number of seeds (0..N-1).")] = 3,
    seed_list: Annotated[str | None, typer.Option(
        "--seed-list", help="Only these seeds, comma-separated (e.g. 1,2), instead of 0..N-1: to share one "
                            "bench folder between processes side by side. The table then covers these runs; "
                            "run again with --seeds N to tabulate them all (finished runs are reused).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Bench folder (resumes finished runs).")] = Path("bench"),
    profile: Annotated[str, typer.Option(help="smoke, quick, quick3d or paper.")] = "quick",
    data_root: DataRoot = None,  # type: ignore[assignment]
    overrides: Overrides = None,
    force: Force = False,
) -> None:
    """Run every method x seed on TASK under one split, preprocessing and evaluation; write one
    table (bench.md / .csv / .json) with per-class Dice, HD95, ASSD, gap closed, time and memory.
    Entries: `diffuse-uda bench-entries` lists them all. Finished runs are reused only when their
    method, settings and inputs match."""
    from diffuse_uda.config import parse_overrides
    from diffuse_uda.data.task import load_task
    from diffuse_uda.pipeline.bench import run_bench

    t = load_task(task, _data_root(data_root))
    chosen: int | list[int] = seeds
    if seed_list is not None:
        try:
            chosen = sorted({int(v) for v in seed_list.split(",") if v.strip()})
        except ValueError:
            raise ConfigError(f"--seed-list must be comma-separated integers, got {seed_list!r}") from None
        if any(v < 0 for v in chosen):
            raise ConfigError(f"--seed-list takes seeds >= 0, got {seed_list!r}")
    folder = run_bench(t, [m.strip() for m in methods.split(",") if m.strip()], chosen, out, profile,
                       parse_overrides(overrides), force=force)
    typer.echo((folder / "bench.md").read_text())


@app.command("bench-entries")
def bench_entries_cmd() -> None:
    """List every entry `bench --methods` accepts, with what it is."""
    from diffuse_uda.pipeline.bench_entries import bench_entries

    for name, summary in bench_entries().items():
        typer.echo(f"{name:26s} {summary}")


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the demo data, runs and report go.")] = Path(
        "demo_output"),
    profile: Annotated[str, typer.Option(help="smoke (seconds) or quick (default, a few minutes).")] = "quick",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Build the embedded cross-contrast brain task (from the MNI152 template shipped in nilearn), run
    the methods on it, evaluate on the held-out target test split and write a report."""
    from diffuse_uda.pipeline.demo import run_demo

    typer.echo(f"report: {run_demo(out, profile=profile, seed=seed)}")


@app.callback()
def _global_options(
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error (accepted anywhere "
                                                        "on the command line).")] = False,
) -> None:
    global _DEBUG
    _DEBUG = _DEBUG or debug


_DEBUG = bool(os.environ.get("DIFFUSE_UDA_DEBUG"))
# The verbs whose work the processes of a torchrun launch share.
DISTRIBUTED_VERBS = frozenset({"train", "run", "bench", "synthesize"})


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, DiffuseUDAError):
        return text
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or text}"
    first = text.splitlines()[0]
    return f"{type(exc).__name__}: {first}"


def main() -> None:
    """Entry point: one error boundary. Errors become one line on stderr and exit status 2
    (``--debug`` or DIFFUSE_UDA_DEBUG=1 shows the traceback); an interrupt exits with 130."""
    global _DEBUG
    # --debug is accepted anywhere on the command line, not only before the verb.
    if "--debug" in sys.argv[1:]:
        _DEBUG = True
        sys.argv = [sys.argv[0], *(a for a in sys.argv[1:] if a != "--debug")]
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1  # by torchrun, as one of several processes
    if launched:
        verb = next((a for a in sys.argv[1:] if not a.startswith("-")), None)
        if verb not in DISTRIBUTED_VERBS:
            if os.environ.get("RANK", "0") != "0":
                return  # a single-process verb: rank 0 runs it alone
            os.environ["WORLD_SIZE"] = "1"  # ... as a process that never joins a group
            launched = False
        elif os.environ.get("RANK", "0") != "0":
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (open until exit): only rank 0 reports
    try:
        app()
    except KeyboardInterrupt:
        typer.secho("interrupted; rerun the same command to resume", fg=typer.colors.YELLOW, err=True)
        sys.exit(130)
    except (DiffuseUDAError, OSError, ValueError, RuntimeError, MemoryError, ImportError) as exc:
        if _DEBUG:
            raise
        typer.secho(f"error: {_one_line(exc)}", fg=typer.colors.RED, err=True)
        typer.secho("(run with --debug for the traceback)", err=True)
        sys.exit(2)
    finally:
        if launched:
            from diffuse_uda.training import distributed

            # Typer ends a successful command with SystemExit(0): only then do the ranks wait for one another.
            ending = sys.exc_info()[1]
            clean = ending is None or (isinstance(ending, SystemExit) and ending.code in (0, None))
            distributed.shutdown(synchronise=clean)
            if ending is None or isinstance(ending, SystemExit):
                # Leave without the interpreter's teardown: gloo's threads, destroyed there, could abort a rank
                # that had finished its work ("terminate called without an active exception", seen in CI).
                code = ending.code if isinstance(ending, SystemExit) else 0
                if isinstance(code, str):
                    print(code, file=sys.stderr)  # what SystemExit("message") would have printed
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":
    main()

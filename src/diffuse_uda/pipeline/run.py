"""``diffuse-uda run``: the Diffuse-UDA pipeline end to end.

    1_ascplus        stage 1: ASCPlus on source + unlabelled target
    2_pseudolabels   target pseudo-labels + confidence maps (canonical dataset)
    3_diffusion      label-conditioned DDPM on source pairs + target pseudo-pairs (deformable aug.)
    4_synthetic      synthetic target-styled image/mask pairs from (deformed) masks, K per mask
    4_synthetic_check  label-free check that the synthetic pairs teach the target (train on those from source masks,
                     test on the pseudo-labelled target); when they do not, stage 3 is not trained and the model is
                     stage 1's (default; ``synthetic_check=false`` skips the check)
    5_ascplus_synth  stage 3: ASCPlus with source + synthetic pairs as the labelled set
    report/          evaluation of stage 1 and stage 3 on the held-out target test split, gallery

Every stage folder has a ``stage.json`` manifest (config, input checksums, seed, timing) and is
skipped when complete; interrupted stages resume (see :mod:`diffuse_uda.pipeline.manifest`).

Under torchrun the training stages (1, 3 and the generator) run on every rank, synthesis is sharded
over the ranks, and the other stages (pseudo-labels, the guidance choice, evaluation, the report) run
on rank 0 while the others wait; rank 0 writes every manifest.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from diffuse_uda.config import RunConfig, StrictModel, build_run_config
from diffuse_uda.data.dataset_json import load_dataset_json
from diffuse_uda.data.io import atomic_write_json, ensure_output_dir, read_json_record
from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.data.task import Task
from diffuse_uda.diffusion.config import DiffusionConfig
from diffuse_uda.diffusion.samplers import check_sampler
from diffuse_uda.diffusion.synthesize import synthesize_dataset
from diffuse_uda.diffusion.trainer import PairSample, train_diffusion
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.pipeline.appearance_choice import (
    SELF_TRAINING_DIR,
    bench_candidate_dirs,
    candidate_config,
    read_choice,
)
from diffuse_uda.pipeline.experiment import evaluate_run
from diffuse_uda.pipeline.generator_choice import choose_guidance, guidance_summary, write_guidance_choice
from diffuse_uda.pipeline.manifest import read_manifest, run_stage
from diffuse_uda.pipeline.pseudolabel import pseudo_label_reliability, write_pseudolabels
from diffuse_uda.pipeline.run_folder import (
    InputRecord,
    RunFolder,
    dataset_input,
    file_input,
    register_settings_section,
)
from diffuse_uda.pipeline.synthetic_check import SyntheticCheck, check_config, check_synthetic_pairs, read_check
from diffuse_uda.pipeline.train import default_cache_dir, run_request, train_method
from diffuse_uda.report.run_report import write_comparison_report
from diffuse_uda.training import distributed
from diffuse_uda.training.trainer import resolve_device

PIPELINE_MANIFEST = "pipeline.json"  # per-stage wall times and the total, written when every stage is done
STAGE3 = "5_ascplus_synth"
CHECK_STAGE = "4_synthetic_check"
CHECK_RECORD_STAGE = "4 synthetic check"  # the record's entry for the synthetic check (its folder may be reused)
MODEL_STAGE = "5 ascplus + synthetic"  # the record's entry for the model the pipeline ends with

# What the benchmarks found about the pipeline on a kind of data, said where a user of that data looks (the console at
# the start, the report): measured, not guessed (BENCHMARKS.md names the runs).
PHOTO_NOTE = ("Colour photos: the generator does not draw the target's objects yet (on Kvasir-SEG -> CVC-ClinicDB "
              "its samples carry their masks at 11-19 % Dice in the eyes of a target-supervised model, which finds "
              "them at about 50 % in the masks' own real images), and there the pipeline ends about 15 points below "
              "its own stage 1 (BENCHMARKS.md, session 31). Starting each synthetic image from its mask's own image "
              "(--set synthesis.init_strength=0.5) narrowed that to about 10 points, and no strength tried reached "
              "stage 1 (session 32). On CVC-ClinicDB -> Kvasir-SEG the pipeline is 6 points below stage 1 and 3 "
              "points below it from the masks' own images (3 seeds, sessions 32-33). The synthetic check before stage "
              "3 (on by default) dropped the photo pairs at all 6 photo runs it was measured on (session 35), so "
              "there the run usually ends with stage 1's model. Where it does not, stage 1's model (1_ascplus) may "
              "be the better segmenter: compare both over several seeds on labelled target cases you set aside for "
              "that choice, never on the test split.")


def pipeline_notes(task: Task) -> list[str]:
    """Measured limits of the pipeline that apply to ``task`` (printed at the start and added to the report)."""
    return [PHOTO_NOTE] if task.is_colour_photo else []


class SynthesisOptions(StrictModel):
    masks: Literal["source", "target", "both"] = "both"
    deform: bool = True
    times: int = Field(1, ge=1, description="Synthetic pairs per conditioning mask (scale-up factor).")
    # Stochastic DDIM (eta 1) at 25 steps: as faithful to the masks as DDPM with all 250 steps at a tenth
    # of the network evaluations, where deterministic DDIM and DPM-Solver++ fell 3-10 points short
    # (BENCHMARKS.md, "Few-step sampling").
    # "euler": the sampler of a rectified-flow generator (diffusion.prediction_type=flow), and only of one.
    sampler: Literal["ddpm", "ddim", "dpm++2m", "dpm++2m-sde", "euler"] = "ddim"
    steps: int | None = Field(25, ge=1)
    eta: float = Field(1.0, ge=0.0, le=1.0, description="DDIM stochasticity (ignored by the other samplers)")
    batch_size: int = Field(16, ge=1)
    # Classifier-free guidance toward the target domain (domain-guided generator only; 1 = none), or
    # "auto": chosen without labels among GUIDANCE_CANDIDATES (pipeline.generator_choice).
    guidance_scale: float | Literal["auto"] = "auto"
    # 1: each image from pure noise (the paper). Below 1: from the real image its mask belongs to, deformed with
    # the mask and noised to this fraction of the schedule (SDEdit), so the object stays where the mask says even
    # where the generator cannot draw it (colour photos: BENCHMARKS.md, "Session 32").
    init_strength: float = Field(1.0, gt=0.0, le=1.0, description="Fraction of the noise schedule each synthetic "
                                 "image starts from: 1 = pure noise (the paper), < 1 = the mask's own image noised "
                                 "that far (SDEdit)")


register_settings_section("diffusion", lambda d: DiffusionConfig.from_dict(d).to_dict())
register_settings_section("synthesis", lambda d: SynthesisOptions.model_validate(d).model_dump(mode="json"))

# The generator of the paper (mask only, every pair weighted alike) and ours (also the pair's domain,
# trained with domain dropout for classifier-free guidance; target pseudo-pairs weighted by stage 1's
# confidence). The paper's entry samples as the pipeline did before (DDIM, 25 steps, no guidance).
GENERATORS: dict[str, dict[str, Any]] = {
    "domain-guided": {"domain_conditioning": True, "pair_weighting": "confidence"},
    "paper": {"domain_conditioning": False, "pair_weighting": "none"},
}
PAPER_PIPELINE: dict[str, Any] = {"generator": "paper", "synthesis": {"sampler": "ddim", "steps": 25, "eta": 0.0,
                                                                      "guidance_scale": 1.0},
                                   "synthetic_check": False}


def resolve_guidance(syn: SynthesisOptions, folder: Path, generator: Path, stage1: Path, src: list[PairSample],
                     tgt: list[PairSample], num_classes: int, seed: int, device: Any,
                     domain: str | None, progress: bool = False) -> tuple[float, dict[str, Any] | None]:
    """The guidance scale to synthesise with; "auto" applies the label-free rule (recorded in ``folder``)."""
    if domain is None:
        return 1.0, None  # the paper's generator has no domain to guide toward
    if syn.guidance_scale != "auto":
        return float(syn.guidance_scale), None
    choice = choose_guidance(generator / "diffusion_last.pt", stage1, src, tgt, num_classes, syn.sampler, syn.steps,
                             seed, device, eta=syn.eta, progress=progress, init_strength=syn.init_strength)
    write_guidance_choice(folder, choice)
    print(f"[synthesis] guidance scale chosen without labels: {choice.chosen} (mean ranks {choice.mean_rank})")
    return choice.chosen, guidance_summary(choice)


class PipelineConfig(StrictModel):
    profile: str = "quick"
    seed: int = 0
    # Overrides of the segmentation RunConfig (sections network / training / method), stages 1 and 3.
    segmentation: dict[str, Any] = Field(default_factory=dict)
    # Overrides of DiffusionConfig fields (e.g. iterations, lr, deform, source_target_ratio).
    diffusion: dict[str, Any] = Field(default_factory=dict)
    # "domain-guided" (the default) or "paper" (see GENERATORS).
    generator: Literal["domain-guided", "paper"] = "domain-guided"
    # Which pairs train the generator: both domains (the paper) or source only (Table 3, M1).
    diffusion_domains: Literal["both", "source"] = "both"
    # Fraction of cases used for the generator and its masks (Table 3: M1-M5 use half).
    training_fraction: float = Field(1.0, gt=0.0, le=1.0)
    synthesis: SynthesisOptions = Field(default_factory=SynthesisOptions)
    # A finished ``ascplus`` run folder (e.g. from ``bench``) to use as stage 1 instead of training
    # it again; it must have been trained with exactly this pipeline's segmentation settings.
    stage1_run: str | None = None
    # A bench folder whose finished ``ascplus-<preset>/seed<seed>`` runs are stage 1's appearance candidates (they
    # are reused under the run-folder contract, and trained there if missing), when ``stage1_run`` is not given.
    stage1_candidates: str | None = None
    # Other pipeline run folders whose identical, complete stages may be reused (ablation rows
    # share their stage 1, pseudo-labels and, where the settings agree, the generator).
    share_stages_with: list[str] = Field(default_factory=list)
    # Train on the synthetic pairs drawn from source masks alone and check against stage 1's pseudo-labels that they
    # teach the target at least as well as the source pairs do; if not, stage 3 is skipped and the model is stage 1's
    # (pipeline.synthetic_check). On by default since rule X passed (BENCHMARKS.md, sessions 35-36).
    synthetic_check: bool = True
    # Stage 3's labelled set also holds the target training images with stage 1's pseudo-labels (the real images
    # behind the target masks the generator draws from), as each of stage 1's self-training rounds does. Off: the
    # paper's source + synthetic pairs (exploratory, BENCHMARKS.md session 37).
    stage3_pseudolabels: bool = False

    @model_validator(mode="after")
    def _sampler_fits_generator(self) -> PipelineConfig:
        # Fail before stage 1 trains, not after the generator has: a flow generator needs the Euler sampler.
        check_sampler(str(self.diffusion.get("prediction_type", "epsilon")), self.synthesis.sampler)
        return self


# The paper's Table 3 (generation ablation), as pipeline option presets. Our reading of its
# columns: which masks condition the sampling, mask deformation, scale-up (more samples per mask)
# and the full training set (M1-M5 use half of the cases).
_TABLE3_ROWS: dict[str, dict[str, Any]] = {
    "M1": {"diffusion_domains": "source", "training_fraction": 0.5,
           "synthesis": {"masks": "source", "deform": False, "times": 1}},
    "M2": {"training_fraction": 0.5, "synthesis": {"masks": "source", "deform": False, "times": 1}},
    "M3": {"training_fraction": 0.5, "synthesis": {"masks": "both", "deform": False, "times": 1}},
    "M4": {"training_fraction": 0.5, "synthesis": {"masks": "both", "deform": True, "times": 1}},
    "M5": {"training_fraction": 0.5, "synthesis": {"masks": "both", "deform": True, "times": 2}},
    "M6": {"training_fraction": 1.0, "synthesis": {"masks": "both", "deform": True, "times": 4}},
}
# The paper's Table 3 compares generation settings by what stage 3 makes of them: its rows always train stage 3.
GENERATION_ABLATION: dict[str, dict[str, Any]] = {k: {**v, "synthetic_check": False} for k, v in _TABLE3_ROWS.items()}


def diffusion_config(profile: str, spatial_dims: int, overrides: dict[str, Any], seed: int) -> DiffusionConfig:
    factory = {"smoke": DiffusionConfig.smoke, "quick": DiffusionConfig.quick, "quick3d": DiffusionConfig.quick3d,
               "paper": DiffusionConfig.paper}
    base = factory[profile](spatial_dims).to_dict()
    base.update(overrides)
    if "seed" not in overrides:
        base["seed"] = seed
    return DiffusionConfig.from_dict(base)


def _subset(cases: list, fraction: float) -> list:
    """The first ``fraction`` of the cases (sorted by id: deterministic, no labels consulted)."""
    n = max(1, round(fraction * len(cases)))
    return sorted(cases, key=lambda c: c.case_id)[:n]


def conditioning_samples(task: Task, pseudo_dir: Path, training_fraction: float, size: Sequence[int],
                         cache: Path | None, progress: bool) -> tuple[list[PairSample], list[PairSample]]:
    """(source, target) pairs for the generator and its conditioning masks: source image-label pairs
    and target image-pseudo-label pairs (``pseudo_dir``), the first ``training_fraction`` of each.
    Each target pair carries stage 1's reliability of its pseudo-label (:func:`pseudo_label_reliability`)."""
    dims = task.preprocessing.spatial_dims
    src = prepare_split(task.source_dir, "Tr", task.preprocessing, True, cache, progress, task.labels)
    tgt = prepare_split(pseudo_dir, "Tr", task.preprocessing, True, cache, progress, task.labels)
    src, tgt = _subset(src, training_fraction), _subset(tgt, training_fraction)
    weights = {c.case_id: pseudo_label_reliability(pseudo_dir, c.case_id, dims) for c in tgt}
    # Source and target datasets may use the same case ids (MS-CMRSeg: patient10 in both): prefix the domain.
    return (pair_samples(src, dims, tuple(size), "source", None),
            pair_samples(tgt, dims, tuple(size), "target", weights))


def _synthesize(task: Task, generator: Path, src: list[PairSample], tgt: list[PairSample], syn: SynthesisOptions,
                folder: Path, seed: int, shard: tuple[int, int] | None, device: Any, progress: bool,
                domain: str | None, guidance: float) -> dict[str, Any]:
    """``shard=None``: this process's share under torchrun (everything in one process)."""
    chosen = (src if syn.masks in ("source", "both") else []) + (tgt if syn.masks in ("target", "both") else [])
    info = load_dataset_json(task.source_dir)
    synthesize_dataset(generator / "diffusion_last.pt", [(p.case_id, p.mask) for p in chosen], folder,
                       task.labels, dict(info.channel_names), times=syn.times, deform=syn.deform, shard=shard,
                       sampler=syn.sampler, steps=syn.steps, batch_size=syn.batch_size, seed=seed,
                       device=device, reference_images=[(p.case_id, p.image) for p in chosen], progress=progress,
                       domain=domain, guidance_scale=guidance, eta=syn.eta,
                       target_examples=[p.image for p in tgt[:: max(1, len(tgt) // 16)]],
                       init_images={p.case_id: p.image for p in chosen} if syn.init_strength < 1 else None,
                       init_strength=syn.init_strength)
    return {"n_masks": len(chosen), "n_synthetic": len(chosen) * syn.times, "domain": domain,
            "guidance_scale": guidance}


def pair_samples(cases: list, spatial_dims: int, size: tuple[int, ...], domain: str,
                 weights: dict[str, np.ndarray] | None) -> list[PairSample]:
    """Pairs (image (C,*S), mask (*S)) at the generator's resolution; only samples with foreground.
    ``weights``: per case, one reliability per slice (2D) or one for the volume (3D)."""
    out = []
    for case in cases:
        images, labels = stack_samples([case], spatial_dims)
        assert labels is not None
        if tuple(images.shape[2:]) != tuple(size):
            images = F.interpolate(images, size=size, mode="bilinear" if spatial_dims == 2 else "trilinear",
                                   align_corners=False, antialias=spatial_dims == 2)
            labels = F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()
        for i in range(images.shape[0]):
            if bool((labels[i] > 0).any()):
                sid = f"{domain}_" + (f"{case.case_id}_z{i:03d}" if spatial_dims == 2 else case.case_id)
                weight = 1.0 if weights is None else float(weights[case.case_id][i])
                out.append(PairSample(images[i].clamp(0, 1).numpy(), labels[i].numpy().astype(np.uint8), domain, sid,
                                      weight))
    return out


def _candidate_dirs(config: PipelineConfig) -> dict[str, Path] | None:
    return None if config.stage1_candidates is None else bench_candidate_dirs(Path(config.stage1_candidates),
                                                                             config.seed)


def segmentation_config(config: PipelineConfig, spatial_dims: int) -> RunConfig:
    """Stages 1 and 3's segmentation settings: the profile's, with the pipeline's overrides and seed. Stage 1 is the
    ``ascplus`` default, the longer training and the self-training rounds included where the task gets them (rule
    R, session 28: the pipeline from that model is above the pipeline from the choice alone); stage 3 trains the
    chosen transfer once on source + synthetic pairs."""
    overrides = json.loads(json.dumps(config.segmentation))
    overrides.setdefault("training", {}).setdefault("seed", config.seed)
    return build_run_config(config.profile, spatial_dims, overrides)


def reusable_stage1(run_dir: Path, task: Task, seg_cfg: RunConfig) -> Path:
    """Check that ``run_dir`` is a complete ascplus run of exactly this pipeline's stage-1 request; return it.

    A self-training round of such a run (``<run>/self_training/round<k>``, trained with the chosen transfer fixed)
    also qualifies: its request is the stage-1 request plus the round's own pseudo-labels
    (``round<k>_pseudolabels`` beside it, matched by content), and nothing else."""
    folder = RunFolder(run_dir)
    manifest = folder.manifest()
    round_pseudolabels = Path(run_dir).parent / f"{Path(run_dir).name}_pseudolabels"
    is_round = (Path(run_dir).parent.name == SELF_TRAINING_DIR and Path(run_dir).name.startswith("round")
                and round_pseudolabels.is_dir())
    request = run_request(task, "ascplus", seg_cfg, extra_labelled=[round_pseudolabels] if is_round else ())
    diffs = request.differences(manifest.request)
    if diffs or manifest.status != "complete" or not folder.bundle_path.is_file():
        raise ConfigError(f"{run_dir}: stage1_run is not a complete ascplus run of this pipeline's stage 1 ("
                          f"{'; '.join(diffs) or 'status ' + manifest.status})")
    return Path(run_dir)


class StageRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage: str
    folder: str
    seconds: float | None = None
    reused: bool = False


class PipelineRecord(BaseModel):
    """``pipeline.json``: the settings, the task and where each stage lives (its own folder or a reused one)."""

    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any]
    task: dict[str, Any]
    stages: list[StageRecord] = Field(default_factory=list)
    total_seconds: float | None = None


def read_pipeline_record(run_dir: Path) -> PipelineRecord | None:
    return read_json_record(Path(run_dir) / PIPELINE_MANIFEST, PipelineRecord, "invalid pipeline record")


def _seconds(folder: Path) -> float | None:
    """Wall time of a stage: its stage manifest, or the run manifest of a reused training run."""
    manifest = read_manifest(folder)
    if manifest is not None and manifest.seconds is not None:
        return manifest.seconds
    run = RunFolder(folder)
    if run.exists():
        m = run.manifest()
        return (m.train_seconds or 0.0) + (m.preprocessing_seconds or 0.0)
    return None


def run_pipeline(task: Task, out: Path, config: PipelineConfig | None = None, progress: bool = True,
                 extra_runs: Sequence[Path] = (), report_dir: Path | None = None, force: bool = False) -> Path:
    """Run (or resume) every stage; returns the report path. ``extra_runs`` (evaluated run folders of
    other methods on the same task, e.g. the bounds) are added to the report's comparison. A stage
    made with other settings or inputs is refused, or redone with ``force``."""
    config = config or PipelineConfig()
    out = distributed.on_main(ensure_output_dir, Path(out), "pipeline run folder")
    task.check()
    for note in pipeline_notes(task):
        print(f"[diffuse-uda run] note: {note}")
    seg_cfg = segmentation_config(config, task.preprocessing.spatial_dims)
    task = task.with_preprocessing(seg_cfg.preprocessing)  # one preprocessing for every stage
    # The generator's dimensionality is the preprocessed task's (a profile or an override may turn a 2D
    # task into volumes), not the task file's.
    dcfg = diffusion_config(config.profile, task.preprocessing.spatial_dims,
                            {**GENERATORS[config.generator], **config.diffusion}, config.seed)
    domain = "target" if dcfg.domain_conditioning else None
    device = resolve_device(seg_cfg.training.device)
    cache = default_cache_dir()
    seg_json = seg_cfg.model_dump(mode="json")
    source_in = dataset_input(task.source_dir, with_labels=True)
    target_in = dataset_input(task.target_dir, with_labels=False)

    shared = [Path(p) for p in config.share_stages_with]
    record = PipelineRecord(config=config.model_dump(mode="json"), task=task.to_dict())

    def done(name: str, folder: Path) -> Path:
        """Record where a stage's result lives (its own folder or a reused one) and how long it took."""
        # Absolute: the record is read from other working directories (synthesize, export).
        record.stages.append(StageRecord(stage=name, folder=str(Path(folder).resolve()), seconds=_seconds(folder),
                                         reused=Path(folder).resolve().parent != out.resolve()))
        distributed.on_main(atomic_write_json, out / PIPELINE_MANIFEST, record.model_dump(mode="json"))
        return folder

    def others(stage: str) -> list[Path]:
        return [p / stage for p in shared]

    def stage(name: str, folder: str, settings: dict[str, Any], inputs: dict[str, InputRecord], fn,
              on_all_ranks: bool = False) -> Path:
        return run_stage(name, out / folder, settings, inputs, config.seed, fn, shared=others(folder), force=force,
                         on_all_ranks=on_all_ranks)

    if config.stage1_run is not None:
        stage1 = reusable_stage1(Path(config.stage1_run), task, seg_cfg)
        print(f"[stage 1: ascplus] reusing {stage1}")
    else:
        stage1 = stage("stage 1: ascplus", "1_ascplus", {"segmentation": seg_json},
                       {"source": source_in, "target_images": target_in},
                       lambda d: train_method(task, "ascplus", seg_cfg, d, progress=progress,
                                              display_name="ascplus (stage 1)", force=force,
                                              candidate_dirs=_candidate_dirs(config)), on_all_ranks=True)
    done("1 ascplus", stage1)
    pseudo = stage("pseudo-labels", "2_pseudolabels", {}, {"stage1_model": file_input(stage1 / "model.pt"),
                                                           "target_images": target_in},
                   lambda d: write_pseudolabels(stage1, d, progress=progress))
    done("2 pseudo-labels", pseudo)

    @functools.cache  # shared by the generator and synthesis stages when both run in this process
    def labelled_samples() -> tuple[list, list]:
        # Rank 0 fills the preprocessing cache, the other ranks then read it.
        return distributed.main_first(conditioning_samples, task, pseudo, config.training_fraction, dcfg.image_size,
                                      cache, progress)

    def train_generator(folder: Path) -> dict[str, Any]:
        src, tgt = labelled_samples()
        pairs = src + (tgt if config.diffusion_domains == "both" else [])
        train_diffusion(pairs, task.num_classes, dcfg, folder, device=device, progress=progress)
        used = tgt if config.diffusion_domains == "both" else []
        return {"n_source_pairs": len(src), "n_target_pairs": len(used),
                "mean_target_pair_weight": float(np.mean([p.weight for p in used])) if used else None}

    pseudo_in = file_input(pseudo)
    generator = stage("diffusion training", "3_diffusion",
                      {"diffusion": dcfg.to_dict(), "domains": config.diffusion_domains,
                       "training_fraction": config.training_fraction},
                      {"pseudolabels": pseudo_in, "source": source_in}, train_generator, on_all_ranks=True)
    done("3 diffusion", generator)

    def synthesize(folder: Path) -> dict[str, Any]:
        src, tgt = labelled_samples()
        guidance, choice = distributed.on_main(resolve_guidance, config.synthesis, folder, generator, stage1, src, tgt,
                                               task.num_classes, config.seed, device, domain, progress)
        # shard=None: each rank samples its share of the items.
        result = _synthesize(task, generator, src, tgt, config.synthesis, folder, config.seed, None, device,
                             progress, domain, guidance)
        return {**result, "guidance_choice": choice} if choice else result

    synthetic = stage("synthesis", "4_synthetic", {"synthesis": config.synthesis.model_dump(mode="json"),
                                                   "training_fraction": config.training_fraction},
                      {"generator": file_input(generator / "diffusion_last.pt"), "pseudolabels": pseudo_in,
                       "source": source_in}, synthesize, on_all_ranks=True)
    done("4 synthesis", synthetic)
    # Stage 3 is ASCPlus again, with the appearance transfer stage 1 chose (or was given).
    choice = read_choice(stage1)
    stage3_cfg = candidate_config(seg_cfg, choice.chosen) if choice is not None else seg_cfg
    verdict = None
    if config.synthetic_check:
        def check(folder: Path) -> dict[str, Any]:
            _, tgt = labelled_samples()
            return check_synthetic_pairs(task, synthetic, tgt, stage3_cfg, folder, device, progress,
                                         force).model_dump(mode="json")

        checked = stage("synthetic check", CHECK_STAGE, {"check": check_config(stage3_cfg).model_dump(mode="json")},
                        {"synthetic": file_input(synthetic), "pseudolabels": pseudo_in, "source": source_in},
                        check, on_all_ranks=True)
        done(CHECK_RECORD_STAGE, checked)
        verdict = distributed.on_main(read_check, checked)  # the check's own folder, or the run it was reused from
    if verdict is not None and verdict.not_judged is not None:
        print(f"[synthetic check] not judged: {verdict.not_judged}; stage 3 trains, as in the paper")
    if verdict is not None and not verdict.use_synthetic:
        print(f"[stage 3] not trained: {verdict.drop_reason()}; the pipeline's model is stage 1's ({stage1})")
        # The model stage is stage 1's folder; no time is spent on it here (its own is counted once, above).
        record.stages.append(StageRecord(stage=MODEL_STAGE, folder=str(Path(stage1).resolve()), seconds=0.0,
                                         reused=True))
        stage3 = None
    else:
        # The pseudo-labels enter the stage's settings and inputs only when used, so a stage 3 made without them
        # is still reused by a run that does not ask for them.
        with_pseudo = config.stage3_pseudolabels
        extra = [synthetic, pseudo] if with_pseudo else [synthetic]
        stage3 = stage("stage 3: ascplus on source + synthetic" + (" + pseudo-labelled target" if with_pseudo else ""),
                       STAGE3, {"segmentation": stage3_cfg.model_dump(mode="json"),
                                **({"pseudolabels": True} if with_pseudo else {})},
                       {"synthetic": file_input(synthetic), "source": source_in, "target_images": target_in,
                        **({"pseudolabels": pseudo_in} if with_pseudo else {})},
                       lambda d: train_method(task, "ascplus", stage3_cfg, d, extra_labelled=extra,
                                              progress=progress, display_name="diffuse-uda", force=force),
                       on_all_ranks=True)
        done(MODEL_STAGE, stage3)
    return distributed.on_main(_finish_pipeline, task, out, record, stage1, stage3, synthetic, verdict, extra_runs,
                               report_dir, progress)


def _finish_pipeline(task: Task, out: Path, record: PipelineRecord, stage1: Path, stage3: Path | None,
                     synthetic: Path, verdict: SyntheticCheck | None, extra_runs: Sequence[Path],
                     report_dir: Path | None, progress: bool) -> Path:
    """Evaluate stages 1 and 3 (None: not trained, the synthetic check failed) on the held-out target test split
    and write the report (rank 0); ``verdict``: the synthetic check's outcome, when it ran."""
    evaluated = [run for run in (stage1, stage3) if run is not None and evaluate_run(run, task, progress) is not None]
    record.total_seconds = sum(st.seconds for st in record.stages if st.seconds is not None)
    atomic_write_json(out / PIPELINE_MANIFEST, record.model_dump(mode="json"))
    timing_text = "  \n".join(f"{st.stage}: {st.seconds:.0f} s" + (f" (reused: {st.folder})" if st.reused else "")
                              for st in record.stages if st.seconds is not None)
    gallery = synthetic / "gallery.png"
    synth_manifest = read_manifest(synthetic)
    result = synth_manifest.result if synth_manifest else {}
    notes = pipeline_notes(task)
    sections = [("Known limits on this kind of data", "  \n".join(notes))] if notes else []
    sections += [("Stage timings", timing_text),
                 ("Synthetic gallery", f"![gallery]({gallery.resolve()})  \nmask | synthetic image | the real image "
                                       f"of that mask | a real target image. {result.get('n_synthetic', '?')} pairs "
                                       f"from {result.get('n_masks', '?')} masks, generator domain "
                                       f"{result.get('domain')}, guidance {result.get('guidance_scale')}.")]
    if result.get("guidance_choice"):
        sections.append(("Generator fidelity (label-free) and the guidance scale", _guidance_table(
            result["guidance_choice"])))
    if verdict is not None:
        sections.append(("Synthetic check (label-free)", _check_text(verdict)))
    if not evaluated:
        return out
    return write_comparison_report([*extra_runs, *evaluated], report_dir or out / "report",
                                   title=f"Diffuse-UDA run: {task.name}",
                                   extra_sections=sections)


def _check_text(verdict: SyntheticCheck) -> str:
    """Markdown: the synthetic check's two agreements and what the pipeline did with them."""
    if verdict.not_judged is not None:
        return (f"Rule: {verdict.rule}.\n\nNot judged: {verdict.not_judged}. Outcome: stage 3 trained on source + "
                f"synthetic pairs, as in the paper.")
    outcome = ("stage 3 trained on source + synthetic pairs" if verdict.use_synthetic else
               "**stage 3 not trained: the pipeline's model is stage 1's**")
    header = f"| trained on | agreement with stage 1's pseudo-labels (%, {verdict.n_target_images} target images) |"
    rows = [header, "|---|---|", f"| synthetic pairs from source masks only | {verdict.synthetic_agreement:.1f} |",
            f"| source pairs only | {verdict.source_agreement:.1f} |"]
    return f"Rule: {verdict.rule}.\n\n" + "\n".join(rows) + f"\n\nOutcome: {outcome}."


def _guidance_table(choice: dict[str, Any]) -> str:
    """Markdown: the label-free measures of each candidate guidance scale and the pick."""
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.3g}"

    rows = ["| guidance | stage-1 mask fidelity (%) | style fidelity (%) | Frechet distance to target | "
            "to source | mean rank |", "|---|---|---|---|---|---|"]
    for scale, m in choice["measures"].items():
        chosen = " **(chosen)**" if float(scale) == float(choice["chosen"]) else ""
        rows.append(f"| {scale}{chosen} | {pct(m['mask_fidelity'])} | {pct(m['style_fidelity'])}"
                    f"{'' if m['style_meaningful'] else ' (not used)'} | {num(m['frechet_target'])} | "
                    f"{num(m['frechet_source'])} | {choice['mean_rank'][scale]:.2f} |")
    return f"Rule: {choice['rule']}.\n\n" + "\n".join(rows)


def pipeline_stage_folders(run_dir: Path) -> dict[str, Path]:
    """Where each stage of a pipeline run lives: from its ``pipeline.json`` (stages may be reused
    from other runs), else the default folder names."""
    run_dir = Path(run_dir)
    folders = {"1 ascplus": run_dir / "1_ascplus", "2 pseudo-labels": run_dir / "2_pseudolabels",
               "3 diffusion": run_dir / "3_diffusion", "4 synthesis": run_dir / "4_synthetic",
               MODEL_STAGE: run_dir / STAGE3}
    record = read_pipeline_record(run_dir)
    if record is not None:
        for st in record.stages:
            folder = Path(st.folder)
            if not folder.is_absolute() and not folder.exists() and (run_dir / folder.name).is_dir():
                # Older records hold paths relative to the directory the run was started from.
                folder = run_dir / folder.name
            folders[st.stage] = folder
    return folders


def pipeline_model(path: Path) -> Path:
    """The folder of the model a pipeline run folder ends with (stage 3's, or stage 1's where the synthetic check
    skipped stage 3); any other path is returned as given. Lets ``predict`` and ``report`` take a pipeline run."""
    path = Path(path)
    record = read_pipeline_record(path) if path.is_dir() else None
    if record is None:
        return path
    if not any(st.stage == MODEL_STAGE for st in record.stages):
        raise DataError(path, "the pipeline run has no model yet (rerun `diffuse-uda run` to finish it)")
    return stage3_folder(path)


def stage3_folder(run_dir: Path) -> Path:
    """Where a pipeline run's stage 3 lives: its own folder, or the identical stage of another run it reused
    (``share_stages_with``)."""
    return pipeline_stage_folders(run_dir)[MODEL_STAGE]


def synthesize_from_run(run_dir: Path, out_dir: Path, options: SynthesisOptions, seed: int = 0,
                        shard: tuple[int, int] | None = None, device: str = "auto", progress: bool = True) -> Path:
    """A synthetic dataset from a pipeline run's trained generator (``diffuse-uda synthesize``):
    conditioned on the run's source masks and/or target pseudo-label masks, as in its synthesis stage.
    ``shard=None``: all items, shared by the ranks under torchrun."""
    folders = pipeline_stage_folders(run_dir)
    pseudo, generator = folders["2 pseudo-labels"], folders["3 diffusion"]
    gen_manifest = read_manifest(generator)
    if gen_manifest is None or gen_manifest.status != "complete":
        raise ConfigError(f"{generator}: the run's generator is not trained yet (run `diffuse-uda run` first)")
    record = read_pipeline_record(run_dir)
    if record is None or not (pseudo / "dataset.json").is_file():
        raise ConfigError(f"{run_dir}: not a pipeline run with finished pseudo-labels (no {PIPELINE_MANIFEST})")
    task = Task.from_dict(record.task)
    size = gen_manifest.config["diffusion"]["image_size"]
    fraction = float(gen_manifest.config["training_fraction"])
    src, tgt = distributed.main_first(conditioning_samples, task, pseudo, fraction, size, default_cache_dir(), progress)
    out_dir = distributed.on_main(ensure_output_dir, Path(out_dir), "synthetic dataset folder")
    domain = "target" if gen_manifest.config["diffusion"].get("domain_conditioning") else None
    dev = resolve_device(device)
    guidance, _ = distributed.on_main(resolve_guidance, options, out_dir, generator, folders["1 ascplus"], src, tgt,
                                      task.num_classes, seed, dev, domain, progress)
    result = _synthesize(task, generator, src, tgt, options, out_dir, seed, shard, dev, progress, domain, guidance)
    where = f"shard {shard[0]}/{shard[1]}" if shard else f"{distributed.world_size()} process(es)"
    print(f"[synthesize] {result['n_synthetic']} pairs from {result['n_masks']} masks ({where}) -> {out_dir}")
    return out_dir

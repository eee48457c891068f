"""The label-free choice of ASCPlus's appearance transfer for a new task (``ascplus`` with
``appearance="auto"``, the product default).

A user cannot know which appearance transfer suits their shift (an FFT amplitude swap for a mild
restyling, a contrast-inverting remap for CT -> MR, a colour-aware one for photos), and target labels
must not decide it. So ASCPlus is trained once per candidate (:data:`diffuse_uda.methods.asc.APPEARANCE_PRESETS`)
and one candidate is kept by a rule that reads no target label (``method.appearance_rule``):

**Rule 1: cross-candidate agreement** (the default until session 16; rule 4 builds on it). Every candidate
segments the unlabelled target *training* images. For two candidates, agreement is the Dice between their
label maps pooled over all those images, averaged over the foreground classes (a class both leave empty counts
as 0: empty predictions are no evidence). A candidate's score is its mean agreement with the other candidates;
the highest wins (ties: the first in the candidate list). Agreement between candidates with different
inductive biases is optimised by none of them. It fails when most candidates fail alike, and it rewards the
candidate in the middle (``mix``), not a lone candidate that is right (BENCHMARKS.md, sessions 7-8).

**Rule 2 (``appearance_rule="reverse-validation"``): reverse validation**, tried in session 12 against
that weakness and not adopted. A *reverse* model (``source-only-dg``: Bezier / GIN remapping, so that
it can cross the shift back) is trained on the target images with a candidate's argmax pseudo-labels
for ``reverse_fraction`` of the run's updates, then segments the labelled *source* training images; its
pooled foreground Dice there is the candidate's score (Zhong et al., ECML-PKDD 2010; Ganin et al.,
JMLR 2016). It reads source labels only. Measured: it picks worse than agreement on both
contrast-inverting tasks, because a candidate that labels by the source's intensity order (e.g. the
brightest tissue as the class brightest in the source) teaches a reverse model that is right again on
the source; the error is invisible to it (BENCHMARKS.md, session 12). The agreement scores are always
recorded beside it.

**Rule 3 (``appearance_rule="class-ratio"``): the source's class proportions**, session 13. The same
anatomy is segmented in both centres, so the *relative* sizes of the foreground structures should carry
over, whatever the contrast: a class-ratio prior, as in source-relaxed adaptation (Bateson et al., MICCAI
2020). Each candidate's label maps of the target training images (pooled, as for agreement) give its
foreground class proportions (each class's share of the predicted foreground); the source *labels* give
the reference proportions. A candidate's score is minus the KL divergence of its proportions from the
source's. Background is left out on purpose: how much of an image is background depends on the field of
view, which differs between centres (with it, on MS-CMRSeg, histogram matching looked best and was
6 points worse). With one foreground class there are no proportions to compare and the agreement rule
decides. Histogram matching is not eligible under this rule (:func:`class_ratio_blind`, read from the
transfer's ``matches_reference_distribution``, so a mixture that draws it is excluded too): it maps each
source image onto a target image's intensity distribution, so its model labels target intensities by
the source's quantiles and reproduces the source's class proportions whatever its labels mean; under a
contrast inversion it swaps classes and still scores best (measured: one demo seed and one abdominal
seed; BENCHMARKS.md, session 13). The rule was formulated, and this exclusion added, after the
candidates' test-label picks were known (variants compared post hoc: ``benchmarks/choice_signals.py``),
so its measured advantage still has to be confirmed on other data.

**Rule 4 (``appearance_rule="guarded-class-ratio"``, the default of sessions 16-20): agreement, overruled by the
class-ratio prior only when its preference is clear**, session 16; the default by a rule committed before its held-out
tasks existed (BENCHMARKS.md, session 16). The class-ratio prior found the lone right candidate that
agreement passes over on the contrast-inverting tasks (sessions 13-15), and where every candidate keeps the
classes apart it ranks them by noise (MS-CMRSeg, both directions: divergences below 1e-3). So agreement's pick
stands unless the prior's best candidate (the *challenger*) has the lower divergence than agreement's pick in
at least :data:`GUARD_LEVEL` of :data:`GUARD_RESAMPLES` bootstrap resamples of the target training *cases*
(each resample draws cases with replacement and pools their label maps; the same draws for both candidates;
a fixed seed). The question the bootstrap asks: would another set of images from the target centre give the
same preference? An agreement pick the prior cannot judge (histogram matching) stands. One foreground class:
agreement decides, as under rule 3.

**Rule 5 (``appearance_rule="floored-class-ratio"``, the default): rule 4 with a noise floor**, session 21.
Rule 4's bootstrap asks whether the prior's *preference* is steady, not whether agreement's pick is implausible
under the prior. The floor (:func:`class_ratio_floor`) is the 95th percentile of the divergence between the
source's pooled proportions and those of ``n`` source training cases drawn with replacement, ``n`` the number of
target training cases: how far a set of patients from the source centre itself strays. Patients of another centre
can stray more, so an agreement pick within the floor is consistent with the prior and is not overruled. Reads
source labels and target images only. Measured: it changes none of the 21 committed decisions, not even the
MS-CMRSeg overrule that motivated it (agreement's pick there is just above the floor), and it became the default
because rule 6 failed its held-out check (BENCHMARKS.md, session 21, rules J and K).

**Rule 6 (``appearance_rule="margin-class-ratio"``): the noise floor instead of the bootstrap**, session 21. The prior's
best candidate overrules agreement's pick when agreement's pick's divergence exceeds the best candidate's by more than
the floor: a difference smaller than the spread of the source's own patients is noise, whatever the bootstrap over
target cases says (it asks whether a preference is steady, not whether it is large). Candidates the prior cannot judge
as under rule 4. Measured on 6 held-out decisions (BENCHMARKS.md, session 21, rule K): it failed; at MS-CMRSeg
seed 3 it kept agreement's pick against a 0.0006 difference below the floor that the bootstrap backed (96 %), and
lost 1.5 points: small differences in class proportions can be real, so it is an option, not the default.

**Colour photos: one candidate, no choice** (rules T and U, session 30). The default candidates on colour photos
(dataset.json channels R, G, B) are the ``identity-no-structure`` preset alone: no restyling and no structure term,
trained for twice the updates. On both photo tasks every restyling candidate was below source-only (Kvasir -> CVC: all
eight, 3 seeds each; CVC -> Kvasir: the choice among them), and so was ASCPlus without restyling but with the
structure term (rule T: undecided on the held-out photo task). What is left is close to source-only training with an
EMA teacher and a snapshot ensemble; it was checked on the held-out photo task before it became the default
(BENCHMARKS.md, session 30, rule U). With one candidate nothing is scored; a candidate that is trained again for
longer is not first trained at its own length.

Why not the candidates' own confidence: each candidate is trained to be confident and self-consistent
on target views made by its *own* transfer (ASCPlus's consistency loss), so its entropy, its
teacher-student agreement and the stability of its snapshots measure how well it fitted its objective,
not whether its objective suits the shift. The mean prediction entropy of each candidate is recorded
beside the scores for the report, never used.

Which candidate the *test* labels would have picked is computed only afterwards, for reports
(:func:`diffuse_uda.pipeline.bench` tables, BENCHMARKS.md), from each candidate's own evaluation.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from diffuse_uda.config import RunConfig
from diffuse_uda.data.io import atomic_write_json, read_json_record
from diffuse_uda.data.preprocessing import prepare_split, stack_samples
from diffuse_uda.data.task import Task
from diffuse_uda.errors import ConfigError, DataError
from diffuse_uda.inference.predict import predict_probabilities
from diffuse_uda.methods.asc import APPEARANCE_PRESETS, CHOICE_ONLY_OPTIONS
from diffuse_uda.pipeline.run_folder import RunFolder, RunManifest
from diffuse_uda.training import distributed
from diffuse_uda.training.bundle import load_bundle
from diffuse_uda.training.context import TrainingData
from diffuse_uda.training.trainer import CHECKPOINT_NAME, Trainer, resolve_device
from diffuse_uda.transforms.appearance import build_appearance_transfer

CHOICE_FILE = "appearance_choice.json"
# The guard of rule 4: how many case bootstrap resamples, and the share of them the challenger must win.
GUARD_RESAMPLES = 1000
GUARD_LEVEL = 0.95
GUARD_SEED = 0
RULES: dict[str, str] = {
    "reverse-validation": "reverse validation (a source-only-dg model trained on each candidate's target "
                          "pseudo-labels, scored by pooled foreground Dice on the labelled source training images)",
    "agreement": "cross-candidate agreement (mean pooled foreground Dice with the other candidates on target "
                 "training images)",
    "class-ratio": "class-ratio prior (minus the KL divergence of the foreground class proportions predicted on "
                   "the target training images from those of the source labels)",
    "guarded-class-ratio": "cross-candidate agreement, overruled by the class-ratio prior's best candidate only "
                           f"where its divergence is the lower in at least {GUARD_LEVEL:.0%} of case bootstrap "
                           "resamples of the target training images (scores: minus the divergence)",
    "floored-class-ratio": "cross-candidate agreement, overruled by the class-ratio prior's best candidate only "
                           f"where its divergence is the lower in at least {GUARD_LEVEL:.0%} of case bootstrap "
                           "resamples of the target training images and agreement's pick is further from the source "
                           "proportions than the noise floor of the source's own patients (scores: minus the "
                           "divergence)",
    "margin-class-ratio": "cross-candidate agreement, overruled by the class-ratio prior's best candidate only "
                          "where agreement's pick is further from the source's foreground proportions by more than "
                          "the noise floor of the source's own patients (scores: minus the divergence)",
}
GUARDED_RULES = ("guarded-class-ratio", "floored-class-ratio", "margin-class-ratio")
FLOOR_RULES = ("floored-class-ratio", "margin-class-ratio")
# With a single foreground class (or only candidates it cannot judge) the class-ratio rule has nothing to compare:
# agreement decides.
CLASS_RATIO_FALLBACK = (RULES["agreement"] + "; the class-ratio prior had nothing to judge (one foreground class, "
                        "or only candidates it cannot judge)")
REVERSE_DIR = "reverse_validation"
SELF_TRAINING_DIR = "self_training"
LONGER_DIR = "longer_training"  # the chosen candidate trained again for more updates (option longer_training)
# One candidate (the colour-photo default since rule U, or a user's list of one): nothing is scored.
SINGLE_CANDIDATE = ("one candidate, nothing to choose among (on colour photos the default since session 30: no "
                    "restyling and no structure term, rule U)")


class AppearanceChoice(BaseModel):
    """``appearance_choice.json``: what was chosen, by which rule, from which scores."""

    model_config = ConfigDict(extra="forbid")
    chosen: str
    rule: str = RULES["agreement"]  # records written before session 12 name no rule: they used agreement
    scores: dict[str, float]  # under ``rule``
    agreement: dict[str, dict[str, float]]
    # Each candidate's mean agreement (the agreement rule's scores; None in records made by that rule,
    # whose ``scores`` are these) and its reverse-validation score (None when not computed).
    agreement_scores: dict[str, float] | None = None
    reverse_validation: dict[str, float] | None = None
    # The class-ratio rule's KL divergence per candidate and the source labels' foreground proportions by
    # class name (None when that rule was not applied).
    class_ratio_kl: dict[str, float] | None = None
    source_class_ratio: dict[str, float] | None = None
    # Rule 4: the prior's best candidate and the share of case bootstrap resamples in which its divergence is
    # below that of agreement's pick (None when the guard did not run: same pick, or another rule).
    class_ratio_challenger: str | None = None
    class_ratio_support: float | None = None
    # Rule 5: the noise floor of the source's own patients (None under other rules or with one foreground class).
    class_ratio_floor: float | None = None
    entropy: dict[str, float]
    candidates: dict[str, str]
    seconds: float


def class_ratio_blind(name: str) -> bool:
    """Whether the class-ratio prior cannot judge candidate preset `name`: its transfer matches the source to the
    target's intensity distribution, so its model reproduces the source's class proportions by construction (see
    the module docstring and ``AppearanceTransfer.matches_reference_distribution``)."""
    preset = APPEARANCE_PRESETS[name]
    transfer = build_appearance_transfer(preset["appearance"], preset.get("appearance_options"))
    return transfer.matches_reference_distribution


def bench_candidate_dirs(bench_dir: Path, seed: int) -> dict[str, Path]:
    """A bench folder's ``ascplus-<preset>/seed<seed>`` rows: the candidates its ascplus runs share (trained once)."""
    return {name: Path(bench_dir) / f"ascplus-{name}" / f"seed{seed}" for name in APPEARANCE_PRESETS}


# Options of the choice itself, not of a candidate: a candidate run is the bench's ``ascplus-<name>`` row
# whatever rule picks among them and whichever other candidates it is weighed against.
CHOICE_OPTIONS = ("appearance", "appearance_options", *CHOICE_ONLY_OPTIONS)


def candidate_config(config: RunConfig, name: str) -> RunConfig:
    """The run config of one candidate: the product's, with the candidate's appearance preset (so a bench's
    ``ascplus-<name>`` row, made with the same overrides, is the same run)."""
    method = {k: v for k, v in config.method.items() if k not in CHOICE_OPTIONS}
    method.update(json.loads(json.dumps(APPEARANCE_PRESETS[name])))
    return config.model_copy(update={"method": method})


def label_maps(network: torch.nn.Module, images: torch.Tensor, spatial_dims: int,
               device: torch.device) -> tuple[torch.Tensor, float]:
    """Argmax label maps (N, *S) of a network on preprocessed images (N, C, *S), and its mean normalised
    entropy (for the report)."""
    labels, entropy_sum, voxels = [], 0.0, 0
    # 2D: slices in batches (predict_probabilities takes them as the last axis of one case); 3D: volumes.
    chunks = ([images[i:i + 64].movedim(0, -1) for i in range(0, images.shape[0], 64)] if spatial_dims == 2
              else list(images))
    for chunk in chunks:
        probs = predict_probabilities(network, chunk, spatial_dims, device)  # (K, *S[, n])
        probs = probs.movedim(-1, 0) if spatial_dims == 2 else probs[None]  # (n, K, *S)
        labels.append(probs.argmax(1).cpu())
        p = probs.clamp_min(1e-8)
        ent = -(p * p.log()).sum(1) / float(np.log(p.shape[1]))
        entropy_sum += float(ent.sum())
        voxels += ent.numel()
    return torch.cat(labels), entropy_sum / max(voxels, 1)


def _run_label_maps(run: Path, images: torch.Tensor, spatial_dims: int,
                    device: torch.device) -> tuple[torch.Tensor, float]:
    return label_maps(load_bundle(run, device).network, images, spatial_dims, device)


def pooled_dice(a: torch.Tensor, b: torch.Tensor, classes: list[int]) -> float:
    """Mean over ``classes`` of the Dice of two label maps pooled over all their voxels (0 when both are empty)."""
    scores = []
    for c in classes:
        x, y = a == c, b == c
        denom = int(x.sum()) + int(y.sum())
        scores.append(2.0 * int((x & y).sum()) / denom if denom else 0.0)
    return float(np.mean(scores))


def foreground_proportions(label_maps: torch.Tensor, classes: list[int]) -> np.ndarray:
    """Each foreground class's share of the foreground voxels of ``label_maps``, pooled (zeros if none)."""
    return _shares(np.array([int((label_maps == c).sum()) for c in classes], dtype=np.float64))


def _shares(counts: np.ndarray) -> np.ndarray:
    """Class counts -> each class's share, along the last axis (zeros where there are no counts)."""
    total = counts.sum(-1, keepdims=True)
    return np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)


def class_ratio_kl(reference: np.ndarray, predicted: np.ndarray, eps: float = 1e-6) -> float:
    """KL(reference || predicted) of two foreground proportion vectors; ``eps`` keeps a missing class finite
    (and large)."""
    return float(_kl_rows(reference, predicted, eps))


def _kl_rows(reference: np.ndarray, predicted: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """:func:`class_ratio_kl` along the last axis (``predicted`` may hold one proportion vector per row)."""
    ref, pred = reference + eps, predicted + eps
    ref, pred = ref / ref.sum(-1, keepdims=True), pred / pred.sum(-1, keepdims=True)
    return np.sum(ref * np.log(ref / pred), -1)


def case_class_counts(label_maps: torch.Tensor, case_sizes: list[int], classes: list[int]) -> np.ndarray:
    """Voxel counts (cases, classes) of ``label_maps`` (samples of consecutive cases, ``case_sizes`` each)."""
    return np.array([[int((case == c).sum()) for c in classes] for case in torch.split(label_maps, case_sizes)],
                    dtype=np.float64)


def class_ratio_support(reference: np.ndarray, incumbent: np.ndarray, challenger: np.ndarray,
                        resamples: int = GUARD_RESAMPLES, seed: int = GUARD_SEED) -> float:
    """Share of case bootstrap resamples in which the challenger's pooled foreground proportions are closer (KL)
    to ``reference`` than the incumbent's. ``incumbent`` and ``challenger`` are per-case class counts
    (:func:`case_class_counts`) of the same cases; each resample uses the same cases for both."""
    if incumbent.shape != challenger.shape or incumbent.ndim != 2 or not len(incumbent):
        raise ValueError("the two candidates need per-case class counts of the same, non-empty set of cases")
    draws = np.random.default_rng(seed).integers(0, len(incumbent), size=(resamples, len(incumbent)))
    # Each resample pools its drawn cases: (resamples, classes) shares per candidate.
    wins = (_kl_rows(reference, _shares(challenger[draws].sum(1)))
            < _kl_rows(reference, _shares(incumbent[draws].sum(1))))
    return float(wins.mean())


def class_ratio_floor(source_counts: np.ndarray, cases: int, resamples: int = GUARD_RESAMPLES,
                      level: float = GUARD_LEVEL, seed: int = GUARD_SEED) -> float:
    """Rule 5's noise floor: the ``level`` quantile, over ``resamples`` draws of ``cases`` source cases with
    replacement, of the KL divergence between the source's pooled foreground proportions and the draw's.
    ``source_counts``: per-case foreground class counts of the source labels (:func:`case_class_counts`)."""
    if source_counts.ndim != 2 or not len(source_counts) or cases < 1:
        raise ValueError("the floor needs per-case class counts of at least one source case and cases >= 1")
    reference = _shares(source_counts.sum(0))
    draws = np.random.default_rng(seed).integers(0, len(source_counts), size=(resamples, cases))
    return float(np.quantile(_kl_rows(reference, _shares(source_counts[draws].sum(1))), level))


def source_case_class_counts(task: Task, cache_dir: Path | None, progress: bool = False) -> np.ndarray:
    """Per source training case, the voxel count of each foreground class in its *labels* (cases, classes)."""
    cases = prepare_split(task.source_dir, "Tr", task.preprocessing, with_labels=True, cache_dir=cache_dir,
                          progress=progress, expected_labels=task.labels)
    classes = [v for v in task.labels.values() if v != 0]
    return np.array([[int((c.label == k).sum()) for k in classes] for c in cases], dtype=np.float64)


def source_foreground_proportions(task: Task, cache_dir: Path | None, progress: bool = False) -> np.ndarray:
    """The foreground class proportions of the source training *labels* (the class-ratio rule's reference)."""
    return _shares(source_case_class_counts(task, cache_dir, progress).sum(0))


def target_training_images(task: Task, cache_dir: Path | None, progress: bool = False) -> torch.Tensor:
    """The target training split's preprocessed images as samples (N, C, *S): images only, never labels."""
    return target_training_cases(task, cache_dir, progress)[0]


def target_training_cases(task: Task, cache_dir: Path | None,
                          progress: bool = False) -> tuple[torch.Tensor, list[int]]:
    """:func:`target_training_images` and how many consecutive samples each case gave (2D: its slices)."""
    cases = prepare_split(task.target_dir, "Tr", task.preprocessing, with_labels=False, cache_dir=cache_dir,
                          progress=progress)
    if not cases:
        raise DataError(task.target_dir / "imagesTr", "no target training images to choose an appearance transfer")
    images, _ = stack_samples(cases, task.preprocessing.spatial_dims)
    sizes = [c.image.shape[-1] if task.preprocessing.spatial_dims == 2 else 1 for c in cases]
    return images, sizes


def reverse_config(config: RunConfig, fraction: float) -> RunConfig:
    """The reverse model's run config: ``source-only-dg`` (default options) for ``fraction`` of the updates."""
    tc = config.training
    training = tc.model_copy(update={"iterations": max(1, round(tc.iterations * fraction))})
    return config.model_copy(update={"method": {}, "training": training})


def reverse_validation_scores(runs: Mapping[str, Path], task: Task, config: RunConfig, work_dir: Path,
                              cache_dir: Path | None, progress: bool = False,
                              fraction: float = 0.25) -> dict[str, tuple[float, float]]:
    """Per candidate: (reverse-validation score, seconds). Reads the target images and the *source* labels.

    Every rank trains the reverse models together (the trainer shares the batches); rank 0 writes
    ``work_dir/<name>/score.json``, which a rerun reuses, and drops the reverse model's checkpoint."""
    from diffuse_uda.methods.registry import create_method

    dims = task.preprocessing.spatial_dims
    device = resolve_device(config.training.device)
    images = target_training_images(task, cache_dir, progress and distributed.is_main())
    source = prepare_split(task.source_dir, "Tr", task.preprocessing, with_labels=True, cache_dir=cache_dir,
                           progress=False, expected_labels=task.labels)
    source_images, source_labels = stack_samples(source, dims)
    assert source_labels is not None
    classes = [v for v in task.labels.values() if v != 0]
    rcfg = reverse_config(config, fraction)
    out: dict[str, tuple[float, float]] = {}
    for name, run in runs.items():
        folder = Path(work_dir) / name
        record = folder / "score.json"
        if distributed.on_main(record.is_file):
            done = json.loads(distributed.on_main(record.read_text))
            out[name] = (float(done["score"]), float(done["seconds"]))
            continue
        t0 = time.perf_counter()
        pseudo, _ = _run_label_maps(Path(run), images, dims, device)
        method = create_method("source-only-dg", {})
        Trainer(method, TrainingData(images, pseudo.long(), None), rcfg, folder, dims, task.num_classes,
                progress).fit()
        predicted, _ = label_maps(method.inference_network().eval(), source_images, dims, device)
        score = pooled_dice(predicted, source_labels, classes)
        seconds = time.perf_counter() - t0
        distributed.on_main(_record_reverse, folder, name, score, seconds, rcfg.training.iterations)
        out[name] = (score, seconds)
    return out


def _record_reverse(folder: Path, name: str, score: float, seconds: float, iterations: int) -> None:
    atomic_write_json(folder / "score.json", {"candidate": name, "score": score, "seconds": seconds,
                                               "iterations": iterations})
    (folder / CHECKPOINT_NAME).unlink(missing_ok=True)  # the score is what is kept, not the model


def score_candidates(runs: Mapping[str, Path], task: Task, cache_dir: Path | None, device: str = "auto",
                     progress: bool = False, rule: str = "floored-class-ratio",
                     reverse: Mapping[str, float] | None = None) -> AppearanceChoice:
    """Apply ``rule`` to trained candidate runs (reads the target *images* only; ``reverse`` holds the
    reverse-validation scores, from :func:`reverse_validation_scores`, when the rule needs them)."""
    if rule not in RULES:
        raise ConfigError(f"unknown appearance rule {rule!r}; choose from {', '.join(RULES)}")
    if rule == "reverse-validation" and (reverse is None or set(reverse) != set(runs)):
        raise ConfigError("the reverse-validation rule needs a reverse-validation score for every candidate")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    images, case_sizes = target_training_cases(task, cache_dir, progress)
    maps, entropy = {}, {}
    for name, run in runs.items():
        maps[name], entropy[name] = _run_label_maps(Path(run), images, task.preprocessing.spatial_dims, dev)
    classes = [v for v in task.labels.values() if v != 0]
    names = list(runs)
    agreement = {a: {b: pooled_dice(maps[a], maps[b], classes) for b in names if b != a} for a in names}
    agreement_scores = {a: float(np.mean(list(agreement[a].values()))) for a in names}
    scores, rule_text = agreement_scores, RULES[rule]
    kl, reference, challenger, support, floor = None, None, None, None, None
    prior = rule in ("class-ratio", *GUARDED_RULES)
    judged = prior and len(classes) > 1
    blind = {n for n in names if class_ratio_blind(n)} if judged else set()
    if rule == "reverse-validation" and reverse:
        scores = {n: float(reverse[n]) for n in names}
    elif prior and (not judged or blind == set(names)):
        rule_text = CLASS_RATIO_FALLBACK
    elif prior:
        source_counts = source_case_class_counts(task, cache_dir, progress)
        source = _shares(source_counts.sum(0))
        if rule in FLOOR_RULES:
            floor = class_ratio_floor(source_counts, len(case_sizes))
        # Per case, so that the guard of rule 4 can resample cases; pooled, the shares foreground_proportions gives.
        counts = {n: case_class_counts(maps[n], case_sizes, classes) for n in names}
        kl = {n: class_ratio_kl(source, _shares(counts[n].sum(0))) for n in names}
        # Every divergence is recorded; only the candidates the prior can judge are scored.
        scores = {n: -v for n, v in kl.items() if n not in blind}
        by_value = {v: k for k, v in task.labels.items()}
        reference = {by_value[c]: float(x) for c, x in zip(classes, source, strict=True)}
    chosen = _best(scores)
    if rule in GUARDED_RULES:
        incumbent = _best(agreement_scores)
        if kl is not None and incumbent not in blind and chosen != incumbent:
            challenger = chosen
            support = class_ratio_support(source, counts[incumbent], counts[challenger])
        overrule = support is not None and support >= GUARD_LEVEL
        if rule == "floored-class-ratio" and floor is not None and kl is not None:
            overrule = overrule and kl[incumbent] > floor
        elif rule == "margin-class-ratio" and floor is not None and kl is not None and challenger is not None:
            overrule = kl[incumbent] - kl[challenger] > floor  # the support is recorded, not used
        chosen = challenger if overrule and challenger is not None else incumbent
    return AppearanceChoice(chosen=chosen, rule=rule_text, scores=scores, agreement=agreement,
                            agreement_scores=agreement_scores,
                            reverse_validation=dict(reverse) if reverse is not None else None,
                            class_ratio_kl=kl, source_class_ratio=reference, class_ratio_challenger=challenger,
                            class_ratio_support=support, class_ratio_floor=floor, entropy=entropy,
                            candidates={n: str(Path(r).resolve()) for n, r in runs.items()},
                            seconds=time.perf_counter() - t0)


def adopt_chosen_run(chosen_run: Path, out_dir: Path) -> list[str]:
    """Copy the chosen candidate's model bundle, extra outputs and log into ``out_dir``; returns the names."""
    copied = []
    for path in sorted(Path(chosen_run).iterdir()):
        if path.is_file() and path.suffix in (".pt", ".csv") and path.name != "checkpoint_last.pt":
            tmp = out_dir / f".{path.name}.copy.tmp"
            shutil.copyfile(path, tmp)
            tmp.replace(out_dir / path.name)
            copied.append(path.name)
    return copied


def write_choice(out_dir: Path, choice: AppearanceChoice) -> Path:
    path = Path(out_dir) / CHOICE_FILE
    atomic_write_json(path, choice.model_dump(mode="json"))
    return path


def read_choice(run_dir: Path) -> AppearanceChoice | None:
    return read_json_record(Path(run_dir) / CHOICE_FILE, AppearanceChoice, "invalid appearance choice record")


def choice_summary(choice: AppearanceChoice) -> dict[str, Any]:
    """The facts a report shows: the pick, the rule and each candidate's score and entropy."""
    out: dict[str, Any] = {"chosen": choice.chosen, "rule": choice.rule,
                           "scores": {k: round(v, 4) for k, v in choice.scores.items()},
                           "entropy": {k: round(v, 4) for k, v in choice.entropy.items()}}
    if choice.agreement_scores is not None and choice.agreement_scores != choice.scores:
        out["agreement_scores"] = {k: round(v, 4) for k, v in choice.agreement_scores.items()}
        out["agreement_pick"] = agreement_pick(choice)
    if choice.class_ratio_kl is not None:
        out["class_ratio_kl"] = {k: round(v, 4) for k, v in choice.class_ratio_kl.items()}
        out["source_class_ratio"] = {k: round(v, 4) for k, v in (choice.source_class_ratio or {}).items()}
    if choice.class_ratio_support is not None:
        out["class_ratio_challenger"] = choice.class_ratio_challenger
        out["class_ratio_support"] = round(choice.class_ratio_support, 3)
    if choice.class_ratio_floor is not None:
        out["class_ratio_floor"] = round(choice.class_ratio_floor, 5)
    return out


def agreement_pick(choice: AppearanceChoice) -> str:
    """The candidate the agreement rule picks (recorded beside any other rule's pick)."""
    scores = choice.agreement_scores or choice.scores
    return _best(scores) if scores else choice.chosen  # one candidate: nothing was scored


def _best(scores: Mapping[str, float]) -> str:
    """The highest-scoring candidate; ties go to the first in the candidate list."""
    names = list(scores)
    return max(names, key=lambda n: (scores[n], -names.index(n)))


def train_with_appearance_choice(task: Task, config: RunConfig, out_dir: Path,
                                 candidate_dirs: Mapping[str, Path] | None = None, cache_dir: Path | None = None,
                                 progress: bool = True, display_name: str | None = None,
                                 force: bool = False) -> Path:
    """``ascplus`` with ``appearance="auto"``: train every candidate (into ``candidate_dirs[name]``, default
    ``out_dir/candidates/name``; finished ones are reused under the run-folder contract), choose one by
    the label-free rule and make ``out_dir`` a run folder holding the chosen model."""
    from diffuse_uda.methods.registry import create_method
    from diffuse_uda.pipeline.train import resolve_task_defaults, run_request, train_method

    out_dir = Path(out_dir)
    task = task.with_preprocessing(config.preprocessing)
    config = resolve_task_defaults(task, "ascplus", config)  # the rounds this task gets when unset
    # Rank 0 decides about the folder and writes it; the candidates train on every rank (train_method).
    request = distributed.on_main(run_request, task, "ascplus", config)
    folder = RunFolder(out_dir)

    def complete() -> bool:
        return (folder.open(request, force=force) == "complete" and folder.bundle_path.is_file()
                and (out_dir / CHOICE_FILE).is_file())

    if distributed.on_main(complete):
        return out_dir
    options = create_method("ascplus", config.method).options
    names = options.appearance_candidates
    assert names is not None  # the task's default set, filled in by resolve_task_defaults above
    dirs = {n: Path((candidate_dirs or {}).get(n, out_dir / "candidates" / n)) for n in names}
    manifest = RunManifest(request=request, task=task.resolved().to_dict(), display_name=display_name or "ascplus",
                           method_summary="ASCPlus with the appearance transfer chosen per task without labels",
                           outputs=["candidates"])
    distributed.on_main(folder.write, manifest)
    # A single candidate that is trained again for longer is not trained at its own length: nothing would use it.
    single = len(names) == 1
    trained_first = {} if single and options.longer_training else dirs
    runs = {n: train_method(task, "ascplus", candidate_config(config, n), d, cache_dir=cache_dir, progress=progress,
                            display_name=f"ascplus-{n}", force=force) for n, d in trained_first.items()}
    reverse = None
    if single:
        choice = distributed.on_main(_single_choice, out_dir, names[0], runs)
    else:
        if options.appearance_rule == "reverse-validation":
            reverse = reverse_validation_scores(runs, task, config, out_dir / REVERSE_DIR, cache_dir, progress,
                                                options.reverse_fraction)
        choice = distributed.on_main(_choose, task, config, out_dir, runs, cache_dir, progress,
                                     options.appearance_rule, reverse)
    # After the choice: the chosen candidate trained again for longer, then any self-training rounds, each from
    # the model before it. Every one is a run folder of its own (resumable, reused when its request matches).
    after: list[Path] = []
    if options.longer_training:
        after.append(train_method(task, "ascplus", longer_config(config, choice.chosen, options.longer_training),
                                  out_dir / LONGER_DIR, cache_dir=cache_dir, progress=progress,
                                  display_name=f"ascplus-{choice.chosen} x{options.longer_training} updates",
                                  force=force))
    for r in range(1, (options.self_training_rounds or 0) + 1):
        previous = after[-1] if after else runs[choice.chosen]
        after.append(self_training_round(task, config, choice.chosen, previous, out_dir, r, cache_dir, progress,
                                         force))
    distributed.on_main(_keep_chosen, out_dir, runs, folder, manifest, choice, after,
                        sum(seconds for _, seconds in reverse.values()) if reverse else 0.0,
                        options.longer_training or 0, options.self_training_rounds or 0)
    return out_dir


def longer_config(config: RunConfig, chosen: str, factor: int) -> RunConfig:
    """The chosen candidate's run config with ``factor`` times the updates: the same run as the bench row
    ``ascplus-<chosen>`` made with ``--set training.iterations=<factor x iterations>``."""
    candidate = candidate_config(config, chosen)
    training = candidate.training.model_copy(update={"iterations": factor * candidate.training.iterations})
    return candidate.model_copy(update={"training": training})


def self_training_round(task: Task, config: RunConfig, chosen: str, previous: Path, out_dir: Path, round_: int,
                        cache_dir: Path | None, progress: bool, force: bool) -> Path:
    """Round ``round_`` of self-training after the choice: the previous model (the chosen candidate, then the
    previous round) labels the target training images (argmax pseudo-labels; no target label is read) and
    ASCPlus with the chosen transfer is trained again with them added to the labelled set."""
    from diffuse_uda.pipeline.pseudolabel import write_pseudolabels
    from diffuse_uda.pipeline.train import train_method

    base = out_dir / SELF_TRAINING_DIR
    pseudo = distributed.on_main(write_pseudolabels, previous, base / f"round{round_}_pseudolabels",
                                 device=config.training.device, progress=progress)
    return train_method(task, "ascplus", candidate_config(config, chosen), base / f"round{round_}",
                        extra_labelled=[pseudo], cache_dir=cache_dir, progress=progress,
                        display_name=f"ascplus-{chosen} self-training round {round_}", force=force)


def _choose(task: Task, config: RunConfig, out_dir: Path, runs: dict[str, Path], cache_dir: Path | None,
            progress: bool, rule: str, reverse: dict[str, tuple[float, float]] | None) -> AppearanceChoice:
    """Score the trained candidates and record the choice (rank 0)."""
    choice = score_candidates(runs, task, cache_dir, config.training.device, progress, rule,
                              {n: score for n, (score, _) in reverse.items()} if reverse else None)
    write_choice(out_dir, choice)
    return choice


def _single_choice(out_dir: Path, name: str, runs: dict[str, Path]) -> AppearanceChoice:
    """Record the one candidate as the choice, unscored (rank 0); ``runs`` is empty when it was not trained at the
    candidates' length."""
    choice = AppearanceChoice(chosen=name, rule=SINGLE_CANDIDATE, scores={}, agreement={}, entropy={},
                              candidates={n: str(Path(r).resolve()) for n, r in runs.items()}, seconds=0.0)
    write_choice(out_dir, choice)
    return choice


def _keep_chosen(out_dir: Path, runs: dict[str, Path], folder: RunFolder, manifest: RunManifest,
                 choice: AppearanceChoice, after: list[Path], reverse_seconds: float, longer: int,
                 rounds: int) -> None:
    """Make ``out_dir`` the chosen run, or the last run trained after the choice (rank 0): ``after`` holds the
    longer training (``longer`` times the updates; 0: none) and then the ``rounds`` self-training rounds."""
    from diffuse_uda.pipeline.train import peak_rss_mb

    copied = adopt_chosen_run(after[-1] if after else runs[choice.chosen], out_dir)
    done = {n: RunFolder(r).manifest() for n, r in runs.items()}
    trained = [RunFolder(r).manifest() for r in after]
    final = trained[-1] if trained else done[choice.chosen]
    manifest = manifest.model_copy(update={
        "status": "complete",
        "outputs": ["candidates", *([REVERSE_DIR] if choice.reverse_validation is not None else []),
                    *([LONGER_DIR] if longer else []), *([SELF_TRAINING_DIR] if rounds else []), CHOICE_FILE,
                    *copied],
        "n_labelled_samples": final.n_labelled_samples, "n_target_samples": final.n_target_samples,
        # The cost: every candidate's training, the reverse models, the scoring and what was trained after it.
        "train_seconds": sum(m.train_seconds or 0.0 for m in [*done.values(), *trained]) + reverse_seconds
        + choice.seconds,
        "preprocessing_seconds": sum(m.preprocessing_seconds or 0.0 for m in [*done.values(), *trained]),
        "peak_rss_mb": max([peak_rss_mb(), *(m.peak_rss_mb or 0.0 for m in [*done.values(), *trained])]),
        "iterations": final.iterations, "device": final.device, "world_size": final.world_size,
        "details": {"appearance": choice.chosen, "appearance_choice": choice_summary(choice),
                    "longer_training": longer, "self_training_rounds": rounds}})
    folder.write(RunManifest.model_validate(manifest.model_dump()))
    why = (f"scores {', '.join(f'{k} {v:.3f}' for k, v in choice.scores.items())}" if choice.scores
           else choice.rule)
    print(f"[ascplus] appearance chosen without labels: {choice.chosen} ({why})")

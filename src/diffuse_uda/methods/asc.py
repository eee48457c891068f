"""ASC and ASCPlus: appearance and structure consistency (Diffuse-UDA stage 1, paper Sec. 4.1-4.2).

Views per step: source x_s, source restyled to target x_sft = FDA(x_s <- x_t), target x_t and
target restyled to source x_tfs = FDA(x_t <- x_s).

* L_seg = Dice-CE(f(x_s), y_s) + Dice-CE(f(x_sft), y_s)                              (Eq. 4)
* appearance consistency: ||f(x_t) - f'(x_tfs)||^2  [+ ||f(x_tfs) - f'(x_t)||^2, dual view]  (Eq. 5)
* structure consistency: the student's inputs are CutMix-ed with another target image and the
  teacher's predictions are mixed with the same box                                  (Eq. 6)
* L = L_seg + lambda(t) * L_asc, lambda with sigmoid ramp-up; teacher = EMA of student (Eq. 7-8)

ASCPlus adds the adaptive beta (Eq. 3), the dual view and a snapshot ensemble of the last N
epochs whose confident predictions are the pseudo-labels. Every component is a flag, so the
paper's Table-4 ablation (M1..M7) is a set of option presets (:data:`ASCPLUS_ABLATION`).

The restyling T is the paper's FDA by default (``appearance="fourier"``); any member of
:mod:`diffuse_uda.transforms.appearance` can replace it (``appearance="bezier"``, ...).
Target-agnostic members ignore the other domain's image: x_sft and x_tfs are then two random
restylings of x_s and x_t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from torch import nn

from diffuse_uda.config import StrictModel
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.registry import register
from diffuse_uda.methods.teacher_student import TeacherStudentMethod, TeacherStudentOptions
from diffuse_uda.networks.ensemble import SnapshotEnsemble
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import dice_ce_loss, softmax_mse
from diffuse_uda.transforms.appearance import AppearanceTransfer, build_appearance_transfer
from diffuse_uda.transforms.cutmix import cutmix, random_box_mask

if TYPE_CHECKING:
    from diffuse_uda.data.task import Task

AUTO = "auto"

# ASCPlus with each appearance transfer: the candidates of the label-free choice and bench rows
# (`ascplus-<name>`). "paper" is the paper's FFT amplitude swap with the adaptive beta (exactly the stage 1
# of the paper). The target-agnostic remaps get the random global location-scale of Su et al. (AAAI 2023).
_LOCATION_SCALE = {"location_scale": True}
APPEARANCE_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"appearance": "fourier"},
    "fourier-luminance": {"appearance": "fourier-luminance"},
    "fourier-bounded": {"appearance": "fourier-bounded"},
    "histogram-matching": {"appearance": "histogram-matching"},
    "bezier": {"appearance": "bezier", "appearance_options": _LOCATION_SCALE},
    "gin": {"appearance": "gin", "appearance_options": _LOCATION_SCALE},
    "mix": {"appearance": "random-choice", "appearance_options": {
        "members": ["fourier", "bezier", "gin"],
        "member_options": {"bezier": _LOCATION_SCALE, "gin": _LOCATION_SCALE}}},
    # Session 15: each remap drawn twice and blended by a smooth random field (IPA); bezier-ipa is a default
    # candidate (in place of bezier), gin-ipa is not.
    "bezier-ipa": {"appearance": "pseudo-correlation", "appearance_options": {
        "member": "bezier", "member_options": _LOCATION_SCALE}},
    "gin-ipa": {"appearance": "pseudo-correlation", "appearance_options": {
        "member": "gin", "member_options": _LOCATION_SCALE}},
    # Session 30: no restyling, the control (photos lose target Dice under every restyling measured); and neither
    # restyling nor the structure term (rule U: the colour-photo default).
    "identity": {"appearance": "identity"},
    "identity-no-structure": {"appearance": "identity", "structure": False},
}


# The default candidates of ``appearance="auto"``. Scans: target-driven (paper FFT swap, histogram matching),
# target-agnostic contrast-inverting remaps (Bezier curves blended by a smooth random field, GIN) and a mixture.
# Session 15 put bezier-ipa in place of bezier by a rule committed before its held-out runs (BENCHMARKS.md); sessions
# 7-14 had bezier (`--set method.appearance_candidates=[...]` restores that set). Colour photos: no restyling at all
# and no structure term (rule U, BENCHMARKS.md session 30): on both photo tasks every restyling cost target Dice, and
# so did the structure term whatever the transfer. RGB_CANDIDATES is the photo set of sessions 7-29 (the grey set and
# the colour-aware swap), kept for `appearance_candidates`.
GREY_CANDIDATES: tuple[str, ...] = ("paper", "histogram-matching", "bezier-ipa", "gin", "mix")
RGB_CANDIDATES: tuple[str, ...] = (*GREY_CANDIDATES, "fourier-luminance")
PHOTO_CANDIDATES: tuple[str, ...] = ("identity-no-structure",)


def default_candidates(colour_photo: bool) -> tuple[str, ...]:
    """Photos (dataset.json channels R, G, B) get one candidate, neither restyled nor CutMix-ed (rule U); any other
    channels, three scan sequences included, get the grey set (before session 21: any 3-channel task got the photo
    set; before session 30 photos got RGB_CANDIDATES)."""
    return PHOTO_CANDIDATES if colour_photo else GREY_CANDIDATES


# Options read only by the label-free choice of ``appearance="auto"`` (pipeline.appearance_choice).
CHOICE_ONLY_OPTIONS = ("appearance_candidates", "appearance_rule", "reverse_fraction", "longer_training",
                       "self_training_rounds")


class ASCOptions(TeacherStudentOptions):
    seg_restyled: bool = Field(True, description="L_seg on the source restyled to target (x_sft).")
    app_target: bool = Field(True, description="Appearance consistency f(x_t) vs f'(x_tfs).")
    app_restyled: bool = Field(False, description="Dual view: f(x_tfs) vs f'(x_t).")
    structure: bool = Field(True, description="Structure consistency: student inputs under CutMix.")
    adaptive_beta: bool = Field(False, description="beta from the histogram distance (Eq. 3).")
    beta: float = Field(0.1, description="Fixed beta (box half-width / half image size) when not adaptive.")
    alpha_range: tuple[float, float] = (0.5, 1.5)
    min_beta: float = 0.1
    box_proportion: tuple[float, float] = (0.25, 0.5)
    ensemble: bool = Field(False, description="Predict with the snapshot ensemble of the last N epochs.")
    ensemble_epochs: int | None = Field(None, description="N; None = 10% of the epochs (the paper: 10 of 100).")
    confidence_threshold: float = Field(0.9, description="Pseudo-label voxels below this confidence are unreliable.")
    appearance: str = Field("fourier", description="Appearance transfer T for x_sft and x_tfs, by name.")
    appearance_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of T. The Fourier members take adaptive_beta/beta/alpha_range/min_beta above unless "
                    "set here.")

    appearance_candidates: tuple[str, ...] | None = Field(
        None, description="With appearance='auto' (ascplus only): the APPEARANCE_PRESETS to choose among (one: "
                          "that preset, no choice). None = the default for the task's channels: "
                          f"{', '.join(GREY_CANDIDATES)} on scans; on colour photos {', '.join(PHOTO_CANDIDATES)} "
                          "alone (no restyling and no structure term: rule U, BENCHMARKS.md session 30).")
    appearance_rule: Literal["agreement", "reverse-validation", "class-ratio", "guarded-class-ratio",
                             "floored-class-ratio", "margin-class-ratio"] = Field(
        "floored-class-ratio",
        description="With appearance='auto': the label-free rule that keeps one candidate. 'floored-class-ratio' "
                    "(the default since session 21): the 'agreement' pick unless the class-ratio prior prefers "
                    "another candidate in at least 95% of case bootstrap resamples of the target images and the "
                    "agreement pick's class proportions are further from the source's than a set of the source's "
                    "own patients would be; 'guarded-class-ratio' (the default of sessions 16-20): the same "
                    "without that noise floor; "
                    "'margin-class-ratio': the prior's pick wherever agreement's pick is further from the source's "
                    "proportions by more than that noise floor (no bootstrap); "
                    "'agreement': mean agreement with the other candidates on the target images; 'class-ratio': "
                    "foreground class proportions predicted on the target images closest to the source labels' "
                    "(agreement with one foreground class); "
                    "'reverse-validation': a model trained on each candidate's target "
                    "pseudo-labels segments the labelled source images (measured worse on contrast shifts, "
                    "BENCHMARKS.md session 12).")
    longer_training: int | None = Field(
        None, ge=0,
        description="With appearance='auto': after the choice (the candidates train for training.iterations), "
                    "train the chosen candidate again from scratch for this many times training.iterations and "
                    "keep that model (self-training rounds, if any, start from it); 0 keeps the candidate. With one "
                    "candidate (the colour-photo default) it is trained only at that length. None (the default): 2 "
                    "on scans (rule Q, BENCHMARKS.md session 27) and on colour photos (rule U, session 30). The "
                    "pipeline's stage 1 uses the same default (rule R, session 28).")
    self_training_rounds: int | None = Field(
        None, ge=0,
        description="With appearance='auto': after the choice, train ASCPlus (the chosen transfer) again this many "
                    "times, each time with the previous model's target pseudo-labels added to the labelled set. "
                    "None (the default): two rounds on scans (rules L and M, sessions 22-23), none on colour photos "
                    "(dataset channels R, G, B), where a round was measured to lose at every seed. The pipeline's "
                    "stage 1 uses the same default (rule R, session 28).")
    reverse_fraction: float = Field(
        0.25, gt=0.0, le=1.0,
        description="reverse-validation: the reverse model's updates as a fraction of training.iterations.")

    @model_validator(mode="after")
    def _appearance_is_valid(self) -> ASCOptions:
        if self.self_training_rounds and self.appearance != AUTO:
            raise ValueError("self_training_rounds follows the appearance choice: it needs appearance='auto'")
        if self.longer_training and self.appearance != AUTO:
            raise ValueError("longer_training follows the appearance choice: it needs appearance='auto'")
        if self.longer_training == 1:
            raise ValueError("longer_training=1 would train the chosen candidate again as it was: use 0 (keep it) "
                             "or a factor of 2 or more")
        if self.appearance == AUTO:
            unknown = [c for c in self.appearance_candidates or () if c not in APPEARANCE_PRESETS]
            if unknown:
                raise ValueError(f"appearance_candidates {unknown} are not presets ({', '.join(APPEARANCE_PRESETS)})")
            if self.appearance_candidates is not None and not self.appearance_candidates:
                raise ValueError("appearance_candidates needs at least one preset")
            return self
        asc_appearance(self)  # an unknown member or bad options fail when the options are read, not mid-run
        return self

    @model_serializer(mode="wrap")
    def _without_choice_options(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Options of the appearance choice do nothing in a run with a fixed transfer (a candidate), so they are
        # not part of what that run is: a candidate row is the same run whatever rule picks among candidates.
        data = handler(self)
        if self.appearance != AUTO:
            for key in CHOICE_ONLY_OPTIONS:
                data.pop(key, None)
        return data


def asc_appearance(o: ASCOptions) -> AppearanceTransfer:
    """The appearance transfer T of ASC/ASCPlus; ``"fourier"`` is the paper's FDA with the beta options."""
    fourier_defaults = {"mode": "adaptive" if o.adaptive_beta else "fixed", "beta": o.beta,
                        "alpha_range": tuple(o.alpha_range), "min_beta": o.min_beta}
    return build_appearance_transfer(o.appearance, o.appearance_options, fourier_defaults=fourier_defaults)


@register
class ASC(TeacherStudentMethod):
    name = "asc"
    summary = "ASC: FDA (fixed beta) + appearance and structure consistency with an EMA teacher."
    Options = ASCOptions

    def build(self, ctx: TrainContext) -> None:
        super().build(ctx)
        o = self.options
        if o.appearance == AUTO:
            raise ConfigError("appearance 'auto' is resolved before training (train_method trains the candidates "
                              "and picks one); a Method needs a concrete appearance transfer")
        self.restyle = asc_appearance(o)
        # "beta" for the Fourier members (comparable with earlier logs), "appearance_strength" otherwise.
        self.strength_key = self.restyle.strength_name
        n_epochs = max(1, ctx.total_steps // ctx.epoch_length)
        self.n_snapshots = o.ensemble_epochs or max(2, round(0.1 * n_epochs))
        self.first_snapshot_epoch = n_epochs - self.n_snapshots
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert self.student is not None and batch.target_image is not None
        o = self.options
        x_s, y_s, x_t = batch.source_image, batch.source_label, batch.target_image
        n = x_s.shape[0]
        x_sft, strength_s = self.restyle(x_s, x_t, ctx.generator)
        x_tfs, _ = self.restyle(x_t, x_s, ctx.generator)
        use_cons = o.app_target or o.app_restyled
        student_in = [x_s] + ([x_sft] if o.seg_restyled else [])
        targets: list[torch.Tensor] = []
        if use_cons:
            with torch.no_grad():
                teacher = self.teacher(torch.cat([x_t, x_tfs])).float()
            t_t, t_tfs = teacher[:n], teacher[n:]
            box = (random_box_mask(n, x_t.shape[2:], tuple(o.box_proportion), ctx.generator, x_t.device)
                   if o.structure else None)

            def perturb(x: torch.Tensor) -> torch.Tensor:
                return x if box is None else cutmix(x, x.roll(1, 0), box)

            if o.app_target:  # student on target, teacher on target-restyled-to-source
                student_in.append(perturb(x_t))
                targets.append(perturb(t_tfs))
            if o.app_restyled:  # dual view: student on restyled target, teacher on target
                student_in.append(perturb(x_tfs))
                targets.append(perturb(t_t))
        logits = self.student(torch.cat(student_in))  # one forward for all views
        n_seg = 2 if o.seg_restyled else 1
        seg = dice_ce_loss(logits[: n_seg * n], torch.cat([y_s] * n_seg))
        losses = {"supervised": seg, self.strength_key: strength_s.mean().detach()}
        loss = seg
        if targets:
            cons = sum(softmax_mse(logits[(n_seg + i) * n:(n_seg + i + 1) * n], t) for i, t in enumerate(targets))
            loss = loss + self.consistency_weight(ctx) * cons
            losses["consistency"] = cons
        losses["loss"] = loss
        return losses

    # ----------------------------------------------------------------- ensemble
    def on_epoch_end(self, ctx: TrainContext, epoch: int) -> None:
        if self.options.ensemble and epoch >= self.first_snapshot_epoch:
            net = super().inference_network()
            self.snapshots.append({k: v.detach().clone() for k, v in net.state_dict().items()})
            self.snapshots = self.snapshots[-self.n_snapshots:]

    def inference_network(self) -> nn.Module:
        base = super().inference_network()
        if self.options.ensemble and self.snapshots:
            return SnapshotEnsemble.from_states(base, self.snapshots)
        return base

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "snapshots": self.snapshots}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.snapshots = list(state.get("snapshots", []))


class ASCPlusOptions(ASCOptions):
    app_restyled: bool = True
    adaptive_beta: bool = True
    ensemble: bool = True
    # The product default: the appearance transfer is chosen per task by a label-free rule among
    # APPEARANCE_PRESETS (pipeline.appearance_choice); "fourier" is the paper's exact stage 1.
    appearance: str = Field(AUTO, description="Appearance transfer T by name, or 'auto' (chosen per task, label-free).")


# ``ascplus``'s label-free choice with nothing trained after it (no longer training, no self-training round): the
# bench's rule rows (the pipeline's stage 1 until session 28, rule R).
CHOICE_ALONE: dict[str, int] = {"self_training_rounds": 0, "longer_training": 0}


def default_longer_training(colour_photo: bool) -> int:
    """The chosen candidate's updates after the choice, as a factor of the candidates', when ``longer_training`` is
    not set: twice on scans (rule Q, BENCHMARKS.md session 27: then the two rounds start from it) and on colour photos,
    whose one candidate (no restyling, no structure term) is then trained only at that length (rule U, session 30;
    before it photos kept the candidate as trained). The argument stays because the two defaults came from
    different rules and may part again."""
    return 2


def default_self_training_rounds(colour_photo: bool) -> int:
    """Rounds after the choice when ``self_training_rounds`` is not set: two on scans (rule L, BENCHMARKS.md session
    22, made it one; rule M, session 23, two); none on photos, where the chosen candidate's pseudo-labels were below
    source-only's and a round lost."""
    return 0 if colour_photo else 2


@register
class ASCPlus(ASC):
    name = "ascplus"
    summary = "ASCPlus (Diffuse-UDA stage 1): ASC + adaptive beta + dual-view consistency + snapshot ensemble."
    Options = ASCPlusOptions

    @classmethod
    def task_defaults(cls, options: StrictModel, task: Task) -> dict[str, Any]:
        assert isinstance(options, ASCOptions)
        if options.appearance != AUTO:
            return {}
        unset = {"self_training_rounds": default_self_training_rounds, "longer_training": default_longer_training,
                 "appearance_candidates": default_candidates}
        return {name: default(task.is_colour_photo) for name, default in unset.items()
                if getattr(options, name) is None}


# The paper's Table 4, as (method, options) presets; M1 is the source-only lower bound. Every row uses the
# paper's FFT amplitude swap.
_OFF = {"seg_restyled": False, "app_target": False, "app_restyled": False, "structure": False,
        "adaptive_beta": False, "ensemble": False, "appearance": "fourier"}
ASCPLUS_ABLATION: dict[str, tuple[str, dict[str, bool]]] = {
    "M1": ("source-only", {}),
    "M2": ("ascplus", {**_OFF, "seg_restyled": True}),
    "M3": ("ascplus", {**_OFF, "seg_restyled": True, "app_target": True}),
    "M4": ("ascplus", {**_OFF, "seg_restyled": True, "app_target": True, "app_restyled": True}),
    "M5": ("ascplus", {**_OFF, "seg_restyled": True, "app_target": True, "app_restyled": True, "structure": True}),
    "M6": ("ascplus", {**_OFF, "seg_restyled": True, "app_target": True, "app_restyled": True, "structure": True,
                       "adaptive_beta": True}),
    "M7": ("ascplus", {"appearance": "fourier"}),
}

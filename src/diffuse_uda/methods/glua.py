"""GLUA (comparator): Global-Local Union Alignment, "Mind the Gap" (Su et al.), reimplemented for 2D slices.

Two stages inside one run of the shared trainer:

1. **Global alignment** (the first ``style_steps`` steps; see ``style_budget``): a disentangling style-transfer
   autoencoder (shared content encoder + AdaIN decoder, one learned style code per domain) and a
   per-domain PatchGAN are trained with their own Adam optimizers on
   ``lambda_rec_im * L_rec_im + lambda_rec_c * L_rec_c + lambda_cyc * L_cyc + lambda_adv * L_adv``
   (L1 reconstructions and cycle, least-squares GAN), on ``style_batch_size`` unaugmented images per
   domain drawn from the training tensors (the paper's batch of 8). The returned ``"loss"`` carries
   no gradient, so the trainer leaves the segmenter alone in this stage.
2. **Local alignment** (remaining steps): the autoencoder is frozen; source batches are translated to
   target style (``x_s->t``). The segmenter is trained (by the trainer's optimizer) with Dice-CE on
   ``(x_s->t, y_s)`` plus ``lambda_d1`` / ``lambda_d2`` adversarial terms that make target features
   (D1, pixel-wise, feature space) and target predictions (D2, output space) look like source ones.
   Target bottleneck features are reweighted by D1's mask ``f + f * tanh(|D1(f)|)``. D1 and D2 are
   trained by the method's own Adam optimizers on detached inputs, with poly decay over stage 2; the
   segmenter's poly schedule also starts with stage 2 (``schedule_start_step``).

D1 belongs to the inference network (its mask reweights target features at test time), but it is a
discriminator: it is excluded from :meth:`GLUA.trainable_parameters` and only its own optimizer
steps it. Discriminators are updated *before* the segmenter's adversarial terms are built in a step,
so the trainer's backward never meets parameters modified in place.

Model selection: the last step's network. The paper picks the checkpoint that scores best on a
validation set, which in UDA means target labels; we do not copy that label leak.

Differences from the paper, kept small and deliberate: a SegResNet instead of DeepLab-ResNet50 (the
toolkit's shared backbone, for a like-for-like comparison); narrower style-transfer networks by
default (``style_channels``; 64 in the paper) for CPU runs; sigmoid decoder output for [0, 1] images;
least-squares instead of log-likelihood GAN loss for stage 1; source images are translated on the fly
by the frozen autoencoder instead of being written out once; the stage split is a fraction of the
run's iterations instead of 50k style-transfer iterations: by default (``style_budget="extra"``) the style
stage runs ``style_fraction / (1 - style_fraction) * iterations`` steps *before* the segmenter's
``training.iterations``, so the segmenter gets as many updates as every other method's (the paper trains
the style transfer as a stage of its own); ``style_budget="shared"`` takes the stage out of
``training.iterations`` (the rows benched before session 10). The segmenter's optimizer and LR schedule
are the trainer's (shared by all methods); the paper's SGD is ``--set training.optimizer=sgd
training.momentum=0.9 training.weight_decay=5e-4``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from diffuse_uda.config import StrictModel
from diffuse_uda.errors import ConfigError
from diffuse_uda.methods.base import Method
from diffuse_uda.methods.registry import register
from diffuse_uda.networks.glua import LocalAlignmentSegmenter, OutputDiscriminator
from diffuse_uda.networks.style_transfer import (
    SOURCE,
    TARGET,
    PatchDiscriminator,
    StyleTransferNet,
    fitting_downsamplings,
)
from diffuse_uda.training.context import Batch, TrainContext
from diffuse_uda.training.losses import dice_ce_loss
from diffuse_uda.training.trainer import scheduled_lr

# Every step returns all of these, so the training log keeps one fixed set of columns across stages.
LOSS_KEYS = ("loss", "stage", "style_rec_im", "style_rec_c", "style_cyc", "style_adv", "style_disc",
             "seg", "adv_d1", "adv_d2", "disc_d1", "disc_d2")


class GLUAOptions(StrictModel):
    # Ablation switches (the paper's Table III): stage 1, D1 + feature mask, D2.
    style_transfer: bool = Field(True, description="Stage 1 on; off = train the segmenter on x_s directly.")
    local_alignment: bool = Field(True, description="D1 feature adversary + its mask reweighting target features.")
    output_adversarial: bool = Field(True, description="D2 output-space adversary.")
    style_fraction: float = Field(0.4, gt=0.0, lt=1.0, description="Fraction of the run's steps spent on stage 1.")
    style_budget: Literal["extra", "shared"] = Field(
        "extra", description="extra: stage 1 runs before the segmenter's training.iterations, which it leaves "
                             "whole (the run has iterations / (1 - style_fraction) steps); shared: stage 1 takes "
                             "style_fraction of training.iterations, leaving the segmenter fewer updates than "
                             "other methods get.")
    # Stage 1 (the paper: Adam, lr 2e-4, weight decay 1e-4, batch 8).
    style_lr: float = 2e-4
    style_weight_decay: float = 1e-4
    style_betas: tuple[float, float] = (0.9, 0.999)
    style_batch_size: int | None = Field(8, ge=1, description="Images per domain per stage-1 step, drawn from the "
                                                              "training tensors; None = the trainer's batch.")
    style_channels: int = Field(16, ge=2, description="Base width of the style-transfer autoencoder (paper: 64).")
    style_res_blocks: int = Field(4, ge=0)
    style_mlp_hidden: int = 256
    style_conditional_encoder: bool = Field(True, description="AdaIN domain code in the content encoder too (the "
                                                              "paper's G_E(x, d)); False = plain instance norm.")
    style_disc_channels: int = Field(16, ge=1, description="Base width of the PatchGAN (paper: 64).")
    lambda_rec_im: float = 20.0
    lambda_rec_c: float = 1.0
    lambda_cyc: float = 20.0
    lambda_adv: float = 1.0
    # Stage 2.
    lambda_d1: float = 0.01
    lambda_d2: float = 0.01
    disc_lr: float = 1e-4  # not given in the paper; the usual rate for segmentation-adaptation discriminators
    disc_betas: tuple[float, float] = (0.9, 0.99)
    d1_channels: int = Field(64, ge=1)
    d2_channels: int = Field(32, ge=1)


def _lsgan(pred: torch.Tensor, real: bool) -> torch.Tensor:
    return ((pred.float() - (1.0 if real else 0.0)) ** 2).mean()


def _bce(logits: torch.Tensor, label: int) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, float(label)))


@register
class GLUA(Method):
    name = "glua"
    summary = ("GLUA: style transfer + local alignment (comparator): AdaIN style-transfer autoencoder, then "
               "D1 feature-mask and D2 output adversaries.")
    Options = GLUAOptions
    uses_target_images = True

    # ----------------------------------------------------------------- build
    def build(self, ctx: TrainContext) -> None:
        o = self.options
        if ctx.spatial_dims != 2:
            raise ConfigError(f"method 'glua' supports 2D tasks only (preprocessing.spatial_dims=2); this task is "
                              f"{ctx.spatial_dims}D")
        size = tuple(int(s) for s in ctx.data.source_images.shape[2:])
        self.net = LocalAlignmentSegmenter(ctx.new_segmenter(), o.d1_channels).to(ctx.device)
        self.student = self.net.segmenter
        self.style_steps = 0
        if o.style_transfer:
            self.style_net = StyleTransferNet(ctx.in_channels, o.style_channels, 2, o.style_res_blocks,
                                              mlp_hidden=o.style_mlp_hidden,
                                              conditional_encoder=o.style_conditional_encoder).to(ctx.device)
            if any(s % self.style_net.size_multiple for s in size):
                raise ConfigError(f"method 'glua': image size {size} must be a multiple of "
                                  f"{self.style_net.size_multiple} for the style-transfer autoencoder")
            self.style_disc = PatchDiscriminator(ctx.in_channels, o.style_disc_channels,
                                                 fitting_downsamplings(min(size), 3)).to(ctx.device)
            self.style_opt = torch.optim.Adam(self.style_net.parameters(), lr=o.style_lr,
                                              betas=tuple(o.style_betas), weight_decay=o.style_weight_decay)
            self.style_disc_opt = torch.optim.Adam(self.style_disc.parameters(), lr=o.style_lr,
                                                   betas=tuple(o.style_betas), weight_decay=o.style_weight_decay)
            self.style_steps = (max(1, int(o.style_fraction * ctx.total_steps)) if o.style_budget == "shared"
                                else self.extra_steps(ctx.config.training.iterations))
        # The paper trains the segmenter after the style transfer with a poly schedule of its own.
        self.schedule_start_step = self.style_steps
        if o.local_alignment:
            self.d1_opt = torch.optim.Adam(self.net.d1.parameters(), lr=o.disc_lr, betas=tuple(o.disc_betas))
        if o.output_adversarial:
            self.d2 = OutputDiscriminator.for_image_size(ctx.num_classes, min(size), o.d2_channels).to(ctx.device)
            self.d2_opt = torch.optim.Adam(self.d2.parameters(), lr=o.disc_lr, betas=tuple(o.disc_betas))

    def extra_steps(self, iterations: int) -> int:
        o = self.options
        if not o.style_transfer or o.style_budget == "shared":
            return 0
        return max(1, round(o.style_fraction / (1.0 - o.style_fraction) * iterations))

    def trainable_parameters(self) -> list[nn.Parameter]:
        # D1 is in the inference network but is a discriminator: only d1_opt may move it.
        return list(self.net.segmenter.parameters())

    def in_style_stage(self, ctx: TrainContext) -> bool:
        return ctx.step < self.style_steps

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        assert batch.target_image is not None
        zero = torch.zeros((), device=batch.source_image.device)
        logged = dict.fromkeys(LOSS_KEYS, zero)
        if self.in_style_stage(ctx):
            logged.update(self._style_step(batch, ctx), stage=zero + 1)
        else:
            logged.update(self._segmentation_step(batch, ctx), stage=zero + 2)
        return logged

    def _style_batch(self, batch: Batch, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.options.style_batch_size
        assert batch.target_image is not None
        if k is None:
            return batch.source_image, batch.target_image
        data = ctx.data
        assert data.target_images is not None
        # k images per domain in all; each rank draws its share.
        i_s = ctx.local_indices(data.source_images.shape[0], k, "method.style_batch_size")
        i_t = ctx.local_indices(data.target_images.shape[0], k, "method.style_batch_size")
        return data.source_images[i_s], data.target_images[i_t]

    def _style_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """One generator and one discriminator update of the style-transfer stage (both directions at once)."""
        o = self.options
        x_s, x_t = self._style_batch(batch, ctx)
        x = torch.cat([x_s, x_t])
        dom = torch.cat([torch.full((x_s.shape[0],), SOURCE), torch.full((x_t.shape[0],), TARGET)]).to(x.device)
        other = 1 - dom
        self.style_net.train()
        self.style_disc.train()
        content = self.style_net.encode(x, dom)
        rec_im = F.l1_loss(self.style_net.decode(content, dom).float(), x.float())
        swapped = self.style_net.decode(content, other)  # x_s->t and x_t->s
        content_back = self.style_net.encode(swapped, other)
        rec_c = F.l1_loss(content_back.float(), content.float())
        cyc = F.l1_loss(self.style_net.decode(content_back, dom).float(), x.float())
        adv = _lsgan(self.style_disc(swapped, other), real=True)
        gen = o.lambda_rec_im * rec_im + o.lambda_rec_c * rec_c + o.lambda_cyc * cyc + o.lambda_adv * adv
        self.style_opt.zero_grad(set_to_none=True)
        gen.backward()
        ctx.all_reduce_gradients(self.style_net.parameters())
        self.style_opt.step()
        # The generator's backward also left gradients in the discriminator: cleared before its own step.
        self.style_disc_opt.zero_grad(set_to_none=True)
        disc = 0.5 * (_lsgan(self.style_disc(x, dom), real=True)
                      + _lsgan(self.style_disc(swapped.detach(), other), real=False))
        disc.backward()
        ctx.all_reduce_gradients(self.style_disc.parameters())
        self.style_disc_opt.step()
        return {"loss": gen.detach(), "style_rec_im": rec_im.detach(), "style_rec_c": rec_c.detach(),
                "style_cyc": cyc.detach(), "style_adv": adv.detach(), "style_disc": disc.detach()}

    def _set_disc_lr(self, ctx: TrainContext) -> None:
        """Poly decay over stage 2 (the trainer's schedule settings), for the discriminators' own optimizers."""
        lr = scheduled_lr(self.options.disc_lr, ctx.step, ctx.config.training, self.schedule_start_step,
                          ctx.total_steps)
        for opt in (getattr(self, "d1_opt", None), getattr(self, "d2_opt", None)):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr

    @torch.no_grad()
    def translate_to_target(self, x_s: torch.Tensor) -> torch.Tensor:
        """x_s->t with the frozen autoencoder (identity when stage 1 is switched off)."""
        if not self.options.style_transfer:
            return x_s
        self.style_net.eval()
        return self.style_net.translate(x_s, SOURCE, TARGET).to(x_s.dtype)

    def _segmentation_step(self, batch: Batch, ctx: TrainContext) -> dict[str, torch.Tensor]:
        o = self.options
        assert batch.target_image is not None
        self._set_disc_lr(ctx)
        x_st = self.translate_to_target(batch.source_image)
        n = x_st.shape[0]
        features, skips = self.net.encode(torch.cat([x_st, batch.target_image]))  # one pass for both domains
        f_s, f_t = features[:n], features[n:]
        out: dict[str, torch.Tensor] = {}
        if o.local_alignment:
            # D1 first (on detached features), so the graph below only sees its updated weights.
            self.d1_opt.zero_grad(set_to_none=True)
            disc_d1 = 0.5 * (_bce(self.net.d1(f_s.detach()), SOURCE) + _bce(self.net.d1(f_t.detach()), TARGET))
            disc_d1.backward()
            ctx.all_reduce_gradients(self.net.d1.parameters())
            self.d1_opt.step()
            d1_t = self.net.d1(f_t)
            f_t = self.net.reweight(f_t, d1_t)
            out["disc_d1"] = disc_d1.detach()
        logits = self.net.decode(torch.cat([f_s, f_t]), skips)
        seg = dice_ce_loss(logits[:n], batch.source_label)
        loss = seg
        if o.local_alignment:
            adv_d1 = _bce(d1_t, SOURCE)  # fool D1: target features should look like (translated) source ones
            loss = loss + o.lambda_d1 * adv_d1
            out["adv_d1"] = adv_d1.detach()
        if o.output_adversarial:
            probs = logits.float().softmax(1)
            self.d2_opt.zero_grad(set_to_none=True)
            disc_d2 = 0.5 * (_bce(self.d2(probs[:n].detach()), SOURCE) + _bce(self.d2(probs[n:].detach()), TARGET))
            disc_d2.backward()
            ctx.all_reduce_gradients(self.d2.parameters())
            self.d2_opt.step()
            adv_d2 = _bce(self.d2(probs[n:]), SOURCE)
            loss = loss + o.lambda_d2 * adv_d2
            out.update(disc_d2=disc_d2.detach(), adv_d2=adv_d2.detach())
        out.update(loss=loss, seg=seg.detach())
        return out

    def after_optimizer_step(self, ctx: TrainContext) -> None:
        # The segmenter's backward left gradients in D1/D2; drop them (their own steps zero them anyway).
        for net in (self.net.d1, getattr(self, "d2", None)):
            if net is not None:
                for p in net.parameters():
                    p.grad = None

    # ----------------------------------------------------------------- inference / bundle
    def inference_network(self) -> nn.Module:
        """The segmenter with D1's target-feature reweighting (plain SegResNet when local alignment is off)."""
        return self.net if self.options.local_alignment else self.net.segmenter

    def bundle_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """Tell :func:`segmenter_from_spec` to rebuild the reweighting wrapper around the SegResNet."""
        if not self.options.local_alignment:
            return spec
        return {**spec, "architecture": "glua", "glua": {"d1_channels": self.options.d1_channels}}

    # ----------------------------------------------------------------- state
    def _stateful(self) -> dict[str, Any]:
        items: dict[str, Any] = {"network": self.net}
        for name in ("style_net", "style_disc", "style_opt", "style_disc_opt", "d1_opt", "d2", "d2_opt"):
            if hasattr(self, name):
                items[name] = getattr(self, name)
        return items

    def state_dict(self) -> dict[str, Any]:
        return {name: obj.state_dict() for name, obj in self._stateful().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, obj in self._stateful().items():
            obj.load_state_dict(state[name])

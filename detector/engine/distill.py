"""Distillation from a non-spiking teacher (YOLOv8 trained by ``tools/train_baseline.py``).

The teacher's detect head has the spiking head's layout: the same strides (8/16/32), the same
anchor grid for a given input size, ``reg_max`` DFL bins per box side and one logit per class. Each
anchor of the student is therefore supervised by the same anchor of the teacher:

* classes: the Bernoulli KL divergence ``KL(sigmoid(t / tau) || sigmoid(s / tau))`` per anchor and
  class, summed and divided by the teacher's expected number of objects (the sum of its class
  probabilities, at least 1), like Ultralytics' class loss is divided by its target-score sum;
* boxes: the KL divergence between the teacher's and the student's DFL distributions
  (``softmax(. / tau)`` over the bins of each side), averaged over the four sides and weighted per
  anchor by the teacher's highest class probability, so background anchors count little.

Both are multiplied by ``tau^2`` (gradient scale independent of the temperature) and by their weights.
Both are zero exactly when the student's head outputs equal the teacher's, and positive otherwise.

Optionally (``feat_weight`` > 0) the neck outputs are distilled too: at each level (stride 8, 16, 32) the
student's firing-rate map (its spikes averaged over T, ``(B, C_s, h, w)``) goes through a small adapter
(a 1x1 conv to the teacher's width, trained with the student and discarded after training) and is pulled
towards the teacher's neck output, standardised per channel over the batch (so levels and channels of
different scales weigh alike): the mean squared error, averaged over the levels.

The teacher is frozen and in eval mode; it runs under ``torch.no_grad`` on the student's batch. Its
file is a baseline checkpoint: plain tensors plus an allow-listed architecture name
(``detector.weights.load_ann_checkpoint``), read with ``weights_only=True``: loading it never runs
pickled code or a model YAML of the file's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..infer.options import opt



def load_teacher(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """A baseline checkpoint (``tools/train_baseline.py``: plain tensors, allow-listed architecture) as a
    frozen teacher in eval mode, EMA weights. One-line errors name the file and the field."""
    from ..weights import build_ann, load_ann_checkpoint

    model = build_ann(load_ann_checkpoint(path), use_ema=True, source=path).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def head_outputs(model: nn.Module, img: torch.Tensor) -> dict[str, torch.Tensor]:
    """The raw per-anchor head outputs ``boxes`` (B, 4*reg_max, A) and ``scores`` (B, nc, A) of a
    Ultralytics-style detector in eval mode (the second element of its (decoded, raw) output)."""
    out = model(img)
    raw = out[1] if isinstance(out, (tuple, list)) else out
    if isinstance(raw, dict) and "one2many" in raw:
        raw = raw["one2many"]
    if not isinstance(raw, dict) or "boxes" not in raw or "scores" not in raw:
        raise ValueError("teacher does not return Ultralytics detect-head outputs (boxes, scores)")
    return raw


def distill_losses(s_scores: torch.Tensor, s_boxes: torch.Tensor, t_scores: torch.Tensor, t_boxes: torch.Tensor,
                   reg_max: int, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(class KD, box KD) for head outputs ``scores`` (B, nc, A) and ``boxes`` (B, 4*reg_max, A) of
    student ``s_`` and teacher ``t_``; see the module docstring. Scalars, >= 0."""
    if s_scores.shape != t_scores.shape or s_boxes.shape != t_boxes.shape:
        raise ValueError(f"student and teacher heads differ: scores {tuple(s_scores.shape)} vs {tuple(t_scores.shape)}, "
                         f"boxes {tuple(s_boxes.shape)} vs {tuple(t_boxes.shape)} (same strides, classes and input size "
                         "are needed)")
    tau = float(temperature)
    s, t = s_scores.float() / tau, t_scores.float() / tau
    p_t = t.sigmoid()
    # KL(Bernoulli(p_t) || Bernoulli(p_s)) = BCE(s; p_t) - BCE(t; p_t), stable in logits
    kl = F.binary_cross_entropy_with_logits(s, p_t, reduction="none") - F.binary_cross_entropy_with_logits(
        t, p_t, reduction="none")
    cls = kl.clamp_min(0).sum() / p_t.sum().clamp_min(1.0)
    B, _, A = s_boxes.shape
    ls = (s_boxes.float() / tau).view(B, 4, reg_max, A).log_softmax(2)  # (B, 4 sides, bins, A)
    lt = (t_boxes.float() / tau).view(B, 4, reg_max, A).log_softmax(2)
    box_kl = (lt.exp() * (lt - ls)).sum(2).mean(1)  # (B, A): KL per side, averaged over the sides
    w = p_t.amax(1)  # (B, A) teacher's confidence that the anchor holds an object
    box = (box_kl * w).sum() / w.sum().clamp_min(1e-6)
    return cls * tau * tau, box * tau * tau


def feature_loss(s_feats: list[torch.Tensor], t_feats: list[torch.Tensor], adapters: nn.ModuleList) -> torch.Tensor:
    """Neck distillation (module docstring): student maps ``(B, C_s, h, w)`` through ``adapters`` against the
    teacher's ``(B, C_t, h, w)`` standardised per channel; MSE averaged over the levels. A scalar >= 0."""
    if len(s_feats) != len(t_feats) or len(adapters) != len(s_feats):
        raise ValueError(f"feature distillation needs as many levels in student ({len(s_feats)}), teacher "
                         f"({len(t_feats)}) and adapters ({len(adapters)})")
    total = s_feats[0].new_zeros(())
    for s, t, a in zip(s_feats, t_feats, adapters):
        t = t.float()
        if s.shape[-2:] != t.shape[-2:]:
            raise ValueError(f"student and teacher feature maps differ in size: {tuple(s.shape)} vs {tuple(t.shape)}")
        mu, sd = t.mean((0, 2, 3), keepdim=True), t.std((0, 2, 3), keepdim=True)
        total = total + F.mse_loss(a(s.float()), (t - mu) / (sd + 1e-6))
    return total / len(s_feats)


def make_adapters(student_widths: list[int], teacher_widths: list[int]) -> nn.ModuleList:
    """One 1x1 conv per level from the student's neck width to the teacher's."""
    return nn.ModuleList(nn.Conv2d(int(c_s), int(c_t), 1) for c_s, c_t in zip(student_widths, teacher_widths))


def teacher_widths(teacher: nn.Module) -> list[int]:
    """The channels of the feature maps a Ultralytics detect head reads (its box branches' first conv)."""
    head = teacher.model[-1]
    return [int(b[0].conv.in_channels) for b in head.cv2]


@dataclass(frozen=True)
class DistillWeights:
    """The distillation loss weights and temperature: their defaults (written here only; ``tools/train.py``
    makes its ``--kd-*`` flags from these fields) and their check, at construction: weights finite and
    >= 0, the temperature in (0, 100)."""

    cls_weight: float = opt(1.0, "weight of the class distillation loss", flag="--kd-cls", type=float, metavar="W")
    box_weight: float = opt(1.0, "weight of the box (DFL) distillation loss", flag="--kd-box", type=float,
                            metavar="W")
    temperature: float = opt(1.0, "distillation temperature", flag="--kd-temperature", type=float, metavar="T")
    feat_weight: float = opt(0.0, "weight of the neck-feature distillation (P3-P5 through 1x1 adapters; 0: off)",
                             flag="--kd-feat", type=float, metavar="W")

    def __post_init__(self) -> None:
        for name in ("cls_weight", "box_weight", "feat_weight"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float("inf")):
                raise ValueError(f"distillation {name} must be a finite number >= 0, got {v!r}")
        t = self.temperature
        if isinstance(t, bool) or not (isinstance(t, (int, float)) and 0 < t < 100):
            raise ValueError(f"distillation temperature must be in (0, 100), got {t!r}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, settings: Mapping[str, Any] | None) -> "DistillWeights":
        """The weights a run's distillation settings (``TrainOptions.distill``) name; the defaults for those
        they leave out or give as None."""
        s = settings or {}
        return cls(**{k: s[k] for k in cls.names() if s.get(k) is not None})


KD = DistillWeights()  # the defaults


@dataclass
class Distiller:
    """A frozen teacher and the loss weights; shared, never copied (the EMA copy of the student points
    to the same teacher) and never saved inside a checkpoint."""

    teacher: nn.Module
    cls_weight: float = KD.cls_weight
    box_weight: float = KD.box_weight
    temperature: float = KD.temperature
    source: str = ""
    sha256: str = ""
    feat_weight: float = KD.feat_weight
    adapters: nn.ModuleList | None = None  # feature distillation (feat_weight > 0): trained, never saved in weights

    def __post_init__(self):
        DistillWeights(self.cls_weight, self.box_weight, self.temperature, self.feat_weight)  # the check

    def __deepcopy__(self, memo):
        return self

    @property
    def terms(self) -> tuple[str, ...]:
        """The loss items this distiller adds, in order."""
        return ("kd_cls", "kd_box") + (("kd_feat",) if self.feat_weight > 0 else ())

    def losses(self, student: dict[str, torch.Tensor], img: torch.Tensor, reg_max: int) -> torch.Tensor:
        """Weighted (class KD, box KD[, feature KD]) as a vector for the student's raw head outputs on ``img``."""
        dev = img.device
        if next(self.teacher.parameters()).device != dev:
            self.teacher.to(dev)
        self.teacher.eval()
        with torch.no_grad():
            t = head_outputs(self.teacher, img)
        cls, box = distill_losses(student["scores"], student["boxes"], t["scores"], t["boxes"], reg_max,
                                  self.temperature)
        out = [cls * self.cls_weight, box * self.box_weight]
        if self.feat_weight > 0:
            if self.adapters is None or "feats" not in student or "feats" not in t:
                raise ValueError("feature distillation needs adapters and the neck outputs of student and teacher")
            self.adapters.to(dev)
            out.append(feature_loss(list(student["feats"]), list(t["feats"]), self.adapters) * self.feat_weight)
        return torch.stack(out)

    def describe(self) -> dict[str, Any]:
        return {"teacher": self.source, "teacher_sha256": self.sha256, "cls_weight": float(self.cls_weight),
                "box_weight": float(self.box_weight), "temperature": float(self.temperature),
                "feat_weight": float(self.feat_weight)}


def make_distiller(teacher: str | Path, weights: DistillWeights = KD, device: str | torch.device = "cpu",
                   student_widths: list[int] | None = None) -> Distiller:
    """A ``Distiller`` for ``teacher``; with ``weights.feat_weight`` > 0, adapters from ``student_widths`` (the
    student's neck widths at strides 8, 16, 32) to the teacher's."""
    from ..weights import sha256

    model = load_teacher(teacher, device)
    w = weights
    adapters = None
    if w.feat_weight > 0:
        if not student_widths:
            raise ValueError("feature distillation needs the student's neck widths")
        adapters = make_adapters(student_widths, teacher_widths(model)).to(device)
    return Distiller(model, float(w.cls_weight), float(w.box_weight), float(w.temperature), str(teacher),
                     sha256(teacher), float(w.feat_weight), adapters)


class DistillDetectionLoss:
    """Ultralytics' detection loss plus the distillation terms, as extra loss items ``kd_cls``, ``kd_box``
    (and ``kd_feat``) (zero in validation, where the model returns decoded predictions)."""

    def __init__(self, base, distiller: Distiller, reg_max: int):
        self.base, self.distiller, self.reg_max = base, distiller, reg_max

    def __call__(self, preds, batch):
        raw = self.base.parse_output(preds)
        loss, items = self.base.loss(raw, batch)  # (box, cls, dfl) * batch size
        bs = raw["boxes"].shape[0]
        if isinstance(preds, dict):  # training: raw outputs; distil on the same images
            kd = self.distiller.losses(raw, batch["img"], self.reg_max)
        else:
            kd = torch.zeros(len(self.distiller.terms), device=loss.device)
        items = {**items, **{k: v.detach() for k, v in zip(self.distiller.terms, kd)}}
        return torch.cat((loss, kd * bs)), items

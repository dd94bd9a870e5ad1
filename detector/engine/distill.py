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

The teacher is frozen and in eval mode; it runs under ``torch.no_grad`` on the student's batch. Its
file is a baseline checkpoint: plain tensors plus an allow-listed architecture name
(``detector.weights.load_ann_checkpoint``), read with ``weights_only=True``: loading it never runs
pickled code or a model YAML of the file's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn



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


def check_options(cls_weight: float, box_weight: float, temperature: float) -> None:
    """The distillation weights (finite, >= 0) and temperature (in (0, 100)), or a one-line ValueError."""
    for name, v in (("cls_weight", cls_weight), ("box_weight", box_weight)):
        if not (isinstance(v, (int, float)) and v >= 0 and v == v and v != float("inf")):
            raise ValueError(f"distillation {name} must be a finite number >= 0, got {v!r}")
    if not (isinstance(temperature, (int, float)) and 0 < temperature < 100):
        raise ValueError(f"distillation temperature must be in (0, 100), got {temperature!r}")


@dataclass
class Distiller:
    """A frozen teacher and the loss weights; shared, never copied (the EMA copy of the student points
    to the same teacher) and never saved inside a checkpoint."""

    teacher: nn.Module
    cls_weight: float = 1.0
    box_weight: float = 1.0
    temperature: float = 1.0
    source: str = ""
    sha256: str = ""

    def __post_init__(self):
        check_options(self.cls_weight, self.box_weight, self.temperature)

    def __deepcopy__(self, memo):
        return self

    def losses(self, student: dict[str, torch.Tensor], img: torch.Tensor, reg_max: int) -> torch.Tensor:
        """Weighted (class KD, box KD) as a 2-vector for the student's raw head outputs on ``img``."""
        dev = img.device
        if next(self.teacher.parameters()).device != dev:
            self.teacher.to(dev)
        self.teacher.eval()
        with torch.no_grad():
            t = head_outputs(self.teacher, img)
        cls, box = distill_losses(student["scores"], student["boxes"], t["scores"], t["boxes"], reg_max,
                                  self.temperature)
        return torch.stack((cls * self.cls_weight, box * self.box_weight))

    def describe(self) -> dict[str, Any]:
        return {"teacher": self.source, "teacher_sha256": self.sha256, "cls_weight": float(self.cls_weight),
                "box_weight": float(self.box_weight), "temperature": float(self.temperature)}


def make_distiller(teacher: str | Path, cls_weight: float = 1.0, box_weight: float = 1.0, temperature: float = 1.0,
                   device: str | torch.device = "cpu") -> Distiller:
    from ..weights import sha256

    return Distiller(load_teacher(teacher, device), cls_weight, box_weight, temperature, str(teacher), sha256(teacher))


class DistillDetectionLoss:
    """Ultralytics' detection loss plus the distillation terms, as extra loss items ``kd_cls`` and
    ``kd_box`` (zero in validation, where the model returns decoded predictions)."""

    def __init__(self, base, distiller: Distiller, reg_max: int):
        self.base, self.distiller, self.reg_max = base, distiller, reg_max

    def __call__(self, preds, batch):
        raw = self.base.parse_output(preds)
        loss, items = self.base.loss(raw, batch)  # (box, cls, dfl) * batch size
        bs = raw["boxes"].shape[0]
        if isinstance(preds, dict):  # training: raw outputs; distil on the same images
            kd = self.distiller.losses(raw, batch["img"], self.reg_max)
        else:
            kd = torch.zeros(2, device=loss.device)
        items = {**items, "kd_cls": kd[0].detach(), "kd_box": kd[1].detach()}
        return torch.cat((loss, kd * bs)), items

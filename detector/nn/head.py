"""Spiking detect head: spiking conv branches whose last (1x1) layer output is averaged over T,
then decoded by Ultralytics' anchor-free DFL ``Detect`` head (same readout as SpikeYOLO).

``SpikingDetect`` subclasses Ultralytics' ``Detect`` and replaces only its box/class branches, so the
decoding, loss (``v8DetectionLoss``), NMS and metrics are Ultralytics' own.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ultralytics.nn.modules.head import Detect

from .blocks import SpikeConv
from .synapse import SynapticConv2d


class TemporalMeanConv(nn.Module):
    """1x1 conv applied to the spikes of every timestep, then averaged over T:
    (T, B, C, H, W) spikes -> (B, C_out, H, W) real. Averaging after the conv keeps the conv's input
    spikes (accumulate-only); by linearity it equals the conv of the firing-rate map. The conv's bias
    is added once per timestep, also in the spike-driven form (``detector.nn.synapse``)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = SynapticConv2d(c_in, c_out, 1)

    @property
    def bias(self) -> torch.Tensor:  # Ultralytics' Detect.bias_init sets branch[-1].bias
        return self.conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = self.conv(x.flatten(0, 1))  # (T*B, C_out, H, W)
        return y.reshape(T, B, *y.shape[1:]).mean(0)  # (B, C_out, H, W)


class SpikingDetect(Detect):
    """Anchor-free DFL detect head on spike maps ``(T, B, C, H, W)``."""

    def __init__(self, nc: int, ch: tuple[int, ...], neuron: dict, reg_max: int = 16):
        super().__init__(nc=nc, reg_max=reg_max, end2end=False, ch=ch)
        c2 = max(16, ch[0] // 4, self.reg_max * 4)  # box branch width (Ultralytics' rule)
        c3 = max(ch[0], min(self.nc, 100))  # class branch width
        self.cv2 = nn.ModuleList(
            nn.Sequential(SpikeConv(c, c2, neuron), SpikeConv(c2, c2, neuron), TemporalMeanConv(c2, 4 * self.reg_max))
            for c in ch
        )
        self.cv3 = nn.ModuleList(
            nn.Sequential(SpikeConv(c, c3, neuron), SpikeConv(c3, c3, neuron), TemporalMeanConv(c3, self.nc))
            for c in ch
        )

    def bias_init(self, cls_prior: float | None = None) -> None:
        """Ultralytics' initial biases (box 2.0; class logit = log(5 / nc / (640 / stride)^2), a prior of
        about 5 objects per 640 px image), or, with ``cls_prior`` p, the class logit log(p / (1 - p)) at
        every stride (RetinaNet's prior).

        Why the option: this head's last conv sees spike counts bounded by D, so its logit can only
        exceed the bias by (sum of positive weights) x D, and an Adam-family optimiser moves the bias by
        about one learning rate per step. From Ultralytics' -7.2 (stride 8) to -4.4 (stride 32), a
        short run left the class logits capped below 0.3 (confidences below 0.57), the stride-16 and -32
        branches below zero. A prior of 0.01 (logit -4.6) starts every stride within reach."""
        super().bias_init()
        if cls_prior is not None:
            for b in self.cv3:
                b[-1].bias.data[: self.nc] = math.log(cls_prior / (1 - cls_prior))

    def forward_head(self, x, box_head=None, cls_head=None) -> dict[str, torch.Tensor]:
        if box_head is None or cls_head is None:
            return {}
        bs = x[0].shape[1]  # x[i]: (T, B, C, H, W)
        boxes = torch.cat([box_head[i](x[i]).view(bs, 4 * self.reg_max, -1) for i in range(self.nl)], dim=-1)
        scores = torch.cat([cls_head[i](x[i]).view(bs, self.nc, -1) for i in range(self.nl)], dim=-1)
        # Ultralytics builds anchors from 4-D (B, C, H, W) maps: hand it the firing-rate maps.
        feats = [xi.mean(0) for xi in x]
        return {"boxes": boxes, "scores": scores, "feats": feats}

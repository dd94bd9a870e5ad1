"""Spiking PAN/FPN neck on time-first spike maps ``(T, B, C, H, W)``.

Top-down (FPN) then bottom-up (PAN) paths, as in YOLOv8, built from spike-to-spike blocks:
upsampling and concatenation of spikes stay binary, and every conv sees spikes.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .blocks import SpikeConv, SpikeCSP
from .time import check_seq, fold_time, unfold_time


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling of (T, B, C, H, W) spikes (stays binary)."""
    T = x.shape[0]
    return unfold_time(F.interpolate(fold_time(x), scale_factor=2.0, mode="nearest"), T)  # (T, B, C, 2H, 2W)


class SpikingPAN(nn.Module):
    """Inputs ``[P3, P4, P5]`` spikes with ``in_channels``; outputs spikes with ``out_channels``."""

    def __init__(self, in_channels: Sequence[int], out_channels: Sequence[int], depth: int, neuron: dict):
        super().__init__()
        c3, c4, c5 = in_channels
        o3, o4, o5 = out_channels
        self.top4 = SpikeCSP(c5 + c4, o4, depth, neuron)  # P5 up + P4
        self.top3 = SpikeCSP(o4 + c3, o3, depth, neuron)  # N4 up + P3 -> out P3
        self.down3 = SpikeConv(o3, o3, neuron, k=3, s=2)
        self.bot4 = SpikeCSP(o3 + o4, o4, depth, neuron)  # out P3 down + N4 -> out P4
        self.down4 = SpikeConv(o4, o4, neuron, k=3, s=2)
        self.bot5 = SpikeCSP(o4 + c5, o5, depth, neuron)  # out P4 down + P5 -> out P5
        self.out_channels = (o3, o4, o5)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        p3, p4, p5 = feats
        for name, f in zip(("P3", "P4", "P5"), feats):
            check_seq(f, 5, name)
        n4 = self.top4(torch.cat((upsample2x(p5), p4), dim=2))  # (T, B, o4, H/16, W/16)
        o3 = self.top3(torch.cat((upsample2x(n4), p3), dim=2))  # (T, B, o3, H/8, W/8)
        o4 = self.bot4(torch.cat((self.down3(o3), n4), dim=2))  # (T, B, o4, H/16, W/16)
        o5 = self.bot5(torch.cat((self.down4(o4), p5), dim=2))  # (T, B, o5, H/32, W/32)
        return [o3, o4, o5]

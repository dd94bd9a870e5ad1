"""Counting rules (pure functions): what a synaptic layer's input is, how many timesteps a call
covers, and the exact synaptic operations of a convolution fed by spikes."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def is_spike_map(x: torch.Tensor, levels: int = 1) -> bool:
    """True when every value of ``x`` is an integer in ``[0, levels]``: binary spikes (levels 1) or the
    counts of an integer-spike neuron. An all-zero map counts as spikes."""
    if x.dtype == torch.bool:
        return True
    if levels == 1:
        return bool(((x == 0) | (x == 1)).all())
    return bool(((x >= 0) & (x <= levels) & (x == torch.round(x))).all())


def time_passes(shape: Sequence[int], T: int, B: int) -> int:
    """How many timesteps one call of a layer covers, from the leading dims of its input.

    ``(T*B, ...)`` time-folded -> T; ``(T, B, ...)`` time-first -> T; ``(B, ...)`` -> 1 (run once per
    image, like the encoding conv). Checked in that order, so T = 1 is unambiguous."""
    if shape[0] == T * B:
        return T
    if len(shape) >= 2 and shape[0] == T and shape[1] == B:
        return T
    if shape[0] == B:
        return 1
    raise ValueError(
        f"cannot tell the time layout of a layer input of shape {tuple(shape)} for T={T}, B={B} images; "
        "expected (T*B, ...), (T, B, ...) or (B, ...)"
    )


def per_sample_view(x: torch.Tensor, passes: int, B: int) -> torch.Tensor:
    """View ``x`` as (passes, B, ...) so per-image sums are possible (time-major fold: index t*B + b)."""
    if x.shape[0] == passes * B:
        return x.reshape(passes, B, *x.shape[1:])
    return x[:passes, :B]  # (T, B, ...) already time-first


def conv_fanout(conv: nn.Conv2d, spikes: torch.Tensor) -> torch.Tensor:
    """Exact synaptic operations per sample of a conv fed by a spike map ``spikes`` (N, C, H, W).

    Each spike event at (c, y, x) triggers one addition per output position its kernel reaches and per
    output channel of its group; an integer count c is c events (its binary expansion). Summing that
    over events equals the conv of the count map with an all-ones kernel (no bias). By linearity the
    channels of one group can be summed first, so the check conv has one input channel per group:
    cheap, and exact in float64. Returns (N,) float64.
    """
    N, C, H, W = spikes.shape
    g = conv.groups
    xs = spikes.to(torch.float64).reshape(N, g, C // g, H, W).sum(2)  # (N, g, H, W) events per group
    padding = conv.padding
    if conv.padding_mode != "zeros":  # reflect/replicate/circular padding repeats border spikes
        xs = F.pad(xs, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    ones = torch.ones(g, 1, *conv.kernel_size, dtype=torch.float64, device=xs.device)
    reach = F.conv2d(xs, ones, None, conv.stride, padding, conv.dilation, g)  # (N, g, Ho, Wo)
    return reach.sum(dim=(1, 2, 3)) * (conv.out_channels // g)

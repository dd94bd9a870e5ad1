"""Synaptic convolutions: the layers fed by spikes, and the spike-driven (binary) inference form.

Every convolution after the real-valued encoding conv receives spikes. With binary neurons those are
0/1; with the integer-spike I-LIF they are counts ``c in {0..D}``. ``SynapticConv2d`` is an
``nn.Conv2d`` (same parameters and state-dict keys) that runs in one of two forms:

* integer form (default, training and fast CPU inference): ``W c`` on the count map directly;
* spike-driven form (``spike_driven(model)``): each count is expanded into D binary planes
  ``s_1..s_D`` with ``s_d = [c >= d]`` (so ``sum_d s_d = c``), the convolution runs on each binary plane
  WITHOUT bias, the D results are summed and the bias is added once. By linearity
  ``sum_d W s_d + b = W c + b``: the same output (up to floating-point summation order), while every
  convolution the hardware performs sees only 0/1 inputs, i.e. accumulate-only synaptic operations.
  Batch norm and the next neuron run once, after the sum, as in the integer form.

SpikingJelly's ``SpikeCountToBinary`` / ``TemporalBinSum`` expand along the time axis of a whole
network; here the expansion is local to each synapse, so neurons, residual sums and attention keep
their logical timesteps and the two forms share every other line of code.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn


def counts_to_binary(x: torch.Tensor, levels: int) -> torch.Tensor:
    """(N, ...) counts in {0..levels} -> (levels, N, ...) binary planes, plane d-1 = [x >= d].
    Thermometer code: the planes sum back to ``x`` exactly."""
    d = torch.arange(1, levels + 1, dtype=x.dtype, device=x.device).view(levels, *([1] * x.ndim))
    return (x.unsqueeze(0) >= d).to(x.dtype)  # (levels, N, ...)


class SynapticConv2d(nn.Conv2d):
    """A convolution fed by spikes (see the module docstring). ``expand`` is 0 in the integer form and
    D in the spike-driven form; it is a runtime switch, not part of the state dict."""

    expand: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        D = self.expand
        if not D:
            return super().forward(x)
        N = x.shape[0]
        planes = counts_to_binary(x, D).flatten(0, 1)  # (D*N, C, H, W) binary
        y = self._conv_forward(planes, self.weight, None)  # no bias per plane
        y = y.unflatten(0, (D, N)).sum(0)  # (N, C_out, H', W'): the D planes accumulated
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)  # the bias once, after the accumulation
        return y


def conv_bn(c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None, d: int = 1, g: int = 1) -> nn.Module:
    """Time-distributed synaptic conv (no bias) + BN on (T, B, C, H, W) spikes."""
    from .time import SeqModule

    p = d * (k - 1) // 2 if p is None else p
    return SeqModule(SynapticConv2d(c_in, c_out, k, s, p, dilation=d, groups=g, bias=False), nn.BatchNorm2d(c_out))


def synaptic_convs(model: nn.Module) -> list[SynapticConv2d]:
    return [m for m in model.modules() if isinstance(m, SynapticConv2d)]


def model_levels(model: nn.Module) -> int:
    """D of a model: the largest count any of its neurons emits per timestep (1 = binary)."""
    from .neurons import SpikingNeuron

    levels = [int(m.levels) for m in model.modules() if isinstance(m, SpikingNeuron)]
    return max(levels, default=1)


@contextmanager
def spike_driven(model: nn.Module, levels: int | None = None) -> Iterator[nn.Module]:
    """Run ``model`` in its spike-driven form inside the block: every synaptic convolution expands its
    input counts into ``levels`` binary planes (default: the model's D). Restores the integer form on
    exit. For a binary model (D = 1) the two forms are the same computation."""
    D = model_levels(model) if levels is None else int(levels)
    if D < 1:
        raise ValueError(f"levels must be >= 1, got {D}")
    convs = synaptic_convs(model)
    saved = [c.expand for c in convs]
    for c in convs:
        c.expand = D
    try:
        yield model
    finally:
        for c, e in zip(convs, saved):
            c.expand = e

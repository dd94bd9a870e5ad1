"""Spike-driven building blocks on time-first maps ``(T, B, C, H, W)``.

Convention (project choice, Spike-Driven Transformer practice): a block's residual stream is the
real-valued membrane map; each branch starts with a spiking neuron, so every conv input after the
encoding convolution is spikes (binary, or integer counts that the spike-driven form expands into
binary events: accumulate-only synaptic operations), and the residual sum happens on the real-valued
path ("membrane shortcut").
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .attention import make_attention
from .synapse import conv_bn
from .neurons import make_neuron
from .synapse import SynapticConv2d


class GLSPS(nn.Module):
    """Global-Local Spiking Patch Splitting stage.

    A local branch (plain 3x3 conv) and global branches (dilated 3x3 convs, larger receptive field)
    see the same spikes; their outputs are summed and batch-normalised. The stage is strided (not
    conv-then-maxpool) so the expensive timesteps run at the reduced resolution.
    """

    def __init__(self, c_in: int, c_out: int, neuron: dict, stride: int = 2, dilations: Sequence[int] = (1, 2)):
        super().__init__()
        if not dilations:
            raise ValueError("GL-SPS needs at least one branch (dilations)")
        self.lif = make_neuron(**neuron)
        self.branches = nn.ModuleList(
            SynapticConv2d(c_in, c_out, 3, stride, padding=d, dilation=d, bias=False) for d in dilations
        )
        self.bn = nn.BatchNorm2d(c_out)
        self.dilations = tuple(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        s = self.lif(x).flatten(0, 1)  # (T*B, C, H, W) spikes
        y = self.branches[0](s)
        for conv in self.branches[1:]:
            y = y + conv(s)  # multi-scale sum
        y = self.bn(y)
        return y.reshape(T, B, *y.shape[1:])  # (T, B, C_out, H/s, W/s)


class ConvRPE(nn.Module):
    """Relative position embedding by a spiking 3x3 conv; works at any token-grid size."""

    def __init__(self, dim: int, neuron: dict):
        super().__init__()
        self.lif = make_neuron(**neuron)
        self.conv = conv_bn(dim, dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.lif(x))


class SpikingMLP(nn.Module):
    """LIF -> 1x1 conv -> BN -> LIF -> 1x1 conv -> BN (token-wise linear layers on maps)."""

    def __init__(self, dim: int, ratio: float, neuron: dict):
        super().__init__()
        hidden = int(round(dim * ratio))
        self.lif1 = make_neuron(**neuron)
        self.fc1 = conv_bn(dim, hidden)
        self.lif2 = make_neuron(**neuron)
        self.fc2 = conv_bn(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.lif2(self.fc1(self.lif1(x))))


class SSSABlock(nn.Module):
    """x + Attention(x), then x + MLP(x), on the real-valued membrane stream."""

    def __init__(self, dim: int, heads: int, timesteps: int, neuron: dict, attn: str = "sssa_v2",
                 mlp_ratio: float = 4.0, saccade: dict | None = None):
        super().__init__()
        self.attn = make_attention(attn, dim, heads, timesteps, neuron, saccade)
        self.mlp = SpikingMLP(dim, mlp_ratio, neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(x)


class SpikeResBlock(nn.Module):
    """Spiking residual conv block: x + BN(conv3x3(LIF(BN(conv3x3(LIF(x))))))."""

    def __init__(self, dim: int, neuron: dict, expand: float = 1.0):
        super().__init__()
        hidden = int(round(dim * expand))
        self.lif1 = make_neuron(**neuron)
        self.conv1 = conv_bn(dim, hidden, 3)
        self.lif2 = make_neuron(**neuron)
        self.conv2 = conv_bn(hidden, dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.lif2(self.conv1(self.lif1(x))))


class SpikeCSP(nn.Module):
    """Neck block from spikes to spikes: 1x1 conv + BN into a membrane stream, ``n`` spiking
    residual blocks, then a neuron. Input and output are spikes."""

    def __init__(self, c_in: int, c_out: int, n: int, neuron: dict):
        super().__init__()
        self.reduce = conv_bn(c_in, c_out)
        self.blocks = nn.Sequential(*(SpikeResBlock(c_out, neuron) for _ in range(n)))
        self.lif = make_neuron(**neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.blocks(self.reduce(x)))


class SpikeConv(nn.Module):
    """Spikes -> conv -> BN -> LIF -> spikes (e.g. the strided downsample of the neck)."""

    def __init__(self, c_in: int, c_out: int, neuron: dict, k: int = 3, s: int = 1):
        super().__init__()
        self.conv = conv_bn(c_in, c_out, k, s)
        self.lif = make_neuron(**neuron)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lif(self.conv(x))

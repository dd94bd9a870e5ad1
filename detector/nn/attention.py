"""Spiking self-attention: Saccadic Spike Self-Attention (SSSA V1 and V2) and a Spikformer-style
baseline, chosen by name through ``make_attention``.

All three take a real-valued membrane map ``(T, B, C, H, W)`` and return a real-valued map of the
same shape (to be added to the residual stream). Every linear projection sees spikes:
LIF -> 1x1 conv -> BN -> LIF for Q, K, V; the output projection sees ``mask * V``, also spikes.
With the integer-spike neuron (D levels) the spikes are counts in {0..D} and so are Q', K' sums of
counts.

Salience (paper, Sec. "spatial relevance"): with per-token spike counts Q'[t,n] = sum_d Q[t,n,d] and
K'[t,m] = sum_d K[t,m,d], CroAtt = Q' K'^T (N x N) and Patch[t,n] = sum_m CroAtt[t,n,m].
V1 forms CroAtt; V2 uses (Q' K'^T) 1 = Q' * (K'^T 1), never forming anything N x N.
Project choice: Patch is normalised by N * (hd * D)^2, i.e. (Q firing rate of token n) x (mean K
firing rate) with rates = counts / D, a number in [0, 1], so the saccadic threshold does not depend
on N, the head width or the number of spike levels D.
"""

from __future__ import annotations

import torch
from torch import nn

from .neurons import SaccadicNeuron, make_neuron, spike_levels
from .synapse import SynapticConv2d
from .time import SeqModule, check_seq


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(T, B, C, H, W) -> (T, B, nh, N, hd) with N = H*W tokens and hd = C / nh."""
    T, B, C, H, W = x.shape
    return x.reshape(T, B, heads, C // heads, H * W).transpose(-1, -2)  # (T, B, nh, N, hd)


def merge_heads(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(T, B, nh, N, hd) -> (T, B, C, H, W)."""
    T, B, nh, N, hd = x.shape
    return x.transpose(-1, -2).reshape(T, B, nh * hd, H, W)


def salience_v1(q: torch.Tensor, k: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Explicit form: build the N x N relevance CroAtt = Q' K'^T and take its row sums.

    q, k: spikes (T, B, nh, N, hd) with counts up to ``levels``. Returns normalised salience
    (T, B, nh, N). O(N^2) time/memory.
    """
    N, hd = q.shape[-2], q.shape[-1]
    qc = q.sum(-1)  # (T, B, nh, N) spike counts Q'
    kc = k.sum(-1)  # (T, B, nh, N) spike counts K'
    cro = qc.unsqueeze(-1) @ kc.unsqueeze(-2)  # (T, B, nh, N, N)
    return cro.sum(-1) / (N * (hd * levels) ** 2)


def salience_v2(q: torch.Tensor, k: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Linear form: Patch = Q' * alpha with alpha = sum_m K'[m]; O(N) time and memory."""
    N, hd = q.shape[-2], q.shape[-1]
    qc = q.sum(-1)  # (T, B, nh, N)
    alpha = k.sum(dim=(-1, -2), keepdim=False).unsqueeze(-1)  # (T, B, nh, 1) = sum over tokens and width
    return qc * alpha / (N * (hd * levels) ** 2)


SALIENCE = {"sssa_v1": salience_v1, "sssa_v2": salience_v2}


def conv_bn(c_in: int, c_out: int, k: int = 1, s: int = 1, p: int | None = None, d: int = 1, g: int = 1) -> SeqModule:
    """Time-distributed conv (no bias) + BN; the conv is fed by spikes (``SynapticConv2d``)."""
    p = d * (k - 1) // 2 if p is None else p
    return SeqModule(SynapticConv2d(c_in, c_out, k, s, p, dilation=d, groups=g, bias=False), nn.BatchNorm2d(c_out))


class _QKVAttention(nn.Module):
    """Shared Q/K/V projection and output projection of the spiking attentions."""

    def __init__(self, dim: int, heads: int, neuron: dict):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads = dim, heads
        self.levels = spike_levels(neuron)  # D: counts per spike, 1 for binary neurons
        self.in_lif = make_neuron(**neuron)
        self.q = conv_bn(dim, dim)
        self.k = conv_bn(dim, dim)
        self.v = conv_bn(dim, dim)
        self.q_lif, self.k_lif, self.v_lif = (make_neuron(**neuron) for _ in range(3))
        self.proj = conv_bn(dim, dim)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        check_seq(x, 5)
        s = self.in_lif(x)  # (T, B, C, H, W) spikes
        q = split_heads(self.q_lif(self.q(s)), self.heads)  # (T, B, nh, N, hd) spikes
        k = split_heads(self.k_lif(self.k(s)), self.heads)
        v = split_heads(self.v_lif(self.v(s)), self.heads)
        return q, k, v


class SSSA(_QKVAttention):
    """Saccadic Spike Self-Attention. ``version``: ``sssa_v1`` (explicit N x N) or ``sssa_v2`` (linear).

    Forward hooks on ``self.saccade`` see the salience (input) and the spike mask (output) of every
    timestep; heatmaps use exactly that.
    """

    def __init__(self, dim: int, heads: int, timesteps: int, neuron: dict, version: str = "sssa_v2", saccade: dict | None = None):
        super().__init__(dim, heads, neuron)
        if version not in SALIENCE:
            raise ValueError(f"unknown SSSA version {version!r}; choose from {sorted(SALIENCE)}")
        self.version = version
        self.saccade = SaccadicNeuron(timesteps, heads, **(saccade or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        q, k, v = self.qkv(x)
        patch = SALIENCE[self.version](q, k, self.levels)  # (T, B, nh, N) in [0, 1]
        mask = self.saccade(patch)  # (T, B, nh, N) binary: which tokens this timestep looks at
        out = mask.unsqueeze(-1) * v  # (T, B, nh, N, hd) spikes of the tokens looked at
        return self.proj(merge_heads(out, H, W))  # (T, B, C, H, W) real


class SpikingSelfAttention(_QKVAttention):
    """Baseline spiking self-attention (Spikformer): LIF(scale * Q K^T V), O(N^2)."""

    def __init__(self, dim: int, heads: int, timesteps: int, neuron: dict, scale: float = 0.125):
        super().__init__(dim, heads, neuron)
        self.scale = scale
        # Q K^T V of spikes is a non-negative integer map; an IF-style threshold of 0.5 re-binarises it.
        self.attn_lif = make_neuron(**{**neuron, "v_threshold": 0.5})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        q, k, v = self.qkv(x)
        attn = (q @ k.transpose(-1, -2)) * self.scale  # (T, B, nh, N, N)
        out = self.attn_lif(attn @ v)  # (T, B, nh, N, hd) spikes
        return self.proj(merge_heads(out, H, W))


def make_attention(name: str, dim: int, heads: int, timesteps: int, neuron: dict, saccade: dict | None = None) -> nn.Module:
    """Attention factory: ``sssa_v1``, ``sssa_v2`` or ``ssa`` (Spikformer baseline)."""
    if name in SALIENCE:
        return SSSA(dim, heads, timesteps, neuron, version=name, saccade=saccade)
    if name == "ssa":
        return SpikingSelfAttention(dim, heads, timesteps, neuron)
    raise ValueError(f"unknown attention {name!r}; choose from {sorted([*SALIENCE, 'ssa'])}")

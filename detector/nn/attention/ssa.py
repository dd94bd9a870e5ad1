"""Spikformer-style spiking self-attention (``ssa``), the baseline SSSA is compared with:
``LIF(scale * Q K^T V)``, O(N^2) time and memory. It has no salience map (heatmaps refuse it)."""

from __future__ import annotations

import torch

from ..neurons import make_neuron
from ..opcount import AC, MAC, Op, events_per_sample, per_image
from .base import SpikingAttention, merge_heads, register, split_heads


@register("ssa")
class SpikingSelfAttention(SpikingAttention):
    """Baseline spiking self-attention (Spikformer): LIF(scale * Q K^T V)."""

    def __init__(self, dim: int, heads: int, timesteps: int, neuron: dict, name: str = "ssa",
                 saccade: dict | None = None, scale: float = 0.125):
        super().__init__(dim, heads, neuron)
        self.scale = scale
        # Q K^T V of spikes is a non-negative integer map; an IF-style threshold of 0.5 re-binarises it.
        self.attn_lif = make_neuron(**{**neuron, "v_threshold": 0.5})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        q, k, v = self.qkv(x)
        self.tap(q=q, k=k, v=v)
        qh, kh, vh = (split_heads(t, self.heads) for t in (q, k, v))
        attn = (qh @ kh.transpose(-1, -2)) * self.scale  # (T, B, nh, N, N)
        out = self.attn_lif(attn @ vh)  # (T, B, nh, N, hd) spikes
        return self.proj(merge_heads(out, H, W))

    def op_counts(self, q, k, v, **_) -> dict[str, Op]:
        return ssa_ops(q, k, v, self.heads)


def ssa_ops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> dict[str, Op]:
    """Operations of ``LIF(scale * Q K^T V)`` from Q, K, V spikes ``(T_in, B, C, H, W)``."""
    T_in, B, C, H, W = q.shape
    nh, hd, N = heads, C // heads, H * W
    steps = T_in * nh
    qs, ks = split_heads(q, nh).to(torch.float64), split_heads(k, nh).to(torch.float64)
    # Q K^T on spikes: each coincident pair of events q[n,d], k[m,d] adds 1 to score (n, m):
    # sum over d of (Q events in column d) x (K events in column d) ACs.
    pairs = (qs.sum(-2) * ks.sum(-2)).sum(dim=(0, 2, 3))  # (B,)
    return {
        "qk": Op(AC, pairs, MAC, nh * N * N * hd, "1 add per coincident (Q, K) spike pair"),
        # scores * scale: one multiplication per score, priced as a MAC.
        "scale": Op(MAC, per_image(steps * N * N, B), MAC, nh * N * N, "1 multiply per score"),
        # attn @ V with spike V: a V event at (m, d) adds column m of attn into N outputs -> N ACs.
        "attn_v": Op(AC, events_per_sample(v, 1) * N, MAC, nh * N * N * hd, "N adds per V spike"),
    }

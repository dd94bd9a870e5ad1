"""What every spiking attention shares, and the attention registry.

An attention takes a real-valued membrane map ``(T, B, C, H, W)`` and returns a real-valued map of the
same shape (added to the residual stream). ``SpikingAttention`` holds the Q / K / V projections
(LIF -> 1x1 conv -> BN -> LIF, so every projection sees spikes) and the output projection.

A variant is one file: a subclass registered with ``@register("name")`` that implements

* ``forward`` and, inside it, one call ``self.tap(...)`` with its intermediate spikes (``q``, ``k``,
  ``v`` as ``(T, B, C, H, W)``, and where it has them ``salience`` / ``mask`` as ``(T, B, nh, N)`` and
  ``t0``, the first timestep of the call). ``tap`` is an identity module: forward hooks on it are how
  heatmaps and the energy meter observe the attention without changing it;
* ``op_counts(**tapped)``: the operations it performs beyond its convolutions, for the energy meter
  (``detector.nn.opcount``). A variant that does not declare them is refused by the meter, never
  silently left out of the count.

and the variant's module is imported in ``detector/nn/attention/__init__.py``.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..neurons import make_neuron
from ..opcount import Op
from ..synapse import conv_bn
from ..time import check_seq

ATTENTIONS: dict[str, Callable[..., "SpikingAttention"]] = {}


def register(*names: str):
    """Class decorator: make an attention available under ``names`` (``backbone.attn`` in configs)."""

    def deco(cls):
        for n in names:
            if n in ATTENTIONS:
                raise ValueError(f"attention {n!r} is registered twice")
            ATTENTIONS[n] = cls
        return cls

    return deco


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(T, B, C, H, W) -> (T, B, nh, N, hd) with N = H*W tokens and hd = C / nh."""
    T, B, C, H, W = x.shape
    return x.reshape(T, B, heads, C // heads, H * W).transpose(-1, -2)  # (T, B, nh, N, hd)


def merge_heads(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(T, B, nh, N, hd) -> (T, B, C, H, W)."""
    T, B, nh, N, hd = x.shape
    return x.transpose(-1, -2).reshape(T, B, nh * hd, H, W)


class Tap(nn.Module):
    """An identity point where an attention shows its intermediate tensors to forward hooks
    (registered ``with_kwargs=True``); with no hook registered it costs one function call."""

    def forward(self, **tensors):
        return None


class SpikingAttention(nn.Module):
    """Shared Q/K/V projection and output projection of the spiking attentions (module docstring)."""

    def __init__(self, dim: int, heads: int, neuron: dict):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads = dim, heads
        self.in_lif = make_neuron(**neuron)
        self.q = conv_bn(dim, dim)
        self.k = conv_bn(dim, dim)
        self.v = conv_bn(dim, dim)
        self.q_lif, self.k_lif, self.v_lif = (make_neuron(**neuron) for _ in range(3))
        self.proj = conv_bn(dim, dim)
        self.tap = Tap()

    @property
    def levels(self) -> int:
        """D of the attention's spikes (1 for binary neurons), asked of its input neuron: all four of its
        neurons are made from one neuron config."""
        return self.in_lif.levels

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q, K, V spikes, each (T, B, C, H, W)."""
        check_seq(x, 5)
        s = self.in_lif(x)  # (T, B, C, H, W) spikes
        return self.q_lif(self.q(s)), self.k_lif(self.k(s)), self.v_lif(self.v(s))

    def op_counts(self, **tapped) -> dict[str, Op]:
        raise NotImplementedError(f"{type(self).__name__} does not declare its operation counts (op_counts)")

    @classmethod
    def declares_ops(cls) -> bool:
        return cls.op_counts is not SpikingAttention.op_counts


def make_attention(name: str, dim: int, heads: int, timesteps: int, neuron: dict, saccade: dict | None = None) -> nn.Module:
    """Attention factory by registered name (``ATTENTIONS``): ``sssa_v1``, ``sssa_v2``, ``ssa``..."""
    if name not in ATTENTIONS:
        raise ValueError(f"unknown attention {name!r}; choose from {sorted(ATTENTIONS)}")
    return ATTENTIONS[name](dim, heads, timesteps, neuron, name=name, saccade=saccade)

"""Exact causal streaming inference: one timestep (or chunk) at a time.

``M_w`` is lower-triangular and LIF neurons are causal, so output step t depends only on inputs
0..t. In streaming mode every stateful module keeps just what it needs between calls (LIF: the
membrane potential; saccadic neuron: the salience history it mixes over) and the network is called
with T=1. The results equal the parallel form exactly; tests check it bit for bit.

This is the honest form of the paper's "asynchronous inference". The paper's alternative of folding
``M_w^-1`` into the threshold is exact only for diagonal ``M_w`` and is not offered.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from .neurons import StatefulMixin


def stateful_modules(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, StatefulMixin)]


def reset_states(model: nn.Module) -> None:
    for m in stateful_modules(model):
        m.reset_state()


@contextmanager
def streaming(model: nn.Module) -> Iterator[nn.Module]:
    """Put every stateful module in streaming mode, with fresh state; restore on exit."""
    if model.training:
        raise RuntimeError("streaming inference needs eval mode (batch norm must use running statistics)")
    mods = stateful_modules(model)
    for m in mods:
        m.reset_state()
        m.streaming = True
    try:
        yield model
    finally:
        for m in mods:
            m.streaming = False
            m.reset_state()


@torch.no_grad()
def stream(model: nn.Module, x: torch.Tensor, timesteps: int, call: Callable | None = None) -> list:
    """Run ``timesteps`` single-step calls ``call(model, x)`` (default ``model(x, T=1)``) in
    streaming mode and return the per-step outputs in order."""
    call = call or (lambda m, inp: m(inp, T=1))
    with streaming(model):
        return [call(model, x) for _ in range(timesteps)]

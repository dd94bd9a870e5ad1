"""Time-first tensor helpers: the one place where time is folded into the batch.

Spiking tensors in this project are time-first: ``(T, B, C, H, W)`` for feature maps and
``(T, B, N, D)`` for tokens. Stateless layers (convolutions, batch norm) run on the folded
``(T*B, ...)`` view; stateful neurons always see the unfolded sequence so that membrane state flows
along time only, never across samples of a batch.
"""

from __future__ import annotations

import torch
from torch import nn


def check_seq(x: torch.Tensor, ndim: int, name: str = "input") -> None:
    """Raise a clear error when ``x`` is not a time-first tensor of ``ndim`` dimensions."""
    if x.ndim != ndim:
        layout = {5: "(T, B, C, H, W)", 4: "(T, B, N, D)"}.get(ndim, f"{ndim}-D")
        raise ValueError(f"{name} must be time-first {layout}, got shape {tuple(x.shape)}")


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """(T, B, ...) -> (T*B, ...)."""
    return x.flatten(0, 1)


def unfold_time(x: torch.Tensor, T: int) -> torch.Tensor:
    """(T*B, ...) -> (T, B, ...)."""
    return x.reshape(T, x.shape[0] // T, *x.shape[1:])


class SeqModule(nn.Module):
    """Apply a stateless module to every timestep at once by folding time into the batch."""

    def __init__(self, *modules: nn.Module):
        super().__init__()
        self.body = modules[0] if len(modules) == 1 else nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[0]
        return unfold_time(self.body(fold_time(x)), T)  # (T, B, ...)

"""Capturing SSSA attention while a model runs: forward hooks on each attention's ``tap``.

What is captured, per attention block that shows a salience map (every ``SSSA`` module; the
Spikformer ``ssa`` has none), named by its module path such as ``model.0.p4_blocks.0.attn``, and per
timestep:

* salience ``P[t, b, head, n]`` in [0, 1] - the input of the block's saccadic neuron, i.e. (Q firing
  rate of token n) x (mean K firing rate), see ``detector.nn.attention.sssa``;
* spike mask ``S[t, b, head, n]`` in {0, 1} - the saccadic neuron's output: which tokens the block
  "looks at" at timestep t;
* the block's token grid ``(h, w)`` - from the attention's q spikes ``(T, B, C, h, w)``; token
  ``n = i * w + j`` (row-major, as ``split_heads`` flattens it).

Hooks live in ``SSSACapture`` (a context manager) and are removed on exit, also on error. The model's
forward is not changed.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from ...nn.attention import SpikingAttention

def find_sssa_blocks(model: nn.Module) -> list[tuple[str, SpikingAttention]]:
    """Every attention of ``model`` that shows a salience map (``salience_map``), in forward
    (registration) order, with its module path."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, SpikingAttention) and getattr(type(m), "salience_map", False)]


def select_blocks(names: Sequence[str], selectors: Iterable[str | int] | None) -> list[str]:
    """Pick block names by index (``0``, ``"2"``, ``-1``) or by name substring (``"p5"``), keeping model
    order and dropping repeats. ``None`` or empty selects all. Raises ``ValueError`` naming the choices."""
    names = list(names)
    if not selectors:
        return names
    chosen: set[str] = set()
    for sel in selectors:
        s = str(sel).strip()
        if re.fullmatch(r"-?\d+", s):
            k = int(s)
            if not -len(names) <= k < len(names):
                raise ValueError(f"block index {k} out of range; SSSA blocks: {_listing(names)}")
            chosen.add(names[k])
            continue
        hits = [n for n in names if s in n]
        if not hits:
            raise ValueError(f"no SSSA block matches {s!r}; SSSA blocks: {_listing(names)}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n}" for i, n in enumerate(names)) or "(none)"


@dataclass
class BlockCapture:
    """What one SSSA block showed during one forward: salience and spike mask ``(T, B, nh, N)``
    (float32, CPU) and the token grid ``(h, w)`` with ``h * w == N``."""

    name: str
    grid: tuple[int, int]
    salience: torch.Tensor
    mask: torch.Tensor

    @property
    def timesteps(self) -> int:
        return int(self.salience.shape[0])

    @property
    def heads(self) -> int:
        return int(self.salience.shape[2])


class SSSACapture(AbstractContextManager):
    """Forward hooks on the selected SSSA blocks; removed on exit (also when the body raises).

        with SSSACapture(model) as cap:
            det = predict_image(model, img)
        blocks = cap.results()      # {name: BlockCapture}

    Streaming-mode calls (one timestep per call) are concatenated along T. ``clear()`` forgets what was
    captured, for the next image.
    """

    def __init__(self, model: nn.Module, blocks: Iterable[str | int] | None = None):
        found = find_sssa_blocks(model)
        if not found:
            raise ValueError("the model has no SSSA blocks (is its attention 'ssa'?); nothing to show")
        keep = set(select_blocks([n for n, _ in found], blocks))
        self.blocks = [(n, m) for n, m in found if n in keep]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.clear()

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.blocks]

    def clear(self) -> None:
        self._sal: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._mask: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._grid: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> "SSSACapture":
        try:
            for name, mod in self.blocks:
                self._handles.append(mod.tap.register_forward_hook(self._tap_hook(name), with_kwargs=True))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
        return None  # never swallow the body's exception

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _tap_hook(self, name: str):
        def hook(module, args, kwargs, output):
            q = kwargs["q"]  # (T, B, C, h, w)
            if q.ndim != 5:
                raise ValueError(f"{name}: attention spikes must be (T, B, C, h, w), got {tuple(q.shape)}")
            self._grid[name] = (int(q.shape[-2]), int(q.shape[-1]))
            self._sal[name].append(kwargs["salience"].detach().float().cpu().clone())  # (T, B, nh, N)
            self._mask[name].append(kwargs["mask"].detach().float().cpu().clone())

        return hook

    def results(self) -> dict[str, BlockCapture]:
        """``{name: BlockCapture}`` for the blocks that ran, in model order."""
        out = {}
        for name in self.names:
            if not self._sal[name]:
                continue
            sal = torch.cat(self._sal[name])  # (T, B, nh, N)
            mask = torch.cat(self._mask[name])
            h, w = self._grid[name]
            if h * w != sal.shape[-1]:
                raise ValueError(f"{name}: grid {h}x{w} does not match {sal.shape[-1]} tokens")
            out[name] = BlockCapture(name, (h, w), sal, mask)
        return out

"""Operation counts a module declares for the energy meter (``detector.analysis.energy``).

Convolutions and linear layers are counted by the meter itself, from their inputs. Everything else a
module computes beyond its child layers (an attention's salience, its masking...) the module states
itself, as ``Op`` records: what the operation is, how many per image, and how it is priced on
spiking hardware (``AC``: an accumulate, ``MAC``: a multiply-accumulate) and in the ANN equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

AC, MAC = "AC", "MAC"


@dataclass
class Op:
    """One kind of operation inside a module.

    ``count``: per image in this call (B,), spike-driven where the op is triggered by spikes;
    ``ann_count``: the same op dense for ONE timestep on real values (ANN equivalent), per image."""

    type: str  # AC or MAC: how the SNN op is priced
    count: torch.Tensor
    ann_type: str
    ann_count: float
    note: str


def events_per_sample(x: torch.Tensor, batch_dim: int) -> torch.Tensor:
    """Spike events per sample: the sum of the spike values over every other dim (the number of 1s of a
    binary map; of an integer-spike map, its counts, i.e. the binary events of its expanded form)."""
    dims = tuple(d for d in range(x.ndim) if d != batch_dim)
    return x.to(torch.float64).sum(dim=dims)


def per_image(value: float, B: int) -> torch.Tensor:
    """The same count for every image of a batch of ``B``."""
    return torch.full((B,), float(value), dtype=torch.float64)

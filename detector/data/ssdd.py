"""SSDD reader: the SAR Ship Detection Dataset's VOC layout, one class ``ship``, its usual split (test =
ids ending in 1 or 9; :func:`detector.data.voc.read_voc` with the ``ssdd`` rule)."""

from __future__ import annotations

from pathlib import Path

from .records import SourceDataset
from .voc import read_voc


def read_ssdd(root: str | Path, *, val_fraction: float = 0.0, seed: int = 0) -> SourceDataset:
    """SSDD: VOC layout, one class ``ship``, test = ids ending in 1 or 9 (see :func:`read_voc`)."""
    return read_voc(root, classes=("ship",), split="ssdd", val_fraction=val_fraction, seed=seed)

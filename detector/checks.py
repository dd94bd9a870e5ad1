"""Argument checks shared by the library entry points (detect, evaluate, train, heatmap, energy,
export, benchmark): every value is checked before any work starts, and a bad one is a ValueError
whose one line names the option and what is allowed. The tools print that line (``tools/_bootstrap``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any


def unit_interval(name: str, v: Any) -> float:
    """A threshold in [0, 1] (confidence, IoU, overlap...)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)) or not 0 <= v <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {v!r}")
    return float(v)


def positive_int(name: str, v: Any, maximum: int = 1_000_000) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= maximum:
        raise ValueError(f"{name} must be an integer in 1..{maximum}, got {v!r}")
    return int(v)


def imgsz(v: Any, name: str = "imgsz") -> int:
    """An input size: a positive multiple of 32 (the detector's largest stride), at most 8192."""
    if isinstance(v, bool) or not isinstance(v, int) or not 32 <= v <= 8192 or v % 32:
        raise ValueError(f"{name} must be a multiple of 32 between 32 and 8192, got {v!r}")
    return int(v)


def image_size(v: Any, default: Any) -> int:
    """The input size a tool runs at: ``v`` when given (0 and other falsy values included: checked, never
    replaced by the default), else ``default``; every tool goes through this one check (``imgsz``)."""
    return imgsz(default if v is None else v)


def output_file(path: str | Path | None, name: str = "output") -> Path | None:
    """A file to write later (checked now, before a long run): not an existing folder, and its folder
    can be created."""
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{name} {p} is a folder; give a file name")
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {p}: {parent} is not a folder")
    return p


def inside(child: Path, parent: Path) -> bool:
    """Whether ``child`` is ``parent`` or lies inside it (after resolving links)."""
    c, p = Path(child).resolve(), Path(parent).resolve()
    return c == p or p in c.parents

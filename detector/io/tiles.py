"""The tile grid of sliced inference: overlapping tiles covering a large image (pure geometry, shared
by detection, heatmaps and energy so that all three see the same tiles), and the checks of its options."""

from __future__ import annotations

import math

from ..checks import unit_interval

OVERLAP = 0.2  # default overlap between neighbouring tiles, a fraction of the tile (detection, heatmaps, energy)


def check_overlap(overlap: float) -> float:
    unit_interval("overlap", overlap)
    if overlap >= 0.9:
        raise ValueError(f"overlap must be below 0.9 (tiles would barely advance), got {overlap}")
    return float(overlap)


def check_tiling(tile: int, overlap: float) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or not 32 <= tile <= 100_000:
        raise ValueError(f"tile must be an integer of at least 32 px (or 'auto'), got {tile!r}")
    check_overlap(overlap)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with at least ``overlap`` (fraction)
    between neighbours; the last tile ends at the border."""
    if length <= tile:
        return [0]
    step = max(1, int(math.floor(tile * (1.0 - overlap))))
    n = math.ceil((length - tile) / step) + 1
    starts = [min(i * step, length - tile) for i in range(n)]
    return sorted(set(starts))


def tile_count(shape: tuple[int, int], tile: int, overlap: float) -> int:
    """How many tiles ``tile_grid`` makes, without making them."""
    H, W = shape[:2]
    return len(tile_starts(H, min(tile, H), overlap)) * len(tile_starts(W, min(tile, W), overlap))


def tile_grid(shape: tuple[int, int], tile: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """Tiles (x0, y0, x1, y1) covering an image of ``shape`` (H, W), row by row."""
    H, W = shape[:2]
    tw, th = min(tile, W), min(tile, H)
    return [(x, y, x + tw, y + th) for y in tile_starts(H, th, overlap) for x in tile_starts(W, tw, overlap)]

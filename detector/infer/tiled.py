"""Sliced inference for large scenes: the scene is cut into overlapping tiles (``detector.io.tiles``), the
tiles are read window by window (``detector.io.scene``: a lazy raster is never decoded whole) and
detected in batches at the model's input size (``predict_batch``, the same letterbox and NMS as whole
images), boxes go back to scene coordinates and are merged across tiles.

Why: remote-sensing scenes are thousands of pixels wide; shrunk whole to a 320-640 px input, ships of a
few pixels vanish. Tiles of about the size of the training images keep objects at the scale the model
learned.

Merging (written natively rather than through SAHI, which drives a model through its own wrappers and
prediction loop and brings its own dependencies):

1. a box that touches a tile border lying inside the scene is dropped when it is smaller than the
   overlap: the object it covers is cut by the border, and the neighbouring tile sees it whole;
2. boxes of one object from different tiles merge into one, greedily (highest score first, as SAHI's
   greedy merge does): a box takes every box of its class from another tile that lies mostly inside
   it or inside which it lies mostly (intersection over the smaller box >= ``MERGE_IOS``), or that
   overlaps it as a duplicate (IoU >= ``iou``), and becomes the box enclosing them, with its own score.
   Intersection over the smaller box catches what IoU misses: the partial box a tile leaves inside the
   ship its neighbour found whole. Boxes of one tile are never merged with each other, not even through
   a third box (NMS already separated them there): a group holds at most one box of each tile.

Bounds: a scene that needs more than ``MAX_TILES`` tiles, or tiles enlarged more than ``MAX_UPSCALE``
times to the model input, is refused in one line that says what would work. ``max_det`` applies per
tile; the merged scene keeps every box, and a tile that reached the limit is warned about.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from ultralytics.utils import LOGGER

from ..io.scene import read_window, scene_shape
from ..io.tiles import tile_count, tile_grid
from .options import DETECT, MAX_TILES, MAX_UPSCALE, OVERLAP, TILE_BATCH
from .predict import predict_batch
from .runtime import RUNTIMES, Runtime, as_runtime

EDGE_MARGIN = 2.0  # px: a box edge this close to an interior tile border counts as cut
MERGE_IOS = 0.6  # intersection over the smaller box at which boxes of two tiles are one object


class PlanError(ValueError):
    """Sliced inference of one scene out of bounds; the message names a setting that fits."""


def fitting_tile(shape: tuple[int, ...], tile: int, overlap: float, imgsz: int) -> tuple[int, float] | None:
    """The smallest tile size (a multiple of 32, at least ``tile``) at an overlap of at most the default
    that keeps the scene within ``MAX_TILES`` tiles; None when no tile size fits."""
    o2 = min(overlap, OVERLAP)
    lo, hi = max(32, -(-tile // 32) * 32, -(-imgsz // (32 * MAX_UPSCALE)) * 32), 100_000 // 32 * 32
    if tile_count(shape, hi, o2) > MAX_TILES:
        return None
    while lo < hi:  # the tile count falls as the tile grows
        mid = (lo + hi) // 64 * 32
        if tile_count(shape, mid, o2) <= MAX_TILES:
            hi = mid
        else:
            lo = mid + 32
    return lo, o2


def check_plan(shape: tuple[int, ...], tile: int, overlap: float, imgsz: int) -> int:
    """The number of tiles for a scene of ``shape``, or a one-line ``PlanError`` when the work is out of
    bounds (module docstring), naming the count and a setting that fits. ``tile`` and ``overlap`` are
    checked values (the options records check them once, at the door)."""
    H, W = int(shape[0]), int(shape[1])
    if imgsz > MAX_UPSCALE * tile:
        raise PlanError(f"--imgsz {imgsz} would enlarge {tile} px tiles {imgsz / tile:.0f} times (at most "
                        f"{MAX_UPSCALE}); use --imgsz {max(32, (MAX_UPSCALE * tile) // 32 * 32)} or tiles of at least "
                        f"{-(-imgsz // MAX_UPSCALE)} px")
    n = tile_count((H, W), tile, overlap)
    if n > MAX_TILES:
        fit = fitting_tile((H, W), tile, overlap, imgsz)
        hint = (f"e.g. --tile {fit[0]} --overlap {fit[1]} makes {tile_count((H, W), *fit):,}" if fit else
                "no tile size fits: split the scene first")
        raise PlanError(f"tiling {W}x{H} px with {tile} px tiles at overlap {overlap} makes {n:,} tiles (more than "
                        f"{MAX_TILES:,}); {hint}")
    return n


def drop_cut_boxes(det: np.ndarray, tile: tuple[int, int, int, int], shape: tuple[int, int], overlap_px: float) -> np.ndarray:
    """Rule 1 of the module docstring, for one tile's boxes in scene coordinates."""
    if len(det) == 0:
        return det
    x0, y0, x1, y1 = tile
    H, W = shape[:2]
    x1b, y1b, x2b, y2b = det[:, 0], det[:, 1], det[:, 2], det[:, 3]
    cut = np.zeros(len(det), dtype=bool)
    for border, interior, edge in ((x0, x0 > 0, x1b), (y0, y0 > 0, y1b)):
        if interior:
            cut |= edge <= border + EDGE_MARGIN
    for border, interior, edge in ((x1, x1 < W, x2b), (y1, y1 < H, y2b)):
        if interior:
            cut |= edge >= border - EDGE_MARGIN
    too_big = np.maximum(x2b - x1b, y2b - y1b) > overlap_px  # cannot be whole in any tile: keep
    return det[~cut | too_big]


def merge_tiles(det: np.ndarray, tile_of: np.ndarray, iou: float, ios: float = MERGE_IOS) -> np.ndarray:
    """Rule 2 of the module docstring: ``det`` (N, 6) boxes in scene pixels, ``tile_of`` (N,) the tile
    each came from. Returns the merged boxes, highest score first."""
    if len(det) == 0:
        return det.reshape(0, 6)
    order = np.argsort(-det[:, 4], kind="stable")
    by_x = np.argsort(det[:, 0], kind="stable")  # candidates of a box: those whose x-range can meet its own
    x1s = det[by_x, 0]
    widest = float((det[:, 2] - det[:, 0]).max())
    area = (det[:, 2] - det[:, 0]) * (det[:, 3] - det[:, 1])
    taken = np.zeros(len(det), bool)
    out = []
    for i in order:
        if taken[i]:
            continue
        taken[i] = True
        b = det[i]
        c = by_x[np.searchsorted(x1s, b[0] - widest, "left"):np.searchsorted(x1s, b[2], "right")]
        c = c[~taken[c] & (det[c, 5] == b[5]) & (tile_of[c] != tile_of[i])]
        if len(c):
            w = np.clip(np.minimum(det[c, 2], b[2]) - np.maximum(det[c, 0], b[0]), 0, None)
            h = np.clip(np.minimum(det[c, 3], b[3]) - np.maximum(det[c, 1], b[1]), 0, None)
            inter = w * h
            small = np.maximum(np.minimum(area[c], area[i]), 1e-9)
            union = np.maximum(area[c] + area[i] - inter, 1e-9)
            c = c[(inter / small >= ios) | (inter / union >= iou)]
            tiles, grp_idx = {tile_of[i]}, [i]
            for j in c[np.argsort(-det[c, 4], kind="stable")]:  # at most one box of each tile in a group
                if tile_of[j] not in tiles:
                    tiles.add(tile_of[j])
                    grp_idx.append(j)
            c = np.asarray(grp_idx[1:], dtype=int)
            taken[c] = True
        grp = det[np.concatenate(([i], c)).astype(int)]
        out.append([grp[:, 0].min(), grp[:, 1].min(), grp[:, 2].max(), grp[:, 3].max(), b[4], b[5]])
    return np.asarray(out, dtype=det.dtype)


@torch.no_grad()
def predict_tiles(model: Runtime | nn.Module, scene, tiles: list[tuple[int, int, int, int]], imgsz: int, tile: int,
                  overlap: float = OVERLAP, conf: float = DETECT.conf, iou: float = DETECT.iou,
                  max_det: int = DETECT.max_det,
                  progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The boxes of some ``tiles`` (x0, y0, x1, y1) of a scene, before merging: (N, 7) = x1, y1, x2, y2,
    score, class in scene pixels and the index of the tile (in ``tiles``) each came from, cut boxes
    dropped (rule 1); and the corners (x0, y0) of the tiles that reached ``max_det``. A scene's tiles
    may be run in several calls (sliced inference on several processes): ``merge_tiles`` then takes
    them together. ``progress(done)`` is called after every batch of ``TILE_BATCH`` tiles."""
    batch = TILE_BATCH
    rt = as_runtime(model)
    H, W = scene_shape(scene)[:2]
    overlap_px = tile * overlap
    found, full = [np.zeros((0, 7))], []
    for k in range(0, len(tiles), batch):
        chunk = tiles[k:k + batch]
        crops = [read_window(scene, *t) for t in chunk]
        dets = predict_batch(rt, crops, imgsz, conf, iou, max_det, pad_to=batch if RUNTIMES[rt.name].static else None)
        for j, ((x0, y0, x1, y1), d) in enumerate(zip(chunk, dets)):
            if len(d) >= max_det:
                full.append((x0, y0))
            d = d.numpy().astype(np.float64)
            d[:, [0, 2]] += x0
            d[:, [1, 3]] += y0
            d = drop_cut_boxes(d, (x0, y0, x1, y1), (H, W), overlap_px)
            found.append(np.column_stack([d, np.full(len(d), k + j)]))
        if progress is not None:
            progress(min(k + batch, len(tiles)))
    return np.concatenate(found), full


def warn_full_tiles(full: list[tuple[int, int]], max_det: int, source: str) -> None:
    if full:
        LOGGER.warning(f"{source}: {len(full)} tile(s) reached --max-det {max_det} (first at x={full[0][0]}, "
                       f"y={full[0][1]}); boxes beyond it were dropped there: raise --max-det")


def predict_tiled(model: Runtime | nn.Module, scene, imgsz: int, tile: int, overlap: float = OVERLAP,
                  conf: float = DETECT.conf, iou: float = DETECT.iou, max_det: int = DETECT.max_det,
                  progress: Callable[[int, int], None] | None = None, source: str = "scene") -> np.ndarray:
    """Detections (N, 6) = x1, y1, x2, y2, score, class in scene pixels, from tiles of ``tile`` px.
    ``scene``: a BGR array or a lazy scene (``detector.io.scene``). ``max_det``: per tile.
    ``progress(done, total)`` is called after every batch of tiles."""
    H, W = scene_shape(scene)[:2]
    total = check_plan((H, W), tile, overlap, imgsz)
    tiles = tile_grid((H, W), tile, overlap)
    det, full = predict_tiles(model, scene, tiles, imgsz, tile, overlap, conf, iou, max_det,
                              None if progress is None else lambda done: progress(done, total))
    warn_full_tiles(full, max_det, source)
    return merge_tiles(det[:, :6], det[:, 6].astype(int), iou)


class Progress:
    """``progress(done, total)`` that prints a line at most every ``every`` seconds for scenes of more
    than ``min_tiles`` tiles: tiles done, elapsed time and an estimate of what is left."""

    def __init__(self, label: str, every: float = 10.0, min_tiles: int = 64, out: Callable[[str], None] = print):
        self.label, self.every, self.min_tiles, self.out = label, every, min_tiles, out
        self.t0 = self.last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if total < self.min_tiles or (now - self.last < self.every and done < total):
            return
        self.last = now
        spent = now - self.t0
        left = spent / done * (total - done) if done else 0.0
        self.out(f"  {self.label}: tile {done:,}/{total:,} ({100 * done / total:.0f} %), {spent:.0f} s, "
                 f"about {left:.0f} s left")

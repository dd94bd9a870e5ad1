"""Sliced inference for large scenes: the scene is cut into overlapping tiles, each tile is detected at
the model's input size (in batches), boxes go back to scene coordinates and are merged across tiles.

Why: remote-sensing scenes are thousands of pixels wide; shrunk whole to a 320-640 px input, ships of a
few pixels vanish. Tiles of about the size of the training images keep objects at the scale the model
learned.

Written natively instead of with SAHI: SAHI drives a model through its own ``DetectionModel``
wrappers (one per framework) and its own prediction loop; fitting this engine would mean an adapter
around ``predict_image`` plus SAHI's dependency set (shapely, pybboxes, fire, terminaltables ...) for
what is ~100 lines here: the tile grid, batching through the same letterbox and NMS as whole images,
and the merge.

Merging (two rules):

1. a box that touches a tile border lying inside the scene is dropped, because the object it covers is
   cut by the border; with ``overlap`` at least the object's size, the neighbouring tile sees the
   whole object (boxes larger than the overlap are kept: no tile can hold them whole);
2. duplicates of one object from overlapping tiles are merged by class-wise NMS at ``iou``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..checks import unit_interval
from ..io.letterbox import Letterbox
from ..io.tiles import tile_grid, tile_starts  # noqa: F401  (re-exported: the grid is the io layer's)

EDGE_MARGIN = 2.0  # px: a box edge this close to an interior tile border counts as cut


def check_overlap(overlap: float) -> float:
    unit_interval("overlap", overlap)
    if overlap >= 0.9:
        raise ValueError(f"overlap must be below 0.9 (tiles would barely advance), got {overlap}")
    return float(overlap)


def check_tiling(tile: int, overlap: float) -> None:
    if isinstance(tile, bool) or not isinstance(tile, int) or not 32 <= tile <= 100_000:
        raise ValueError(f"tile must be an integer of at least 32 px (or 'auto'), got {tile!r}")
    check_overlap(overlap)


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


@torch.no_grad()
def predict_tiled(model, img_bgr: np.ndarray, imgsz: int, tile: int, overlap: float = 0.2, conf: float = 0.25,
                  iou: float = 0.45, max_det: int = 300, batch: int = 8) -> np.ndarray:
    """Detections (N, 6) = x1, y1, x2, y2, score, class in scene pixels, from tiles of ``tile`` px."""
    from ultralytics.utils.nms import non_max_suppression

    check_tiling(tile, overlap)
    device = next(model.parameters()).device
    H, W = img_bgr.shape[:2]
    tiles = tile_grid((H, W), tile, overlap)
    overlap_px = tile * overlap
    found = []
    for k in range(0, len(tiles), batch):
        chunk = tiles[k:k + batch]
        crops = [np.ascontiguousarray(img_bgr[y0:y1, x0:x1]) for x0, y0, x1, y1 in chunk]
        boxes = [Letterbox.fit(c.shape[:2], imgsz) for c in crops]
        x = torch.cat([lb.apply(c, device) for lb, c in zip(boxes, crops)])
        dets = non_max_suppression(model(x), conf, iou, max_det=max_det)
        for (x0, y0, x1, y1), lb, d in zip(chunk, boxes, dets):
            d[:, :4] = lb.boxes_to_image(d[:, :4])
            d = d.cpu().numpy().astype(np.float64)
            d[:, [0, 2]] += x0
            d[:, [1, 3]] += y0
            found.append(drop_cut_boxes(d, (x0, y0, x1, y1), (H, W), overlap_px))
    det = np.concatenate(found) if found else np.zeros((0, 6))
    return merge(det, iou, max_det)


def merge(det: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Rule 2: class-wise NMS over the boxes of all tiles, the ``max_det`` best kept."""
    import torchvision

    if len(det) == 0:
        return det.reshape(0, 6)
    t = torch.from_numpy(det)
    keep = torchvision.ops.batched_nms(t[:, :4], t[:, 4], t[:, 5].long(), iou)[:max_det]
    return det[keep.numpy()]

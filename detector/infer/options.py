"""Defaults of inference, in one place: the thresholds of detection and of evaluation, and the bounds
of sliced inference. Tools take their option defaults from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Thresholds:
    """Confidence threshold, NMS IoU threshold, and the most detections kept per image (per tile in
    sliced inference)."""

    conf: float
    iou: float
    max_det: int


DETECT = Thresholds(conf=0.25, iou=0.45, max_det=300)  # detection and heatmaps: boxes worth drawing
VAL = Thresholds(conf=0.001, iou=0.7, max_det=300)  # evaluation: the whole precision-recall curve (Ultralytics')

OVERLAP = 0.2  # default overlap between neighbouring tiles, a fraction of the tile
TILE_BATCH = 8  # tiles per forward pass
MAX_TILES = 100_000  # a scene needing more tiles is refused (at ~50 ms a tile on a CPU core: over an hour)
MAX_UPSCALE = 4  # a tile may be enlarged at most this much to the model input (--imgsz / --tile)

"""Prediction: the library behind ``tools/detect.py``, and an Ultralytics predictor class.

``detect()`` is one loop over frames (still images and video frames alike, ``detector.io.frames``):
each frame is letterboxed and run through the model (or, for a scene much larger than the model's
input, cut into tiles: ``detector.engine.tiling``), Ultralytics' NMS keeps the boxes, and every
chosen writer (``detector.io.writers``: rendered images, YOLO txt, COCO json, GeoJSON) takes the
frame's detections. The output folder's rules (unique names, never into a source folder, never over
a file the tool did not write) are ``detector.io.writers.OutputFolder``'s.

``SNNPredictor`` is Ultralytics' ``DetectionPredictor`` that loads project checkpoints safely, for users
who drive the Ultralytics engine directly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from ultralytics.models.yolo.detect import DetectionPredictor
from ultralytics.utils import LOGGER
from ultralytics.utils.nms import non_max_suppression

from .. import checks
from ..devices import resolve_device
from ..io.frames import iter_frames
from ..io.images import expand_source
from ..io.letterbox import Letterbox
from ..io.writers import OutputFolder, describe, make_writers, next_run_folder
from .tiling import check_overlap, check_tiling, predict_tiled

DEFAULT_OUT = "runs/detect/exp"


class SNNPredictor(DetectionPredictor):
    """Ultralytics detection predictor; a weights path is loaded with the project's safe loader, and the
    model keeps PyTorch's default memory layout unless ``channels_last`` is set, so its detections equal
    ``predict_image``'s (see ``SNNValidator`` for why the layout matters to a spiking network)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.channels_last is None:
            self.args.channels_last = False

    def setup_model(self, model, verbose: bool = True):
        from ..weights import load_model

        if model is None or isinstance(model, (str, Path)):
            model = load_model(model or self.args.model, device="cpu")
        super().setup_model(model, verbose=verbose)


@torch.no_grad()
def predict_image(model, img_bgr: np.ndarray, imgsz: int = 640, conf: float = 0.25, iou: float = 0.45,
                  max_det: int = 300) -> torch.Tensor:
    """Detections (N, 6) = x1, y1, x2, y2, score, class in original image pixels."""
    device = next(model.parameters()).device
    lb = Letterbox.fit(img_bgr.shape[:2], imgsz)
    preds = model(lb.apply(img_bgr, device))
    det = non_max_suppression(preds, conf, iou, max_det=max_det)[0]
    det[:, :4] = lb.boxes_to_image(det[:, :4])
    return det.cpu()


@dataclass
class DetectSummary:
    out_dir: Path
    images: int = 0  # still images processed
    frames: int = 0  # video frames processed
    detections: int = 0
    per_image: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)  # every file written
    predictions: list[dict[str, Any]] = field(default_factory=list)  # COCO records, when the json output ran


def resolve_tile(tile: int | str | None, model, imgsz: int, shape: tuple[int, int]) -> int | None:
    """The tile size for a scene of ``shape``: None (whole image), a size, or ``auto`` = tiles of the
    size of the model's training images (recorded in its checkpoint; else ``imgsz``), used only for a
    scene more than twice that size."""
    if tile in (None, 0, "0", "none"):
        return None
    if tile == "auto":
        size = int(getattr(model, "train_image_size", None) or imgsz)
        return size if max(shape[:2]) > 2 * size else None
    return int(tile)


def detect(
    source: str | Path,
    weights: str | Path | None = None,
    out: str | Path | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    imgsz: int | None = None,
    outputs: Sequence[str] = ("image",),
    device: str = "cpu",
    max_det: int = 300,
    vid_stride: int = 1,
    tile: int | str | None = None,
    overlap: float = 0.2,
    model=None,
    verbose: bool = True,
) -> DetectSummary:
    """Detect objects in every image (and video) of ``source`` and write ``outputs`` (writer names:
    ``image``, ``txt``, ``json``, ``geojson``) into ``out`` (default: a fresh ``runs/detect/expN``).
    ``imgsz`` defaults to the size the weights were trained at (640 if the checkpoint does not say);
    ``tile``: None (whole images), a tile size in pixels, or ``auto``."""
    from ..weights import default_imgsz, load_model

    checks.unit_interval("conf", conf)
    checks.unit_interval("iou", iou)
    checks.positive_int("max_det", max_det, 100_000)
    checks.positive_int("vid_stride", vid_stride)
    if imgsz is not None:
        checks.imgsz(imgsz)
    if tile not in (None, "auto"):
        check_tiling(tile, overlap)
    check_overlap(overlap)
    device = resolve_device(device).torch
    src = expand_source(source)
    folder = OutputFolder(next_run_folder(DEFAULT_OUT) if out is None else out, src.inputs, src.root, src.folders)
    model = model if model is not None else load_model(weights, device=device)
    imgsz = imgsz or default_imgsz(model)
    checks.imgsz(imgsz)
    model.eval()
    names = {int(k): v for k, v in model.names.items()}
    writers = make_writers(outputs, folder, names)
    folder.check_all(p for s in src.images for w in writers for p in w.planned(s))  # before any work
    folder.prepare()
    summary = DetectSummary(out_dir=folder.path, skipped=list(src.skipped))
    for f, why in src.skipped:
        LOGGER.warning(f"skipped {f}: {why}")
    n_images = len(src.images)
    def on_skip(path: Path, why: str) -> None:
        LOGGER.warning(f"skipped {path}: {why}")
        summary.skipped.append((str(path), why))

    try:
        for frame in iter_frames(src, vid_stride, on_skip):
            t0 = time.perf_counter()
            size = resolve_tile(tile, model, imgsz, frame.pixels.shape)
            if size is None:
                det = predict_image(model, frame.pixels, imgsz, conf, iou, max_det).numpy()
            else:
                det = predict_tiled(model, frame.pixels, imgsz, size, overlap, conf, iou, max_det)
            ms = (time.perf_counter() - t0) * 1000
            for w in writers:
                w.write(frame, det)
            summary.detections += len(det)
            if frame.index is None:
                summary.images += 1
                summary.per_image.append({"file": str(frame.source), "detections": len(det), "ms": round(ms, 1),
                                          "size": [int(frame.pixels.shape[1]), int(frame.pixels.shape[0])],
                                          "tile": size})
                if verbose:
                    tiles = f", tiles of {size} px" if size else ""
                    print(f"image {summary.images}/{n_images} {frame.source} {frame.pixels.shape[1]}x"
                          f"{frame.pixels.shape[0]}: {describe(det, names)} ({ms:.1f} ms{tiles})")
            else:
                summary.frames += 1
    finally:
        for w in writers:
            w.close()
            summary.files += w.files
            if w.name == "json":
                summary.predictions = list(w.records)
    if verbose:
        vids = f", {summary.frames} video frame(s)" if summary.frames else ""
        print(f"{summary.images} image(s){vids}, {summary.detections} detection(s) -> {folder.path}"
              + (f"; skipped {len(summary.skipped)}: " + "; ".join(f"{f} ({w})" for f, w in summary.skipped)
                 if summary.skipped else ""))
    return summary

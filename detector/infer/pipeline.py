"""Detection: the library behind ``tools/detect.py``.

``detect()`` is one loop over frames (still images and video frames alike, ``detector.io.frames``):
each frame is letterboxed and run through the model (or, for a scene much larger than the model's
input, cut into tiles: ``detector.infer.tiled``), Ultralytics' NMS keeps the boxes, and every chosen
writer (``detector.io.writers``: rendered images, YOLO txt, COCO json, GeoJSON) takes the frame's
detections. The output folder's rules (unique names, never into a source folder, never over a file
the tool did not write) are ``detector.io.writers.OutputFolder``'s.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from ultralytics.utils import LOGGER

from ..io.frames import iter_frames
from ..io.images import ImageReadError, expand_source
from ..io.scene import LAZY_PIXELS, as_array, scene_shape
from ..io.outputs import OutputFolder, next_run_folder
from ..io.writers import close_writers, describe, make_writers, write_frame
from ..models.settings import ModelSettings
from .options import DetectOptions, build
from .predict import predict_image
from .runtime import Runtime, as_runtime, load_runtime
from .tiled import PlanError, Progress, predict_tiled

DEFAULT_OUT = "runs/detect/exp"


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


def resolve_tile(tile: int | str | None, settings: ModelSettings, imgsz: int, shape: tuple[int, ...]) -> int | None:
    """The tile size for a scene of ``shape``: None (whole image), a size, or ``auto`` = tiles of the
    size of the model's training images (``settings.train_image_size``; else ``imgsz``), used only for
    a scene more than twice that size."""
    if tile in (None, 0, "0", "none"):
        return None
    if tile == "auto":
        size = int(settings.train_image_size or imgsz)
        return size if max(shape[:2]) > 2 * size else None
    return int(tile)


def detect(source: str | Path, weights: str | Path | None = None, out: str | Path | None = None,
           options: DetectOptions | None = None, *, model: Runtime | nn.Module | None = None, verbose: bool = True,
           **fields: Any) -> DetectSummary:
    """Detect objects in every image (and video) of ``source`` and write ``options.outputs`` (writer
    names: ``image``, ``txt``, ``json``, ``geojson``) into ``out`` (default: a fresh ``runs/detect/expN``).
    ``options`` is a ``DetectOptions`` (or its fields as keywords: ``conf=0.1, tile="auto"``...). The
    model is ``model`` (a runtime or a PyTorch module) or the weights (a shipped model's name or a
    path; default: the default shipped model) run by ``options.runtime`` (``detector.infer.RUNTIMES``;
    ``auto`` as for detection: int8 on a CPU where its extra is installed, ``detector.infer.runtime``).
    ``imgsz`` defaults to the size the weights were trained at (``ModelSettings.imgsz``); ``tile``:
    None (whole images), a tile size in pixels, or ``auto``; ``max_det`` is per tile then.
    ``geojson_crs``: ``wgs84`` (RFC 7946 longitude/latitude) or ``native`` (the raster's own CRS), see
    ``detector.io.geojson``."""
    o = build(DetectOptions, options, weights=weights, **fields)
    tile, overlap, outputs, conf, iou, max_det = o.tile, o.overlap, o.outputs, o.conf, o.iou, o.max_det
    src = expand_source(source)
    folder = OutputFolder(next_run_folder(DEFAULT_OUT) if out is None else out, src.inputs, src.root, src.folders)
    rt = as_runtime(model) if model is not None else load_runtime(o.weights, o.device, o.runtime, detection=True)
    imgsz = rt.settings.check_imgsz(rt.settings.imgsz() if o.imgsz is None else o.imgsz)
    names = dict(rt.settings.names)
    writers = make_writers(outputs, folder, names, {"geojson": {"crs": o.geojson_crs}})
    folder.check_all(p for s in src.images for w in writers for p in w.planned(s))  # before any work
    folder.prepare()
    summary = DetectSummary(out_dir=folder.path, skipped=list(src.skipped))
    for f, why in src.skipped:
        LOGGER.warning(f"skipped {f}: {why}")
    n_images = len(src.images)

    def on_skip(path: Path, why: str) -> None:
        LOGGER.warning(f"skipped {path}: {why}")
        summary.skipped.append((str(path), why))

    # tiled, large rasters are read window by window (above LAZY_PIXELS when nothing needs the whole
    # scene; above the whole-image byte limit always: a render then comes from a decimated read)
    lazy_pixels = LAZY_PIXELS if "image" not in outputs else None
    try:
        for frame in iter_frames(src, o.vid_stride, on_skip, lazy=tile is not None, lazy_pixels=lazy_pixels):
            t0 = time.perf_counter()
            shape = scene_shape(frame.pixels)
            size = resolve_tile(tile, rt.settings, imgsz, shape)
            label = f"{frame.source}" + (f" frame {frame.index}" if frame.index is not None else "")
            try:
                if size is None:
                    det = predict_image(rt, as_array(frame.pixels), imgsz, conf, iou, max_det).numpy()
                else:  # a plan out of bounds (PlanError, before any tile runs): this scene is skipped, in one line
                    det = predict_tiled(rt, frame.pixels, imgsz, size, overlap, conf, iou, max_det,
                                        Progress(label) if verbose else None, label)
            except (ImageReadError, PlanError) as e:
                on_skip(frame.source, str(e))
                continue
            ms = (time.perf_counter() - t0) * 1000
            write_frame(writers, frame, det, on_skip)  # all outputs or none (Ctrl-C), one bad output reported
            summary.detections += len(det)
            if frame.index is None:
                summary.images += 1
                summary.per_image.append({"file": str(frame.source), "detections": len(det), "ms": round(ms, 1),
                                          "size": [shape[1], shape[0]], "tile": size})
                if verbose:
                    tiles = f", tiles of {size} px" if size else ""
                    print(f"image {summary.images}/{n_images} {frame.source} {shape[1]}x{shape[0]}: "
                          f"{describe(det, names)} ({ms:.1f} ms{tiles})")
            else:
                summary.frames += 1
    except KeyboardInterrupt:
        done = f"{summary.images} image(s)" + (f" and {summary.frames} video frame(s)" if summary.frames else "")
        raise KeyboardInterrupt(f"{done} done; their outputs are written whole in {folder.path}") from None
    finally:
        try:
            close_writers(writers)
        finally:
            folder.release()
        for w in writers:
            summary.files += w.files
            if w.name == "json":
                summary.predictions = list(w.records)
    if verbose:
        vids = f", {summary.frames} video frame(s)" if summary.frames else ""
        print(f"{summary.images} image(s){vids}, {summary.detections} detection(s) -> {folder.path}"
              + (f"; skipped {len(summary.skipped)}: " + "; ".join(f"{f} ({w})" for f, w in summary.skipped)
                 if summary.skipped else ""))
    return summary

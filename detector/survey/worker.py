"""What runs on the Dask workers: a scene task and a tiles task. Both are plain functions of plain values
(pickled by reference: a worker imports ``detector`` itself), so any Dask cluster runs them.

* The model is loaded once per worker process (``_runtime``: a per-process cache keyed by the weights,
  runtime and device; a worker runs one task at a time) and its file's sha256 goes back with every
  result, so a worker holding other weights under the same name is caught.
* Scenes are opened by ``open_pixels``, the one place that reads a raster here: the same functions
  ``detect`` reads through (``detector.io.scene.open_scene`` for a scene read window by window,
  ``detector.io.images.load_image`` for one read whole, ``detector.io.geo.read_georeference``), so
  their guards apply on every worker. The last scene opened stays open (one per process), so the tiles
  tasks of one scene that land on a worker open it once.
* Expected failures of a scene (unreadable, hostile, out of bounds) come back as a one-line ``error``;
  anything else raises, and Dask reruns the task (``retries``).

Faults for the tests, ``SNNVIT_SURVEY_FAULT`` in the workers' environment (``;``-separated):
``exit-once:PATH``: while PATH does not exist, the first worker that starts a tiles task creates it and
dies at once (``os._exit``), as a killed worker would; ``raise:PATH``: tiles tasks of the scene whose
file name PATH holds raise an unexpected error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .catalog import SceneRef
from .options import SurveyOptions

_CACHE: dict[str, Any] = {}
FAULT_ENV = "SNNVIT_SURVEY_FAULT"


@dataclass
class SceneResult:
    """A scene task's answer: either the detections of a whole scene (``det``), or, for a scene split
    into tiles tasks, its tile grid (``tiles``); or ``error``."""

    shape: tuple[int, ...] = ()
    tile: int | None = None  # the tile size (None: the whole image in one input)
    geo: Any = None  # detector.io.georef.GeoReference
    names: dict[int, str] = field(default_factory=dict)
    det: np.ndarray | None = None  # (N, 6) x1, y1, x2, y2, score, class in scene pixels
    tiles: list[tuple[int, int, int, int]] | None = None
    n_tiles: int = 1
    model_sha256: str = ""
    seconds: float = 0.0
    error: str | None = None


@dataclass
class TilesResult:
    det: np.ndarray  # (N, 7): boxes and the tile index, before merging (detector.infer.tiled.predict_tiles)
    full: list[tuple[int, int]]  # tiles that reached max_det
    n_tiles: int
    model_sha256: str
    seconds: float
    error: str | None = None


def _runtime(opts: SurveyOptions):
    """(runtime, sha256 of its weights file), loaded once per process."""
    key = f"model:{opts.weights}:{opts.runtime}:{opts.device}"
    if key not in _CACHE:
        from ..infer import load_runtime
        from ..weights import resolve_weights, sha256

        _CACHE[key] = (load_runtime(opts.weights, opts.device, opts.runtime), sha256(resolve_weights(opts.weights)))
    return _CACHE[key]


def open_pixels(scene: SceneRef, split_pixels: int):
    """(pixels, georeferencing) of a scene: a lazy scene when it has more than ``split_pixels`` pixels and
    GDAL reads it (the last one opened is kept for the next call), else the whole image. Raises
    ``ImageReadError`` naming the file."""
    from ..io.geo import read_georeference
    from ..io.images import ImageReadError, load_image
    from ..io.scene import open_scene

    key = (scene.path, scene.size, scene.mtime_ns, split_pixels)
    last = _CACHE.get("scene")
    if last is not None and last[0] == key:
        return last[1], last[2]
    _CACHE.pop("scene", None)
    if last is not None and hasattr(last[1], "close"):
        last[1].close()
    st = os.stat(scene.path)
    if (st.st_size, st.st_mtime_ns) != (scene.size, scene.mtime_ns):
        raise ImageReadError(f"{scene.path} changed while the survey ran; run it again")
    lazy = open_scene(scene.path, min_pixels=split_pixels)
    if lazy is not None:
        pixels, geo = lazy, read_georeference(scene.path)
    else:
        im = load_image(scene.path)
        pixels, geo = im.pixels, im.geo
    if lazy is not None:  # kept for the next tiles task of this scene (an array read whole is not)
        _CACHE["scene"] = (key, pixels, geo)
    return pixels, geo


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def scene_task(scene: SceneRef, opts: SurveyOptions) -> SceneResult:
    """Open a scene; detect on it whole (a small scene), or return its tile grid (a scene of more than
    ``split_pixels`` pixels, whose tiles the client sends out as tiles tasks)."""
    from ..infer import predict_image, predict_tiled, resolve_tile
    from ..infer.tiled import check_plan
    from ..io.georef import GeoError
    from ..io.images import ImageReadError
    from ..io.scene import as_array, scene_shape
    from ..io.tiles import tile_grid

    t0 = time.perf_counter()
    rt, sha = _runtime(opts)
    out = SceneResult(names=dict(rt.settings.names), model_sha256=sha)
    try:
        imgsz = rt.settings.check_imgsz(opts.imgsz or rt.settings.imgsz())
        pixels, out.geo = open_pixels(scene, opts.split_pixels)
        out.shape = scene_shape(pixels)
        out.tile = resolve_tile(opts.tile, rt.settings, imgsz, out.shape)
        if out.tile is None:  # the whole scene in one input, as detect without --tile
            out.det = predict_image(rt, as_array(pixels), imgsz, opts.conf, opts.iou, opts.max_det).numpy().astype(np.float64)
        else:
            out.n_tiles = check_plan(out.shape, out.tile, opts.overlap, imgsz)
            if isinstance(pixels, np.ndarray) or out.n_tiles <= opts.tiles_per_task:
                out.det = predict_tiled(rt, pixels, imgsz, out.tile, opts.overlap, opts.conf, opts.iou, opts.max_det,
                                        None, scene.path)
            else:
                out.tiles = tile_grid(out.shape[:2], out.tile, opts.overlap)
    except (ImageReadError, GeoError, ValueError, OSError) as e:
        out.error = _one_line(e)
    out.seconds = time.perf_counter() - t0
    return out


def tiles_task(scene: SceneRef, opts: SurveyOptions, tiles: list[tuple[int, int, int, int]], first: int,
               tile: int) -> TilesResult:
    """The boxes of ``tiles`` (the scene's tiles ``first``, ``first + 1``, ...), not yet merged."""
    from ..infer.tiled import predict_tiles
    from ..io.images import ImageReadError

    _fault(scene)
    t0 = time.perf_counter()
    rt, sha = _runtime(opts)
    try:
        imgsz = rt.settings.check_imgsz(opts.imgsz or rt.settings.imgsz())
        pixels, _ = open_pixels(scene, opts.split_pixels)
        det, full = predict_tiles(rt, pixels, tiles, imgsz, tile, opts.overlap, opts.conf, opts.iou, opts.max_det)
    except (ImageReadError, ValueError, OSError) as e:
        return TilesResult(np.zeros((0, 7)), [], 0, sha, time.perf_counter() - t0, _one_line(e))
    det[:, 6] += first
    return TilesResult(det, full, len(tiles), sha, time.perf_counter() - t0)


def _fault(scene: SceneRef) -> None:
    for spec in filter(None, os.environ.get(FAULT_ENV, "").split(";")):
        kind, _, path = spec.partition(":")
        if kind == "exit-once":
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            os._exit(70)
        if kind == "raise" and os.path.isfile(path) and open(path).read().strip() == os.path.basename(scene.path):
            raise RuntimeError(f"injected fault on {scene.path}")

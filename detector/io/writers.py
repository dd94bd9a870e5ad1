"""Detection outputs: the run's output folder and a registry of writers chosen by name.

Writers (``WRITERS``): ``image`` (rendered images; an MP4 per video at the source's frame rate),
``txt`` (YOLO labels), ``json`` (COCO-results ``predictions.json``), ``geojson`` (one FeatureCollection
per run, ``detections.geojson``, built by ``detector.io.geojson``). Each takes one frame's detections at
a time.

Output safety lives in ``detector.io.outputs`` (``OutputFolder``); here, that a frame's outputs agree
(``write_frame``: Ctrl-C waits for all writers; a writer failing on one frame is reported and the folder
goes on), that predictions are flushed per frame (``predictions.jsonl`` / ``detections.geojsonl`` grow
by one line per frame, so a crash loses nothing written so far; a finished run turns them into the
final files and removes them; a line file a killed run left is renamed, ``predictions.interrupted.jsonl``,
with a warning, never deleted), and that renders longer than JPEG's 65,500 px (SAR strips), or of a
scene read window by window, are downscaled, with a warning.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np

from ..files import atomic_write_bytes, atomic_write_text, interrupts_held, writing
from .frames import Frame
from .geojson import PIXEL_FILE, GeoJsonCollection
from .outputs import OutputFolder


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def coco_records(det: np.ndarray, file_name: str, names: dict[int, str], **extra: Any) -> list[dict[str, Any]]:
    """COCO results records (bbox x, y, w, h in pixels; category_id = class index + 1); ``det`` is
    (N, 6) x1, y1, x2, y2, score, class. Used by detect and by validation."""
    recs = []
    for x1, y1, x2, y2, s, c in np.asarray(det, dtype=np.float64).tolist():
        recs.append({"file_name": file_name, **extra, "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3),
                     round(y2 - y1, 3)], "score": round(s, 5), "category_id": int(c) + 1,
                     "category_name": names.get(int(c), str(int(c)))})
    return recs


def yolo_lines(det: np.ndarray, shape: tuple[int, int]) -> list[str]:
    """YOLO txt lines: class cx cy w h score, normalised to the image size."""
    h, w = shape[:2]
    lines = []
    for x1, y1, x2, y2, s, c in np.asarray(det, dtype=np.float64).tolist():
        lines.append(f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                     f"{(y2 - y1) / h:.6f} {s:.5f}")
    return lines


def render(img_bgr: np.ndarray, det: np.ndarray, names: dict[int, str], path: str = "") -> np.ndarray:
    """Draw boxes, class names and scores (Ultralytics' plotting, with the project's offline font)."""
    import torch

    from .. import settings

    settings.apply()  # the bundled font, before Ultralytics plots (it would download one)
    from ultralytics.engine.results import Results

    boxes = torch.as_tensor(np.asarray(det, dtype=np.float32).reshape(-1, 6))
    return Results(img_bgr, path=path, names=names, boxes=boxes).plot()


def describe(det: np.ndarray, names: dict[int, str]) -> str:
    """"3 ships, 1 plane" for a frame's detections."""
    det = np.asarray(det).reshape(-1, 6)
    if len(det) == 0:
        return "no detections"
    cls, counts = np.unique(det[:, 5].astype(int), return_counts=True)
    return ", ".join(f"{n} {names.get(int(c), str(int(c)))}{'s' if n > 1 else ''}" for c, n in zip(cls.tolist(), counts.tolist()))


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


class Writer:
    """Base of the writers: ``planned`` names the files a still image will produce (checked before the
    run starts), ``write`` takes one frame's detections, ``close`` finishes the run."""

    name = ""

    def __init__(self, folder: OutputFolder, names: dict[int, str]):
        self.folder, self.names = folder, names
        self.files: list[Path] = []

    def planned(self, source: Path) -> list[Path]:
        return []

    def write(self, frame: Frame, det: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def file_name(self, frame: Frame) -> str:
        """How records identify an input: its path below the inputs' common folder (unique)."""
        root = self.folder.root
        try:
            return frame.source.resolve().relative_to(root).as_posix() if root else frame.source.name
        except ValueError:
            return str(frame.source)


class ImageWriter(Writer):
    """Rendered detections: ``STEM.jpg`` per image, ``STEM.mp4`` per video (the source's frame rate)."""

    name = "image"

    def __init__(self, folder, names):
        super().__init__(folder, names)
        self._video: tuple[Path, cv2.VideoWriter, Path] | None = None  # source, writer, final path

    def planned(self, source):
        return [self.folder.path / self.folder.stem(source).with_suffix(".jpg")]

    def write(self, frame, det):
        if frame.index is None:
            path = self.folder.claim(self.planned(frame.source)[0])
            pixels, det = fit_jpeg(frame.pixels, det, path) if isinstance(frame.pixels, np.ndarray) else \
                scene_render(frame.pixels, det, path)
            ok, buf = cv2.imencode(".jpg", render(pixels, det, self.names, str(frame.source)))
            if not ok:
                raise ValueError(f"OpenCV cannot encode the render of {frame.source} as JPEG")
            atomic_write_bytes(path, buf.tobytes())
            self.files.append(path)
            return
        vis = render(frame.pixels, det, self.names, str(frame.source))
        if self._video is None or self._video[0] != frame.source:
            self._close_video()
            path = self.folder.claim(self.folder.path / self.folder.stem(frame.source).with_suffix(".mp4"))
            tmp = path.with_name(f".{path.name}.tmp.mp4")  # renamed when complete (OpenCV picks the container by suffix)
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(frame.fps or 25.0),
                                     (vis.shape[1], vis.shape[0]))
            self._video = (frame.source, writer, path)
            self.files.append(path)
        self._video[1].write(vis)

    def _close_video(self):
        if self._video is not None:
            _, writer, path = self._video
            self._video = None
            writer.release()
            if (tmp := path.with_name(f".{path.name}.tmp.mp4")).exists():  # absent if OpenCV could not open it
                os.replace(tmp, path)

    def close(self):
        self._close_video()


class TxtWriter(Writer):
    """YOLO labels ``labels/STEM.txt`` (``labels/STEM_FRAME.txt`` for video frames):
    ``class cx cy w h score`` normalised to the image size."""

    name = "txt"

    def _path(self, source: Path, index: int | None) -> Path:
        stem = self.folder.stem(source)
        name = stem.name if index is None else f"{stem.name}_{index}"
        return self.folder.path / "labels" / stem.parent / f"{name}.txt"

    def planned(self, source):
        return [self._path(source, None)]

    def write(self, frame, det):
        path = self.folder.claim(self._path(frame.source, frame.index))
        atomic_write_text(path, "".join(ln + "\n" for ln in yolo_lines(det, frame.pixels.shape)))
        self.files.append(path)


class _JsonLinesWriter(Writer):
    """Appends one JSON line per frame to ``LOG`` (flushed), and writes ``FINAL`` from them at close."""

    log_name = final_name = ""

    def __init__(self, folder, names):
        super().__init__(folder, names)
        self._log = None
        self.records: list[Any] = []

    def planned(self, source):
        return [self.folder.path / self.final_name, self.folder.path / self.log_name]

    def frame_records(self, frame: Frame, det: np.ndarray) -> list[Any]:
        raise NotImplementedError

    def write(self, frame, det):
        recs = self.frame_records(frame, det)
        log = self.folder.path / self.log_name
        with writing(log):
            if self._log is None:
                if log.exists():  # left by a killed run: its results are kept, under another name
                    from ultralytics.utils import LOGGER

                    aside = self.folder.set_aside(log)
                    LOGGER.warning(f"{log} was left by an interrupted run; kept as {aside.name}")
                self._log = open(self.folder.claim(log), "w", encoding="utf-8")
            self._log.write(json.dumps(recs) + "\n")
            self._log.flush()
            os.fsync(self._log.fileno())
        self.records += recs

    def final_text(self) -> str:
        raise NotImplementedError

    def close(self):
        log, self._log = self._log, None
        if log is not None:
            log.close()
        path = self.folder.claim(self.folder.path / self.final_name)
        atomic_write_text(path, self.final_text())
        self.files.append(path)
        if log is not None:  # only this run's own line file, once its final file is written
            (self.folder.path / self.log_name).unlink(missing_ok=True)


class CocoJsonWriter(_JsonLinesWriter):
    """``predictions.json``: COCO results (``file_name`` = the input's path below the inputs' common
    folder, ``source`` = the path as given, ``frame`` for videos, ``bbox`` x, y, w, h in pixels)."""

    name = "json"
    log_name, final_name = "predictions.jsonl", "predictions.json"

    def frame_records(self, frame, det):
        extra = {"source": str(frame.source)} | ({"frame": frame.index} if frame.index is not None else {})
        return coco_records(det, self.file_name(frame), self.names, **extra)

    def final_text(self):
        return json.dumps(self.records, indent=1)


class GeoJsonWriter(_JsonLinesWriter):
    """``detections.geojson``: one FeatureCollection, a polygon per detection (``detector.io.geojson``):
    RFC 7946 longitude/latitude for georeferenced inputs (``crs="native"``: the raster's own CRS), pixel
    coordinates for the others (marked ``"coordinates": "pixel"``)."""

    name = "geojson"
    log_name, final_name = "detections.geojsonl", "detections.geojson"

    def __init__(self, folder, names, crs: str = "wgs84"):
        super().__init__(folder, names)
        self.collection = GeoJsonCollection(names, crs)

    def planned(self, source):
        return super().planned(source) + [self.folder.path / PIXEL_FILE]

    def frame_records(self, frame, det):
        return self.collection.features(frame.geo, det, self.file_name(frame), frame.index)

    def close(self):
        log, self._log = self._log, None
        if log is not None:
            log.close()
        files = self.collection.files(self.records)
        for old in self.folder.own_files("detections.*.geojson"):  # an earlier run's per-CRS or pixel file
            if old.name not in files:
                old.unlink()
        for name, text in files.items():
            path = self.folder.claim(self.folder.path / name)
            atomic_write_text(path, text)
            self.files.append(path)
        if log is not None:  # only this run's own line file, once its final files are written
            (self.folder.path / self.log_name).unlink(missing_ok=True)


WRITERS: dict[str, type[Writer]] = {w.name: w for w in (ImageWriter, TxtWriter, CocoJsonWriter, GeoJsonWriter)}


def write_frame(writers: Iterable[Writer], frame: Frame, det: np.ndarray, on_error) -> None:
    """One frame to every writer, Ctrl-C held until all have it (the outputs hold the same frames). A writer
    failing on the frame is reported to ``on_error(source, reason)`` and the others write; a file-system
    error (a full disk: ``DiskFullError``) stops the run."""
    with interrupts_held():
        for w in writers:
            try:
                w.write(frame, det)
            except OSError:
                raise
            except Exception as e:  # noqa: BLE001 - reported with the file and the output, the run goes on
                why = " ".join(str(e).split())[:200] or type(e).__name__
                where = frame.source if frame.index is None else f"{frame.source} frame {frame.index}"
                on_error(where, f"{w.name} output not written: {why}")


def close_writers(writers: Iterable[Writer]) -> None:
    """Close every writer (final files written, line files removed), then raise the first failure."""
    errors = []
    for w in writers:
        try:
            w.close()
        except Exception as e:  # noqa: BLE001 - re-raised below, after the others are closed
            errors.append(e)
    if errors:
        raise errors[0]


JPEG_MAX_SIDE = 65_500  # libjpeg's largest side (OpenCV refuses more)


def fit_jpeg(pixels: np.ndarray, det: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``pixels`` and ``det`` downscaled so the render fits in a JPEG (a warning says so), else unchanged."""
    h, w = pixels.shape[:2]
    k = JPEG_MAX_SIDE / max(h, w)
    if k >= 1:
        return pixels, det
    from ultralytics.utils import LOGGER

    size = (max(1, int(w * k)), max(1, int(h * k)))
    det = np.asarray(det, dtype=np.float32).reshape(-1, 6).copy()
    det[:, :4] *= np.array([size[0] / w, size[1] / h] * 2, np.float32)
    LOGGER.warning(f"{path}: the render of a {w}x{h} image is downscaled to {size[0]}x{size[1]} (JPEG holds at most "
                   f"{JPEG_MAX_SIDE} px a side); the detections are in full-size pixels in the other outputs")
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), det


def scene_render(scene, det: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The render of a lazy scene (read window by window, never whole): the scene read decimated
    (``detector.io.scene.OVERVIEW_PIXELS``) with ``det`` scaled to it; a warning says so."""
    from ultralytics.utils import LOGGER

    H, W = scene.shape[:2]
    pixels = scene.overview()
    h, w = pixels.shape[:2]
    det = np.asarray(det, dtype=np.float32).reshape(-1, 6).copy()
    det[:, :4] *= np.array([w / W, h / H] * 2, np.float32)
    LOGGER.warning(f"{path}: the render of the {W}x{H} scene is read decimated to {w}x{h} (the scene is read window "
                   "by window, never whole); the detections are in full-size pixels in the other outputs")
    return fit_jpeg(pixels, det, path)


def make_writers(names: Iterable[str], folder: OutputFolder, class_names: dict[int, str],
                 options: dict[str, dict[str, Any]] | None = None) -> list[Writer]:
    """Writers by name (``WRITERS``), in the order given, each with its ``options[name]`` (keyword
    arguments: ``{"geojson": {"crs": "native"}}``); unknown names are an error."""
    out = []
    for n in names:
        if n not in WRITERS:
            raise ValueError(f"unknown output {n!r}; choose from {sorted(WRITERS)}")
        out.append(WRITERS[n](folder, class_names, **(options or {}).get(n, {})))
    return out

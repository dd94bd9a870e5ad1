"""Reading images, and expanding a source (folder, file, glob) into image and video files.

Remote-sensing imagery is often not 8-bit RGB: grayscale SAR, RGBA, 16-bit or float GeoTIFF. Every
image is turned into an 8-bit BGR array (``read_image``); ``load_image`` also returns what the file
says about where it lies on the ground (a GeoTIFF's transform and CRS, ``detector.io.geo``). A file
that cannot be read raises ``ImageReadError`` naming it, and callers skip it with a warning and list
it in their summary, so one bad file never stops a folder.

``IMAGE_SUFFIXES`` is the project's one list of image suffixes: exactly what Ultralytics' data loader
reads, so the converters write only images training can use and every tool accepts the same files.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import cv2
import numpy as np

# ultralytics.data.utils.IMG_FORMATS / VID_FORMATS in 8.4 (tests/test_data_tools.py keeps them in sync)
IMAGE_SUFFIXES = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"})
VIDEO_SUFFIXES = frozenset({"asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "webm", "wmv"})
if TYPE_CHECKING:
    from .geo import GeoReference

MAX_PIXELS = 2**31  # refuse absurd sizes before allocating (cv2's own default limit is 2^30)


class ImageReadError(RuntimeError):
    """An input image could not be read; the message names the file and why."""


def suffix(path: str | Path) -> str:
    return Path(path).suffix.lower().lstrip(".")


def is_image(path: str | Path) -> bool:
    return suffix(path) in IMAGE_SUFFIXES


def is_video(path: str | Path) -> bool:
    return suffix(path) in VIDEO_SUFFIXES


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale 16-bit, 32-bit or float imagery to 8 bits by a robust per-image range (0.5-99.5 percentile)."""
    if img.dtype == np.uint8:
        return img
    a = img.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(img.shape, np.uint8)
    lo, hi = np.percentile(a[finite], (0.5, 99.5))
    if hi <= lo:
        hi = lo + 1.0
    a = np.where(finite, a, lo)
    return np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def to_bgr(img: np.ndarray) -> np.ndarray:
    """Grayscale -> 3 channels, BGRA -> BGR (alpha dropped), more than 4 bands -> the first three."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if img.ndim == 3 and img.shape[2] == 2:  # gray + alpha
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] >= 3:
        return np.ascontiguousarray(img[..., :3])
    raise ValueError(f"unsupported image shape {img.shape}")


def read_image(path: str | Path) -> np.ndarray:
    """Read any supported image as 8-bit BGR ``(H, W, 3)``. Paths with spaces or non-ASCII characters
    work (bytes are decoded in memory). Raises ``ImageReadError`` naming the file."""
    path = Path(path)
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise ImageReadError(f"cannot open {path}: {e.strerror or e}") from e
    if data.size == 0:
        raise ImageReadError(f"empty file: {path}")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    except cv2.error as e:  # OpenCV raises (not returns None) e.g. when the header claims too many pixels
        why = "image too large for OpenCV (CV_IO_MAX_IMAGE_PIXELS)" if "MAX_IMAGE_PIXELS" in str(e) else e.err
        raise ImageReadError(f"cannot decode {path}: {why}") from e
    if img is None and path.suffix.lower() in {".tif", ".tiff"}:
        try:  # multi-band or exotic TIFFs that OpenCV declines
            import tifffile

            img = tifffile.imread(str(path))
            if img.ndim == 3 and img.shape[0] in (1, 2, 3, 4) and img.shape[-1] > 4:  # band-first
                img = np.moveaxis(img, 0, -1)
            if img.ndim == 3 and img.shape[-1] >= 3:
                img = img[..., [2, 1, 0]]  # tifffile gives RGB; we work in BGR
        except Exception as e:  # noqa: BLE001 - reported below with the file name
            raise ImageReadError(f"cannot decode TIFF {path}: {e}") from e
    if img is None:
        raise ImageReadError(f"not a readable image (corrupt or unsupported format): {path}")
    if img.size == 0 or min(img.shape[:2]) < 2:
        raise ImageReadError(f"image has no usable pixels {img.shape}: {path}")
    if img.shape[0] * img.shape[1] > MAX_PIXELS:
        raise ImageReadError(f"image too large ({img.shape[1]}x{img.shape[0]} px): {path}")
    try:
        return to_bgr(to_uint8(img))
    except ValueError as e:
        raise ImageReadError(f"{e}: {path}") from e


@dataclass
class LoadedImage:
    """An image as the detector reads it: 8-bit BGR pixels and, when the file carries it, its place on
    the ground (``detector.io.geo.GeoReference``)."""

    path: Path
    pixels: np.ndarray
    geo: "GeoReference | None" = None


def load_image(path: str | Path) -> LoadedImage:
    """``read_image`` plus the georeferencing of a GeoTIFF (None for other files or plain TIFFs)."""
    from .geo import read_georeference

    path = Path(path)
    pixels = read_image(path)
    geo = read_georeference(path) if suffix(path) in {"tif", "tiff"} else None
    return LoadedImage(path, pixels, geo)


@dataclass
class SourceList:
    """The files a source expanded to, entries that were skipped (with the reason), and ``root``: the
    folder every input lies under (their common folder), against which output names are formed."""

    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None
    folders: list[Path] = field(default_factory=list)  # source folders given (outputs must not go there)

    @property
    def inputs(self) -> list[Path]:
        return self.images + self.videos


def expand_source(source: str | Path) -> SourceList:
    """Expand a folder (recursively sorted), a file or a glob pattern into image and video files.
    Files with other suffixes are listed as skipped, not silently ignored."""
    out = SourceList()
    s = str(source)
    p = Path(s).expanduser()
    if p.is_dir():
        candidates = sorted(x for x in p.rglob("*") if x.is_file())
        out.folders.append(p)
    elif p.is_file():
        candidates = [p]
    elif any(ch in s for ch in "*?["):
        candidates = sorted(Path(x) for x in glob.glob(s, recursive=True) if Path(x).is_file())
        if not candidates:
            raise FileNotFoundError(f"no files match {s}")
        static = Path(s.split("*")[0].split("?")[0].split("[")[0])
        out.folders.append(static if static.is_dir() else static.parent)
    else:
        raise FileNotFoundError(f"source not found: {s}")
    for f in candidates:
        if is_image(f):
            out.images.append(f)
        elif is_video(f):
            out.videos.append(f)
        elif f.name.startswith("."):
            continue  # hidden files (.DS_Store, editor swap files) are not inputs
        else:
            out.skipped.append((str(f), f"not an image or video (suffix {suffix(f) or 'none'})"))
    files = out.inputs
    if files:
        import os

        out.root = Path(os.path.commonpath([str(f.resolve().parent) for f in files]))
    return out


def video_fps(path: str | Path, default: float = 25.0) -> float:
    """A video's frame rate as its container states it (``default`` when it does not)."""
    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 0 < fps < 1000 else default


def iter_video(path: Path, stride: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, BGR frame) from a video; raises ImageReadError if it cannot be opened."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ImageReadError(f"cannot open video {path}")
    try:
        i = 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % stride == 0:
                yield i, to_bgr(to_uint8(frame))
            i += 1
    finally:
        cap.release()

"""Reading images, and expanding a source (folder, file, glob) into image and video files.

Remote-sensing imagery is often not 8-bit RGB: grayscale SAR, RGBA, 16-bit or float GeoTIFF, JPEG 2000,
Cloud-Optimized GeoTIFF. Every image is turned into an 8-bit BGR array (``read_image``): GeoTIFF and
JPEG 2000 through GDAL (``detector.io.gdal``) when rasterio is installed, everything else through
OpenCV (tifffile for TIFFs OpenCV declines). ``load_image`` also returns where the image lies on the
ground (``detector.io.geo``). A file that cannot be read raises ``ImageReadError`` naming it, and
callers skip it with a warning and list it in their summary, so one bad file never stops a folder.

Images that are not 8-bit (16-bit SAR amplitude, float, complex) are scaled by ``to_uint8``: a linear
stretch between the 0.5th and 99.5th percentiles of the image's values. Detection applies it when it
reads a file, and the dataset converters write training images through the same function
(``convert_to_8bit``), so a model sees 16-bit scenes the same way in training and in detection.

``IMAGE_SUFFIXES`` is the project's one list of image suffixes: exactly what Ultralytics' data loader
reads, so the converters write only images training can use and every tool accepts the same files.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import cv2
import numpy as np

from ..files import atomic_write_bytes, file_kind
from .sidecars import find_sidecars

# ultralytics.data.utils.IMG_FORMATS / VID_FORMATS in 8.4 (tests/test_data_tools.py keeps them in sync)
IMAGE_SUFFIXES = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp"})
VIDEO_SUFFIXES = frozenset({"asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "webm", "wmv"})
if TYPE_CHECKING:
    from .georef import GeoReference

# A whole-image read may hold at most this many bytes: the decoded samples plus their 8-bit BGR copy
# (a 20,000 x 20,000 px RGB scene needs 2.4 GB). Every tool reads through this one check; a larger
# raster is read window by window (``detector.io.scene``) or refused in one line naming the file.
MAX_IMAGE_BYTES = 3 << 30


class ImageReadError(RuntimeError):
    """An input image could not be read; the message names the file and why."""


class ImageTooLarge(ImageReadError):
    """An image whose whole-image read would pass ``MAX_IMAGE_BYTES``; the message names the file, its size
    and what reads it instead."""


def image_bytes(width: int, height: int, bands: int, itemsize: int) -> int:
    """The bytes a whole-image read holds at its peak: the decoded samples and their 8-bit BGR copy."""
    return int(width) * int(height) * (int(bands) * int(itemsize) + 3)


def check_image_bytes(path: str | Path, width: int, height: int, bands: int, itemsize: int) -> None:
    """Raise ``ImageTooLarge`` naming ``path`` when a whole-image read of it passes ``MAX_IMAGE_BYTES``."""
    from ..files import size_text

    need = image_bytes(width, height, bands, itemsize)
    if need > MAX_IMAGE_BYTES or min(width, height) < 0:
        raise ImageTooLarge(f"{path}: {width}x{height} px, {bands} band(s) of {itemsize * 8}-bit samples: reading it "
                            f"whole needs {size_text(need)} (at most {size_text(MAX_IMAGE_BYTES)}); a GeoTIFF or JPEG "
                            "2000 this large is read window by window when detected tile by tile (--tile auto)")


_PIL_BYTES = {"1": 1, "L": 1, "P": 1, "LA": 1, "RGB": 1, "RGBA": 1, "CMYK": 1, "YCbCr": 1, "I;16": 2, "I;16B": 2,
              "I": 4, "F": 4}


def check_header(path: Path) -> None:
    """``check_image_bytes`` from the file's header, before OpenCV decodes it: Pillow reads the size and
    mode without decoding (formats Pillow does not know keep OpenCV's own pixel limit)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning: the check below decides
            with Image.open(path) as im:
                w, h, mode, bands = im.width, im.height, im.mode, len(im.getbands())
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels", str(e))
        px = int(m.group(1)) if m else MAX_IMAGE_BYTES
        raise ImageTooLarge(f"{path}: {px:,} px: reading it whole needs more than {MAX_IMAGE_BYTES >> 30} GiB") from None
    except Exception:  # noqa: BLE001 - not a format Pillow knows (or a corrupt header): OpenCV decides
        return
    check_image_bytes(path, w, h, bands, _PIL_BYTES.get(mode, 4))


def suffix(path: str | Path) -> str:
    return Path(path).suffix.lower().lstrip(".")


def is_image(path: str | Path) -> bool:
    return suffix(path) in IMAGE_SUFFIXES


def is_video(path: str | Path) -> bool:
    return suffix(path) in VIDEO_SUFFIXES


# -- 8-bit scaling: one definition for training conversion and detection ------------------------
STRETCH_PERCENTILES = (0.5, 99.5)
STRETCH_SAMPLES = 1 << 22  # percentiles from every k-th value, at most ~4 M: exact for tiles, fast for scenes
_BLOCK = 1 << 20  # values scaled at a time (bounds the float copy for large scenes)


def stretch_range(img: np.ndarray) -> tuple[float, float]:
    """``(lo, hi)`` of the 8-bit stretch: the 0.5th and 99.5th percentiles of the image's finite values,
    all bands together (colours keep their balance)."""
    flat = img.reshape(-1)
    a = flat[:: max(1, flat.size // STRETCH_SAMPLES)].astype(np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(a, STRETCH_PERCENTILES))
    return lo, (hi if hi > lo else lo + 1.0)


def apply_stretch(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``255 (v - lo) / (hi - lo)`` clipped to 0..255 and truncated to uint8; non-finite values -> 0."""
    out = np.empty(img.shape, np.uint8)
    src, dst = img.reshape(-1), out.reshape(-1)
    scale = 255.0 / (hi - lo)
    for i in range(0, src.size, _BLOCK):
        a = src[i: i + _BLOCK].astype(np.float64)
        with np.errstate(invalid="ignore"):
            dst[i: i + _BLOCK] = np.where(np.isfinite(a), np.clip((a - lo) * scale, 0, 255), 0)
    return out


def to_uint8(img: np.ndarray) -> np.ndarray:
    """8-bit pixels: uint8 unchanged; complex (SAR single-look complex) -> its amplitude; anything else
    (16/32-bit integers, floats) stretched linearly between its 0.5th and 99.5th percentiles. Linear, not
    dB: the 8-bit SAR products the shipped model was trained on (SSDD) show a dark sea and saturated
    ships, which a linear stretch of amplitude reproduces."""
    if img.dtype == np.uint8:
        return img
    if np.iscomplexobj(img):
        img = np.abs(img)
    return apply_stretch(img, *stretch_range(img))


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


def read_raw(path: str | Path) -> np.ndarray:
    """The pixels of an image file in their own sample type, ``(H, W)`` or ``(H, W, C)`` in BGR(A) order,
    bounded by ``MAX_IMAGE_BYTES`` (checked from the header, before decoding). GeoTIFF and JPEG 2000 are
    read through GDAL's guarded door (``detector.io.gdal.open_raster``) when rasterio is installed.
    Raises ``ImageReadError`` naming the file."""
    from . import gdal

    path = Path(path)
    if not path.is_file() and (path.exists() or path.is_symlink()):  # a FIFO would block the read forever
        raise ImageReadError(f"not a regular file ({file_kind(path)}): {path}")
    if suffix(path) in gdal.GDAL_SUFFIXES and gdal.rasterio_module() is not None:
        try:
            return gdal.read_pixels(path)
        except ImageReadError:
            raise
        except gdal.RasterRefused as e:
            raise ImageReadError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - GDAL's reasons vary; one line naming the file
            raise ImageReadError(f"cannot decode {path}: {' '.join(str(e).split()) or type(e).__name__}") from e
    if os.stat(path).st_size > MAX_IMAGE_BYTES:
        raise ImageTooLarge(f"{path}: the file alone is larger than {MAX_IMAGE_BYTES >> 30} GiB")
    check_header(path)
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

            with tifffile.TiffFile(str(path)) as t:
                series, page = t.series[0], t.pages[0]
                w, h = int(page.imagewidth), int(page.imagelength)
                bands = int(np.prod(series.shape, dtype=np.float64)) // max(1, w * h)
                check_image_bytes(path, w, h, bands, series.dtype.itemsize if series.dtype is not None else 8)
                img = t.asarray()
            if img.ndim == 3 and img.shape[0] in (1, 2, 3, 4) and img.shape[-1] > 4:  # band-first
                img = np.moveaxis(img, 0, -1)
            if img.ndim == 3 and img.shape[-1] >= 3:
                img = img[..., [2, 1, 0]]  # tifffile gives RGB; we work in BGR
        except ImageReadError:
            raise
        except Exception as e:  # noqa: BLE001 - reported below with the file name
            raise ImageReadError(f"cannot decode TIFF {path}: {e}") from e
    if img is None:
        raise ImageReadError(f"not a readable image (corrupt or unsupported format): {path}")
    return img


def read_image(path: str | Path) -> np.ndarray:
    """Read any supported image as 8-bit BGR ``(H, W, 3)`` (``to_uint8`` for other sample types). Paths
    with spaces or non-ASCII characters work. Raises ``ImageReadError`` naming the file."""
    img = read_raw(path)
    if img.size == 0 or min(img.shape[:2]) < 2:
        raise ImageReadError(f"image has no usable pixels {img.shape}: {path}")
    try:
        return to_bgr(to_uint8(img))
    except ValueError as e:
        raise ImageReadError(f"{e}: {path}") from e


def is_8bit(path: str | Path) -> bool:
    """Whether an image file holds 8-bit samples (Ultralytics reads those unchanged); from the header for
    PNG and TIFF, by decoding for JPEG 2000; JPEG, BMP, WebP and the rest are 8-bit."""
    path, s = Path(path), suffix(path)
    if s == "png":
        with open(path, "rb") as f:
            head = f.read(26)
        return not (head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] > 8)  # IHDR bit depth
    if s in ("tif", "tiff"):
        try:
            import tifffile

            with tifffile.TiffFile(str(path)) as t:
                return t.pages[0].dtype == np.uint8
        except Exception:  # noqa: BLE001 - tifffile declines it: decode to find out
            pass
    if s in ("tif", "tiff", "jp2"):
        return read_raw(path).dtype == np.uint8
    return True


def convert_to_8bit(src: str | Path, dst: str | Path) -> bool:
    """For the dataset converters: when ``src`` is not 8-bit, write ``dst`` (same format) with the pixels
    detection reads from ``src`` (``read_image``) and return True; return False for an 8-bit image, which
    the converter copies as it is. Without it, Ultralytics would train on the high byte of 16-bit images
    while detection stretches them. Raises ``ImageReadError`` naming the file."""
    if is_8bit(src):
        return False
    img = read_image(src)
    ext = Path(dst).suffix.lower() or ".png"
    lossless = [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, 1000] if ext == ".jp2" else []  # else OpenCV's JP2 is lossy
    ok, buf = cv2.imencode(ext, img, lossless)
    if not ok:
        raise ImageReadError(f"cannot encode {dst} as 8-bit {Path(dst).suffix}")
    atomic_write_bytes(dst, buf.tobytes())  # never a half-written image (a full disk: one line)
    return True


@dataclass
class LoadedImage:
    """An image as the detector reads it: 8-bit BGR pixels and, when the file carries it, its place on
    the ground (``detector.io.georef.GeoReference``)."""

    path: Path
    pixels: np.ndarray
    geo: "GeoReference | None" = None


def load_image(path: str | Path) -> LoadedImage:
    """``read_image`` plus the georeferencing (``detector.io.geo.read_georeference``; None for images
    that carry none)."""
    from .geo import read_georeference

    path = Path(path)
    pixels = read_image(path)
    return LoadedImage(path, pixels, read_georeference(path))


@dataclass
class SourceList:
    """The files a source expanded to, entries that were skipped (with the reason), and ``root``: the
    folder every input lies under (their common folder), against which output names are formed."""

    images: list[Path] = field(default_factory=list)
    videos: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None
    folders: list[Path] = field(default_factory=list)  # source folders given (outputs must not go there)
    sidecars: list[Path] = field(default_factory=list)  # .aux.xml, world files... of the images (detector.io.sidecars)

    @property
    def inputs(self) -> list[Path]:
        return self.images + self.videos


def expand_source(source: str | Path) -> SourceList:
    """Expand a folder (recursively sorted), a file or a glob pattern into image and video files.
    Sidecar files of the images (world files, .aux.xml, ...) are listed as such; files with other
    suffixes are listed as skipped, not silently ignored."""
    out = SourceList()
    s = str(source)
    p = Path(s).expanduser()
    if p.is_dir():
        entries = sorted(x for x in p.rglob("*") if not x.is_dir())
        out.folders.append(p)
    elif p.is_file():
        entries = [p]
    elif p.exists() or p.is_symlink():  # a FIFO (reading it would block), socket, device or broken link
        raise ValueError(f"source {s} is not a regular file ({file_kind(p)})")
    elif any(ch in s for ch in "*?["):
        entries = sorted(Path(x) for x in glob.glob(s, recursive=True) if not Path(x).is_dir())
        if not entries:
            raise FileNotFoundError(f"no files match {s}")
        static = Path(s.split("*")[0].split("?")[0].split("[")[0])
        out.folders.append(static if static.is_dir() else static.parent)
    else:
        raise FileNotFoundError(f"source not found: {s}")
    candidates = [x for x in entries if x.is_file()]  # only regular files are read
    out.skipped += [(str(x), f"not a regular file ({file_kind(x)})") for x in entries
                    if not x.is_file() and not x.name.startswith(".")]
    sidecars = find_sidecars(candidates, is_image)
    for f in candidates:
        if f in sidecars:
            out.sidecars.append(f)
        elif is_image(f):
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

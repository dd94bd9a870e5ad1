"""GDAL, through rasterio, loaded only when a file needs it.

rasterio's wheel carries its own GDAL and PROJ. It reads the georeferencing of rasters
(``detector.io.geo``) and the pixels of the formats OpenCV reads badly or not at all: multi-band
16-bit GeoTIFFs (OpenCV returns one band), Cloud-Optimized GeoTIFFs compressed with ZSTD, LERC or
WEBP, JPEG 2000. It is imported lazily: training, and detection on PNG/JPEG without sidecar files,
never load it, and a machine without it (a training-only GPU node) still trains and detects - a
georeferenced input then gets a one-line warning and pixel coordinates.

Offline: the paths opened are local files (``expand_source`` found them); PROJ's network access is
off (the wheel's ``proj.ini`` says ``network = off``; only ``PROJ_NETWORK=ON`` set by the user turns
it on), so a datum shift whose grid PROJ does not hold uses PROJ's ballpark transformation.

GDAL reports problems through rasterio's logger ("GeoTIFF tags apparently corrupt, they are being
ignored"); ``opened`` collects them instead, so the caller folds them into its one warning that
names the file.
"""

from __future__ import annotations

import logging
import re
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

# Formats whose files carry their own georeferencing and which GDAL reads better than OpenCV.
GDAL_SUFFIXES = frozenset({"tif", "tiff", "jp2"})
MISSING = "rasterio is not installed (pip install rasterio==1.4.4)"
_rasterio: Any = None


def rasterio_module():
    """``rasterio`` (imported on first use), or None when it is not installed."""
    global _rasterio
    if _rasterio is None:
        try:
            import rasterio
            import rasterio.warp  # noqa: F401  (reprojection, used by detector.io.geo)
        except ImportError:
            _rasterio = False
        else:
            _rasterio = rasterio
    return _rasterio or None


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        self.messages.append(re.sub(r"^CPLE_\w+ in ", "", text))  # rasterio's prefix: GDAL's error class


@contextmanager
def gdal_messages() -> Iterator[list[str]]:
    """Collect GDAL's warnings and errors (logged by rasterio) instead of printing them."""
    log = logging.getLogger("rasterio")
    handler, propagate = _Collect(), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning: a plain image, not a problem
            yield handler.messages
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


@contextmanager
def environment() -> Iterator[list[str]]:
    """A GDAL environment (so GDAL's errors reach rasterio, not stderr) whose messages are collected
    (``gdal_messages``). Raises ImportError without rasterio."""
    rasterio = rasterio_module()
    if rasterio is None:
        raise ImportError(MISSING)
    with gdal_messages() as messages, rasterio.Env():
        yield messages


@contextmanager
def opened(path: str | Path) -> Iterator[tuple[Any, list[str]]]:
    """``(dataset, GDAL's messages)`` for a local raster file, read-only. Raises ImportError without
    rasterio and rasterio's errors for a file GDAL cannot open."""
    with environment() as messages, rasterio_module().open(str(path)) as ds:
        yield ds, messages


def band_indexes(ds) -> list[int]:
    """The bands that make the 8-bit BGR image (1-based): red, green, blue when the file labels them,
    else band 1 alone (one or two bands: gray, gray + alpha, or two SAR polarisations), else the first
    three taken as red, green, blue, as OpenCV and tifffile read them."""
    from rasterio.enums import ColorInterp

    ci = list(ds.colorinterp)
    rgb = [ci.index(c) + 1 for c in (ColorInterp.blue, ColorInterp.green, ColorInterp.red) if c in ci]
    if len(rgb) == 3:
        return rgb
    return [1] if ds.count < 3 else [3, 2, 1]


def read_pixels(path: str | Path, max_pixels: int) -> np.ndarray:
    """The pixels of a raster in its own sample type: ``(H, W)`` or ``(H, W, 3)`` in BGR order; a palette
    band is expanded to its colours. Raises ValueError (or rasterio's errors) naming nothing: the caller
    names the file."""
    with opened(path) as (ds, _):
        if ds.width * ds.height > max_pixels:
            raise ValueError(f"image too large ({ds.width}x{ds.height} px)")
        bands = band_indexes(ds)
        from rasterio.enums import ColorInterp

        if bands == [1] and ds.colorinterp[0] == ColorInterp.palette:
            lut = np.zeros((256, 3), np.uint8)
            for i, rgba in ds.colormap(1).items():
                if 0 <= i < 256:
                    lut[i] = (rgba[2], rgba[1], rgba[0])  # (r, g, b, a) -> BGR
            return lut[ds.read(1).astype(np.intp).clip(0, 255)]
        a = ds.read(bands)  # (bands, H, W)
        nbits = int(ds.tags(bands[0], ns="IMAGE_STRUCTURE").get("NBITS", 8))
        if a.dtype == np.uint8 and nbits < 8:  # 1, 2 or 4-bit samples (GDAL gives 0..2^n - 1): full range
            a = (a.astype(np.uint16) * 255 // ((1 << nbits) - 1)).astype(np.uint8)
    return a[0] if len(bands) == 1 else np.ascontiguousarray(np.moveaxis(a, 0, -1))

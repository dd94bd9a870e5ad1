"""Scenes: what sliced inference reads its tiles from.

A frame's ``pixels`` is either a numpy BGR uint8 array ``(H, W, 3)`` or a lazy scene: any object with

* ``shape == (H, W, 3)``, and
* ``read(x0, y0, x1, y1) -> np.ndarray``: the BGR uint8 window ``[y0:y1, x0:x1]`` (a new array);

so that a raster much larger than memory is read window by window, never whole. ``read_window`` and
``as_array`` work on both kinds; ``RasterScene`` is the lazy scene of a raster file, read through GDAL
(rasterio, imported when a scene is opened).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Scene(Protocol):
    shape: tuple[int, int, int]

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray: ...


def scene_shape(pixels: np.ndarray | Scene) -> tuple[int, int, int]:
    return tuple(int(v) for v in pixels.shape)  # type: ignore[return-value]


def read_window(pixels: np.ndarray | Scene, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """The BGR uint8 window ``[y0:y1, x0:x1]`` of an array or a lazy scene, as a contiguous array."""
    if isinstance(pixels, np.ndarray):
        return np.ascontiguousarray(pixels[y0:y1, x0:x1])
    return np.ascontiguousarray(pixels.read(x0, y0, x1, y1))


def as_array(pixels: np.ndarray | Scene) -> np.ndarray:
    """The whole image as an array (a lazy scene is read in full: only for what needs every pixel)."""
    if isinstance(pixels, np.ndarray):
        return pixels
    H, W = scene_shape(pixels)[:2]
    return read_window(pixels, 0, 0, W, H)


# --------------------------------------------------------------------------------------------
# A raster read window by window through GDAL
# --------------------------------------------------------------------------------------------

LAZY_PIXELS = 1 << 26  # tiled scenes above 67 M pixels (8192 x 8192) are read window by window
STRETCH_SAMPLE_PIXELS = 1 << 22  # pixels the 8-bit stretch of a deeper raster is taken from
STRETCH_WINDOW = 256  # ... read as a grid of windows this large when the raster has no overviews
OVERVIEW_PIXELS = 1 << 26  # a render of a lazy scene is read decimated to at most this many pixels


class RasterScene:
    """A raster file as a lazy scene: ``read`` decodes one window through GDAL's guarded door
    (``detector.io.gdal.open_raster``), so memory is bounded by the window, not the scene (each window
    within ``detector.io.images.MAX_IMAGE_BYTES``). Bands and their order are those of a whole-image read
    (``detector.io.gdal.band_indexes``). A raster that is not 8-bit is stretched to 8 bits with the same
    function as a whole image (``detector.io.images.apply_stretch``); its range comes from about 4 M
    pixels of the raster - its overviews (a decimated read), else a grid of 8 x 8 windows of 256 px
    spread over it (a decimated read without overviews would decode every block) - the same for every
    window, where a whole-image read samples every k-th value: the two can differ by a few grey levels. 8-bit rasters read exactly as whole images do."""

    def __init__(self, path: str | Path):
        from .gdal import band_indexes, open_raster

        self.path = Path(path)
        self.raster = open_raster(self.path)
        self.ds = self.raster.ds
        self.bands = band_indexes(self.ds)
        self.itemsize = np.dtype(self.ds.dtypes[self.bands[0] - 1]).itemsize
        self.shape = (int(self.ds.height), int(self.ds.width), 3)
        self.stretch = None if self.ds.dtypes[self.bands[0] - 1] == "uint8" else self._stretch()

    def _decimated(self, max_pixels: int) -> np.ndarray:
        """The whole raster read at most ``max_pixels`` large (GDAL's overviews or nearest neighbour)."""
        H, W = self.shape[:2]
        k = max(1.0, (H * W / max_pixels) ** 0.5)
        return self.raster.read(self.bands, out_shape=(len(self.bands), max(1, int(H / k)), max(1, int(W / k))))

    def _stretch(self) -> tuple[float, float]:
        from .images import stretch_range

        H, W = self.shape[:2]
        if H * W <= STRETCH_SAMPLE_PIXELS or self.ds.overviews(self.bands[0]):
            sample = self._decimated(STRETCH_SAMPLE_PIXELS)
        else:  # a grid of windows: a decimated read without overviews would decode every block of the raster
            from rasterio.windows import Window

            n = int((STRETCH_SAMPLE_PIXELS / STRETCH_WINDOW**2) ** 0.5)
            h, w = min(STRETCH_WINDOW, H), min(STRETCH_WINDOW, W)
            parts = [self.raster.read(self.bands, window=Window(int(x), int(y), w, h)).reshape(len(self.bands), -1)
                     for y in np.linspace(0, H - h, n) for x in np.linspace(0, W - w, n)]
            sample = np.concatenate(parts, axis=1)
        return stretch_range(np.abs(sample) if np.iscomplexobj(sample) else sample)

    def _bgr(self, a: np.ndarray) -> np.ndarray:
        from .images import apply_stretch, to_bgr

        if self.stretch is not None:
            a = apply_stretch(np.abs(a) if np.iscomplexobj(a) else a, *self.stretch)
        return to_bgr(a[0] if len(self.bands) == 1 else np.moveaxis(a, 0, -1))

    def read(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        from rasterio.windows import Window

        from .images import check_image_bytes

        from .images import ImageReadError

        where = f"{self.path} (window {x1 - x0}x{y1 - y0} px at x={x0}, y={y0})"
        check_image_bytes(where, x1 - x0, y1 - y0, len(self.bands), self.itemsize)
        try:
            a = self.raster.read(self.bands, window=Window(x0, y0, x1 - x0, y1 - y0))  # (bands, h, w)
        except Exception as e:  # noqa: BLE001 - a corrupt block: this scene is skipped, the folder goes on
            raise ImageReadError(f"{where}: cannot be decoded ({' '.join(str(e).split())[:200]})") from None
        return self._bgr(a)

    def overview(self, max_pixels: int = OVERVIEW_PIXELS) -> np.ndarray:
        """The whole scene as BGR uint8, decimated to at most ``max_pixels`` (for a render)."""
        return self._bgr(self._decimated(max_pixels))

    def close(self) -> None:
        self.raster.close()


def open_scene(path: str | Path, min_pixels: int | None = LAZY_PIXELS) -> RasterScene | None:
    """A lazy ``RasterScene`` for a raster GDAL reads (GeoTIFF, JPEG 2000) of more than ``min_pixels``
    pixels (None: only one too large to read whole, ``detector.io.images.MAX_IMAGE_BYTES``), else None
    (the image is read whole, as usual; so is a palette raster, or one GDAL cannot or may not open,
    whose whole-image read then reports the problem)."""
    from .gdal import GDAL_SUFFIXES, rasterio_module
    from .images import MAX_IMAGE_BYTES, image_bytes

    if Path(path).suffix.lower().lstrip(".") not in GDAL_SUFFIXES or rasterio_module() is None:
        return None
    try:
        scene = RasterScene(path)
    except Exception:  # noqa: BLE001 - let the whole-image reader name the problem
        return None
    from rasterio.enums import ColorInterp

    H, W = scene.shape[:2]
    large = image_bytes(W, H, len(scene.bands), scene.itemsize) > MAX_IMAGE_BYTES
    if not (large or (min_pixels is not None and H * W > min_pixels)) or \
            scene.ds.colorinterp[scene.bands[0] - 1] == ColorInterp.palette:
        scene.close()
        return None
    return scene


def read_scene(path: str | Path, tiled: bool, lazy_pixels: int | None = LAZY_PIXELS) -> np.ndarray | RasterScene:
    """What a tool reads an image as: the whole image (``detector.io.images.read_image``), or - when it
    will be read tile by tile - a lazy scene for a large raster (``open_scene``), so every tool reads
    large rasters window by window. Raises ``ImageReadError`` naming the file."""
    if tiled and (scene := open_scene(path, lazy_pixels)) is not None:
        return scene
    from .images import read_image

    return read_image(path)

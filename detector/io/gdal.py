"""GDAL, through rasterio, loaded only when a file needs it; and the one guarded way to open a raster.

rasterio's wheel carries its own GDAL and PROJ. It reads the georeferencing of rasters
(``detector.io.geo``) and the pixels of the formats OpenCV reads badly or not at all: multi-band
16-bit GeoTIFFs (OpenCV returns one band), Cloud-Optimized GeoTIFFs compressed with ZSTD, LERC or
WEBP, JPEG 2000. It is imported lazily: training, and detection on PNG/JPEG without sidecar files,
never load it, and a machine without it (a training-only GPU node) still trains and detects - a
georeferenced input then gets a one-line warning and pixel coordinates.

GDAL can reach much further than the file it is given: a VRT (an XML file, whatever its name) names
other files, archive members (``/vsizip/``) or URLs (``/vsicurl/``), and GDAL follows them; a raw
band reads any file's bytes; a FIFO blocks ``open()`` forever. ``open_raster`` is therefore the only
door through which the project hands a path to GDAL (every reader - detect, heatmap, energy, the
survey, the converters - goes through it), and it lets GDAL read the file the user named and that
file's own sidecars beside it, nothing else:

* the path is a local regular file: ``/vsi...`` prefixes and URLs are refused, links are resolved,
  FIFOs, sockets and devices are refused before GDAL sees them, and GDAL gets the absolute path (so
  no driver prefix such as ``GTIFF_DIR:`` can be read into a relative name);
* only the drivers of the formats the README documents (``RASTER_DRIVERS``: single-file formats),
  read-only, and the driver GDAL picked is checked again (a ``.tif`` that is VRT XML is refused);
* the sidecars GDAL would open beside it are checked first (``check_sidecars``): none may be a
  FIFO, a device or a link leading out of the folder; overviews and masks (``.ovr``, ``.msk``) must be
  TIFFs and ``.aux`` files Erdas HFA (GDAL opens those with any driver, VRT included); an ``.aux.xml``
  must be well-formed XML without a DTD (no entities to expand: XXE, billion laughs) and small, else
  GDAL is not allowed to read it (PAM off) and the caller's warning says why; without sidecars GDAL
  does not even list the folder;
* GDAL's configuration (``GDAL_CONFIG``) turns the network off for whatever a file asks for: PROJ's
  network, ``/vsicurl/`` (no extension allowed), HTTP timeouts and retries at their minimum, Python
  and raw bands in VRTs off;
* reads are bounded by bytes (``detector.io.images.check_image_bytes``: one limit for every tool),
  and rasters beyond it are read window by window (``detector.io.scene``).

GDAL reports problems through rasterio's logger ("GeoTIFF tags apparently corrupt, they are being
ignored"); ``open_raster`` collects them instead, so the caller folds them into its one warning that
names the file.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .sidecars import world_file_suffixes

# Formats whose files carry their own georeferencing and which GDAL reads better than OpenCV.
GDAL_SUFFIXES = frozenset({"tif", "tiff", "jp2"})
MISSING = "rasterio is not installed (pip install rasterio==1.4.4)"
# The drivers GDAL may use: the single-file formats the README documents (GeoTIFF/COG, JPEG 2000, and
# PNG, JPEG, BMP, WebP with a world file or .aux.xml). Never VRT or any driver that names other files.
RASTER_DRIVERS = ("GTiff", "JP2OpenJPEG", "PNG", "JPEG", "BMP", "WEBP")
GDAL_CONFIG = {
    "PROJ_NETWORK": "OFF",  # datum grids are never downloaded (the wheel's proj.ini says so too)
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".snnvit-no-network",  # /vsicurl/ opens nothing a file could name
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_HTTP_TIMEOUT": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "1",
    "GDAL_VRT_ENABLE_PYTHON": "NO",
    "GDAL_VRT_ENABLE_RAWRASTERBAND": "NO",
    "GDAL_CACHEMAX": 64 << 20,  # GDAL's block cache (its default is 5 % of the RAM)
}
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders
DATASET_SIDECARS = {".ovr": TIFF_MAGIC, ".msk": TIFF_MAGIC, ".aux": (b"EHFA_HEADER_TAG",)}
MAX_SIDECAR_BYTES = 1 << 20  # an .aux.xml, world file or .prj larger than this is not read
_rasterio: Any = None


class RasterRefused(ValueError):
    """A raster (or a sidecar of it) that GDAL is not allowed to read; the message names it and why."""


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
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        text = " ".join(record.getMessage().split())
        text = re.sub(r"^CPLE_\w+ in ", "", text)  # rasterio's prefix: GDAL's error class
        if text not in self.messages:
            self.messages.append(text)


@contextmanager
def gdal_messages(messages: list[str] | None = None) -> Iterator[list[str]]:
    """Collect GDAL's warnings and errors (logged by rasterio) into ``messages`` instead of printing them."""
    log = logging.getLogger("rasterio")
    messages = [] if messages is None else messages
    handler, propagate = _Collect(messages), log.propagate
    log.addHandler(handler)
    log.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NotGeoreferencedWarning: a plain image, not a problem
            yield messages
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


@contextmanager
def environment(messages: list[str] | None = None, **config: Any) -> Iterator[list[str]]:
    """The guarded GDAL environment (``GDAL_CONFIG`` and ``config``; GDAL's errors reach rasterio, not
    stderr) whose messages are collected (``gdal_messages``). Raises ImportError without rasterio."""
    rasterio = rasterio_module()
    if rasterio is None:
        raise ImportError(MISSING)
    with gdal_messages(messages) as collected, rasterio.Env(**(GDAL_CONFIG | config)):
        yield collected


# --------------------------------------------------------------------------------------------
# The guard
# --------------------------------------------------------------------------------------------


def local_file(path: str | Path) -> Path:
    """The absolute, resolved path of a local regular file, or ``RasterRefused`` naming it: a ``/vsi``
    path, a URL, a FIFO, socket, device, folder, or a link to one of them."""
    s = os.fspath(path)
    if s.lower().startswith("/vsi") or re.match(r"^[a-z][a-z0-9+.-]*://", s, re.I):
        raise RasterRefused(f"{s}: not a local file path (GDAL virtual file systems and URLs are not read)")
    p = Path(s).expanduser()
    try:
        real = p.resolve(strict=True)
        mode = os.stat(real).st_mode
    except OSError as e:
        raise RasterRefused(f"{s}: cannot open ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        from ..files import file_kind

        link = " (through a link)" if p.is_symlink() else ""
        raise RasterRefused(f"{s}: not a regular file{link} ({file_kind(real)})")
    return real


@lru_cache(maxsize=16)
def _listing(folder: str, mtime_ns: int) -> tuple[str, ...]:
    return tuple(sorted(os.listdir(folder)))


def _siblings(image: Path) -> list[Path]:
    """The entries beside ``image`` whose names begin with its stem (where GDAL looks for sidecars)."""
    folder = image.parent
    stem = image.stem.casefold()
    names = _listing(str(folder), os.stat(folder).st_mtime_ns)
    return [folder / n for n in names if n != image.name and n.casefold().startswith(stem)]


def _head(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def aux_xml_problem(path: Path) -> str | None:
    """Why GDAL must not read the ``.aux.xml`` at ``path`` (None when it may): too large, a DTD (entities
    could be expanded: XXE, billion laughs), or not well-formed XML. Parsed here without a DTD, so
    nothing is expanded."""
    size = os.stat(path).st_size
    if size > MAX_SIDECAR_BYTES:
        return f"{path.name} is {size:,} bytes (at most {MAX_SIDECAR_BYTES:,} are read)"
    data = _head(path, MAX_SIDECAR_BYTES)
    if re.search(rb"<!\s*(DOCTYPE|ENTITY)", data, re.I):
        return f"{path.name} declares a DTD or entities (not expanded: the file is not read)"
    import xml.etree.ElementTree as ET

    try:
        ET.fromstring(data)
    except ET.ParseError as e:
        return f"{path.name} is not well-formed XML ({e})"
    return None


def world_file_problem(path: Path) -> str | None:
    """Why the world file at ``path`` cannot place the image (None when it can): not six finite numbers,
    or a zero pixel area."""
    import math

    if os.stat(path).st_size > MAX_SIDECAR_BYTES:
        return f"world file {path.name} is too large"
    try:
        vals = [float(v) for v in _head(path, MAX_SIDECAR_BYTES).decode("latin-1").split()[:6]]
    except ValueError:
        return f"world file {path.name} does not hold six numbers"
    if len(vals) < 6:
        return f"world file {path.name} holds {len(vals)} numbers (six are needed)"
    if not all(math.isfinite(v) for v in vals):
        return f"world file {path.name} holds non-finite values {vals}"
    a, d, b, e = vals[:4]  # x scale, rotation terms, y scale (the world file's order)
    if a * e - b * d == 0:
        return f"world file {path.name} gives a zero pixel area {vals[:4]}"
    return None


def check_sidecars(image: Path) -> tuple[dict[str, str], list[str]]:
    """``(GDAL configuration, problems)`` for opening ``image`` (resolved): the sidecars GDAL would read
    beside it are checked (module docstring). Raises ``RasterRefused`` for a sidecar GDAL would open as
    a dataset that is not what its name says, or that is not a regular file in the image's folder;
    ``problems`` lists the georeferencing sidecars that are not used (the caller warns)."""
    siblings = _siblings(image)
    if not siblings:
        return {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}, []  # GDAL looks for nothing beside it
    config: dict[str, str] = {}
    problems: list[str] = []
    world = {f"{image.stem}.{s}".casefold() for s in world_file_suffixes(image.suffix)}
    for sib in siblings:
        low = sib.name.casefold()
        try:
            real = sib.resolve(strict=True)
            mode = os.stat(real).st_mode
        except OSError:
            continue  # a broken link: GDAL finds nothing there either
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            from ..files import file_kind

            raise RasterRefused(f"{image}: refused: its sidecar {sib.name} is {file_kind(real)}, not a regular file")
        if real.parent != image.parent:
            raise RasterRefused(f"{image}: refused: its sidecar {sib.name} is a link to {real}, outside the image's folder")
        magic = DATASET_SIDECARS.get(Path(low).suffix)
        if magic is not None and not low.endswith(".aux.xml") and not _head(real, 16).startswith(magic):
            raise RasterRefused(f"{image}: refused: its sidecar {sib.name} is not the {Path(low).suffix} file GDAL "
                                "expects there (it would open it as any format, VRT included)")
        if low.endswith(".aux.xml") and (why := aux_xml_problem(real)):
            problems.append(why)
            config["GDAL_PAM_ENABLED"] = "NO"
        elif low in world and (why := world_file_problem(real)):
            problems.append(why)
    return config, problems


class Raster:
    """A raster file opened read-only through the guard (module docstring). ``ds`` is the rasterio
    dataset; ``messages`` collects what GDAL said; ``sidecar_problems`` the georeferencing sidecars not
    used. Used as a context manager (``with open_raster(p) as r``), the guarded GDAL environment is
    active inside the block; ``read`` enters it for each read, so a ``Raster`` can also be kept open
    (a lazy scene) and closed with ``close``."""

    def __init__(self, path: str | Path):
        rasterio = rasterio_module()
        if rasterio is None:
            raise ImportError(MISSING)
        self.given = Path(path)
        self.path = local_file(path)
        self.config, self.sidecar_problems = check_sidecars(self.path)
        self.messages: list[str] = []
        self._stack: list[Any] = []
        with self.context():
            try:  # rasterio.open takes one driver name and parses its own URL schemes into the path:
                # the reader itself takes GDAL's allow-list and the path exactly as given (absolute)
                from rasterio._path import _UnparsedPath
                from rasterio.io import DatasetReader

                self.ds = DatasetReader(_UnparsedPath(str(self.path)), driver=list(RASTER_DRIVERS), sharing=False)
            except Exception as e:  # noqa: BLE001 - rasterio's RasterioIOError and friends: one line
                why = str(e).replace(str(self.path), "").replace(f"{self.path.name}:", "")
                why = " ".join(why.split()).strip(" :'.") or type(e).__name__
                raise RasterRefused(f"{self.given}: not a raster GDAL may read ({why}); formats read: "
                                    f"{', '.join(RASTER_DRIVERS)}") from None
        if self.ds.driver not in RASTER_DRIVERS or self.ds.mode != "r":  # belt and braces: what GDAL picked
            self.ds.close()
            raise RasterRefused(f"{self.given}: refused: GDAL read it as {self.ds.driver}, not one of "
                                f"{', '.join(RASTER_DRIVERS)}")

    @contextmanager
    def context(self) -> Iterator["Raster"]:
        with environment(self.messages, **self.config):
            yield self

    def read(self, *args: Any, **kwargs: Any) -> np.ndarray:
        """``ds.read`` in the guarded environment."""
        with self.context():
            return self.ds.read(*args, **kwargs)

    def close(self) -> None:
        ds = self.__dict__.get("ds")
        if ds is not None:
            ds.close()

    def __enter__(self) -> "Raster":
        cm = self.context()
        cm.__enter__()
        self._stack.append(cm)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self._stack.pop().__exit__(*exc)
        finally:
            self.close()

    def __del__(self) -> None:
        self.close()


def open_raster(path: str | Path) -> Raster:
    """The one way the project opens a raster with GDAL (module docstring): a ``Raster``, read-only.
    Raises ``RasterRefused`` (a ValueError naming the file and why) for what GDAL may not read, and
    ImportError without rasterio."""
    return Raster(path)


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


def read_pixels(path: str | Path) -> np.ndarray:
    """The pixels of a raster in its own sample type: ``(H, W)`` or ``(H, W, 3)`` in BGR order; a palette
    band is expanded to its colours. The read is bounded (``detector.io.images.check_image_bytes``).
    Raises ``RasterRefused``, ``ImageTooLarge`` or rasterio's errors."""
    from rasterio.enums import ColorInterp

    from .images import check_image_bytes

    with open_raster(path) as r:
        ds = r.ds
        bands = band_indexes(ds)
        check_image_bytes(path, ds.width, ds.height, len(bands), np.dtype(ds.dtypes[bands[0] - 1]).itemsize)
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

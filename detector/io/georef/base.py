"""What every georeferencing kind shares: the facts GDAL reported about a raster (``RasterFacts``), the
common interface (``GeoReference``: pixel -> the raster's CRS -> longitude/latitude, the CRS, the
problem that makes it unusable, what the collection's ``rasters`` member says about it), and the check
of the image corners. One subclass per kind (``affine.py``, ``gcps.py``, ``reported.py``) implements
``from_facts`` and ``_map``; the table that chooses among them is ``KINDS`` (``__init__.py``).

Pixel coordinates follow the detector's convention, which is GDAL's: (0, 0) is the top-left corner
of the top-left pixel, pixel edges at integers. Every coordinate that leaves a ``GeoReference`` is
finite (``GeoError`` otherwise).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from .. import gdal


class GeoError(ValueError):
    """Coordinates that cannot be trusted (non-finite, off the Earth); the message says why."""


@dataclass(frozen=True)
class RasterFacts:
    """What GDAL reported about one raster's georeferencing (rasterio's objects, as read), from which
    ``georeference`` builds the kind that applies. A kind that needs something GDAL reports and this
    record lacks adds one field here and one line where ``detector.io.geo.read_georeference`` fills it."""

    path: str
    width: int
    height: int
    transform: Any = None  # an affine.Affine; the identity is GDAL's "none"
    crs: Any = None  # a rasterio CRS, for the geotransform
    gcps: tuple = ()  # rasterio GroundControlPoints
    gcp_crs: Any = None
    rpcs: Any = None  # rasterio's RPC, or None
    geolocation: dict | None = None  # the GEOLOCATION metadata domain; None when it is empty
    notes: tuple[str, ...] = ()  # what GDAL said while reading


def crs_fields(crs) -> dict:
    """``crs``, ``crs_wkt`` and ``on_earth`` for a rasterio CRS (empty for none)."""
    wkt = crs.to_wkt() if crs is not None else ""
    if not wkt:
        return {}
    # the CRS's own code (its WKT's root authority), not PROJ's identification of a custom CRS, which
    # searches the whole EPSG database for each file and may name a code the file never gave
    m = re.search(r'AUTHORITY\["EPSG","(\d+)"\]\]\s*$', wkt)
    return {"crs": f"EPSG:{m.group(1)}" if m else wkt, "crs_wkt": wkt,
            "on_earth": bool(crs.is_geographic or crs.is_projected)}


def one_line(e: Exception) -> str:
    return " ".join(str(e).split())


@dataclass(frozen=True)
class GeoReference:
    """How a raster's pixels map to the ground. ``kind`` names the subclass (the ``KINDS`` row);
    ``crs``: ``EPSG:n``, a WKT, or None (a world file without a CRS). This base class itself is the
    georeferencing of a file that has none GDAL could use but sidecars or tags that were refused
    (``kind`` ``none``, ``problem`` set)."""

    kind: ClassVar[str] = "none"

    path: str
    crs: str | None = None
    crs_wkt: str | None = None  # the exact definition, used to reproject
    on_earth: bool = False  # a geographic or projected CRS (not a local one): can give longitude/latitude
    problem: str | None = None  # why it cannot be used (then coordinates stay in pixels)
    notes: tuple[str, ...] = ()  # what GDAL said while reading

    @classmethod
    def from_facts(cls, facts: RasterFacts) -> "GeoReference | None":
        """This kind built from what GDAL reported; None when the raster has none of it. A kind that
        is there but cannot be used comes back with ``problem`` set."""
        raise NotImplementedError

    def _map(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels -> the raster's own CRS (may be non-finite: ``to_map`` checks)."""
        raise GeoError(f"{self.kind} georeferencing is not used")

    def details(self) -> dict[str, Any]:
        """What the collection's ``rasters`` member says about this kind beyond its name and CRS."""
        return {}

    @property
    def note(self) -> str:
        return f" (GDAL: {self.notes[0]})" if self.notes else ""

    def info(self) -> dict[str, Any]:
        """What the collection's ``rasters`` member (and a survey's metadata) says about this raster."""
        info: dict[str, Any] = {"georeferencing": "unusable" if self.problem else self.kind, "crs": self.crs}
        info |= self.details()
        if self.problem:
            info["problem"] = self.problem
        return info

    def to_map(self, xs, ys) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (x = column, y = row) -> the raster's own CRS."""
        if self.problem:
            raise GeoError(self.problem)
        X, Y = self._map(np.asarray(xs, np.float64), np.asarray(ys, np.float64))
        if not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise GeoError("pixels map to non-finite coordinates")
        return X, Y

    def to_lonlat(self, xs, ys) -> tuple[np.ndarray, np.ndarray]:
        """Pixel -> WGS 84 longitude, latitude in degrees (RFC 7946's coordinates)."""
        if self.crs_wkt is None:
            raise GeoError("no CRS: map coordinates cannot be placed on the Earth")
        if not self.on_earth:
            raise GeoError("the CRS is a local one, not tied to the Earth")
        X, Y = self.to_map(xs, ys)
        from rasterio.warp import transform

        with gdal.environment() as messages:
            try:
                lon, lat = transform(self._crs, "EPSG:4326", X.ravel().tolist(), Y.ravel().tolist())
            except Exception as e:  # noqa: BLE001 - PROJ refuses points outside the projection's domain
                lon = lat = [math.nan]
                messages.insert(0, one_line(e))
        lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
        with np.errstate(invalid="ignore"):  # a raster in degrees past 180 (across the antimeridian): wrap once
            lon = np.where((np.abs(lon) > 180) & (np.abs(lon) <= 540), (lon + 180) % 360 - 180, lon)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all() and (np.abs(lat) <= 90).all()
                and (np.abs(lon) <= 180).all()):
            why = f" (PROJ: {messages[0]})" if messages else ""
            raise GeoError(f"coordinates do not reproject to longitude/latitude{why}")
        return lon.reshape(X.shape), lat.reshape(X.shape)

    def unusable(self, why: str) -> "GeoReference":
        """This georeferencing marked unusable: coordinates then stay in pixels."""
        return replace(self, problem=why)

    def checked(self, width: int, height: int) -> "GeoReference":
        """This georeferencing, with ``problem`` set when the image corners do not land on finite (and,
        with a CRS on the Earth, real longitude/latitude) coordinates."""
        xs, ys = np.array([0.0, width, width, 0.0]), np.array([0.0, 0.0, height, height])
        try:
            if self.on_earth and self.crs_wkt:
                self.to_lonlat(xs, ys)
            else:
                self.to_map(xs, ys)
        except GeoError as e:
            return self.unusable(f"image corners: {e}")
        return self

    @cached_property
    def _crs(self):
        from rasterio.crs import CRS

        return CRS.from_wkt(self.crs_wkt)

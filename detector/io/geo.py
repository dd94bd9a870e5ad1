"""Where an image lies on the ground: its georeferencing, read through GDAL (``detector.io.gdal``).

Forms read (through GDAL, so the way QGIS reads them):

* an affine geotransform - north-up, rotated or sheared: GeoTIFF tags (tie point + pixel scale, or
  the transformation matrix; a pixel-is-point file is moved half a pixel, as GDAL does), JPEG 2000
  (GeoJP2, GMLJP2), a world file (``.tfw``, ``.jgw``, ``.pgw``, ``.wld`` ...) or a ``.aux.xml``;
* ground control points, the form of Sentinel-1 GRD products (a grid of GCPs in longitude/latitude,
  no geotransform): pixels are mapped through GDAL's GCP transformer, a least-squares polynomial of
  order 1 for 3 to 5 GCPs and order 2 for 6 or more (GDAL's choice when asked for none; it avoids
  order 3 as unstable). GCPs in longitude/latitude are first projected to a transverse Mercator
  centred on them (PROJ), and the polynomial is fitted there: a ground-range image is nearly affine
  in a local conformal projection, while in degrees the scale of longitude changes across a large
  scene and an order-2 polynomial misses by tens of metres or more (docs/design.md has the
  measurements). How well it fits is measured at the GCPs themselves: ``gcp_residual_m`` is the
  largest distance, in metres, between a GCP and the polynomial at that GCP's pixel;
* the CRS: any CRS GDAL and PROJ know, named ``EPSG:n`` when the file's CRS carries an EPSG code,
  else by its WKT.

Not read: RPCs (they need a terrain model) and geolocation arrays; a file georeferenced only by them is
reported.

A georeferencing that cannot be used - a non-finite or singular geotransform, corners that overflow
or do not land on the Earth, fewer than 3 GCPs, a GCP fit GDAL cannot solve - comes back with
``problem`` set and a warning naming the file; outputs then stay in pixel coordinates. Every
coordinate that leaves this module is finite (``GeoError`` otherwise).

Pixel coordinates follow the detector's convention, which is GDAL's: (0, 0) is the top-left corner
of the top-left pixel, pixel edges at integers.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from . import gdal
from .sidecars import georeferencing_sidecars

LOGGER = logging.getLogger("detector.io")
_reported_missing: list[str] = []


class GeoError(ValueError):
    """Coordinates that cannot be trusted (non-finite, off the Earth); the message says why."""


@dataclass(frozen=True)
class GeoReference:
    """How a raster's pixels map to the ground. ``kind``: ``affine`` (``transform`` = a, b, c, d, e, f:
    ``X = a x + b y + c``, ``Y = d x + e y + f``), ``gcps`` (``gcps`` = (col, row, X, Y) each), or
    ``rpcs`` / ``geolocation`` (reported, not used). ``crs``: ``EPSG:n``, a WKT, or None (a world file
    without a CRS)."""

    path: str
    kind: str
    crs: str | None = None
    crs_wkt: str | None = None  # the exact definition, used to reproject
    on_earth: bool = False  # a geographic or projected CRS (not a local one): can give longitude/latitude
    transform: tuple[float, ...] = ()
    gcps: tuple[tuple[float, float, float, float], ...] = ()
    fit_gcps: tuple[tuple[float, float, float, float], ...] = ()  # the GCPs where the polynomial is fitted
    fit_wkt: str | None = None  # their CRS when not ``crs`` (the local transverse Mercator)
    gcp_order: int = 0
    gcp_residual_m: float | None = None
    problem: str | None = None  # why it cannot be used (then coordinates stay in pixels)
    notes: tuple[str, ...] = ()  # what GDAL said while reading

    @property
    def note(self) -> str:
        return f" (GDAL: {self.notes[0]})" if self.notes else ""

    def to_map(self, xs, ys) -> tuple[np.ndarray, np.ndarray]:
        """Pixel (x = column, y = row) -> the raster's own CRS."""
        if self.problem:
            raise GeoError(self.problem)
        return self._map(np.asarray(xs, np.float64), np.asarray(ys, np.float64))

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
                messages.insert(0, " ".join(str(e).split()))
        lon, lat = np.asarray(lon, np.float64), np.asarray(lat, np.float64)
        with np.errstate(invalid="ignore"):  # a raster in degrees past 180 (across the antimeridian): wrap once
            lon = np.where((np.abs(lon) > 180) & (np.abs(lon) <= 540), (lon + 180) % 360 - 180, lon)
        if not (np.isfinite(lon).all() and np.isfinite(lat).all() and (np.abs(lat) <= 90).all()
                and (np.abs(lon) <= 180).all()):
            why = f" (PROJ: {messages[0]})" if messages else ""
            raise GeoError(f"coordinates do not reproject to longitude/latitude{why}")
        return lon.reshape(X.shape), lat.reshape(X.shape)

    @cached_property
    def _crs(self):
        from rasterio.crs import CRS

        return CRS.from_wkt(self.crs_wkt)

    def _map(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "affine":
            a, b, c, d, e, f = self.transform
            with np.errstate(over="ignore", invalid="ignore"):
                X, Y = a * xs + b * ys + c, d * xs + e * ys + f
        elif self.kind == "gcps":
            X, Y = self._fit(xs, ys)
            if self.fit_wkt:  # local transverse Mercator -> the GCPs' own CRS
                from rasterio.crs import CRS
                from rasterio.warp import transform

                with gdal.environment():
                    try:
                        X, Y = transform(CRS.from_wkt(self.fit_wkt), self._crs, X.ravel().tolist(),
                                         Y.ravel().tolist())
                    except Exception as e:  # noqa: BLE001 - PROJ: outside the projection's domain
                        raise GeoError(f"pixels do not map to the GCPs' CRS ({' '.join(str(e).split())})") from e
                X, Y = np.asarray(X, np.float64).reshape(xs.shape), np.asarray(Y, np.float64).reshape(xs.shape)
        else:
            raise GeoError(f"{self.kind} georeferencing is not used")
        if not (np.isfinite(X).all() and np.isfinite(Y).all()):
            raise GeoError("pixels map to non-finite coordinates")
        return X, Y

    def _fit(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels -> the CRS of ``fit_gcps`` through GDAL's GCP polynomial."""
        from rasterio.control import GroundControlPoint
        from rasterio.transform import GCPTransformer

        pts = [GroundControlPoint(row=r, col=c, x=x, y=y) for c, r, x, y in self.fit_gcps]
        with gdal.environment(), GCPTransformer(pts) as t:
            X, Y = t.xy(ys.ravel(), xs.ravel(), offset="ul")
        return np.asarray(X, np.float64).reshape(xs.shape), np.asarray(Y, np.float64).reshape(xs.shape)


def _crs_fields(crs) -> dict:
    """``crs``, ``crs_wkt`` and ``on_earth`` for a rasterio CRS (empty for none)."""
    wkt = crs.to_wkt() if crs is not None else ""
    if not wkt:
        return {}
    # the CRS's own code (its WKT's root authority), not PROJ's identification of a custom CRS, which
    # searches the whole EPSG database for each file and may name a code the file never gave
    m = re.search(r'AUTHORITY\["EPSG","(\d+)"\]\]\s*$', wkt)
    return {"crs": f"EPSG:{m.group(1)}" if m else wkt, "crs_wkt": wkt,
            "on_earth": bool(crs.is_geographic or crs.is_projected)}


def _local_projection(crs, pts: tuple) -> tuple[str, tuple]:
    """A transverse Mercator centred on GCPs given in longitude/latitude (``crs`` geographic), and the
    GCPs in it: ``(WKT, ((col, row, x, y), ...))``. The centre's longitude is a circular mean, so a
    scene across the antimeridian is centred on it."""
    from rasterio.crs import CRS
    from rasterio.warp import transform

    lon, lat = transform(crs, "EPSG:4326", [p[2] for p in pts], [p[3] for p in pts])
    rad = np.radians(lon)
    lon0 = float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))
    tm = CRS.from_proj4(f"+proj=tmerc +lat_0={float(np.mean(lat)):.9f} +lon_0={lon0:.9f} +k=1 +x_0=0 +y_0=0 "
                        "+ellps=WGS84 +units=m +no_defs")
    x, y = transform("EPSG:4326", tm, lon, lat)
    return tm.to_wkt(), tuple((p[0], p[1], float(a), float(b)) for p, a, b in zip(pts, x, y))


def _residual_m(geo: GeoReference) -> float | None:
    """The largest distance in metres between a GCP and the fitted polynomial at its pixel; None when the
    fit's CRS has no linear unit."""
    from rasterio.crs import CRS

    c, r, X, Y = (np.array(v, np.float64) for v in zip(*geo.fit_gcps))
    Xf, Yf = geo._fit(c, r)
    wkt = geo.fit_wkt or geo.crs_wkt
    crs = CRS.from_wkt(wkt) if wkt else None
    if crs is None or not crs.is_projected:
        return None
    return float(np.hypot(Xf - X, Yf - Y).max() * float(crs.linear_units_factor[1]))


def _check(geo: GeoReference, width: int, height: int) -> GeoReference:
    """``geo`` with ``problem`` set when its image corners do not land on finite (and, with a CRS on
    the Earth, real longitude/latitude) coordinates."""
    xs, ys = np.array([0.0, width, width, 0.0]), np.array([0.0, 0.0, height, height])
    try:
        if geo.on_earth and geo.crs_wkt:
            geo.to_lonlat(xs, ys)
        else:
            geo.to_map(xs, ys)
    except GeoError as e:
        return replace(geo, problem=f"image corners: {e}")
    return geo


def georeference(path: str, transform, crs, gcps, gcp_crs, other: str | None, width: int, height: int,
                 notes: tuple[str, ...] = ()) -> GeoReference | None:
    """The georeferencing GDAL read from a file (its geotransform, CRS, GCPs, and ``other``: the form it
    has that is not used, ``rpcs`` or ``geolocation``); None when there is none."""
    if transform is not None and not transform.is_identity:  # GDAL's default (0, 1, 0, 0, 0, 1): none
        vals = tuple(float(v) for v in tuple(transform)[:6])
        base = dict(path=path, kind="affine", transform=vals, notes=notes, **_crs_fields(crs))
        a, b, _, d, e, _ = vals
        if not all(math.isfinite(v) for v in vals):
            return GeoReference(**base, problem=f"non-finite geotransform {vals}")
        if a * e - b * d == 0:
            return GeoReference(**base, problem=f"singular geotransform {vals} (zero pixel area)")
        if not math.isfinite(a * e - b * d):
            return GeoReference(**base, problem=f"geotransform {vals} overflows (pixel area not finite)")
        return _check(GeoReference(**base), width, height)
    if gcps:
        pts = tuple((float(g.col), float(g.row), float(g.x), float(g.y)) for g in gcps)
        n = len(pts)
        base = dict(path=path, kind="gcps", gcps=pts, fit_gcps=pts, gcp_order=1 if n < 6 else 2, notes=notes,
                    **_crs_fields(gcp_crs))
        if n < 3:
            return GeoReference(**base, problem=f"{n} ground control point(s); a polynomial needs at least 3")
        if not all(math.isfinite(v) for p in pts for v in p):
            return GeoReference(**base, problem="non-finite ground control points")
        try:
            if gcp_crs is not None and gcp_crs.is_geographic:
                base["fit_wkt"], base["fit_gcps"] = _local_projection(gcp_crs, pts)
            residual = _residual_m(GeoReference(**base))
        except Exception as e:  # noqa: BLE001 - PROJ or GDAL cannot use the GCPs (collinear, off the Earth)
            return GeoReference(**base, problem=f"GCP polynomial not solvable: {' '.join(str(e).split())}")
        return _check(GeoReference(**base, gcp_residual_m=None if residual is None else round(residual, 3)),
                      width, height)
    if other:
        why = {"rpcs": "rational polynomial coefficients need a terrain model",
               "geolocation": "geolocation arrays are not read"}[other]
        return GeoReference(path=path, kind=other, notes=notes, problem=f"only {other} ({why})")
    return None


GEOKEY_CRS = {2048: "GeographicTypeGeoKey", 3072: "ProjectedCSTypeGeoKey"}
USER_DEFINED = 32767  # GeoTIFF: the CRS is defined by the other keys


def geotiff_tag_problem(path: Path) -> str | None:
    """Why a GeoTIFF's own georeferencing tags cannot be used (None when they can), for what GDAL reads
    without a word: a tie point of fewer than 6 values (GDAL places it near 0, 0), a perspective (not
    affine) transformation matrix (GDAL drops the perspective row), a CRS code that is neither an EPSG
    code PROJ knows nor user-defined (GDAL makes up a WGS 84-like CRS). Read with tifffile (the tags
    only, no pixels)."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as t:
            tags = t.pages[0].tags
            tie = tags.get(33922)
            matrix = tags.get(34264)
            keys = tags.get(34735)
            tie, matrix, keys = (None if v is None else tuple(v.value) for v in (tie, matrix, keys))
    except Exception:  # noqa: BLE001 - not a TIFF tifffile reads: GDAL's own reading decides
        return None
    if tie is not None and (len(tie) < 6 or len(tie) % 6):
        return f"ModelTiepointTag holds {len(tie)} values (a tie point has 6)"
    if matrix is not None and (len(matrix) != 16 or any(v != w for v, w in zip(matrix[12:], (0, 0, 0, 1)))):
        return "ModelTransformationTag is not an affine matrix (perspective terms, or not 4 x 4)"
    if keys is not None and len(keys) >= 4:
        for i in range(4, min(len(keys), 4 + 4 * int(keys[3])), 4):
            key, loc, _, value = keys[i: i + 4]
            if key in GEOKEY_CRS and loc == 0 and value not in (0, USER_DEFINED):
                from rasterio.crs import CRS

                try:
                    CRS.from_epsg(int(value))
                except Exception:  # noqa: BLE001 - PROJ does not know the code
                    return f"{GEOKEY_CRS[key]} {value} is not an EPSG code PROJ knows, nor user-defined ({USER_DEFINED})"
    return None


def world_file_prj(path: Path, messages: list[str]):
    """The CRS of the ``.prj`` beside a PNG/JPEG placed by a world file (ArcGIS writes the pair), or None.
    What cannot be read goes to ``messages``."""
    from rasterio.crs import CRS

    for cand in (path.with_suffix(".prj"), path.with_suffix(".PRJ")):
        if cand.is_file():
            if cand.stat().st_size > gdal.MAX_SIDECAR_BYTES:
                messages.append(f"{cand.name} is too large to be a CRS")
                return None
            try:
                return CRS.from_wkt(cand.read_text(encoding="latin-1").strip())
            except Exception as e:  # noqa: BLE001 - not a WKT GDAL reads
                messages.append(f"{cand.name} is not a CRS GDAL reads ({' '.join(str(e).split())[:120]})")
                return None
    return None


def read_georeference(path: str | Path) -> GeoReference | None:
    """The georeferencing of an image file; None when it has none. A PNG or JPEG is opened with GDAL
    (``gdal.open_raster``) only when a georeferencing sidecar (world file, ``.aux.xml``) lies next to it;
    a ``.prj`` beside its world file gives the CRS. Never raises: a file GDAL cannot or may not read, a
    sidecar or tag that cannot be used, or rasterio missing, is one warning naming the file (GDAL's and
    PROJ's messages in it)."""
    path = Path(path)
    if path.suffix.lower().lstrip(".") not in gdal.GDAL_SUFFIXES and not georeferencing_sidecars(path):
        return None
    if gdal.rasterio_module() is None:
        if not _reported_missing:  # once per process: every TIFF would say the same
            LOGGER.warning(f"{path}: georeferencing not read: {gdal.MISSING}; detections stay in pixel coordinates "
                           "(and so for every other file)")
            _reported_missing.append(str(path))
        return None
    try:
        with gdal.open_raster(path) as r:
            ds, messages = r.ds, r.messages
            gcps, gcp_crs = ds.gcps
            other = "rpcs" if ds.rpcs is not None else "geolocation" if ds.tags(ns="GEOLOCATION") else None
            transform, crs = ds.transform, ds.crs
            problems = list(r.sidecar_problems)
            if ds.driver == "GTiff" and (why := geotiff_tag_problem(r.path)):
                problems.append(why)
            if crs is None and not transform.is_identity:
                crs = world_file_prj(path, messages)
            geo = georeference(str(path), transform, crs, gcps, gcp_crs, other, ds.width, ds.height,
                               notes=tuple(messages))
        if problems and geo is not None and not geo.problem:
            geo = replace(geo, problem=problems[0])
    except Exception as e:  # noqa: BLE001 - one bad file never stops a folder
        LOGGER.warning(f"{path}: georeferencing not read ({' '.join(str(e).split())}); detections stay in pixel "
                       "coordinates")
        return None
    if geo is None and problems:
        geo = GeoReference(path=str(path), kind="none", problem=problems[0], notes=tuple(messages))
    if geo is not None and geo.problem:
        LOGGER.warning(f"{path}: georeferencing unusable: {geo.problem}{geo.note}; detections stay in pixel "
                       "coordinates")
    return geo

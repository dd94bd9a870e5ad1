"""Where an image lies on the ground: the door that reads a file's georeferencing through GDAL
(``detector.io.gdal.open_raster``), the checks beside GDAL's reading (``detector.io.gdal`` checks the
sidecars before GDAL sees them), and the CRS of a world file's ``.prj``. The kinds themselves - an
affine geotransform, ground control points, and RPCs and geolocation arrays (reported, not used) - are
one class each in ``detector.io.georef``, chosen by ``georeference`` from what GDAL reported; the CRS is
any CRS GDAL and PROJ know, named ``EPSG:n`` when the file's CRS carries an EPSG code, else by its WKT.

A georeferencing that cannot be used (the kind's own checks; corners that overflow or do not land on the
Earth; a sidecar or tag GDAL reads without a word but wrongly) comes back with ``problem`` set and a
warning naming the file; outputs then stay in pixel coordinates.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import gdal
from .georef import GeoReference, RasterFacts, georeference
from .sidecars import georeferencing_sidecars

LOGGER = logging.getLogger("detector.io")
_reported_missing: list[str] = []


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
    Why a ``.prj`` there cannot be read goes to ``messages`` (the caller makes it the problem)."""
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


def aux_srs_problem(path: Path, config: dict) -> str | None:
    """Why the ``<SRS>`` of the ``.aux.xml`` GDAL read beside ``path`` gave no CRS (None when it has none):
    GDAL drops an SRS it cannot parse (a URL, a PROJ string naming remote grids) without a word. The
    file was checked before GDAL read it (``gdal.aux_xml_problem``: no DTD, small)."""
    import xml.etree.ElementTree as ET

    aux = [p for p in georeferencing_sidecars(path) if p.name.casefold().endswith(".aux.xml")]
    if not aux or config.get("GDAL_PAM_ENABLED") == "NO":
        return None
    try:
        srs = (ET.fromstring(aux[0].read_bytes()).findtext("SRS") or "").strip()
    except ET.ParseError:
        return None
    return f"{aux[0].name}: its SRS is not a CRS GDAL reads ({srs[:80]})" if srs else None


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
            transform, crs = ds.transform, ds.crs
            problems = list(r.sidecar_problems)
            if ds.driver == "GTiff" and (why := geotiff_tag_problem(r.path)):
                problems.append(why)
            if crs is None and not transform.is_identity:
                unread: list[str] = []  # a .prj that is there but not a CRS: unusable, not silently none
                crs = world_file_prj(r.path, unread)  # beside the file GDAL read (links resolved), checked
                problems += unread
                if crs is None and (why := aux_srs_problem(r.path, r.config)):
                    problems.append(why)
            geo = georeference(RasterFacts(str(path), ds.width, ds.height, transform=transform, crs=crs,
                                           gcps=tuple(gcps), gcp_crs=gcp_crs, rpcs=ds.rpcs,
                                           geolocation=ds.tags(ns="GEOLOCATION") or None, notes=tuple(messages)))
        if problems and geo is not None and not geo.problem:
            geo = geo.unusable(problems[0])
    except Exception as e:  # noqa: BLE001 - one bad file never stops a folder
        LOGGER.warning(f"{path}: georeferencing not read ({' '.join(str(e).split())}); detections stay in pixel "
                       "coordinates")
        return None
    if geo is None and problems:
        geo = GeoReference(path=str(path), problem=problems[0], notes=tuple(messages))  # kind "none"
    if geo is not None and geo.problem:
        LOGGER.warning(f"{path}: georeferencing unusable: {geo.problem}{geo.note}; detections stay in pixel "
                       "coordinates")
    return geo

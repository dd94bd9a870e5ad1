"""Where an image lies on the ground: the georeferencing of a GeoTIFF.

Read with ``tifffile`` (already in the stack, pure Python over libtiff-free decoding of the tags)
rather than ``rasterio``: rasterio is the ecosystem's standard but brings a whole GDAL build for what
the detector needs from a file - four TIFF tags:

* ``ModelTransformationTag`` (34264), a 4 x 4 matrix from raster to model space, or
* ``ModelTiepointTag`` (33922) + ``ModelPixelScaleTag`` (33550), a tie point and pixel size;
* ``GeoKeyDirectoryTag`` (34735): the raster type (pixel-is-area / pixel-is-point) and the CRS as an
  EPSG code (``ProjectedCSTypeGeoKey`` 3072 or ``GeographicTypeGeoKey`` 2048).

What is not covered (GDAL would): CRSs without an EPSG code (user-defined projections, reported as
``crs=None``), several tie points (a warped raster), and sidecar files (.aux.xml, world files).

Pixel coordinates follow the detector's convention: (0, 0) is the top-left corner of the top-left
pixel, pixel edges at integers. A pixel-is-point file's tie point is the centre of its pixel, so its
transform is shifted by half a pixel, as GDAL does.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

LOGGER = logging.getLogger("detector.io")

TAG_PIXEL_SCALE, TAG_TIEPOINT, TAG_TRANSFORMATION, TAG_GEOKEYS = 33550, 33922, 34264, 34735
KEY_RASTER_TYPE, KEY_GEOGRAPHIC_CRS, KEY_PROJECTED_CRS = 1025, 2048, 3072
PIXEL_IS_POINT = 2
USER_DEFINED = 32767


@dataclass(frozen=True)
class GeoReference:
    """An affine map from pixel (x = column, y = row) to map coordinates,
    ``X = a x + b y + c``, ``Y = d x + e y + f``, and the CRS (``"EPSG:32633"``; None when the file's CRS
    has no EPSG code)."""

    a: float
    b: float
    c: float
    d: float
    e: float
    f: float
    crs: str | None = None

    def to_map(self, x: float, y: float) -> tuple[float, float]:
        return self.a * x + self.b * y + self.c, self.d * x + self.e * y + self.f

    def box_polygon(self, x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
        """A pixel box as a closed ring of map coordinates (top-left, top-right, bottom-right,
        bottom-left, top-left)."""
        ring = [self.to_map(x, y) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1))]
        return [[float(X), float(Y)] for X, Y in ring]


def geokeys(values) -> dict[int, int]:
    """GeoKeyDirectory (header + 4-tuples of key, location, count, value) -> {key: value} for the
    keys stored inline (location 0), which is where EPSG codes and the raster type live."""
    v = [int(x) for x in values]
    if len(v) < 4:
        return {}
    n = v[3]
    out = {}
    for i in range(n):
        entry = v[4 + 4 * i: 8 + 4 * i]
        if len(entry) == 4 and entry[1] == 0:
            out[entry[0]] = entry[3]
    return out


def georeference_from_tags(tags: dict[int, tuple]) -> GeoReference | None:
    """Build the transform and CRS from raw tag values ({tag code: values}); None when the tags do not
    place the image (no transform, or a degenerate one)."""
    keys = geokeys(tags.get(TAG_GEOKEYS, ()))
    epsg = keys.get(KEY_PROJECTED_CRS) or keys.get(KEY_GEOGRAPHIC_CRS)
    crs = f"EPSG:{epsg}" if epsg and epsg != USER_DEFINED else None
    if TAG_TRANSFORMATION in tags and len(tags[TAG_TRANSFORMATION]) >= 16:
        m = [float(x) for x in tags[TAG_TRANSFORMATION]]
        a, b, c, d, e, f = m[0], m[1], m[3], m[4], m[5], m[7]
    elif TAG_TIEPOINT in tags and TAG_PIXEL_SCALE in tags:
        tp, sc = [float(x) for x in tags[TAG_TIEPOINT]], [float(x) for x in tags[TAG_PIXEL_SCALE]]
        if len(tp) < 6 or len(sc) < 2:
            return None
        if len(tp) > 6:
            LOGGER.warning("GeoTIFF with several tie points (a warped raster): only the first is used")
        i, j, X, Y = tp[0], tp[1], tp[3], tp[4]
        a, b, d, e = sc[0], 0.0, 0.0, -sc[1]
        c, f = X - i * a, Y - j * e
    else:
        return None
    if keys.get(KEY_RASTER_TYPE) == PIXEL_IS_POINT:  # tie point at a pixel centre: move to its corner
        c, f = c - 0.5 * (a + b), f - 0.5 * (d + e)
    vals = (a, b, c, d, e, f)
    if not all(math.isfinite(v) for v in vals) or a * e - b * d == 0:
        return None
    return GeoReference(*vals, crs=crs)


def read_georeference(path: str | Path) -> GeoReference | None:
    """The georeferencing of a (Geo)TIFF's first page; None for a TIFF without it. Reads tags only."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            page = tif.pages[0]
            tags = {code: page.tags[code].value for code in (TAG_PIXEL_SCALE, TAG_TIEPOINT, TAG_TRANSFORMATION,
                                                               TAG_GEOKEYS) if code in page.tags}
    except Exception as e:  # noqa: BLE001 - a TIFF tifffile cannot parse: pixels may still be readable
        LOGGER.warning(f"{path}: georeferencing not read ({type(e).__name__}: {e})")
        return None
    tags = {k: (tuple(v) if isinstance(v, (list, tuple)) else (v,)) for k, v in tags.items()}
    return georeference_from_tags(tags) if tags else None

"""``detections.geojson``: detections as GeoJSON polygons (``writers.GeoJsonWriter`` writes the file).

Two coordinate modes (``crs``):

* ``wgs84`` (the default): RFC 7946 - WGS 84 longitude, latitude in degrees and no ``crs`` member,
  what web maps (Leaflet, OpenLayers, MapLibre, geojson.io) and QGIS expect. A box is mapped from
  pixels to the raster's CRS (one class per georeferencing kind, ``detector.io.georef``), then to
  longitude/latitude (PROJ). Rings run counter-clockwise (RFC 7946's right-hand rule); a box across
  the antimeridian is cut there into a MultiPolygon; coordinates are rounded to 1e-8 degree (about
  1 mm).
  A box that contains a pole (a polar scene) becomes the polygon RFC 7946 readers expect: its edges,
  densified, run once round the pole, cut at the antimeridian and closed along the pole's latitude.
* ``native``: the raster's own CRS, as GeoJSON before RFC 7946 did it: each feature's ``crs``
  property names it (``EPSG:n`` or a WKT) and so does the collection's ``crs`` member (GDAL and QGIS
  read it; RFC 7946 readers ignore it). A file states one CRS, so inputs in several CRSs give one
  file per CRS (``files``).

A map file never holds pixel coordinates (GIS tools would read them as degrees or metres): the boxes
of inputs without usable georeferencing go to a separate file, ``detections.pixels.geojson`` (image
coordinates: x right, y down from the top-left corner), with one warning naming those inputs.

Each feature's properties: ``class``, ``class_id``, ``score``, ``source`` (the input's path below the
inputs' common folder), ``frame`` (videos), ``bbox_pixels`` (x1, y1, x2, y2), ``coordinates``
(``lonlat``, ``map`` or ``pixel``), ``georeferencing`` (``affine``, ``gcps``, ``none`` or
``unusable``), ``crs``, and ``problem`` when the input's georeferencing could not be used. The collection's ``rasters`` member (a foreign member, which
RFC 7946 allows) describes each georeferenced input: its CRS, the kind of georeferencing and, for
GCPs, their number, the polynomial order and the largest residual at the GCPs in metres.

Nothing non-finite is written: coordinates are checked (``georef.GeoError``) and the text is made with
``allow_nan=False``.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np

from .georef import GeoError, GeoReference

LOGGER = logging.getLogger("detector.io")
CRS_MODES = ("wgs84", "native")
LONLAT = "OGC:CRS84"  # RFC 7946's CRS: WGS 84, longitude first
LONLAT_DIGITS = 8
PIXEL_FILE = "detections.pixels.geojson"
DENSIFY = 8  # points per box edge when testing whether a box goes round a pole


def counter_clockwise(X: np.ndarray, Y: np.ndarray, lon: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rings of 4 corners (N, 4) reordered counter-clockwise (in x-right, y-up coordinates). ``lon``:
    X are longitudes, taken continuous across the antimeridian for the orientation."""
    Xc = X
    if lon:
        d = X - X[:, :1]
        Xc = X - 360 * (d > 180) + 360 * (d < -180)
    area2 = (Xc * np.roll(Y, -1, axis=1) - np.roll(Xc, -1, axis=1) * Y).sum(axis=1)
    flip = area2 < 0
    X, Y = X.copy(), Y.copy()
    X[flip], Y[flip] = X[flip, ::-1], Y[flip, ::-1]
    return X, Y


def _clip(ring: list[list[float]], west: bool) -> list[list[float]]:
    """The part of a ring west (``x <= 180``) or east of the meridian 180 (Sutherland-Hodgman, one edge)."""
    out = []
    for a, b in zip(ring, ring[1:] + ring[:1]):
        a_in, b_in = (a[0] <= 180) == west or a[0] == 180, (b[0] <= 180) == west or b[0] == 180
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (180 - a[0]) / (b[0] - a[0])
            out.append([180.0, round(a[1] + t * (b[1] - a[1]), LONLAT_DIGITS)])
    return out


def antimeridian_parts(ring: list[list[float]]) -> list[list[list[float]]]:
    """An open longitude/latitude ring as RFC 7946 wants it: itself, or - when its longitudes jump
    across the antimeridian (a box on both sides of it) - its two parts, cut at 180 / -180."""
    if max(p[0] for p in ring) - min(p[0] for p in ring) <= 180:
        return [ring]
    cont = [[x + 360 if x < 0 else x, y] for x, y in ring]  # continuous: east of 180 goes past it
    parts = [_clip(cont, west=True), [[x - 360, y] for x, y in _clip(cont, west=False)]]
    return [p for p in parts if len(p) >= 3]


def box_edges(xs: np.ndarray, ys: np.ndarray, k: int = DENSIFY) -> tuple[np.ndarray, np.ndarray]:
    """Box corners (N, 4) -> ``k`` points per edge (N, 4 k), in ring order."""
    t = np.arange(k) / k
    ex = [xs[:, i:i + 1] + (xs[:, (i + 1) % 4, None] - xs[:, i:i + 1]) * t for i in range(4)]
    ey = [ys[:, i:i + 1] + (ys[:, (i + 1) % 4, None] - ys[:, i:i + 1]) * t for i in range(4)]
    return np.concatenate(ex, axis=1), np.concatenate(ey, axis=1)


def encircles_pole(lon: np.ndarray) -> np.ndarray:
    """Whether each ring of longitudes (N, M) runs once round a pole: its steps, each taken the short way
    round, add up to a full turn instead of nothing."""
    d = np.diff(np.concatenate([lon, lon[:, :1]], axis=1), axis=1)
    d = (d + 180) % 360 - 180
    return np.abs(d.sum(axis=1)) > 180


def pole_ring(lon: np.ndarray, lat: np.ndarray) -> list[list[float]]:
    """The open ring of a box round a pole (its densified edge in longitude/latitude), counter-clockwise
    in longitude/latitude: the edge from -180 to 180, then along the pole's latitude back to -180."""
    north = float(np.mean(lat)) > 0
    order = np.argsort(lon, kind="stable")
    lo, la = lon[order], lat[order]
    # the edge's latitude at the antimeridian: between its easternmost and (one turn on) westernmost points
    span = max(lo[0] + 360 - lo[-1], 1e-12)
    cross = float(la[-1] + (la[0] - la[-1]) * (180 - lo[-1]) / span)
    edge = [[-180.0, cross]] + [[float(a), float(b)] for a, b in zip(lo, la)] + [[180.0, cross]]
    edge = [[round(a, LONLAT_DIGITS), round(b, LONLAT_DIGITS)] for a, b in edge]
    pole = 90.0 if north else -90.0
    if north:  # eastwards along the edge (below), back westwards along the pole (above)
        return edge + [[180.0, pole], [-180.0, pole]]
    return [[-180.0, pole], [180.0, pole]] + edge[::-1]


class GeoJsonCollection:
    """Builds the features of one frame at a time, and the collection's text at the end."""

    def __init__(self, names: dict[int, str], crs: str = "wgs84"):
        if crs not in CRS_MODES:
            raise ValueError(f"GeoJSON crs must be one of {', '.join(CRS_MODES)}, got {crs!r}")
        self.names, self.mode = names, crs
        self.rasters: dict[str, dict[str, Any]] = {}
        self._warned: set[str] = set()
        self._poles: dict[tuple[str, int], list[list[float]]] = {}

    def _place(self, geo: GeoReference | None, xs: np.ndarray, ys: np.ndarray, source: str):
        """Box corners (N, 4) -> (X, Y, coordinates, georeferencing, crs, problem)."""
        if geo is None:
            return xs, ys, "pixel", "none", None, None
        if geo.problem:  # warned when read
            return xs, ys, "pixel", "unusable", None, geo.problem
        try:
            if self.mode == "wgs84":
                X, Y = geo.to_lonlat(xs, ys)
                X, Y = counter_clockwise(np.round(X, LONLAT_DIGITS), np.round(Y, LONLAT_DIGITS), lon=True)
                if len(xs):  # boxes round a pole: their densified edges
                    lon, lat = geo.to_lonlat(*box_edges(xs, ys))
                    for i in np.flatnonzero(encircles_pole(lon)):
                        self._poles[(source, i)] = pole_ring(lon[i], lat[i])
                return X, Y, "lonlat", geo.kind, LONLAT, None
            X, Y = counter_clockwise(*geo.to_map(xs, ys))
            return X, Y, "map", geo.kind, geo.crs, None
        except GeoError as e:
            if source not in self._warned:
                self._warned.add(source)
                hint = "; --geojson-crs native keeps the raster's own coordinates" if self.mode == "wgs84" else ""
                LOGGER.warning(f"{geo.path}: {e}{geo.note}: its detections stay in pixel coordinates in the "
                               f"GeoJSON{hint}")
            self.rasters[source] = geo.info() | {"georeferencing": "unusable", "problem": str(e)}
            return xs, ys, "pixel", "unusable", None, str(e)

    def features(self, geo: GeoReference | None, det: np.ndarray, source: str,
                 frame: int | None = None) -> list[dict]:
        """GeoJSON features for one frame's detections ``det`` (N, 6: x1, y1, x2, y2, score, class)."""
        det = np.asarray(det, dtype=np.float64).reshape(-1, 6)
        if geo is not None and source not in self.rasters:
            self.rasters[source] = geo.info()
        if len(det) == 0:
            return []
        x1, y1, x2, y2 = det[:, 0], det[:, 1], det[:, 2], det[:, 3]
        xs, ys = np.stack([x1, x2, x2, x1], axis=1), np.stack([y1, y1, y2, y2], axis=1)  # (N, 4) corners
        X, Y, space, kind, crs, problem = self._place(geo, xs, ys, source)
        feats = []
        for i, (bx1, by1, bx2, by2, s, c) in enumerate(det.tolist()):
            ring = [[float(a), float(b)] for a, b in zip(X[i], Y[i])]
            props = {"class": self.names.get(int(c), str(int(c))), "class_id": int(c), "score": round(s, 5),
                     "source": source, "coordinates": space, "georeferencing": kind, "crs": crs,
                     "bbox_pixels": [round(bx1, 3), round(by1, 3), round(bx2, 3), round(by2, 3)]}
            if problem:
                props["problem"] = problem
            if frame is not None:
                props["frame"] = frame
            pole = self._poles.pop((source, i), None)
            parts = [[pole + pole[:1]]] if pole else \
                [[p + p[:1]] for p in (antimeridian_parts(ring) if space == "lonlat" else [ring])]
            geometry = {"type": "Polygon", "coordinates": parts[0]} if len(parts) == 1 else \
                {"type": "MultiPolygon", "coordinates": parts}
            feats.append({"type": "Feature", "geometry": geometry, "properties": props})
        return feats

    def text(self, features: list[dict], crs: str | None = None) -> str:
        """A FeatureCollection as JSON text (strict: no NaN or Infinity); ``crs``: the one CRS its map
        coordinates are in (native mode), named in the ``crs`` member."""
        fc: dict[str, Any] = {"type": "FeatureCollection", "name": "detections"}
        if crs is not None:
            name = f"urn:ogc:def:crs:EPSG::{crs[5:]}" if crs.startswith("EPSG:") else crs
            fc["crs"] = {"type": "name", "properties": {"name": name}}
        sources = {f["properties"]["source"] for f in features}
        rasters = {k: v for k, v in self.rasters.items() if k in sources or crs is None}
        if rasters:
            fc["rasters"] = rasters
        fc["features"] = features
        return json.dumps(fc, indent=1, allow_nan=False)

    def files(self, features: list[dict]) -> dict[str, str]:
        """``{file name: text}``: ``detections.geojson`` with the features on the map (in native mode with
        several CRSs, ``detections.CRS.geojson`` per CRS instead), and ``PIXEL_FILE`` with those in pixel
        coordinates, each group said once in a warning."""
        on_map = [f for f in features if f["properties"]["coordinates"] != "pixel"]
        pixel = [f for f in features if f["properties"]["coordinates"] == "pixel"]
        out: dict[str, str] = {}
        if self.mode == "wgs84":
            out["detections.geojson"] = self.text(on_map)
        else:
            by_crs: dict[str, list[dict]] = {}
            for f in on_map:
                by_crs.setdefault(f["properties"]["crs"], []).append(f)
            if len(by_crs) <= 1:
                out["detections.geojson"] = self.text(on_map, next(iter(by_crs), None))
            else:
                names = crs_file_names(list(by_crs))
                for crs, feats in by_crs.items():
                    out[names[crs]] = self.text(feats, crs)
                LOGGER.warning(f"--geojson-crs native: the inputs are in {len(by_crs)} CRSs and a file states one: "
                               + "; ".join(f"{names[c]} ({len({f['properties']['source'] for f in fs})} input(s), {c[:40]})"
                                           for c, fs in by_crs.items()))
        if pixel:
            out[PIXEL_FILE] = self.text(pixel)
            srcs = sorted({f["properties"]["source"] for f in pixel})
            LOGGER.warning(f"{len(srcs)} input(s) without usable georeferencing: their boxes are in pixel coordinates "
                           f"in {PIXEL_FILE}, not in the map file: {', '.join(srcs[:5])}"
                           + (f" and {len(srcs) - 5} more" if len(srcs) > 5 else ""))
        return out


def crs_file_names(crss: list[str]) -> dict[str, str]:
    """``detections.EPSG_32633.geojson`` for an EPSG code, ``detections.crs-K.geojson`` for a WKT."""
    names, k = {}, 0
    for c in crss:
        if re.fullmatch(r"EPSG:\d+", c):
            names[c] = f"detections.EPSG_{c[5:]}.geojson"
        else:
            k += 1
            names[c] = f"detections.crs-{k}.geojson"
    return names

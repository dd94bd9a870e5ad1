"""Georeferencing through GDAL (``detector.io.geo``, ``detector.io.gdal``) and ``detections.geojson``
(``detector.io.geojson``), against GDAL itself.

Every raster is written here by the test. For each form of georeferencing - north-up affine GeoTIFF
tags, a rotated and sheared affine, Sentinel-1-style GCPs, a JPEG with a world file and a ``.aux.xml``,
a CRS without an EPSG code - the polygon of a known box in the GeoJSON, read back with a real GIS
reader (GDAL's GeoJSON driver through pyogrio), must equal what GDAL gives for the same pixels (the
dataset's geotransform or GDAL's GCP transformer, then PROJ to longitude/latitude). Broken
georeferencing (NaN, zero and overflowing pixel sizes, an unknown EPSG code, a 16,002-key GeoKey
directory, collinear GCPs, RPCs only) gives a warning naming the file, pixel coordinates marked as
such, strict JSON, and the rest of the folder still processed. Also: the GCP polynomial's order and
its accuracy on Sentinel-1-sized grids, a box across the antimeridian, sidecar files, JPEG 2000 and
COG pixels, and no GDAL for plain images.
"""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

import detector  # noqa: F401
from detector.infer import detect
from detector.io import gdal
from detector.io.geo import read_georeference
from detector.io.images import expand_source, read_image, to_bgr, to_uint8
import pyogrio  # the test extra: GDAL's vector drivers, to read the GeoJSON back as a GIS does
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.warp import transform as reproject
from _boxes import FixedBox

BOX = (100.0, 50.0, 200.0, 150.0)  # x1, y1, x2, y2 in pixels (FixedBox on 320 x 320 images)
CUSTOM = CRS.from_proj4("+proj=laea +lat_0=47.3 +lon_0=8.1 +x_0=100000 +y_0=200000 +ellps=GRS80 +units=m +no_defs")


# -- helpers ------------------------------------------------------------------------------------------
def write_raster(path: Path, *, data=None, count=1, dtype="uint8", size=(320, 320), **profile) -> Path:
    h, w = size
    data = np.full((count, h, w), 40, dtype) if data is None else data
    profile.setdefault("driver", "GTiff")
    with rasterio.open(path, "w", width=w, height=h, count=count, dtype=dtype, **profile) as ds:
        ds.write(data)
    return path


def geokeys(epsg: int) -> tuple:
    # header (version 1, rev 1.0, 3 keys) + GTModelType projected + GTRasterType area + ProjectedCSType
    return (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg)


def scale_tie_tiff(path: Path, sx: float, sy: float, X: float, Y: float, keys: tuple) -> Path:
    """A GeoTIFF written tag by tag (tifffile): pixel scale, one tie point, the GeoKey directory."""
    tifffile.imwrite(str(path), np.full((320, 320), 40, np.uint8), extratags=[
        (33550, "d", 3, (sx, sy, 0.0), False), (33922, "d", 6, (0.0, 0.0, 0.0, X, Y, 0.0), False),
        (34735, "H", len(keys), keys, False)])
    return path


def corners(box=BOX):
    x1, y1, x2, y2 = box
    return np.array([x1, x2, x2, x1], float), np.array([y1, y1, y2, y2], float)


def gdal_lonlat(path: Path, box=BOX) -> np.ndarray:
    """What GDAL gives for the box's corners: the dataset's geotransform, then PROJ to WGS 84
    longitude/latitude; for GCPs, GDAL's GCP transformer on the GCPs as the detector fits them (in
    lon/lat GCPs projected to the local transverse Mercator ``detector.io.geo`` chose). (4, 2)."""
    xs, ys = corners(box)
    with rasterio.open(path) as ds:
        how, crs = ds.transform, ds.crs
        if ds.gcps[0]:
            geo = read_georeference(path)
            how = [GroundControlPoint(row=r, col=c, x=x, y=y) for c, r, x, y in geo.fit_gcps]
            crs = CRS.from_wkt(geo.fit_wkt)
            assert len(geo.fit_gcps) == len(ds.gcps[0]) and crs.to_dict()["proj"] == "tmerc"
    X, Y = rasterio.transform.xy(how, ys, xs, offset="ul")
    lon, lat = reproject(crs, "EPSG:4326", np.ravel(X), np.ravel(Y))
    return np.stack([lon, lat], axis=1)


def wkb_ring(b: bytes) -> np.ndarray:
    """The exterior ring of a WKB polygon (what GDAL's reader returns)."""
    order = "<" if b[0] == 1 else ">"
    kind, _ = struct.unpack(order + "II", b[1:9])
    assert kind == 3, kind
    (n,) = struct.unpack(order + "I", b[9:13])
    return np.array(struct.unpack(order + f"{2 * n}d", b[13: 13 + 16 * n])).reshape(n, 2)


def read_back(path: Path) -> tuple[str | None, dict[str, tuple[dict, np.ndarray]]]:
    """The GeoJSON as GDAL reads it: its CRS, and {source: (properties, exterior ring)}."""
    meta, _, geoms, fields = pyogrio.raw.read(path)
    rows = [dict(zip(meta["fields"], vals)) for vals in zip(*fields)]
    return meta["crs"], {r["source"]: (r, wkb_ring(g)) for r, g in zip(rows, geoms)}


def same_corners(ring: np.ndarray, expected: np.ndarray, tol: float) -> None:
    """A closed ring of 4 corners (any start, counter-clockwise) against the expected corners."""
    assert ring.shape == (5, 2) and np.array_equal(ring[0], ring[-1])
    got = ring[:4]
    for corner in expected:
        assert np.abs(got - corner).max(axis=1).min() <= tol, (corner, got)
    x, y = got[:, 0], got[:, 1]
    assert (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() > 0  # RFC 7946: exterior ring counter-clockwise


def strict_json(path: Path):
    def refuse(name):
        raise AssertionError(f"{path} holds {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def run_detect(src: Path, out: Path, **kw):
    return detect(src, out=out, model=FixedBox(BOX), imgsz=320, outputs=("geojson",), verbose=False, **kw)


# -- each form of georeferencing, against GDAL ----------------------------------------------------------
def test_each_form_against_gdal_read_back_by_a_gis_reader(tmp_path):
    src = tmp_path / "scenes"
    src.mkdir()
    scale_tie_tiff(src / "north_up.tif", 10.0, 10.0, 500000.0, 4500000.0, geokeys(32633))
    write_raster(src / "rotated.tif", crs="EPSG:3857",
                 transform=Affine.translation(1.2e6, 6.1e6) @ Affine.rotation(30) @ Affine.shear(10, 0)
                 @ Affine.scale(2, -2))
    utm = Affine.translation(450000, 5100000) @ Affine.rotation(-12) @ Affine.scale(250, -250)  # an 80 km track
    cols, rows = np.meshgrid(np.linspace(0, 320, 21), np.linspace(0, 320, 10))  # S1 GRD: a 21 x 10 grid
    X, Y = utm @ (cols.ravel(), rows.ravel())
    lon, lat = reproject("EPSG:32633", "EPSG:4326", X, Y)
    gcps = [GroundControlPoint(row=r, col=c, x=x, y=y) for c, r, x, y in zip(cols.ravel(), rows.ravel(), lon, lat)]
    write_raster(src / "s1_gcps.tif", gcps=gcps, crs="EPSG:4326")
    cv2.imwrite(str(src / "worldfile.jpg"), np.full((320, 320, 3), 40, np.uint8))
    (src / "worldfile.jgw").write_text("10\n0\n0\n-10\n500005\n4499995\n")  # the centre of the top-left pixel
    (src / "worldfile.jpg.aux.xml").write_text(f"<PAMDataset><SRS>{CRS.from_epsg(32633).to_wkt()}</SRS></PAMDataset>")
    write_raster(src / "custom_crs.tif", crs=CUSTOM, transform=Affine(5, 0.5, 1000, 0.3, -5, 2000))
    cv2.imwrite(str(src / "plain.png"), np.full((320, 320), 40, np.uint8))
    before = sorted(p.name for p in src.iterdir())

    s = run_detect(src, tmp_path / "out")
    assert s.images == 6 and sorted(p.name for p in src.iterdir()) == before  # GDAL wrote nothing there
    fc = strict_json(tmp_path / "out" / "detections.geojson")
    assert "crs" not in fc  # RFC 7946: WGS 84 longitude/latitude, no crs member
    crs, feats = read_back(tmp_path / "out" / "detections.geojson")
    assert CRS.from_user_input(crs) == CRS.from_epsg(4326)
    kinds = {"north_up.tif": "affine", "rotated.tif": "affine", "s1_gcps.tif": "gcps", "worldfile.jpg": "affine",
             "custom_crs.tif": "affine"}
    for name, kind in kinds.items():
        props, ring = feats[name]
        assert (props["coordinates"], props["georeferencing"], props["crs"]) == ("lonlat", kind, "OGC:CRS84"), name
        same_corners(ring, gdal_lonlat(src / name), 1e-7)
    assert "plain.png" not in feats  # pixel boxes never in the map file (GDAL would read them as degrees) ...
    pixel = strict_json(tmp_path / "out" / "detections.pixels.geojson")["features"]  # ... but in their own file
    assert [(f["properties"]["source"], f["properties"]["coordinates"], f["properties"]["georeferencing"])
            for f in pixel] == [("plain.png", "pixel", "none")]
    assert pixel[0]["geometry"]["coordinates"][0] == [[100, 50], [200, 50], [200, 150], [100, 150], [100, 50]]
    # the S1-style grid against the truth it was sampled from (1e-6 degree: about 0.1 m); fitted in
    # degrees instead, GDAL's order-2 polynomial misses this 80 km scene by over 1 m (docs/design.md)
    xs, ys = corners()
    tlon, tlat = reproject("EPSG:32633", "EPSG:4326", *(utm @ (xs, ys)))
    same_corners(feats["s1_gcps.tif"][1], np.stack([tlon, tlat], 1), 1e-6)
    info = fc["rasters"]
    assert info["s1_gcps.tif"]["gcps"] == 210 and info["s1_gcps.tif"]["gcp_order"] == 2
    assert 0 <= info["s1_gcps.tif"]["gcp_residual_m"] < 0.1
    assert info["worldfile.jpg"]["crs"] == "EPSG:32633" and info["north_up.tif"]["crs"] == "EPSG:32633"
    assert info["custom_crs.tif"]["crs"].startswith(("PROJCS", "PROJCRS"))  # no EPSG code: the WKT


def test_native_crs_keeps_the_rasters_coordinates(tmp_path):
    """--geojson-crs native: map coordinates as the raster has them and the CRS named for GIS readers;
    the known corners of a 10 m north-up grid, and a world file's half-pixel shift, exactly."""
    src = tmp_path / "s"
    src.mkdir()
    scale_tie_tiff(src / "a.tif", 10.0, 10.0, 500000.0, 4500000.0, geokeys(32633))
    cv2.imwrite(str(src / "b.jpg"), np.full((320, 320, 3), 40, np.uint8))
    (src / "b.jgw").write_text("10\n0\n0\n-10\n500005\n4499995\n")
    (src / "b.jpg.aux.xml").write_text(f"<PAMDataset><SRS>{CRS.from_epsg(32633).to_wkt()}</SRS></PAMDataset>")
    run_detect(src, tmp_path / "o", geojson_crs="native")
    fc = strict_json(tmp_path / "o" / "detections.geojson")
    assert fc["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32633"
    crs, feats = read_back(tmp_path / "o" / "detections.geojson")
    assert CRS.from_user_input(crs) == CRS.from_epsg(32633)
    expected = np.array([[501000, 4499500], [502000, 4499500], [502000, 4498500], [501000, 4498500]], float)
    for name in ("a.tif", "b.jpg"):
        props, ring = feats[name]
        assert (props["coordinates"], props["crs"], props["class"]) == ("map", "EPSG:32633", "ship")
        assert props["score"] == pytest.approx(0.9)
        same_corners(ring, expected, 0.0)
    assert not (tmp_path / "o" / "detections.geojsonl").exists()  # the per-frame log is folded into the file

    # a CRS without an EPSG code: its WKT names it, and GDAL reads the same CRS back
    src2 = tmp_path / "s2"
    src2.mkdir()
    write_raster(src2 / "c.tif", crs=CUSTOM, transform=Affine(5, 0.5, 1000, 0.3, -5, 2000))
    run_detect(src2, tmp_path / "o2", geojson_crs="native")
    crs, feats = read_back(tmp_path / "o2" / "detections.geojson")
    assert CRS.from_user_input(crs) == CUSTOM and feats["c.tif"][0]["crs"].startswith(("PROJCS", "PROJCRS"))
    xs, ys = corners()
    same_corners(feats["c.tif"][1], np.stack(Affine(5, 0.5, 1000, 0.3, -5, 2000) @ (xs, ys), 1), 1e-9)
    with pytest.raises(ValueError, match="wgs84, native"):
        run_detect(src2, tmp_path / "o3", geojson_crs="EPSG:4326")


def test_geotiff_tag_forms(tmp_path):
    """Pixel-is-point (the tie point is a pixel centre: the corner moves half a pixel up-left, as GDAL
    does) and the full transformation matrix (a rotation), by hand."""
    keys = (1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 2, 3072, 0, 1, 32633)  # GTRasterType 2: pixel is point
    g = read_georeference(scale_tie_tiff(tmp_path / "point.tif", 2.0, 2.0, 100.0, 200.0, keys))
    assert g.transform == (2.0, 0.0, 99.0, 0.0, -2.0, 201.0)
    m = (0.0, 1.0, 0.0, 10.0, -1.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    tifffile.imwrite(str(tmp_path / "matrix.tif"), np.zeros((8, 8), np.uint8),
                     extratags=[(34264, "d", 16, m, False), (34735, "H", 16, geokeys(32633), False)])
    g = read_georeference(tmp_path / "matrix.tif")
    assert g.kind == "affine" and g.crs == "EPSG:32633"
    assert [v.tolist() for v in g.to_map([3.0], [4.0])] == [[14.0], [17.0]]


def test_gcp_polynomial_order_is_gdals():
    """GDAL fits order 2 to 6 or more GCPs (a quadratic mapping is reproduced exactly) and order 1 to 3-5
    (an affine one is; a quadratic one is not)."""
    from detector.io.georef import RasterFacts, georeference

    def quad(c, r):  # metres in UTM 33N (a projected CRS: fitted as given)
        return 5e5 + 10 * c + 2 * r + 1e-3 * c * c - 2e-3 * c * r, 5e6 - 10 * r + c + 3e-3 * r * r

    def affine(c, r):
        return 5e5 + 10 * c + 2 * r, 5e6 - 10 * r + c

    def fit(f, pts):
        gcps = [GroundControlPoint(row=r, col=c, x=f(c, r)[0], y=f(c, r)[1]) for c, r in pts]
        return georeference(RasterFacts("t", 400, 300, gcps=tuple(gcps), gcp_crs=CRS.from_epsg(32633)))

    probe = (np.array([37.5, 211.0]), np.array([19.25, 160.0]))
    grid = [(c, r) for c in (0, 150, 300, 400) for r in (0, 100, 300)]
    g = fit(quad, grid)
    assert g.gcp_order == 2 and g.gcp_residual_m < 1e-3 and g.problem is None
    assert np.allclose(np.stack(g.to_map(*probe)), np.stack(quad(*probe)), atol=1e-6, rtol=0)
    five = grid[:4] + grid[-1:]
    g = fit(affine, five)
    assert g.gcp_order == 1 and np.allclose(np.stack(g.to_map(*probe)), np.stack(affine(*probe)), atol=1e-6, rtol=0)
    assert not np.allclose(np.stack(fit(quad, five).to_map(*probe)), np.stack(quad(*probe)), atol=1.0, rtol=0)


@pytest.mark.parametrize("scene,lat_north,width,height,pixel,ours_m,degrees_m", [
    ("IW 250 km, 46 N", 5_200_000, 25_000, 17_000, 10, 0.05, 20),
    ("IW 250 km, 70 N", 7_900_000, 25_000, 17_000, 10, 0.05, 100),
    ("EW 400 km, 75 N", 8_400_000, 10_000, 10_000, 40, 3.0, 1000),
])
def test_gcp_fit_in_a_local_projection(scene, lat_north, width, height, pixel, ours_m, degrees_m):
    """Sentinel-1-sized scenes: a 21 x 10 GCP grid in longitude/latitude sampled from an exact map (a
    rotated grid in UTM 33N). At 2,000 random pixels, the detector's fit (GDAL's order-2 polynomial in a
    local transverse Mercator) lands within ``ours_m`` of the truth; the same polynomial fitted in
    degrees misses by more than ``degrees_m`` (the numbers in docs/design.md, section 9)."""
    from detector.io.georef import RasterFacts, georeference

    truth = Affine.translation(400_000, lat_north) @ Affine.rotation(-12) @ Affine.scale(pixel, -pixel)
    cols, rows = (v.ravel() for v in np.meshgrid(np.linspace(0, width, 21), np.linspace(0, height, 10)))
    lon, lat = reproject("EPSG:32633", "EPSG:4326", *(truth @ (cols, rows)))
    gcps = [GroundControlPoint(row=r, col=c, x=x, y=y) for c, r, x, y in zip(cols, rows, lon, lat)]
    rng = np.random.default_rng(0)
    px, py = rng.uniform(0, width, 2000), rng.uniform(0, height, 2000)
    tx, ty = reproject("EPSG:32633", "EPSG:4326", *(truth @ (px, py)))

    def miss_m(x, y):  # metres, from degrees (local scale of the sphere: ample for a bound)
        return np.hypot((np.asarray(x) - tx) * 111_320 * np.cos(np.radians(ty)), (np.asarray(y) - ty) * 110_574)

    geo = georeference(RasterFacts("s1.tif", width, height, gcps=tuple(gcps), gcp_crs=CRS.from_epsg(4326)))
    assert geo.problem is None and geo.gcp_order == 2 and geo.gcp_residual_m < ours_m
    ours = miss_m(*geo.to_lonlat(px, py)).max()
    with rasterio.Env():
        degrees = miss_m(*rasterio.transform.xy(gcps, py, px, offset="ul")).max()
    print(f"{scene}: local projection {ours:.3f} m (at the GCPs {geo.gcp_residual_m} m), degrees {degrees:.1f} m")
    assert ours < ours_m and degrees > degrees_m


def test_georeferencing_kind_chosen_by_gdals_precedence():
    """One class per kind in one table (``detector.io.georef.KINDS``): a geotransform wins over GCPs, GCPs
    over RPCs, RPCs over geolocation arrays (the last two reported, not used); none of them gives None.
    Each row's name is its class's ``kind``."""
    from dataclasses import replace

    from detector.io.georef import KINDS, RasterFacts, georeference

    utm = CRS.from_epsg(32633)
    gcps = tuple(GroundControlPoint(row=r, col=c, x=5e5 + 10 * c, y=5e6 - 10 * r)
                 for c in (0, 50, 100) for r in (0, 50, 100))
    every = RasterFacts("t", 100, 100, transform=Affine(10, 0, 5e5, 0, -10, 5e6), crs=utm, gcps=gcps, gcp_crs=utm,
                        rpcs=object(), geolocation={"X_DATASET": "lon.tif"})
    chosen = []
    for facts in (every, replace(every, transform=Affine.identity()), replace(every, transform=None, gcps=()),
                  replace(every, transform=None, gcps=(), rpcs=None)):
        g = georeference(facts)
        chosen.append(g.kind)
        if g.kind in ("affine", "gcps"):
            assert g.problem is None and np.allclose(np.stack(g.to_map([3.0], [4.0])), [[5e5 + 30], [5e6 - 40]])
        else:
            assert g.problem.startswith(f"only {g.kind} (") and g.info()["georeferencing"] == "unusable"
    assert chosen == ["affine", "gcps", "rpcs", "geolocation"] == list(KINDS)
    assert georeference(replace(every, transform=None, gcps=(), rpcs=None, geolocation=None)) is None
    assert all(cls.kind == name for name, cls in KINDS.items())


def test_a_box_across_the_antimeridian_is_cut_there(tmp_path):
    """RFC 7946 section 3.1.9: a box straddling 180 degrees (off Fiji, in a raster whose longitudes run
    past 180) becomes a MultiPolygon of its west and east parts, not a polygon around the globe."""
    from detector.io.geojson import GeoJsonCollection

    p = write_raster(tmp_path / "fiji.tif", crs="EPSG:4326", transform=Affine(0.001, 0, 179.9, 0, -0.001, -17.0))
    det = np.array([[50.0, 50.0, 150.0, 150.0, 0.9, 0], [10.0, 10.0, 20.0, 20.0, 0.8, 0]])
    west_only, across = GeoJsonCollection({0: "ship"}).features(read_georeference(p), det, "fiji.tif")[::-1]
    assert west_only["geometry"]["type"] == "Polygon"
    g = across["geometry"]
    assert g["type"] == "MultiPolygon" and len(g["coordinates"]) == 2
    (west,), (east,) = (np.array(part) for part in g["coordinates"])
    assert np.allclose([west[:, 0].min(), west[:, 0].max()], [179.95, 180.0])
    assert np.allclose([east[:, 0].min(), east[:, 0].max()], [-180.0, -179.95])
    for ring in (west, east):
        assert np.allclose([ring[:, 1].min(), ring[:, 1].max()], [-17.15, -17.05])
        x, y = ring[:-1, 0], ring[:-1, 1]
        assert (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() > 0 and np.array_equal(ring[0], ring[-1])


def test_detect_tool_passes_geojson_crs(tmp_path, monkeypatch):
    """tools/detect.py --geojson-crs reaches the library (wgs84 unless asked); other values are refused."""
    import importlib.util
    from types import SimpleNamespace

    tools = Path(__file__).resolve().parents[1] / "tools"
    monkeypatch.syspath_prepend(str(tools))
    spec = importlib.util.spec_from_file_location("detect_tool", tools / "detect.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    seen = []
    monkeypatch.setattr(tool, "detect",
                        lambda *a, **k: seen.append(k["options"].geojson_crs) or SimpleNamespace(images=1, frames=0))
    for extra, want in (([], "wgs84"), (["--geojson-crs", "native"], "native")):
        assert tool.main(["--source", str(tmp_path), "--save-geojson", *extra]) == 0 and seen[-1] == want
    with pytest.raises(SystemExit):
        tool.main(["--source", str(tmp_path), "--save-geojson", "--geojson-crs", "EPSG:4326"])


# -- broken georeferencing ---------------------------------------------------------------------------
def test_unusable_georeferencing_is_reported_and_never_written_as_non_finite(tmp_path, caplog):
    src = tmp_path / "bad"
    src.mkdir()
    scale_tie_tiff(src / "good.tif", 10.0, 10.0, 500000.0, 4500000.0, geokeys(32633))
    scale_tie_tiff(src / "nan.tif", float("nan"), 10.0, 500000.0, 4500000.0, geokeys(32633))
    scale_tie_tiff(src / "zero.tif", 0.0, 10.0, 500000.0, 4500000.0, geokeys(32633))
    scale_tie_tiff(src / "overflow.tif", 1e307, 1e307, 500000.0, 4500000.0, geokeys(32633))
    scale_tie_tiff(src / "off_earth.tif", 1e100, 1e100, 500000.0, 4500000.0, geokeys(32633))
    scale_tie_tiff(src / "epsg65535.tif", 10.0, 10.0, 500000.0, 4500000.0, geokeys(65535))
    big = (1, 1, 0, 16002) + tuple(v for k in range(16002) for v in (5000 + k % 3000, 0, 1, 7))
    scale_tie_tiff(src / "keys16002.tif", 10.0, 10.0, 500000.0, 4500000.0, big)
    line = [v for i in range(200) for v in (i, 2 * i, 0, 10 + i * 0.01, 50 + i * 0.02, 0)]  # 200 collinear tie points
    keys = (1, 1, 0, 2, 1024, 0, 1, 2, 2048, 0, 1, 4326)
    tifffile.imwrite(str(src / "collinear.tif"), np.full((320, 320), 40, np.uint8),
                     extratags=[(33922, "d", len(line), line, False), (34735, "H", len(keys), keys, False)])
    (src / "noise.tif").write_bytes(b"II*\x00" + bytes(range(256)) * 4)  # not a TIFF at all
    from rasterio.rpc import RPC

    coeffs = [1.0] + [0.0] * 19
    write_raster(src / "rpcs.tif", rpcs=RPC(height_off=0, height_scale=100, lat_off=45, lat_scale=0.1,
                                           line_den_coeff=coeffs, line_num_coeff=coeffs, line_off=160,
                                           line_scale=160, long_off=10, long_scale=0.1, samp_den_coeff=coeffs,
                                           samp_num_coeff=coeffs, samp_off=160, samp_scale=160))

    with caplog.at_level(logging.WARNING, logger="detector.io"):
        s = run_detect(src, tmp_path / "out")
    assert s.images == 9 and [Path(f).name for f, _ in s.skipped] == ["noise.tif"]
    fc = strict_json(tmp_path / "out" / "detections.geojson")
    assert [(f["properties"]["source"], f["properties"]["coordinates"]) for f in fc["features"]] == [("good.tif", "lonlat")]
    fc = strict_json(tmp_path / "out" / "detections.pixels.geojson")
    feats = {f["properties"]["source"]: f["properties"] for f in fc["features"]}
    why = {"nan.tif": "non-finite", "zero.tif": "1 ground control point", "overflow.tif": "overflows",
           "off_earth.tif": "do not reproject", "epsg65535.tif": "65535 is not an EPSG code", "keys16002.tif": "no CRS",
           "collinear.tif": "not solvable", "rpcs.tif": "only rpcs"}
    assert set(feats) == set(why)
    for name, p in feats.items():
        assert (p["coordinates"], p["georeferencing"]) == ("pixel", "unusable") and why[name] in p["problem"], p
        assert any(name in r.getMessage() and why[name] in r.getMessage() for r in caplog.records), name
    assert "GeoTIFF tags apparently corrupt" in " ".join(r.getMessage() for r in caplog.records)  # GDAL's own word
    assert not any(r.name.startswith("rasterio") for r in caplog.records)  # folded into ours, not printed


def test_without_rasterio_georeferencing_is_a_warning(tmp_path, monkeypatch, caplog):
    """A machine without GDAL (a training node) still reads GeoTIFF pixels; georeferencing is one warning."""
    import detector.io.geo as geo

    p = scale_tie_tiff(tmp_path / "a.tif", 10.0, 10.0, 500000.0, 4500000.0, geokeys(32633))
    monkeypatch.setattr(gdal, "_rasterio", False)
    monkeypatch.setattr(geo, "_reported_missing", [])
    with caplog.at_level(logging.WARNING, logger="detector.io"):
        assert read_georeference(p) is None and read_georeference(p) is None
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [str(p)]  # once, naming the file
    assert "rasterio is not installed" in caplog.records[0].getMessage()
    assert read_image(p).shape == (320, 320, 3)


def test_plain_images_never_load_gdal(tmp_path):
    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.full((40, 50, 3), 9, np.uint8))
    code = ("import sys, detector; from detector.io.images import load_image; import detector.io.writers; "
            f"im = load_image({str(png)!r}); print(im.geo, 'rasterio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.split() == ["None", "False"], out.stderr


# -- sidecars, formats -------------------------------------------------------------------------------
def test_sidecars_are_recognised_not_skipped(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    for name in ("scene.tif", "photo.JPG"):
        cv2.imwrite(str(d / name), np.zeros((8, 8), np.uint8))
    sidecars = ["scene.tif.aux.xml", "scene.tfw", "scene.tifw", "scene.tif.ovr", "scene.tif.msk", "scene.prj",
                "scene_rpc.txt", "photo.jgw", "photo.JPG.aux.xml", "photo.wld"]
    for name in sidecars + ["notes.txt", "other.tfw"]:
        (d / name).write_text("x")
    src = expand_source(d)
    assert sorted(p.name for p in src.images) == ["photo.JPG", "scene.tif"]
    assert sorted(p.name for p in src.sidecars) == sorted(sidecars)
    assert sorted(Path(f).name for f, _ in src.skipped) == ["notes.txt", "other.tfw"]


@pytest.mark.parametrize("name,dtype,profile", [
    ("s2.jp2", "uint16", {"driver": "JP2OpenJPEG", "quality": 100, "reversible": "YES"}),  # lossless
    ("cog_zstd.tif", "uint16", {"driver": "COG", "compress": "ZSTD"}),
    ("cog_lerc.tif", "uint16", {"driver": "COG", "compress": "LERC"}),
    ("cog_webp.tif", "uint8", {"driver": "COG", "compress": "WEBP", "quality": 100}),  # 100: lossless
])
def test_jpeg2000_and_cog(tmp_path, name, dtype, profile):
    """Three-band JPEG 2000 and COGs (OpenCV reads one band of them, or nothing): the pixels detection
    sees are the (stretched) bands in BGR order, and the georeferencing comes along."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 4000 if dtype == "uint16" else 256, (3, 64, 80)).astype(dtype)
    p = write_raster(tmp_path / name, data=rgb, count=3, dtype=dtype, size=(64, 80), crs="EPSG:32633",
                     transform=Affine(10, 0, 500000, 0, -10, 4500000), **profile)
    assert np.array_equal(read_image(p), to_bgr(to_uint8(np.moveaxis(rgb[::-1], 0, -1))))
    g = read_georeference(p)
    assert g.crs == "EPSG:32633" and g.transform == (10.0, 0.0, 500000.0, 0.0, -10.0, 4500000.0)


def test_low_bit_depth_reads_as_opencv_does(tmp_path):
    """A 1-bit GeoTIFF: GDAL gives 0/1, OpenCV 0/255; read through GDAL it is 0/255 too."""
    bits = (np.indices((40, 50)).sum(0) % 2).astype(np.uint8)
    p = write_raster(tmp_path / "mask.tif", data=bits[None], size=(40, 50), nbits=1,
                     transform=Affine(2, 0, 0, 0, -2, 0))
    assert np.array_equal(read_image(p), cv2.cvtColor(bits * 255, cv2.COLOR_GRAY2BGR))
    assert np.array_equal(read_image(p)[..., 0], cv2.imread(str(p), cv2.IMREAD_GRAYSCALE))


def test_the_wheel_has_the_drivers():
    with rasterio.Env() as env:
        drivers = env.drivers()
    assert {"GTiff", "COG", "JP2OpenJPEG", "JPEG", "PNG"} <= set(drivers)

"""Hostile rasters through GDAL (issue 32): every trap is built here, and each test first shows that
the trap works on GDAL without the guard, so a passing test means the guard stopped it.

* network: VRT XML named ``.tif`` / ``.jp2`` whose source is ``/vsicurl/http://127.0.0.1:PORT/``; a
  local server counts the requests, which must stay at zero;
* files outside the source: a VRT naming an absolute path, a ``../`` path, a ``/vsizip/`` member, and
  a raw band over any file; the outside file's access time must not move (a read moves it);
* hangs: a FIFO as the image, behind a link, as a sidecar, and as a VRT's source (each run with a
  time limit);
* sidecars GDAL opens with any driver (``.ovr`` that is VRT XML), ``.aux.xml`` with XXE, billion
  laughs or broken XML, world files with NaN or zero pixel size;
* allocation bombs: a 200 kB sparse 30,000 x 30,000 GeoTIFF and a 46,000^2 x 3 Float64 one: refused in
  one line naming the file when read whole, read window by window when tiled (the rest of the folder
  goes on);
* GDAL's and PROJ's messages reach the warning, not stderr.

Map files, the output folder and the survey's sources are ``test_hostile_outputs.py``'s; the traps both
build are in ``_traps.py``.
"""

from __future__ import annotations

import http.server
import json
import logging
import os
import threading
import warnings
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import detector  # noqa: F401
from detector.io import gdal
from detector.io.geo import read_georeference
from detector.io.images import ImageReadError, ImageTooLarge, read_image
from detector.io.tiles import tile_count

rasterio = pytest.importorskip("rasterio")

from _traps import aged, geotiff, outside_secret, plain_png, read_moves_atime, run_detect  # noqa: E402


# --------------------------------------------------------------------------------------------
# Building the traps
# --------------------------------------------------------------------------------------------


def vrt_xml(source: str, size: int = 64, relative: bool = False) -> str:
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><VRTRasterBand dataType="Byte" band="1">'
            f'<SimpleSource><SourceFilename relativeToVRT="{int(relative)}">{source}</SourceFilename>'
            f'<SourceBand>1</SourceBand></SimpleSource></VRTRasterBand></VRTDataset>')


def raw_vrt_xml(source: str, size: int = 16) -> str:
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><VRTRasterBand dataType="Byte" band="1" '
            f'subClass="VRTRawRasterBand"><SourceFilename relativetoVRT="0">{source}</SourceFilename>'
            f'<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{size}</LineOffset>'
            f'</VRTRasterBand></VRTDataset>')


def unguarded_read(path: Path) -> None:
    """What GDAL does with the file without the guard (the control of each trap)."""
    try:
        with warnings.catch_warnings(), rasterio.Env(GDAL_HTTP_TIMEOUT="2", GDAL_HTTP_MAX_RETRY="0"):
            warnings.simplefilter("ignore")
            with rasterio.open(path) as ds:
                ds.read(1)
    except Exception:  # noqa: BLE001 - the control only needs GDAL to have tried
        pass


class Counter(http.server.SimpleHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Counter.hits.append(self.path)
        super().do_GET()

    def do_HEAD(self):  # noqa: N802
        Counter.hits.append(self.path)
        super().do_HEAD()

    def log_message(self, *_):
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving a real GeoTIFF, counting every request."""
    root = tmp_path / "www"
    root.mkdir()
    geotiff(root / "x.tif")
    Counter.hits = []
    handler = lambda *a, **k: Counter(*a, directory=str(root), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", Counter.hits
    srv.shutdown()


def within(seconds: float, fn, *args, fifo: Path | None = None):
    """``fn(*args)`` in a thread; fails when it has not returned after ``seconds`` (a FIFO it blocks on is
    then opened for writing, to release it)."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    if t.is_alive():
        if fifo is not None:
            with open(fifo, "wb"):
                pass
        pytest.fail(f"{getattr(fn, '__name__', fn)}{args} blocked for {seconds} s")
    return box


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------


def test_vrt_named_tif_or_jp2_never_reaches_the_network(tmp_path, server, caplog):
    url, hits = server
    src = tmp_path / "src"
    src.mkdir()
    for name in ("scene.tif", "scene.jp2"):
        (src / name).write_text(vrt_xml(f"/vsicurl/{url}/x.tif"))
    plain_png(src / "plain.png")

    unguarded_read(src / "scene.tif")  # the control: GDAL alone goes to the server
    assert hits, "the trap does not work: GDAL without the guard made no request"
    hits.clear()

    s = run_detect(src, tmp_path / "out")
    assert hits == []
    assert s.images == 1 and sorted(Path(f).name for f, _ in s.skipped) == ["scene.jp2", "scene.tif"]
    assert all("not a raster GDAL may read" in why for _, why in s.skipped)
    for name in ("scene.tif", "scene.jp2"):
        with pytest.raises(ImageReadError, match=name):
            read_image(src / name)
        assert read_georeference(src / name) is None  # one warning, no georeferencing
    for target in (f"/vsicurl/{url}/x.tif", f"{url}/x.tif", f"/VSICURL/{url}/x.tif", "/vsimem/x.tif"):
        with pytest.raises(gdal.RasterRefused, match="not a local file path"):
            gdal.open_raster(target)
    assert hits == []


def test_proj_network_on_in_the_environment_stays_off(tmp_path, server):
    """PROJ reads PROJ_NETWORK once, and GDAL's setting does not override it: with PROJ_NETWORK=ON in the
    user's environment, reprojecting a NAD27 raster's corners asked PROJ's CDN for a datum grid (here
    the local server, named by PROJ_NETWORK_ENDPOINT). Fresh processes: PROJ's choice is made once."""
    import subprocess
    import sys

    url, hits = server
    scene = geotiff(tmp_path / "nad27.tif", crs="EPSG:4267",
                    transform=rasterio.Affine(1e-3, 0, -100, 0, -1e-3, 40))
    env = dict(os.environ, PROJ_NETWORK="ON", PROJ_NETWORK_ENDPOINT=url)
    control = "from rasterio.warp import transform; transform('EPSG:4267', 'EPSG:4326', [-100.0], [40.0])"
    guarded = ("import detector; from detector.io.geo import read_georeference; "
               f"g = read_georeference({str(scene)!r}); print(g.problem, g.to_lonlat([0.0], [0.0]))")
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", control], env=env, cwd=root, capture_output=True, timeout=120)
    assert hits, "the trap does not work"
    hits.clear()
    r = subprocess.run([sys.executable, "-c", guarded], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert hits == []
    assert r.returncode == 0 and r.stdout.startswith("None"), r.stderr[-1000:]


def test_the_driver_gdal_picked_is_checked_again(tmp_path, monkeypatch):
    """Belt and braces: should GDAL ever open a file with a driver outside the list, it is refused."""
    path = geotiff(tmp_path / "a.tif")
    monkeypatch.setattr(gdal, "RASTER_DRIVERS", ("PNG", "JPEG"))
    with pytest.raises(gdal.RasterRefused):
        gdal.open_raster(path)
    monkeypatch.undo()
    with gdal.open_raster(path) as r:
        assert r.ds.driver == "GTiff" and r.ds.mode == "r"


# --------------------------------------------------------------------------------------------
# Files outside the source folder
# --------------------------------------------------------------------------------------------


def test_vrt_sources_outside_the_folder_stay_unread(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = geotiff(outside / "secret.tif", value=201)
    blob = outside / "secret.bin"
    blob.write_bytes(bytes(range(256)))
    archive = outside / "pack.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(secret, "inner.tif")
    if not read_moves_atime(blob):
        pytest.skip("this file system does not record access times")
    src = tmp_path / "src"
    src.mkdir()
    (src / "absolute.tif").write_text(vrt_xml(str(secret)))
    (src / "relative.tif").write_text(vrt_xml("../outside/secret.tif", relative=True))
    (src / "zipped.tif").write_text(vrt_xml(f"/vsizip/{archive}/inner.tif"))
    (src / "raw.tif").write_text(raw_vrt_xml(str(blob)))
    plain_png(src / "plain.png")
    watched = (secret, blob, archive)

    for vrt in ("absolute.tif", "raw.tif"):  # the control: GDAL alone reads the outside files
        before = [aged(f) for f in watched]
        unguarded_read(src / vrt)
        assert [os.stat(f).st_atime_ns for f in watched] != before, f"the {vrt} trap does not work"

    before = [aged(f) for f in watched]
    s = run_detect(src, tmp_path / "out", outputs=("image", "json", "geojson"))
    h = run_detect(src, tmp_path / "out_tiled", outputs=("json",), tile=32)
    assert [os.stat(f).st_atime_ns for f in watched] == before  # not even opened
    assert s.images == h.images == 1
    assert sorted(Path(f).name for f, _ in s.skipped) == ["absolute.tif", "raw.tif", "relative.tif", "zipped.tif"]
    from detector.io.batches import image_batches

    skipped: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batches = list(image_batches(sorted(src.iterdir()), 64, 1, skipped, tile=32))
    assert len(batches) == tile_count((64, 64), 32, 0.2)  # plain.png's tiles alone
    assert len(skipped) == 4
    assert [os.stat(f).st_atime_ns for f in watched] == before


def test_a_link_out_of_the_folder_as_a_sidecar_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.aux.xml").write_text("<PAMDataset/>")
    src = tmp_path / "src"
    src.mkdir()
    geotiff(src / "scene.tif")
    (src / "scene.tif.aux.xml").symlink_to(outside / "x.aux.xml")
    with pytest.raises(gdal.RasterRefused, match="outside the image's folder"):
        gdal.open_raster(src / "scene.tif")


def georeferenced_jp2(folder: Path) -> Path:
    """A JPEG 2000 with a world file beside it (so GDAL lists its folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    jp2 = folder / "scene.jp2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(jp2, "w", driver="JP2OpenJPEG", width=64, height=64, count=1, dtype="uint8") as ds:
            ds.write(np.full((1, 64, 64), 7, np.uint8))
    for aux in folder.glob("*.aux.xml"):
        aux.unlink()
    (folder / "scene.j2w").write_text("0.001\n0\n0\n-0.001\n10\n50\n")
    return jp2


@pytest.mark.parametrize("name", ["METADATA.DIM", "summary.txt"])
def test_metadata_files_of_other_names_beside_an_image_are_checked(tmp_path, name):
    """With a sidecar beside an image GDAL lists the folder, and its metadata readers (SPOT, ALOS...) open
    files of their own names there when the JPEG 2000 is opened: a link there read a file outside the
    folder, a FIFO there blocked the open forever (GIL held: the whole process)."""
    import subprocess

    secret = outside_secret(tmp_path, "<Dimap_Document><Metadata_Id/></Dimap_Document>", "secret.xml")
    jp2 = georeferenced_jp2(tmp_path / "linked")
    (jp2.parent / name).symlink_to(secret)
    before = aged(secret)
    unguarded_read(jp2)
    assert os.stat(secret).st_atime_ns != before, "the trap does not work"  # the control: GDAL reads it
    before = aged(secret)
    with pytest.raises(ImageReadError, match=f"{name} beside it is a link to .*outside the folder"):
        read_image(jp2)
    assert read_georeference(jp2) is None
    assert os.stat(secret).st_atime_ns == before

    jp2 = georeferenced_jp2(tmp_path / "fifo")
    fifo = jp2.parent / name
    os.mkfifo(fifo)
    # GDAL holds the GIL while it blocks: a separate process releases the FIFO if the guard fails
    release = subprocess.Popen(["sh", "-c", f"sleep 20; : > '{fifo}'"])
    try:
        with pytest.raises(ImageReadError, match=f"{name} beside it is a FIFO"):
            read_image(jp2)
        assert release.poll() is None, "the open blocked until the FIFO was released"
    finally:
        release.kill()
        release.wait()


@pytest.mark.parametrize("where", ["GDAL_METADATA tag", "aux.xml", "ovr", "ovr.aux.xml"])
def test_an_overview_file_named_in_the_metadata_stays_unopened(tmp_path, where):
    """GDAL opens the ``OVERVIEW_FILE`` of the ``OVERVIEWS`` metadata domain with any driver, wherever it
    lies, at the first decimated read (a render, the stretch sample of a large scene): named by a GeoTIFF
    alone (its GDAL_METADATA tag), its ``.aux.xml``, its ``.ovr`` (a TIFF, as GDAL expects, whose own tag
    names it) or the ``.ovr``'s ``.aux.xml``, it read a file outside the folder."""
    import tifffile

    outside = tmp_path / "outside"
    outside.mkdir()
    secret = geotiff(outside / "secret.tif", size=8)
    if not read_moves_atime(secret):
        pytest.skip("this file system does not record access times")
    src = tmp_path / "src"
    src.mkdir()
    scene = src / "scene.tif"
    tag = [(42112, "s", 0, f'<GDALMetadata><Item name="OVERVIEW_FILE" domain="OVERVIEWS">{secret}</Item>'
                           '</GDALMetadata>', True)]
    pam = f'<PAMDataset><Metadata domain="OVERVIEWS"><MDI key="OVERVIEW_FILE">{secret}</MDI></Metadata></PAMDataset>'
    if where == "GDAL_METADATA tag":
        tifffile.imwrite(scene, np.full((64, 64), 9, np.uint8), extratags=tag)
    else:
        geotiff(scene)
    if where == "aux.xml":
        (src / "scene.tif.aux.xml").write_text(pam)
    if where.startswith("ovr"):
        tifffile.imwrite(src / "scene.tif.ovr", np.full((32, 32), 9, np.uint8), extratags=tag if where == "ovr" else [])
    if where == "ovr.aux.xml":
        (src / "scene.tif.ovr.aux.xml").write_text(pam)
    plain_png(src / "plain.png")
    before = aged(secret)
    with warnings.catch_warnings():  # the control: a decimated read opens it
        warnings.simplefilter("ignore")
        with rasterio.open(scene) as ds:
            ds.read(1, out_shape=(4, 4))
    assert os.stat(secret).st_atime_ns != before, "the trap does not work"

    before = aged(secret)
    if where.endswith("aux.xml"):  # not given to GDAL (PAM off), and said in the georeferencing warning
        with gdal.open_raster(scene) as r:
            r.read(1, out_shape=(4, 4))
            assert r.sidecar_problems == [f"scene.tif.{where} names an overview file elsewhere (not read)"]
    else:
        with pytest.raises(gdal.RasterRefused, match="names an overview file elsewhere"):
            gdal.open_raster(scene)
        with pytest.raises(ImageReadError, match="scene.tif: refused"):
            read_image(scene)
        from detector.io.scene import open_scene

        assert open_scene(scene, 1) is None
        s = run_detect(src, tmp_path / "out", tile=32)
        assert s.images == 1 and [Path(f).name for f, _ in s.skipped] == ["scene.tif"]
    assert os.stat(secret).st_atime_ns == before


# --------------------------------------------------------------------------------------------
# FIFOs: never a hang
# --------------------------------------------------------------------------------------------


def test_fifos_are_refused_before_gdal_opens_them(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    (src / "via_vrt.tif").write_text(vrt_xml(str(fifo)))
    (src / "linked.tif").symlink_to(fifo)
    geotiff(src / "scene.tif")
    os.mkfifo(src / "scene.tif.aux.xml")
    plain_png(src / "plain.png")

    box = within(20, gdal.open_raster, src / "linked.tif", fifo=fifo)
    assert isinstance(box.get("error"), gdal.RasterRefused) and "FIFO" in str(box["error"])
    box = within(20, gdal.open_raster, src / "scene.tif", fifo=src / "scene.tif.aux.xml")
    assert isinstance(box.get("error"), gdal.RasterRefused) and "scene.tif.aux.xml is a FIFO" in str(box["error"])
    box = within(20, gdal.open_raster, src / "via_vrt.tif", fifo=fifo)
    assert isinstance(box.get("error"), gdal.RasterRefused)
    box = within(60, run_detect, src, tmp_path / "out", fifo=fifo)
    s = box["value"]
    assert s.images == 1 and {Path(f).name for f, _ in s.skipped} == {"via_vrt.tif", "linked.tif", "scene.tif", "scene.tif.aux.xml"}


# --------------------------------------------------------------------------------------------
# Sidecars
# --------------------------------------------------------------------------------------------


def test_an_overview_sidecar_that_is_not_a_tiff_is_refused(tmp_path, server):
    url, hits = server
    path = geotiff(tmp_path / "scene.tif", size=600)
    (tmp_path / "scene.tif.ovr").write_text(vrt_xml(f"/vsicurl/{url}/x.tif", size=300))
    with pytest.raises(gdal.RasterRefused, match="scene.tif.ovr is not the .ovr file GDAL expects"):
        gdal.open_raster(path)
    assert hits == []
    (tmp_path / "scene.tif.ovr").unlink()
    geotiff(tmp_path / "scene.tif.ovr", size=300)  # a real overview is fine
    with gdal.open_raster(path) as r:
        assert r.ds.width == 600


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                  + "".join(f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                            for i in range(1, 10))
                  + ']><PAMDataset><Metadata><MDI key="x">&lol9;</MDI></Metadata></PAMDataset>')


@pytest.mark.parametrize("kind, text, why", [
    ("xxe", '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY e SYSTEM "file://{secret}">]>'
            '<PAMDataset><SRS>&e;</SRS></PAMDataset>', "declares a DTD"),
    ("laughs", BILLION_LAUGHS, "declares a DTD"),
    ("broken", "<PAMDataset><GeoTransform>1, 2", "not well-formed XML"),
])
def test_hostile_aux_xml_is_not_given_to_gdal(tmp_path, kind, text, why, caplog):
    secret = tmp_path / "secret.txt"
    secret.write_text("EPSG:4326")
    src = tmp_path / "src"
    plain_png(src / "photo.png")
    (src / "photo.pgw").write_text("0.001\n0\n0\n-0.001\n10\n50\n")
    (src / "photo.png.aux.xml").write_text(text.replace("{secret}", str(secret)))
    before = aged(secret)
    with caplog.at_level(logging.WARNING, logger="detector.io"):
        box = within(30, read_georeference, src / "photo.png")
    geo = box["value"]
    assert geo is not None and geo.problem and why in geo.problem
    assert os.stat(secret).st_atime_ns == before
    assert any("photo.png" in r.getMessage() and why in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("lines, why", [("nan\n0\n0\n-0.001\n10\n50\n", "non-finite"),
                                        ("0\n0\n0\n0\n10\n50\n", "zero pixel area"),
                                        ("0.001\n0\n0\n", "holds 3 numbers")])
def test_unusable_world_files_are_warned_about(tmp_path, lines, why, caplog):
    plain_png(tmp_path / "photo.png")
    (tmp_path / "photo.pgw").write_text(lines)
    with caplog.at_level(logging.WARNING, logger="detector.io"):
        geo = read_georeference(tmp_path / "photo.png")
    assert geo is not None and why in geo.problem
    assert sum("photo.png" in r.getMessage() and why in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("sidecar, text, why", [
    ("photo.prj", "not a WKT", "photo.prj is not a CRS GDAL reads"),
    ("photo.png.aux.xml", "<PAMDataset><SRS>http://127.0.0.1:9/crs</SRS></PAMDataset>",
     "photo.png.aux.xml: its SRS is not a CRS GDAL reads (http://127.0.0.1:9/crs)")])
def test_a_crs_sidecar_gdal_cannot_read_is_warned_about(tmp_path, sidecar, text, why, caplog):
    """A world file placed the image and the CRS beside it could not be read (GDAL drops an .aux.xml SRS
    it cannot parse without a word): map coordinates without a CRS, silently, in native mode."""
    plain_png(tmp_path / "photo.png")
    (tmp_path / "photo.pgw").write_text("1\n0\n0\n-1\n10\n50\n")
    (tmp_path / sidecar).write_text(text)
    with caplog.at_level(logging.WARNING, logger="detector.io"):
        geo = read_georeference(tmp_path / "photo.png")
    assert geo is not None and geo.problem.startswith(why) and geo.crs is None
    assert sum("photo.png" in r.getMessage() and why in r.getMessage() for r in caplog.records) == 1


def test_prj_beside_a_world_file_gives_the_crs(tmp_path):
    """ArcGIS writes photo.jgw + photo.prj (ESRI WKT): the CRS is read, the boxes land in lon/lat."""
    from rasterio.crs import CRS

    src = tmp_path / "src"
    path = src / "photo.jpg"
    src.mkdir()
    cv2.imwrite(str(path), np.full((64, 64, 3), 90, np.uint8))
    (src / "photo.jgw").write_text("10\n0\n0\n-10\n500005\n4999995\n")
    (src / "photo.prj").write_text(CRS.from_epsg(32633).to_wkt(version="WKT1_ESRI"))
    geo = read_georeference(path)
    assert geo is not None and geo.problem is None and geo.on_earth
    lon, lat = geo.to_lonlat([0.0], [0.0])
    assert abs(lon[0] - 15.0) < 0.01 and 45.1 < lat[0] < 45.2
    s = run_detect(src, tmp_path / "out", outputs=("geojson",))
    fc = json.loads((s.out_dir / "detections.geojson").read_text())
    assert [f["properties"]["coordinates"] for f in fc["features"]] == ["lonlat"]


def test_the_prj_is_read_beside_the_file_gdal_read_not_beside_a_link(tmp_path):
    """A linked image is read where the link leads, and its sidecars there (checked); the ``.prj`` beside
    the link - itself a link out of the folder, never checked - was read instead."""
    secret = outside_secret(tmp_path, "not a CRS")
    real = tmp_path / "real"
    plain_png(real / "photo.png")
    (real / "photo.pgw").write_text("1\n0\n0\n-1\n10\n50\n")
    src = tmp_path / "src"
    src.mkdir()
    (src / "link.png").symlink_to(real / "photo.png")
    (src / "link.pgw").write_text("1\n0\n0\n-1\n10\n50\n")
    (src / "link.prj").symlink_to(secret)
    before = aged(secret)
    geo = read_georeference(src / "link.png")
    assert geo is not None and geo.kind == "affine" and geo.crs is None and geo.notes == ()
    assert os.stat(secret).st_atime_ns == before


# --------------------------------------------------------------------------------------------
# Allocation bombs
# --------------------------------------------------------------------------------------------


def sparse_geotiff(path: Path, size: int, count: int = 1, dtype: str = "uint8") -> Path:
    """A tiled GeoTIFF with no block written: a few hundred kB on disk, ``size`` x ``size`` px."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=count, dtype=dtype, tiled=True,
                           blockxsize=1024, blockysize=1024, sparse_ok=True):
            pass
    return path


def test_a_sparse_huge_geotiff_is_refused_whole_and_read_in_windows_when_tiled(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    big = sparse_geotiff(src / "big.tif", 30_000)
    assert big.stat().st_size < 300_000
    plain_png(src / "plain.png")
    with pytest.raises(ImageTooLarge, match=r"big.tif: 30000x30000 px, 1 band\(s\) of 8-bit samples.*--tile"):
        read_image(big)

    s = run_detect(src, tmp_path / "whole", outputs=("json",))  # no tiles: refused in one line, the folder goes on
    assert s.images == 1 and [(Path(f).name, "--tile" in why) for f, why in s.skipped] == [("big.tif", True)]

    from detector.io.scene import RasterScene

    reads: list = []
    real = RasterScene.read
    RasterScene.read = lambda self, *w: reads.append(w) or real(self, *w)
    try:
        t = run_detect(src, tmp_path / "tiled", outputs=("image", "json"), tile=6000, overlap=0.0)
    finally:
        RasterScene.read = real
    assert t.images == 2 and t.skipped == []
    assert len(reads) == 25 and all((w[2] - w[0]) * (w[3] - w[1]) <= 6000 * 6000 for w in reads)
    render = cv2.imread(str(t.out_dir / "big.jpg"))
    assert render is not None and max(render.shape[:2]) <= 8192  # rendered from a decimated read


def test_size_limit_counts_bytes_not_pixels(tmp_path):
    """46,000^2 x 3 bands of Float64 is 51 GB: refused by bytes; the same pixels as 1 band of bytes are
    not refused for their pixel count alone."""
    deep = sparse_geotiff(tmp_path / "deep.tif", 46_000, count=3, dtype="float64")
    with pytest.raises(ImageTooLarge, match="3 band.*64-bit"):
        read_image(deep)
    from detector.io.images import MAX_IMAGE_BYTES, check_image_bytes

    check_image_bytes("ok", 20_000, 20_000, 3, 1)  # a 20,000^2 RGB scene is read whole
    with pytest.raises(ImageTooLarge):
        check_image_bytes("x", 20_000, 20_000, 3, 8)
    assert MAX_IMAGE_BYTES < 20_000 * 20_000 * 27
    from detector.io.scene import RasterScene

    w = RasterScene(deep).read(0, 0, 100, 100)  # windows of it read fine
    assert w.shape == (100, 100, 3)


def test_a_large_png_is_checked_from_its_header(tmp_path, monkeypatch):
    import detector.io.images as I

    path = plain_png(tmp_path / "a.png")
    monkeypatch.setattr(I, "MAX_IMAGE_BYTES", 64 * 64 * 6 - 1)
    decoded = []
    real = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda *a: decoded.append(1) or real(*a))
    with pytest.raises(ImageTooLarge, match="a.png: 64x64 px"):
        read_image(path)
    assert decoded == []


# --------------------------------------------------------------------------------------------
# GDAL's and PROJ's messages
# --------------------------------------------------------------------------------------------


def test_gdal_and_proj_messages_go_into_the_warning_not_stderr(tmp_path, capfd, caplog):
    import tifffile

    path = tmp_path / "odd.tif"
    keys = [1, 1, 0, 2, 1024, 0, 1, 2, 2048, 0, 1, 9999]
    tifffile.imwrite(path, np.zeros((32, 32), np.uint8), extratags=[
        (33922, "d", 6, [0, 0, 0, 10, 50, 0], True), (33550, "d", 3, [0.01, 0.01, 0], True), (34735, "H", len(keys), keys, True)])
    capfd.readouterr()
    with caplog.at_level(logging.WARNING, logger="detector.io"):
        geo = read_georeference(path)
    err = capfd.readouterr().err
    assert "ERROR" not in err and "PROJ" not in err
    assert geo is not None and "9999" in geo.problem
    lines = [r.getMessage() for r in caplog.records if "odd.tif" in r.getMessage()]
    assert len(lines) == 1 and "(GDAL: PROJ: internal_proj_create_from_database: crs not found: EPSG:9999)" in lines[0]

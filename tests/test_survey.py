"""tools/survey.py and detector.survey: an archive on a 2-process Dask LocalCluster, with a tiny model
(tests/_tiny.py) and small generated GeoTIFFs.

One cluster serves the module (starting workers that import torch is the slow part). Scenes are split
into tiles tasks at a few thousand pixels (``split_pixels``), so that the multi-task path - tiles of one
scene on both workers, merged by the client - runs on scenes of 200 px; its result is compared with
sliced inference in one process (``predict_tiled``), which is what it must equal.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("distributed")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
rasterio = pytest.importorskip("rasterio")
shapely = pytest.importorskip("shapely")

from _tiny import TINY  # noqa: E402

from detector import weights as W  # noqa: E402
from detector.infer import load_runtime, predict_tiled  # noqa: E402
from detector.io.geo import read_georeference  # noqa: E402
from detector.io.images import read_image  # noqa: E402
from detector.models.model import SNNViTYOLO  # noqa: E402
from detector.survey import SurveyOptions, survey  # noqa: E402
from detector.survey import run as survey_run  # noqa: E402
from detector.survey.worker import FAULT_ENV  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SIZE, CONF = 64, 0.001  # tiles of 64 px at 64 px input; the untrained model scores about 0.004 at most


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """(tiny weights, a 2-worker cluster's client, the fault files). The workers inherit the fault switches
    (detector/survey/worker.py): the exit marker existing and the raise file empty keep them disarmed."""
    from distributed import Client, LocalCluster

    d = tmp_path_factory.mktemp("survey")
    torch.manual_seed(0)
    weights = W.save_checkpoint(d / "tiny.pt", SNNViTYOLO(TINY, verbose=False))
    marker = d / "fault-marker"
    marker.touch()
    raising = d / "fault-raise"
    raising.touch()
    old = os.environ.get(FAULT_ENV)
    os.environ[FAULT_ENV] = f"exit-once:{marker};raise:{raising}"
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, Client(cluster) as client:
            yield weights, client, marker, raising
    finally:
        os.environ.pop(FAULT_ENV) if old is None else os.environ.__setitem__(FAULT_ENV, old)


def opts(weights, **kw) -> SurveyOptions:
    return SurveyOptions(**{"weights": str(weights), "runtime": "eager", "imgsz": SIZE, "tile": SIZE, "conf": CONF,
                            "max_det": 50, "split_pixels": 5_000, "tiles_per_task": 4, "retries": 1} | kw)


def geotiff(path: Path, seed: int, h: int = 150, w: int = 200, lon: float = 12.0, lat: float = 55.0,
            gcps: bool = False) -> Path:
    """An 8-bit 3-band GeoTIFF in lon/lat (1e-4 degree pixels, by a geotransform or, as Sentinel-1 GRD
    products, by a 4 x 4 grid of GCPs) with bright blobs on noise."""
    from affine import Affine
    from rasterio.control import GroundControlPoint

    rng = np.random.default_rng(seed)
    img = rng.integers(0, 60, (3, h, w), dtype=np.uint8)
    for _ in range(6):
        y, x = rng.integers(5, h - 15), rng.integers(5, w - 15)
        img[:, y:y + 8, x:x + 12] = 250
    place = {"crs": "EPSG:4326", "transform": Affine(1e-4, 0, lon, 0, -1e-4, lat)} if not gcps else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # GCPs come after opening
        with rasterio.open(path, "w", driver="GTiff", height=h, width=w, count=3, dtype="uint8", **place) as ds:
            ds.write(img)
            if gcps:
                pts = [GroundControlPoint(row=r, col=c, x=lon + 1e-4 * c, y=lat - 1e-4 * r)
                       for r in np.linspace(0, h, 4) for c in np.linspace(0, w, 4)]
                ds.gcps = (pts, rasterio.crs.CRS.from_epsg(4326))
    return path


def plain_tiff(path: Path, seed: int) -> Path:
    """A TIFF without georeferencing."""
    import cv2

    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    return path


def expected(weights, path: Path) -> np.ndarray:
    """Sliced inference on the scene in this process: what the survey's rows must be."""
    rt = load_runtime(str(weights))
    det = predict_tiled(rt, read_image(path), SIZE, SIZE, 0.2, CONF, 0.45, 50)
    return det[np.lexsort(det[:, :4].T[::-1])]


def rows(path: Path) -> np.ndarray:
    t = pq.read_table(path)
    a = np.column_stack([t[c].to_numpy() for c in ("x1", "y1", "x2", "y2", "score", "class_id")]).astype(np.float64)
    return a[np.lexsort(a[:, :4].T[::-1])]


def manifest(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return {r["scene"]: r for r in csv.DictReader(f)}


def quiet(lines: list[str]):
    return lines.append


@pytest.mark.slow
def test_geoparquet_resume_added_and_modified_scenes(env, tmp_path):
    weights, client, *_ = env
    src = tmp_path / "archive"
    src.mkdir()
    a = geotiff(src / "a.tif", 1, gcps=True)  # placed by GCPs, as Sentinel-1 GRD
    b = geotiff(src / "b.tif", 2, lon=179.99)  # crosses the antimeridian
    c = plain_tiff(src / "c.tif", 3)
    out = tmp_path / "out"
    log: list[str] = []
    s = survey(src, out, opts(weights, merge=True), client=client, log=quiet(log))
    assert (s.done, s.skipped, s.failed) == (3, 0, 0), "\n".join(log)
    m = manifest(out)
    assert {k: (r["status"], r["output"]) for k, r in m.items()} == {
        "a.tif": ("done", "scenes/a.tif.parquet"), "b.tif": ("done", "scenes/b.tif.parquet"),
        "c.tif": ("done", "pixels/c.tif.pixels.parquet")}
    assert m["a.tif"]["tiles"] == "12" and m["a.tif"]["model_sha256"] == W.sha256(weights)

    # the split scene's rows are what sliced inference in one process finds: no tile lost or doubled
    for name, f in (("a", a), ("b", b)):
        got, want = rows(out / f"scenes/{name}.tif.parquet"), expected(weights, f)
        assert len(want) > 0 and got.shape == want.shape and np.allclose(got, want, atol=1e-3)
        assert int(m[f"{name}.tif"]["detections"]) == len(want)
    assert np.allclose(rows(out / "pixels/c.tif.pixels.parquet"), expected(weights, c), atol=1e-3)

    # GeoParquet 1.1: the 'geo' metadata, WKB polygons in lon/lat equal to the pixel boxes mapped by GDAL
    t = pq.read_table(out / "scenes/a.tif.parquet")
    geo = json.loads(t.schema.metadata[b"geo"])
    col = geo["columns"]["geometry"]
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry" and col["encoding"] == "WKB"
    assert col["geometry_types"] == ["Polygon"] and col["crs"]["id"] == {"authority": "OGC", "code": "CRS84"}
    g = shapely.from_wkb(t["geometry"].to_numpy(zero_copy_only=False))
    assert shapely.is_valid(g).all() and shapely.total_bounds(g).tolist() == pytest.approx(col["bbox"])
    ref = read_georeference(a)
    assert ref.kind == "gcps" and json.loads(t.schema.metadata[b"snnvit_survey"])["georeferencing"]["gcps"] == 16
    x1, y1 = t["x1"].to_numpy(), t["y1"].to_numpy()
    lon, lat = ref.to_lonlat(x1, y1)
    corners = shapely.get_coordinates(g).reshape(len(t), 5, 2)
    for i in range(len(t)):
        assert min(np.hypot(*(corners[i] - [lon[i], lat[i]]).T)) < 1e-7
    bb = t["bbox"].combine_chunks()
    assert np.allclose(bb.field("xmin").to_numpy(), shapely.bounds(g)[:, 0])
    record = json.loads(t.schema.metadata[b"snnvit_survey"])
    assert record["model_sha256"] == W.sha256(weights) and record["settings"]["conf"] == CONF
    tb = pq.read_table(out / "scenes/b.tif.parquet")
    assert "MultiPolygon" in json.loads(tb.schema.metadata[b"geo"])["columns"]["geometry"]["geometry_types"]
    assert b"geo" not in pq.read_schema(out / "pixels/c.tif.pixels.parquet").metadata  # never on a map

    # a GIS reader: geopandas (GeoParquet metadata checked on read)
    gpd = pytest.importorskip("geopandas")
    df = gpd.read_parquet(out / "detections.parquet")
    assert len(df) == len(t) + len(tb) and df.crs.to_string() == "OGC:CRS84"
    assert df.geometry.is_valid.all() and set(df["scene"]) == {"a.tif", "b.tif"}

    # resume: nothing to do, files untouched, the manifest says skipped
    mtimes = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet") if p.name != "detections.parquet"}
    s = survey(src, out, opts(weights), client=client, log=quiet(log))
    assert (s.done, s.skipped) == (0, 3)
    assert {r["status"] for r in manifest(out).values()} == {"skipped"}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    # an added scene and a modified one are run, the others skipped; other settings redo everything
    geotiff(src / "d.tif", 4)
    geotiff(a, 5)
    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 10**9))
    s = survey(src, out, opts(weights), client=client, log=quiet(log))
    m = manifest(out)
    assert (s.done, s.skipped) == (2, 2) and m["d.tif"]["status"] == m["a.tif"]["status"] == "done"
    assert np.allclose(rows(out / "scenes/a.tif.parquet"), expected(weights, a), atol=1e-3)
    s = survey(src, out, opts(weights, conf=0.5), client=client, log=quiet(log))
    assert (s.done, s.skipped) == (4, 0)


def test_killed_worker_is_retried_without_duplicates(env, tmp_path):
    weights, client, marker, _ = env
    src = tmp_path / "s"
    src.mkdir()
    a = geotiff(src / "big.tif", 7, h=230, w=260)
    marker.unlink()  # armed: the first worker to start a tiles task dies
    before = set(client.scheduler_info()["workers"])
    log: list[str] = []
    s = survey(src, tmp_path / "out", opts(weights), client=client, log=quiet(log))
    assert marker.exists() and set(client.scheduler_info()["workers"]) != before, "no worker died"
    assert (s.done, s.failed) == (1, 0), "\n".join(log)
    got, want = rows(tmp_path / "out/scenes/big.tif.parquet"), expected(weights, a)
    assert len(want) > 0 and got.shape == want.shape and np.allclose(got, want, atol=1e-3)


def test_a_task_that_keeps_raising_fails_its_scene_alone(env, tmp_path):
    weights, client, _, raising = env
    src = tmp_path / "s"
    src.mkdir()
    geotiff(src / "x.tif", 11)
    geotiff(src / "y.tif", 12)
    raising.write_text("x.tif")
    try:
        s = survey(src, tmp_path / "out", opts(weights), client=client, log=quiet([]))
    finally:
        raising.write_text("")
    m = manifest(tmp_path / "out")
    assert (s.done, s.failed) == (1, 1) and m["y.tif"]["status"] == "done"
    assert m["x.tif"]["status"] == "failed" and m["x.tif"]["error"].startswith("RuntimeError: injected fault on ")
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.parquet")) == ["y.tif.parquet"]


def test_stac_input_corrupt_scene_fails_alone(env, tmp_path):
    weights, client, *_ = env
    d = tmp_path / "stac"
    d.mkdir()
    geotiff(d / "good.tif", 8)
    (d / "bad.tif").write_bytes(b"II*\x00" + os.urandom(3000))  # a TIFF header, then garbage
    (d / "thumb.png").write_bytes(b"")

    def item(i, assets):
        return {"type": "Feature", "stac_version": "1.0.0", "id": i, "properties": {"datetime": "2024-01-01T00:00:00Z"},
                "geometry": None, "links": [], "assets": assets}
    fc = {"type": "FeatureCollection", "features": [
        item("s1", {"vv": {"href": "good.tif", "roles": ["data"]}, "thumbnail": {"href": "thumb.png", "roles": ["thumbnail"]}}),
        item("s2", {"vv": {"href": "bad.tif", "roles": ["data"]}}),
        item("s3", {"vv": {"href": "https://example.com/x.tif", "roles": ["data"]}})]}
    (d / "items.json").write_text(json.dumps(fc))
    log: list[str] = []
    s = survey(d / "items.json", tmp_path / "out", opts(weights), client=client, log=quiet(log))
    m = manifest(tmp_path / "out")
    assert (s.done, s.failed) == (1, 1) and set(m) == {"s1/vv", "s2/vv"}
    assert m["s1/vv"]["status"] == "done" and (tmp_path / "out" / m["s1/vv"]["output"]).is_file()
    assert m["s2/vv"]["status"] == "failed" and "bad.tif" in m["s2/vv"]["error"] and "\n" not in m["s2/vv"]["error"]
    assert [e for e, _ in s.not_scenes] == ["s3/vv"] and "never fetches" in s.not_scenes[0][1]
    s = survey(d / "items.json", tmp_path / "out", opts(weights), client=client, log=quiet(log))  # failed: retried
    assert (s.done, s.skipped, s.failed) == (0, 1, 1)


def test_ctrl_c_leaves_whole_files_and_a_true_manifest(env, tmp_path, monkeypatch):
    weights, client, *_ = env
    src = tmp_path / "s"
    src.mkdir()
    for i in range(4):
        geotiff(src / f"{i}.tif", 20 + i)
    monkeypatch.setattr(survey_run, "REPORT_EVERY", 0.0)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("scene 1/"):
            raise KeyboardInterrupt  # as Ctrl-C would, between scenes

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        survey(src, out, opts(weights), client=client, log=log)
    m = manifest(out)
    done = {k for k, r in m.items() if r["status"] == "done"}
    assert len(done) >= 1 and {r["status"] for r in m.values()} <= {"done", "pending"}
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(["manifest.csv"] + [m[k]["output"] for k in done])  # no temporary or partial file
    for k in done:
        assert len(pq.read_table(out / m[k]["output"])) == int(m[k]["detections"])
    s = survey(src, out, opts(weights), client=client, log=quiet(lines))
    assert s.skipped == len(done) and s.done == 4 - len(done)


def test_bad_options_and_outputs_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="scheduler must be an address"):
        SurveyOptions(scheduler="http://x")
    with pytest.raises(ValueError, match="resources are NAME=AMOUNT"):
        SurveyOptions(resources=("GPU",))
    with pytest.raises(ValueError, match="conf must be"):
        SurveyOptions(conf=2.0)
    src = tmp_path / "a"
    src.mkdir()
    geotiff(src / "x.tif", 1)
    with pytest.raises(ValueError, match="lies in the source folder"):
        survey(src, src / "out", SurveyOptions())
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "manifest.csv").write_text("name,value\n")
    with pytest.raises(ValueError, match="not a survey manifest"):
        survey(src, tmp_path / "o", SurveyOptions())
    r = subprocess.run([sys.executable, "tools/survey.py", "--source", str(src), "--out", str(tmp_path / "p"),
                        "--workers", "0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == "error: workers must be an integer in 1..4096, got 0"


def test_detect_and_training_never_import_the_survey_stack(tmp_path):
    """In a fresh process: the detection loop (on a plain image, through tools/detect.py's module) and the
    trainer load neither Dask nor pyarrow, shapely, pystac (nor GDAL, as tests/test_geo.py checks)."""
    import cv2

    png = tmp_path / "a.png"
    cv2.imwrite(str(png), np.full((40, 50, 3), 9, np.uint8))
    code = ("import sys; sys.path.insert(0, 'tools'); import detect, detector.engine.trainer; "
            "from detector.infer import detect as run; "
            f"run({str(png)!r}, out={str(tmp_path / 'o')!r}, outputs=['json'], verbose=False); "
            "print(sorted(m for m in ('dask', 'distributed', 'pyarrow', 'shapely', 'pystac', 'geopandas', 'rasterio') "
            "if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "[]", r.stderr[-2000:]


def test_catalog_sources_stay_local(tmp_path):
    """A STAC Catalog is walked through its local links only; a link to a URL or out of the catalog's
    folder is refused in one line, never followed. Text lists and folders give the same scene records."""
    from detector.survey.catalog import catalog

    d = tmp_path / "cat"
    (d / "items").mkdir(parents=True)
    geotiff(d / "items" / "a.tif", 1)
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "a", "properties": {"datetime": "2024-01-01T00:00:00Z"},
            "geometry": None, "assets": {"vv": {"href": "./a.tif", "roles": ["data"]}},
            "links": [{"rel": "self", "href": "./a.json"}]}
    (d / "items" / "a.json").write_text(json.dumps(item))

    def cat(links):
        c = {"type": "Catalog", "stac_version": "1.0.0", "id": "c", "description": "d",
             "links": [{"rel": "item", "href": h, "type": "application/json"} for h in links]}
        (d / "catalog.json").write_text(json.dumps(c))
        return d / "catalog.json"

    scenes, skipped, folders = catalog(cat(["./items/a.json"]))
    assert [(s.id, Path(s.path).name, s.name) for s in scenes] == [("a/vv", "a.tif", "a__vv")] and skipped == []
    assert scenes[0].size == (d / "items" / "a.tif").stat().st_size and folders == [d.resolve()]
    (tmp_path / "outside.json").write_text(json.dumps(item))
    for link, why in (("https://example.com/i.json", "not a local file"), ("../outside.json", "lies outside")):
        with pytest.raises(ValueError, match=why) as e:
            catalog(cat([link]))
        assert "\n" not in str(e.value)
    (tmp_path / "list.txt").write_text(f"# scenes\n{d / 'items' / 'a.tif'}\ncat/items/a.json\nmissing.tif\n"
                                       "s3://bucket/x.tif\n")
    scenes, skipped, _ = catalog(tmp_path / "list.txt")
    assert [s.id for s in scenes] == ["a.tif"]
    assert [why.split(" (")[0] for _, why in skipped] == ["not an image", "not found", "not a local file"]
    scenes, skipped, _ = catalog(d)
    assert [s.id for s in scenes] == ["a.tif"] and sorted(Path(p).name for p, _ in skipped) == ["a.json", "catalog.json"]
    (d / "x.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="x.json: cannot read it as STAC"):
        catalog(d / "x.json")


def test_a_file_the_survey_did_not_write_is_never_replaced(env, tmp_path):
    weights, client, *_ = env
    src = tmp_path / "s"
    src.mkdir()
    geotiff(src / "x.tif", 13)
    foreign = tmp_path / "out" / "scenes" / "x.tif.parquet"
    foreign.parent.mkdir(parents=True)
    pq.write_table(pa.table({"mine": [1, 2]}), foreign)
    before = foreign.read_bytes()
    s = survey(src, tmp_path / "out", opts(weights), client=client, log=quiet([]))
    m = manifest(tmp_path / "out")
    assert s.failed == 1 and "exists and was not written by a survey; not replaced" in m["x.tif"]["error"]
    assert foreign.read_bytes() == before

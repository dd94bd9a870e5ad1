"""What the tools write from hostile inputs, and the survey's hostile sources (issue 32; the rasters
GDAL may open are ``test_hostile_rasters.py``'s):

* map files GIS tools read right: pixel boxes never in a map file, one file per CRS in native mode, a box
  round a pole as one valid polygon;
* nothing written outside ``--out`` (sidecars read with PAM on, links in the output folder, two runs
  into one folder);
* the survey's sources: deep or looping STAC, unlookable list lines, ``--out`` inside an asset's folder,
  YAML nested thousands deep, a STAC link through a symlink: one line each.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import detector  # noqa: F401

rasterio = pytest.importorskip("rasterio")

from _traps import aged, geotiff, outside_secret, plain_png, run_detect  # noqa: E402


# --------------------------------------------------------------------------------------------
# Map files that GIS tools read right
# --------------------------------------------------------------------------------------------


def utm_geotiff(path: Path, epsg: int, size: int = 64) -> Path:
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
                       crs=f"EPSG:{epsg}", transform=Affine(10, 0, 500_000, 0, -10, 5_000_000)) as ds:
        ds.write(np.full((1, size, size), 60, np.uint8))
    return path


def test_pixel_boxes_never_go_into_a_map_file(tmp_path, caplog):
    """One GeoTIFF and one plain JPEG: the JPEG's pixel boxes stay out of the lon/lat file (a GIS reader
    would put them at latitude 8..40), in a file of their own, with one warning naming the JPEG."""
    src = tmp_path / "src"
    src.mkdir()
    utm_geotiff(src / "geo.tif", 32633)
    cv2.imwrite(str(src / "photo.jpg"), np.full((64, 64, 3), 90, np.uint8))
    for mode in ("wgs84", "native"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="detector.io"):
            s = run_detect(src, tmp_path / mode, outputs=("geojson",), geojson_crs=mode)
        fc = json.loads((s.out_dir / "detections.geojson").read_text())
        assert [f["properties"]["source"] for f in fc["features"]] == ["geo.tif"]
        pixel = json.loads((s.out_dir / "detections.pixels.geojson").read_text())
        assert [f["properties"]["source"] for f in pixel["features"]] == ["photo.jpg"] and "crs" not in pixel
        warned = [r.getMessage() for r in caplog.records if "photo.jpg" in r.getMessage()]
        assert len(warned) == 1 and "detections.pixels.geojson" in warned[0]
    # a rerun whose inputs are all georeferenced leaves no stale pixel file of the earlier run
    (src / "photo.jpg").unlink()
    s = run_detect(src, tmp_path / "wgs84", outputs=("geojson",))
    assert not (s.out_dir / "detections.pixels.geojson").exists()


def test_native_mode_with_several_crss_writes_one_file_per_crs(tmp_path, caplog):
    pyogrio = pytest.importorskip("pyogrio")
    from rasterio.crs import CRS

    src = tmp_path / "src"
    src.mkdir()
    utm_geotiff(src / "a.tif", 32633)
    utm_geotiff(src / "b.tif", 32634)
    utm_geotiff(src / "c.tif", 32633)
    with caplog.at_level(logging.WARNING, logger="detector.io"):
        s = run_detect(src, tmp_path / "out", outputs=("geojson",), geojson_crs="native")
    assert not (s.out_dir / "detections.geojson").exists()
    for epsg, sources in ((32633, ["a.tif", "c.tif"]), (32634, ["b.tif"])):
        path = s.out_dir / f"detections.EPSG_{epsg}.geojson"
        meta, _, _, fields = pyogrio.raw.read(path)
        assert CRS.from_user_input(meta["crs"]) == CRS.from_epsg(epsg)  # GDAL reads each file's own CRS
        assert sorted(fields[list(meta["fields"]).index("source")]) == sources
    assert any("2 CRSs" in r.getMessage() for r in caplog.records)


def test_a_box_round_a_pole_is_one_valid_polygon(tmp_path):
    """A polar stereographic scene whose box contains the North Pole: one counter-clockwise polygon from
    -180 to 180 closed along latitude 90 (the pole inside), not two slivers that leave it out."""
    from affine import Affine

    src = tmp_path / "src"
    src.mkdir()
    with rasterio.open(src / "arctic.tif", "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       crs="EPSG:3413", transform=Affine(1000, 0, -32_000, 0, -1000, 32_000)) as ds:
        ds.write(np.full((1, 64, 64), 60, np.uint8))
    s = run_detect(src, tmp_path / "out", outputs=("geojson",))  # the box: pixels 8..40, the pole at 32, 32
    fc = json.loads((s.out_dir / "detections.geojson").read_text())
    (feat,) = fc["features"]
    assert feat["geometry"]["type"] == "Polygon"
    ring = np.array(feat["geometry"]["coordinates"][0])
    assert ring[0].tolist() == ring[-1].tolist()
    x, y = ring[:-1, 0], ring[:-1, 1]
    assert (x * np.roll(y, -1) - np.roll(x, -1) * y).sum() > 0  # counter-clockwise
    assert x.min() == -180 and x.max() == 180 and y.max() == 90 and y.min() > 89
    assert [180.0, 90.0] in ring.tolist() and [-180.0, 90.0] in ring.tolist()

    def inside(px, py):  # even-odd rule
        hit = False
        for (x1, y1), (x2, y2) in zip(ring[:-1], ring[1:]):
            if (y1 > py) != (y2 > py) and px < x1 + (py - y1) * (x2 - x1) / (y2 - y1):
                hit = not hit
        return hit

    assert inside(0.0, 89.999) and inside(135.0, 89.999) and not inside(0.0, y.min() - 0.01)


# --------------------------------------------------------------------------------------------
# Nothing outside --out; two runs into one folder
# --------------------------------------------------------------------------------------------


def tree(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")
            if skip not in p.parents and p != skip}


def test_nothing_is_written_outside_out(tmp_path, monkeypatch):
    """GDAL reads georeferenced inputs with their sidecars (PAM on): the source folder, the working folder
    and everything else beside --out stay exactly as they were."""
    src = tmp_path / "src"
    src.mkdir()
    utm_geotiff(src / "geo.tif", 32633)
    (src / "geo.tif.aux.xml").write_text("<PAMDataset><Metadata><MDI key='a'>1</MDI></Metadata></PAMDataset>")
    cv2.imwrite(str(src / "photo.jpg"), np.full((64, 64, 3), 90, np.uint8))
    (src / "photo.jgw").write_text("10\n0\n0\n-10\n500005\n4999995\n")
    plain_png(src / "plain.png")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    out = tmp_path / "out"
    before = tree(tmp_path, out)
    run_detect(src, out, outputs=("image", "txt", "json", "geojson"))
    run_detect(src, out, outputs=("json",), tile=32)
    assert tree(tmp_path, out) == before


def test_links_in_the_output_folder_never_lead_writes_out_of_it(tmp_path):
    src = tmp_path / "src"
    plain_png(src / "plain.png")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "labels").symlink_to(elsewhere, target_is_directory=True)
    (out / ".snnvit-outputs").write_text("labels/plain.txt\n")  # an edited manifest claims the file
    with pytest.raises(ValueError, match="link leading out of"):
        run_detect(src, out, outputs=("txt",))
    assert list(elsewhere.iterdir()) == []
    out2 = tmp_path / "out2"
    out2.mkdir()
    (out2 / ".snnvit-outputs").symlink_to(elsewhere / "manifest")
    with pytest.raises(ValueError, match="not a regular file"):
        run_detect(src, out2, outputs=("json",))
    assert list(elsewhere.iterdir()) == []


def test_a_second_run_into_a_busy_folder_is_refused(tmp_path):
    """Two runs into one folder would set aside (rename) each other's live line files and overwrite each
    other's final files: while one runs, the other is refused in one line; afterwards it runs."""
    from detector.io.outputs import OutputFolder

    src = tmp_path / "src"
    plain_png(src / "plain.png")
    out = tmp_path / "out"
    first = OutputFolder(out, [src / "plain.png"], src)
    first.prepare()  # a run holding the folder
    with pytest.raises(ValueError, match="in use by another run"):
        run_detect(src, out)
    assert sorted(p.name for p in out.iterdir()) == [".snnvit-outputs"]  # nothing of the refused run
    first.release()
    assert run_detect(src, out).images == 1


# --------------------------------------------------------------------------------------------
# The survey's sources (issue 31): one bad entry is one line
# --------------------------------------------------------------------------------------------


def test_survey_sources_nested_looping_or_unlookable_are_one_line(tmp_path):
    """JSON nested 100,000 deep, a catalog whose child link is itself, and a list line naming a path too
    long to look up: a RecursionError or OSError traceback, or the whole survey stopped for one line."""
    pytest.importorskip("pystac")
    from detector.survey.catalog import catalog

    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (tmp_path / "loop.json").write_text(json.dumps({
        "type": "Catalog", "stac_version": "1.0.0", "id": "c", "description": "d",
        "links": [{"rel": "child", "href": "./loop.json"}]}))
    for name in ("deep.json", "loop.json"):
        with pytest.raises(ValueError, match=f"{name}: cannot read it as STAC \\(nested too deep, or its links"):
            catalog(tmp_path / name)
    plain_png(tmp_path / "ok.png")
    (tmp_path / "list.txt").write_text("ok.png\n" + "x" * 5000 + ".png\n")
    scenes, skipped, _ = catalog(tmp_path / "list.txt")
    assert [Path(s.path).name for s in scenes] == ["ok.png"]
    assert [why for _, why in skipped] == ["cannot be looked up (File name too long)"]


def test_survey_out_never_goes_into_a_stac_assets_folder(tmp_path):
    """A STAC item's assets may lie outside the catalog's folder (an absolute or ``../`` href, as the
    README allows); ``--out`` inside their folder was accepted, as it is refused for a list's files."""
    pytest.importorskip("pystac")
    from detector.survey import SurveyOptions, survey

    data = tmp_path / "data"
    geotiff(data.mkdir() or data / "scene.tif")
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "item.json").write_text(json.dumps({
        "type": "Feature", "stac_version": "1.0.0", "id": "s", "geometry": None, "bbox": None,
        "properties": {"datetime": "2024-01-01T00:00:00Z"}, "links": [],
        "assets": {"image": {"href": "../data/scene.tif", "roles": ["data"]}}}))
    with pytest.raises(ValueError, match="lies in the source folder .*data"):
        survey(cat / "item.json", data / "out", SurveyOptions())
    assert not (data / "out").exists()


def test_a_yaml_nested_thousands_deep_is_one_line(tmp_path):
    """40 kB of ``[`` made the safe loader recurse into a RecursionError traceback (dataset YAMLs, model
    configs, the installed registry all go through ``read_yaml``)."""
    from detector.files import read_yaml

    for name, text in (("lists.yaml", "a: " + "[" * 20_000 + "]" * 20_000),
                       ("maps.yaml", "a: " + "{x: " * 20_000 + "1" + "}" * 20_000)):
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=f"dataset YAML .*{name} nests lists or mappings more than 100 deep"):
            read_yaml(tmp_path / name, "dataset YAML")
    (tmp_path / "ok.yaml").write_text("backbone: [[-1, 1, Conv, [64, 3, 2]]]\n")
    assert read_yaml(tmp_path / "ok.yaml", "model config") == {"backbone": [[-1, 1, "Conv", [64, 3, 2]]]}


def test_a_stac_link_through_a_symlink_is_refused_in_true_words(tmp_path):
    """An item JSON in the catalog's folder that is a link to one outside: refused, and the line said the
    link's own path (inside the folder) "lies outside" it; it now says where the link leads."""
    pytest.importorskip("pystac")
    from detector.survey.catalog import catalog

    secret = outside_secret(tmp_path, json.dumps({"type": "Feature", "stac_version": "1.0.0", "id": "i",
                                                  "geometry": None, "properties": {"datetime": None},
                                                  "links": [], "assets": {}}), "item.json")
    cat = tmp_path / "cat"
    cat.mkdir()
    (cat / "item.json").symlink_to(secret)
    (cat / "cat.json").write_text(json.dumps({"type": "Catalog", "stac_version": "1.0.0", "id": "c", "description": "d",
                                              "links": [{"rel": "item", "href": "./item.json"}]}))
    before = aged(secret)
    with pytest.raises(ValueError) as e:
        catalog(cat / "cat.json")
    assert str(e.value) == (f"{cat / 'cat.json'}: STAC link {cat / 'item.json'} (it leads to {secret}) lies outside "
                            f"{cat.resolve()}")
    assert os.stat(secret).st_atime_ns == before

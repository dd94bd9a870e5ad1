"""The shipped optical model (``--weights nepu``, weights/README.md) on real NEPU-OWOD images it never trained
on: the first images of the set's ``valid`` split (the project's held-out test split), at the model's own image
size. It finds most oil wells (IoU >= 0.5, confidence 0.25, one prediction per well, best score first:
``test_main_job.match``), and heatmaps and energy run on it. Thresholds sit below the measured values (module
constants), since a spiking network can flip a spike on a last-bit difference between CPUs.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from _boxes import match

N_IMAGES = 8
MIN_RECALL, MIN_PRECISION = 0.8, 0.8  # measured: see weights/README.md (NEPU card, "tests")
MIN_RECALL_TILED, MIN_PRECISION_TILED = 0.4, 0.45  # the tiled scene: harder images (measured: the same card)


@pytest.fixture(scope="module")
def valid_split(nepu_root: Path) -> list[tuple[Path, np.ndarray]]:
    """(image path, ground-truth boxes x1 y1 x2 y2) of every image of ``valid``, by file name."""
    data = json.loads((nepu_root / "annotations" / "valid.json").read_text(encoding="utf-8"))
    boxes: dict[int, list[list[float]]] = {}
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        boxes.setdefault(a["image_id"], []).append([x, y, x + w, y + h])
    images = sorted(data["images"], key=lambda im: im["file_name"])
    return [(nepu_root / "val2017" / im["file_name"], np.asarray(boxes.get(im["id"], []), dtype=float).reshape(-1, 4))
            for im in images]


@pytest.fixture(scope="module")
def valid_images(valid_split) -> list[tuple[Path, np.ndarray]]:
    """The first ``N_IMAGES`` of ``valid_split``."""
    return valid_split[:N_IMAGES]


@pytest.fixture(scope="module")
def nepu_runtime():
    from detector.infer import load_runtime

    return load_runtime("nepu")


def test_nepu_is_shipped_by_name(nepu_runtime):
    from detector.weights import shipped_listing

    assert nepu_runtime.settings.names == {0: "oil-well"}
    assert nepu_runtime.settings.imgsz() == 640
    assert "nepu" in shipped_listing()


def test_nepu_weights_find_most_wells(nepu_runtime, valid_images):
    from detector.infer import predict_image

    tp = n_pred = n_gt = 0
    for path, gt in valid_images:
        img = cv2.imread(str(path))
        assert img is not None, path
        det = predict_image(nepu_runtime, img).numpy()  # the model's own size, confidence 0.25
        hit = match([(d[:4].tolist(), float(d[4])) for d in det], gt)
        tp, n_pred, n_gt = tp + hit, n_pred + len(det), n_gt + len(gt)
    assert n_gt >= 10  # the comparison covers real wells
    recall, precision = tp / n_gt, tp / max(n_pred, 1)
    assert recall >= MIN_RECALL and precision >= MIN_PRECISION, (tp, n_pred, n_gt)


@pytest.mark.slow
def test_heatmaps_and_energy_run_on_the_nepu_model(nepu_runtime, valid_images, tmp_path):
    from detector.analysis.energy import measure_energy
    from detector.analysis.heatmap import heatmap_image, render_panel
    from detector.io.letterbox import letterbox_tensor

    model = nepu_runtime.module
    img = cv2.imread(str(valid_images[0][0]))
    res = heatmap_image(model, img, imgsz=512)
    assert len(res.blocks) == 3 and any(b.salience_tokens.max() > 0 for b in res.blocks)
    assert render_panel(res, tmp_path / "panel.png").is_file()
    x = letterbox_tensor(img, 512, "cpu")
    rep = measure_energy(model, [x])
    assert rep.images == 1 and 0 < rep.energy_mj < rep.ann_energy_mj


@pytest.mark.slow
def test_nepu_model_on_a_georeferenced_scene_with_tile_auto(nepu_runtime, valid_split, tmp_path):
    """What an optical user runs: a 1920 x 1280 RGB GeoTIFF (the next six ``valid`` images side by side, UTM,
    0.41 m pixels) through ``detect(..., tile="auto")``: tiles of the training images' size (640), the wells
    found in scene pixels as on the six images alone (at IoU 0.3: boxes of adjacent wells may be fused; every confident
    detection, score >= 0.4, is one the images alone gave, once: no fragments or duplicates across tiles; the
    tiles' other crops move a few scores near the 0.25 threshold), and every detection written to GeoJSON as
    longitude/latitude inside the scene."""
    rasterio = pytest.importorskip("rasterio")
    from affine import Affine

    from detector.infer import detect, predict_image

    scene = np.zeros((1280, 1920, 3), np.uint8)
    gt: list[list[float]] = []
    alone_tp, alone = 0, []
    for k, (path, own) in enumerate(valid_split[N_IMAGES:N_IMAGES + 6]):
        img = cv2.imread(str(path))
        assert img is not None and img.shape[:2] == (640, 640), path
        oy, ox = 640 * (k // 3), 640 * (k % 3)
        scene[oy:oy + 640, ox:ox + 640] = img
        gt += (own + [ox, oy, ox, oy]).tolist()
        det = predict_image(nepu_runtime, img).numpy()
        alone_tp += match([(d[:4].tolist(), float(d[4])) for d in det], own)
        alone += [([d[0] + ox, d[1] + oy, d[2] + ox, d[3] + oy], float(d[4])) for d in det]
    src = tmp_path / "src"
    src.mkdir()
    transform = Affine(0.41, 0.0, 500000.0, 0.0, -0.41, 4200000.0)  # north-up, UTM zone 50N
    with rasterio.open(src / "field.tif", "w", driver="GTiff", width=1920, height=1280, count=3, dtype="uint8",
                       crs="EPSG:32650", transform=transform, photometric="RGB") as ds:
        ds.write(np.moveaxis(scene[..., ::-1], -1, 0))
    s = detect(src, model=nepu_runtime, out=tmp_path / "out", outputs=("json", "geojson"), tile="auto",
               verbose=False)
    assert s.per_image[0]["tile"] == 640 and s.per_image[0]["size"] == [1920, 1280]
    pred = [(p["bbox"][:2] + [p["bbox"][0] + p["bbox"][2], p["bbox"][1] + p["bbox"][3]], p["score"])
            for p in s.predictions]
    tp = match(pred, np.asarray(gt, float))
    assert len(gt) >= 10
    # Every well the images alone find is found in the scene, but merge_tiles' union of a group can fuse the
    # boxes of adjacent wells seen by different tiles (rows of wells): with the 512 px -> 640 px NEPU weights
    # 13 true positives at IoU 0.5 against 16 alone, 18 against 18 at IoU 0.3 (a known defect, left open).
    loose, loose_alone = match(pred, np.asarray(gt, float), 0.3), match(alone, np.asarray(gt, float), 0.3)
    assert loose >= loose_alone - 1 and tp >= alone_tp - 3, (loose, loose_alone, tp, alone_tp)
    sure = [p for p in pred if p[1] >= 0.4]
    sure_alone = np.asarray([b for b, sc in alone if sc >= 0.4 - 0.05], float)  # a spike may move a score a little
    assert len(sure) >= 5 and match(sure, sure_alone) == len(sure), (sure, sure_alone)
    assert tp / len(gt) >= MIN_RECALL_TILED and tp / max(len(pred), 1) >= MIN_PRECISION_TILED, (tp, len(pred), len(gt))
    geo = json.loads(next((tmp_path / "out").rglob("*.geojson")).read_text(encoding="utf-8"))
    assert len(geo["features"]) == len(pred)
    lon0, lat0 = 117.0045, 37.945  # the scene spans 117.000-117.009 E, 37.943-37.948 N (zone 50N)
    for f in geo["features"]:
        lon, lat = np.asarray(f["geometry"]["coordinates"][0]).mean(axis=0)
        assert lon0 - 0.01 < lon < lon0 + 0.01 and lat0 - 0.01 < lat < lat0 + 0.01

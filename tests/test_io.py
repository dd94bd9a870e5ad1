"""Detection I/O (``detector.io``) and sliced inference (``detector.infer.tiled``):

* the writers' registry (georeferencing and the GeoJSON writer are tested in ``test_geo.py``);
* the letterbox there and back; the tile grid covers the scene with the requested overlap;
* a real SSDD image pasted at three places into a 4000 x 3000 SAR-like canvas: the ships found on
  the image alone are found on the canvas at the right coordinates with tiles, and not without;
  heatmaps and energy run on the tiles;
* a video keeps its frame rate through the one frame loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detector  # noqa: F401
from detector.infer import detect, predict_image, predict_tiled
from detector.io.letterbox import Letterbox
from detector.io.tiles import tile_grid, tile_starts
from detector.io.writers import WRITERS, make_writers
from _boxes import FixedBox, iou

REPO = Path(__file__).resolve().parents[1]


def test_writer_registry():
    assert set(WRITERS) == {"image", "txt", "json", "geojson"}
    with pytest.raises(ValueError, match="unknown output"):
        make_writers(["image", "shapefile"], None, {})


def test_letterbox_there_and_back():
    lb = Letterbox.fit((300, 500), 320)  # width-limited: resized to 320 x 192, 64 px bands top and bottom
    assert lb.unpad_shape == (192, 320) and (lb.top, lb.left) == (64, 0)
    x = lb.apply(np.zeros((300, 500, 3), np.uint8))
    assert x.shape == (1, 3, 320, 320)
    xi, yi = lb.to_input(np.array([0.0, 500.0]), np.array([0.0, 300.0]))
    assert xi.tolist() == [0.0, 320.0] and yi.tolist() == [64.0, 256.0]
    boxes = torch.tensor([[32.0, 96.0, 160.0, 224.0]])  # on the input
    back = lb.boxes_to_image(boxes.clone())
    assert torch.allclose(back, torch.tensor([[50.0, 50.0, 250.0, 250.0]]), atol=1e-4)
    with pytest.raises(ValueError, match="multiple of 32"):
        Letterbox.fit((300, 500), 300)


def test_letterbox_checks_the_size_once(monkeypatch):
    """``Letterbox.fit`` checks ``imgsz`` when the first letterbox of that size is built, not for every
    image after it; a refused size (or one that only equals a good one: 320.0, True) is refused every time."""
    from detector.io import letterbox

    calls = []

    def counted(v):
        calls.append(v)
        return checks_imgsz(v)

    checks_imgsz = letterbox.check_imgsz
    monkeypatch.setattr(letterbox, "check_imgsz", counted)
    monkeypatch.setattr(letterbox, "_SQUARES", {})
    shapes = [(300, 500), (500, 300), (320, 320)]
    assert [Letterbox.fit(s, 320).unpad_shape for s in shapes] == [(192, 320), (320, 192), (320, 320)]
    assert calls == [320]
    for bad in (300, 320.0, True):
        for _ in range(2):
            with pytest.raises(ValueError, match="multiple of 32"):
                Letterbox.fit((300, 500), bad)
    assert calls == [320] + [300, 300, 320.0, 320.0, True, True]


@pytest.mark.parametrize("length,tile,overlap", [(4000, 512, 0.2), (3000, 448, 0.5), (500, 512, 0.2), (1000, 1000, 0.0)])
def test_tile_grid_covers_with_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    t = min(tile, length)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + t] = True
        assert 0 <= s and s + t <= length
    assert covered.all() and starts[-1] + t == length
    for a, b in zip(starts, starts[1:]):
        assert a + t - b >= int(tile * overlap) - 1  # neighbours overlap by at least the requested amount
    assert len(tile_grid((length, length), tile, overlap)) == len(starts) ** 2


# ------------------------------------------------------------------------------------------------
# Sliced inference on a real SSDD image pasted into a large canvas
# ------------------------------------------------------------------------------------------------

PLACES = [(300, 200), (2100, 1400), (3400, 2500)]  # top-left corners of the pasted copies (x, y)


@pytest.fixture(scope="module")
def canvas_case(ssdd_root):
    """(shipped model, the SSDD image, its detections alone, a 4000 x 3000 canvas with three copies)."""
    from detector.weights import load_model

    model = load_model()
    img = cv2.imread(str(ssdd_root / "JPEGImages" / "000061.jpg"))  # a test-split scene with four ships
    alone = predict_image(model, img, 320, 0.25).numpy()
    rng = np.random.default_rng(0)
    sea = np.clip(rng.gamma(4.0, float(np.median(img)) / 4.0, (3000, 4000)), 0, 255).astype(np.uint8)  # speckle
    canvas = np.repeat(sea[..., None], 3, 2)
    h, w = img.shape[:2]
    for x, y in PLACES:
        canvas[y:y + h, x:x + w] = img
    return model, img, alone, canvas


def clear_ships(det: np.ndarray) -> np.ndarray:
    return det[np.minimum(det[:, 2] - det[:, 0], det[:, 3] - det[:, 1]) >= 16]


def found_on(det: np.ndarray, alone: np.ndarray) -> int:
    return sum(any(iou([b[0] + x, b[1] + y, b[2] + x, b[3] + y], c) >= 0.5 for c in det) for x, y in PLACES for b in alone)


@pytest.mark.slow
def test_tiles_find_on_the_canvas_what_the_crop_shows(canvas_case):
    model, img, alone, canvas = canvas_case
    assert len(alone) >= 3, "the shipped weights should find the ships of this scene; the check would be vacuous"
    tiled = predict_tiled(model, canvas, 320, tile=512, overlap=0.25, conf=0.25)
    # every ship at least 16 px on its short side, in every copy, at the right place; a ship of a few
    # pixels is left out: where the tile grid cuts the scene around it differently than the single image
    # did, its box moves by a pixel or two, which alone drops a 13 px box below IoU 0.5
    big = clear_ships(alone)
    assert len(big) >= 3 and found_on(tiled, big) == 3 * len(big)
    assert len(tiled) <= 3 * len(alone) + 6  # merged across tile borders: no pile of duplicates
    whole = predict_image(model, canvas, 320, 0.25).numpy()
    assert found_on(whole, alone) <= len(alone) // 2  # shrunk whole, the ships vanish


@pytest.mark.slow
def test_detect_tile_auto_on_a_large_scene(canvas_case, tmp_path):
    model, img, alone, canvas = canvas_case
    cv2.imwrite(str(tmp_path / "scene.png"), canvas)
    s = detect(tmp_path / "scene.png", out=tmp_path / "o", model=model, tile=512, overlap=0.25, conf=0.25,
               outputs=("json",), verbose=False)
    big = clear_ships(alone)
    assert s.per_image[0]["tile"] == 512 and found_on(
        np.array([[*p["bbox"][:2], p["bbox"][0] + p["bbox"][2], p["bbox"][1] + p["bbox"][3], p["score"], 0]
                  for p in s.predictions]), big) == 3 * len(big)
    from dataclasses import replace

    from detector.infer import resolve_tile
    from detector.models.settings import settings_of

    settings = replace(settings_of(model), train_image_size=None)
    assert resolve_tile("auto", settings, 320, canvas.shape) == 320  # no recorded training size: the input size
    settings = replace(settings, train_image_size=500)
    assert resolve_tile("auto", settings, 320, canvas.shape) == 500
    assert resolve_tile("auto", settings, 320, (600, 800)) is None  # not much larger than the training images


@pytest.mark.slow
def test_heatmaps_and_energy_on_tiles(canvas_case, tmp_path):
    from detector.analysis.energy import measure_energy
    from detector.analysis.heatmap import heatmaps
    from detector.io.batches import image_batches

    model, img, alone, canvas = canvas_case
    crop = canvas[1300:2100, 2000:3100]  # 800 x 1100 around the second copy
    cv2.imwrite(str(tmp_path / "part.png"), crop)
    s = heatmaps(tmp_path / "part.png", model=model, out=tmp_path / "hm", tile=512, overlap=0.25, verbose=False)
    n_tiles = len(tile_grid(crop.shape[:2], 512, 0.25))
    assert len(s.panels) == n_tiles and all(p.is_file() for p in s.panels)
    rep = measure_energy(model, image_batches([tmp_path / "part.png"], 320, 2, tile=512, overlap=0.25))
    assert rep.images == n_tiles and rep.energy_mj > 0


def test_video_keeps_its_frame_rate(tmp_path):
    vid = tmp_path / "v" / "clip.mp4"
    vid.parent.mkdir()
    w = cv2.VideoWriter(str(vid), cv2.VideoWriter_fourcc(*"mp4v"), 7.0, (64, 64))
    for i in range(6):
        w.write(np.full((64, 64, 3), 30 * i, np.uint8))
    w.release()
    out = tmp_path / "o"
    s = detect(vid.parent, out=out, model=FixedBox((8.0, 8.0, 40.0, 40.0)), imgsz=64, outputs=("image", "txt", "json"),
               vid_stride=2, verbose=False)
    assert s.frames == 3 and s.images == 0
    cap = cv2.VideoCapture(str(out / "clip.mp4"))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(3.5, abs=0.01) and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    cap.release()
    assert sorted(p.name for p in (out / "labels").glob("*.txt")) == ["clip_0.txt", "clip_2.txt", "clip_4.txt"]
    assert sorted({p["frame"] for p in json.loads((out / "predictions.json").read_text())}) == [0, 2, 4]

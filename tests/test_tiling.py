"""Sliced inference (``detector.infer.tiled``): merging across tiles without fragments, the bounds on
the work, progress, and lazy scenes read window by window (``detector.io.scene``).

The merge test pastes real SSDD ships (test split, 60-140 px long) into a speckled sea with their
centres on interior tile borders, and tiles of 320 px (``--tile auto`` for the shipped weights), about
three ship lengths: where a ship is cut, the tile that sees only part of it leaves a partial box inside
the ship its neighbour found whole. Merging by IoU (NMS, the earlier rule) keeps those fragments; the
greedy merge by intersection over the smaller box leaves one box per ship, at the ship."""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

import detector  # noqa: F401
from detector.infer import detect, load_runtime, predict_tiled
from detector.infer.options import MAX_TILES
from detector.infer.predict import predict_batch
from detector.infer.tiled import Progress, check_plan, drop_cut_boxes, merge_tiles
from detector.io.scene import RasterScene, as_array, open_scene, read_window
from detector.io.tiles import tile_count, tile_grid

TILE, OVERLAP = 320, 0.2
H, W = 1100, 1600
CENTRES = [(320, 200), (576, 700), (832, 300), (1088, 800), (512, 450), (768, 950), (1344, 180), (1024, 520)]


def inter(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def area(a) -> float:
    return (a[2] - a[0]) * (a[3] - a[1])


@pytest.fixture(scope="module")
def ship_scene(ssdd_root):
    """(scene, ground-truth boxes of the pasted ships)."""
    chips = []
    for xml in sorted((ssdd_root / "Annotations").glob("*[19].xml")):  # the project's test split
        for o in ET.parse(xml).getroot().iter("bndbox"):
            b = [int(float(o.find(k).text)) for k in ("xmin", "ymin", "xmax", "ymax")]
            if 60 <= max(b[2] - b[0], b[3] - b[1]) <= 140:
                chips.append((xml.stem, b))
    chips = chips[:40:5]
    rng = np.random.default_rng(0)
    pieces = []
    for stem, b in chips:
        img = cv2.imread(str(ssdd_root / "JPEGImages" / f"{stem}.jpg"))
        x0, y0 = max(0, b[0] - 12), max(0, b[1] - 12)
        x1, y1 = min(img.shape[1], b[2] + 12), min(img.shape[0], b[3] + 12)
        pieces.append((img[y0:y1, x0:x1], (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0)))
    level = float(np.median([np.median(p) for p, _ in pieces]))
    sea = np.clip(rng.gamma(4.0, max(level, 4.0) / 4.0, (H, W)), 0, 255).astype(np.uint8)  # speckle
    scene = np.repeat(sea[..., None], 3, 2)
    gts = []
    for (cx, cy), (chip, bb) in zip(CENTRES, pieces):
        h, w = chip.shape[:2]
        x, y = cx - (bb[0] + bb[2]) // 2, cy - (bb[1] + bb[3]) // 2
        scene[y:y + h, x:x + w] = chip
        gts.append((x + bb[0], y + bb[1], x + bb[2], y + bb[3]))
    assert len(gts) == len(CENTRES)
    return scene, gts


def boxes_in(det: np.ndarray, gt) -> list:
    """The boxes lying mostly (>= half their area) inside a ship: the ship's box and its fragments."""
    return [d for d in det if inter(d, gt) >= 0.5 * area(d)]


def test_one_box_per_ship_across_tile_borders(ship_scene):
    scene, gts = ship_scene
    rt = load_runtime("ssdd")
    tiles = tile_grid((H, W), TILE, OVERLAP)
    found, owner = [], []
    for k in range(0, len(tiles), 8):  # the per-tile boxes, before any merging across tiles
        for j, (t, d) in enumerate(zip(tiles[k:k + 8], predict_batch(rt, [read_window(scene, *t) for t in tiles[k:k + 8]],
                                                                     TILE))):
            d = d.numpy().astype(np.float64)
            d[:, [0, 2]] += t[0]
            d[:, [1, 3]] += t[1]
            d = drop_cut_boxes(d, t, (H, W), TILE * OVERLAP)
            found.append(d)
            owner.append(np.full(len(d), k + j))
    raw, owner = np.concatenate(found), np.concatenate(owner)
    t = torch.from_numpy(raw)
    nms = raw[torchvision.ops.batched_nms(t[:, :4], t[:, 4], t[:, 5].long(), 0.45).numpy()]
    assert sum(len(boxes_in(nms, g)) > 1 for g in gts) >= 3  # the scene does show the fragments NMS leaves

    merged = merge_tiles(raw, owner, 0.45)
    np.testing.assert_allclose(predict_tiled(rt, scene, TILE, TILE, OVERLAP), merged)  # the public path
    per_ship = [boxes_in(merged, g) for g in gts]
    assert sum(len(b) == 1 for b in per_ship) >= 6 and all(len(b) <= 1 for b in per_ship)  # found once, no fragment
    for g, b in zip(gts, per_ship):
        if b:
            assert inter(b[0], g) / (area(b[0]) + area(g) - inter(b[0], g)) >= 0.5  # the merged box is the ship


def test_merge_rules_on_hand_made_boxes():
    det = np.array([[100, 100, 200, 140, 0.9, 0],   # tile 0: a whole ship
                    [150, 105, 198, 138, 0.95, 0],  # tile 1: its cut part, inside it, scoring higher
                    [101, 99, 201, 141, 0.8, 0],    # tile 2: a duplicate of the whole ship
                    [110, 108, 160, 132, 0.7, 0],   # tile 0: a boat on the ship's box, kept apart there by NMS
                    [150, 105, 198, 138, 0.6, 1],   # tile 1: another class at the same place
                    [400, 400, 450, 420, 0.5, 0]])  # tile 3: elsewhere
    out = merge_tiles(det, np.array([0, 1, 2, 0, 1, 3]), 0.45)
    assert len(out) == 4
    np.testing.assert_allclose(out[0], [100, 99, 201, 141, 0.95, 0])  # enclosing box, best score
    # the boat lies inside the duplicate, but its own tile had separated it from the ship: kept
    assert [110, 108, 160, 132, 0.7, 0] in out.tolist() and [400, 400, 450, 420, 0.5, 0] in out.tolist()
    assert [150, 105, 198, 138, 0.6, 1] in out.tolist()
    assert merge_tiles(np.zeros((0, 6)), np.zeros(0, int), 0.45).shape == (0, 6)


def test_tiling_work_is_bounded():
    """Issue 24 item 2: 8000 x 8000 at --tile 32 --overlap 0.89 would be 7 million tiles; --tile 32 at
    --imgsz 8192 enlarges each tile 256 times: both refused in one line that names a setting that fits."""
    with pytest.raises(ValueError, match=r"8000x8000 px with 32 px tiles at overlap 0\.85 makes 3,972,049 tiles \(more "
                                         r"than 100,000\); e\.g\. --tile 64 --overlap 0\.2 makes 24,649"):
        check_plan((8000, 8000, 3), 32, 0.85, 128)
    assert check_plan((8000, 8000, 3), 64, 0.2, 128) == 24_649  # the setting named works
    assert tile_count((8000, 8000), 32, 0.85) > MAX_TILES
    with pytest.raises(ValueError, match="enlarge 32 px tiles 256 times.*--imgsz 128 or tiles of at least 2048 px"):
        check_plan((8000, 8000, 3), 32, 0.2, 8192)
    with pytest.raises(ValueError, match="enlarge 32 px tiles 10 times"):  # the issue's --tile 32 --overlap 0.89
        check_plan((8000, 8000, 3), 32, 0.89, 320)
    assert check_plan((8000, 8000, 3), 320, 0.2, 320) == tile_count((8000, 8000), 320, 0.2) == len(
        tile_grid((8000, 8000), 320, 0.2))


def test_detect_skips_a_scene_whose_plan_is_out_of_bounds(tmp_path, monkeypatch):
    """The plan is checked once per scene (inside ``predict_tiled``, before any tile runs): a scene over the
    tile limit is skipped in one line naming it, and the rest of the folder goes on."""
    from detector.infer import tiled
    from _boxes import FixedBox

    monkeypatch.setattr(tiled, "MAX_TILES", 9)  # 64 x 64 px in 32 px tiles: 9; 256 x 256 px: 100
    counted = []  # the plans' tile counts, by scene shape
    real = tiled.tile_count
    monkeypatch.setattr(tiled, "tile_count", lambda shape, *a: counted.append(tuple(shape)) or real(shape, *a))
    src = tmp_path / "src"
    src.mkdir()
    for name, size in (("big.png", 256), ("small.png", 64)):
        cv2.imwrite(str(src / name), np.full((size, size, 3), 90, np.uint8))
    s = detect(src, out=tmp_path / "out", model=FixedBox((8.0, 8.0, 40.0, 40.0)), imgsz=64, tile=32, verbose=False,
               outputs=("json",))
    assert s.images == 1 and [(Path(f).name, why.split(";")[0]) for f, why in s.skipped] == [
        ("big.png", "tiling 256x256 px with 32 px tiles at overlap 0.2 makes 100 tiles (more than 9)")]
    assert counted.count((64, 64)) == 1  # the plan of a scene that runs is checked once


def test_tile_count_refusal_names_a_setting_that_works():
    """Issue 32: at the default overlap with tiles as large as the input, the refusal named the very
    setting it refused; the setting it names now passes the same check."""
    import re

    shape = (120_000, 120_000, 3)
    with pytest.raises(ValueError) as e:
        check_plan(shape, 320, 0.2, 320)
    tile, overlap = re.search(r"--tile (\d+) --overlap ([\d.]+)", str(e.value)).groups()
    assert (int(tile), float(overlap)) != (320, 0.2)
    assert check_plan(shape, int(tile), float(overlap), 320) <= MAX_TILES
    with pytest.raises(ValueError):  # ... and it is the smallest that does
        check_plan(shape, int(tile) - 32, float(overlap), 320)


def test_progress_lines_and_per_tile_cap():
    lines = []
    p = Progress("scene.tif", every=0.0, min_tiles=4, out=lines.append)
    for done in (8, 16, 20):
        p(done, 20)
    assert len(lines) == 3 and "tile 20/20 (100 %)" in lines[-1]
    quiet = Progress("small", min_tiles=64, out=lines.append)
    quiet(8, 8)
    assert len(lines) == 3  # a small scene prints nothing

    class Many(torch.nn.Module):  # ten boxes per tile, each kept by NMS
        names = {0: "ship"}

        def forward(self, x):
            B, _, S, _ = x.shape
            c = torch.arange(10.0) * (S / 10) + S / 20
            row = torch.stack([c, c, torch.full((10,), 4.0), torch.full((10,), 4.0), torch.full((10,), 0.9)])
            return row.unsqueeze(0).repeat(B, 1, 1)

    from ultralytics.utils import LOGGER

    warned = []

    def keep(record):
        warned.append(record.getMessage())
        return True

    LOGGER.addFilter(keep)
    try:
        det = predict_tiled(Many(), np.zeros((200, 300, 3), np.uint8), 64, 100, 0.2, max_det=5)
    finally:
        LOGGER.removeFilter(keep)
    assert len(det) > 5  # the scene is not capped at max_det ...
    assert any("reached --max-det 5" in w for w in warned)  # ... and the per-tile cap is reported


def write_big_tiff(path: Path, shape: tuple[int, int], dtype=np.uint8) -> np.ndarray:
    """A tiled GeoTIFF-style raster written with rasterio (band-interleaved RGB), and its BGR pixels."""
    rasterio = pytest.importorskip("rasterio")
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255 if dtype == np.uint8 else 4000, (3, *shape)).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NotGeoreferencedWarning: a plain raster is what the test wants
        with rasterio.open(path, "w", driver="GTiff", width=shape[1], height=shape[0], count=3, dtype=rgb.dtype,
                           tiled=True, blockxsize=256, blockysize=256, photometric="RGB") as ds:
            ds.write(rgb)
    return np.ascontiguousarray(np.moveaxis(rgb[::-1], 0, -1))


def test_raster_scene_reads_windows_like_the_whole_image(tmp_path):
    path = tmp_path / "scene.tif"
    bgr = write_big_tiff(path, (700, 900))
    scene = RasterScene(path)
    assert scene.shape == (700, 900, 3)
    np.testing.assert_array_equal(read_window(scene, 100, 50, 420, 370), bgr[50:370, 100:420])
    np.testing.assert_array_equal(as_array(scene), bgr)
    from detector.io.images import read_image

    np.testing.assert_array_equal(read_image(path), bgr)  # the same pixels as a whole-image read
    assert open_scene(path) is None and isinstance(open_scene(path, min_pixels=1000), RasterScene)
    scene.close()
    deep = tmp_path / "deep.tif"
    write_big_tiff(deep, (300, 400), np.uint16)
    w = RasterScene(deep).read(0, 0, 400, 300)
    assert w.dtype == np.uint8 and w.std() > 20  # stretched to 8 bits


def test_detect_reads_a_large_raster_window_by_window(tmp_path, monkeypatch):
    """With tiles and no rendering, a raster above the lazy threshold is never decoded whole; the
    detections equal those on the decoded array."""
    import detector.io.frames as F

    path = tmp_path / "big.tif"
    bgr = write_big_tiff(path, (700, 900))
    monkeypatch.setattr(F, "open_scene", lambda p, _: open_scene(p, min_pixels=1000))  # "large" from 1000 px
    reads = []
    real = RasterScene.read
    monkeypatch.setattr(RasterScene, "read", lambda self, *w: reads.append(w) or real(self, *w))

    from _boxes import FixedBox

    box = FixedBox((8.0, 8.0, 40.0, 40.0))
    s = detect(path, out=tmp_path / "o", model=box, imgsz=64, tile=256, overlap=0.2, outputs=("json",),
               verbose=False)
    assert len(reads) == tile_count((700, 900), 256, 0.2) and all((w[2] - w[0]) * (w[3] - w[1]) <= 256 * 256
                                                                    for w in reads)
    ref = predict_tiled(box, bgr, 64, 256, 0.2)
    assert s.detections == len(ref) > 0

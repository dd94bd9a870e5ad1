"""The main job out of the box: on a checkout, ``python tools/detect.py --source images/`` uses the
shipped weights on the project's own demo images and finds the ships in them.

"Correct-looking" is measured against the demo scenes' own ground truth (``detector.demo`` returns
every ship's box): at the default confidence 0.25 and IoU >= 0.5 (one prediction per ship, best score
first), recall >= MIN_RECALL and precision >= MIN_PRECISION over the six images, and every image has
at least one correct detection. (Thresholds sit below the measured values: a spiking network can flip a
spike on a last-bit difference between CPUs.)
"""

import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.demo import make_sar_scene, write_demo_images
from detector.weights import default_weights
from _boxes import match

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "images").glob("sar_scene_*.png"))
SEED, SIZE = 2025, (512, 512)  # how images/ was made: python tools/make_demo_images.py
MIN_RECALL, MIN_PRECISION = 0.88, 0.85  # measured with the shipped weights: 23/25 = 0.92, 23/23 = 1.00


def test_demo_images_are_generated_by_the_project(tmp_path):
    assert len(IMAGES) == 6
    for made, shipped in zip(write_demo_images(tmp_path, count=6, seed=SEED, size=SIZE), IMAGES):
        assert made.name == shipped.name
        assert np.array_equal(cv2.imread(str(made), cv2.IMREAD_UNCHANGED), cv2.imread(str(shipped), cv2.IMREAD_UNCHANGED))


def test_shipped_weights_find_the_ships_in_the_demo_images(tmp_path):
    from detector.infer import detect

    assert default_weights().is_file(), f"the shipped weights are missing: {default_weights()}"
    s = detect(ROOT / "images", out=tmp_path, outputs=("image", "json"), verbose=False)  # every other default, as the tool
    assert s.images == 6 and not s.skipped
    assert all(p["category_name"] == "ship" for p in s.predictions)
    tp = n_pred = n_gt = 0
    for k, path in enumerate(IMAGES):
        _, gt = make_sar_scene(SEED + k, SIZE)
        pred = [([p["bbox"][0], p["bbox"][1], p["bbox"][0] + p["bbox"][2], p["bbox"][1] + p["bbox"][3]], p["score"])
                for p in s.predictions if p["file_name"] == path.name]
        hit = match(pred, gt)
        assert hit >= 1, f"{path.name}: none of {len(gt)} ships found ({len(pred)} detections)"
        tp, n_pred, n_gt = tp + hit, n_pred + len(pred), n_gt + len(gt)
    recall, precision = tp / n_gt, tp / max(n_pred, 1)
    assert recall >= MIN_RECALL and precision >= MIN_PRECISION, (tp, n_pred, n_gt)


@pytest.mark.slow
def test_exact_main_command():
    start = time.time()
    r = subprocess.run([sys.executable, "tools/detect.py", "--source", "images/"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    found = re.search(r"6 image\(s\), \d+ detection\(s\) -> (runs/detect/exp\d*)\n", r.stdout)
    assert found, r.stdout  # a fresh run folder: runs/detect/exp, or exp2, exp3... when earlier runs exist
    out = ROOT / found.group(1)
    lines = [l for l in r.stdout.splitlines() if l.startswith("image ")]
    assert len(lines) == 6, r.stdout
    for k, (line, path) in enumerate(zip(lines, IMAGES)):
        assert f"images/{path.name}" in line and "512x512" in line, line
        n = re.search(r": (\d+) ships? \(", line)
        assert n and int(n.group(1)) >= 1, line  # every demo scene has ships
        rendered = out / f"{path.stem}.jpg"
        assert rendered.is_file() and rendered.stat().st_mtime >= start - 1, rendered
        img = cv2.imread(str(rendered))
        assert img.shape == (512, 512, 3)
        spread = img.max(axis=2).astype(int) - img.min(axis=2).astype(int)  # the scene is grey: colour = boxes
        assert (spread > 60).sum() > 200, f"{rendered}: no box drawn"


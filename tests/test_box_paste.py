"""Copy-paste for box-only labels (``detector.engine.augment``): patches of another image's boxes, with
their surroundings, pasted where they cover no labelled object, their boxes added; and the trainer's
training set uses it in place of Ultralytics' copy-paste (which needs polygons) when ``copy_paste`` > 0."""

from __future__ import annotations

import random

import numpy as np
import pytest
from _yolo_data import make_yolo_dataset

import detector  # noqa: F401
from detector.engine.augment import MARGIN, MIN_MARGIN, BoxPaste, paste_boxes, use_box_paste


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def test_patches_carry_their_surroundings_and_avoid_objects():
    rng = np.random.default_rng(0)
    img = np.zeros((200, 300, 3), np.uint8)
    boxes = np.array([[10, 10, 60, 40], [150, 120, 200, 190]], np.float32)
    src = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
    src_boxes = np.array([[20, 20, 40, 50], [100, 100, 130, 120]], np.float32)
    before = img.copy()
    pasted, used = paste_boxes(img, boxes, src, src_boxes, random.Random(0))
    assert len(pasted) == len(used) == 2 and sorted(used) == [0, 1]
    for box, i in zip(pasted, used):
        sx0, sy0, sx1, sy1 = src_boxes[i]
        assert box[2] - box[0] == sx1 - sx0 and box[3] - box[1] == sy1 - sy0  # same size as the source box
        assert 0 <= box[0] and box[2] <= img.shape[1] and 0 <= box[1] and box[3] <= img.shape[0]
        assert not any(_overlap(box, b) for b in boxes)
        x0, y0, x1, y1 = (int(v) for v in box)
        assert np.array_equal(img[y0:y1, x0:x1], src[int(sy0):int(sy1), int(sx0):int(sx1)])  # the ship
        m = int(max(MIN_MARGIN, MARGIN * (sx1 - sx0), MARGIN * (sy1 - sy0)))  # ... and its surroundings (the
        # source boxes lie more than m from the source's border, so the whole margin came along)
        assert np.array_equal(img[y0 - MIN_MARGIN:y1 + MIN_MARGIN, x0 - MIN_MARGIN:x1 + MIN_MARGIN],
                              src[int(sy0) - MIN_MARGIN:int(sy1) + MIN_MARGIN, int(sx0) - MIN_MARGIN:int(sx1) + MIN_MARGIN])
        assert m >= MIN_MARGIN
    assert not np.array_equal(img, before)
    assert np.array_equal(img[10:40, 10:60], before[10:40, 10:60])  # labelled objects untouched
    assert not _overlap(pasted[0], pasted[1])


def test_a_patch_that_would_carry_another_object_is_skipped():
    img = np.zeros((300, 300, 3), np.uint8)
    src = np.full((100, 100, 3), 50, np.uint8)
    src_boxes = np.array([[10, 10, 30, 30], [32, 10, 52, 30]], np.float32)  # 2 px apart: margins overlap the other
    pasted, used = paste_boxes(img, np.zeros((0, 4), np.float32), src, src_boxes, random.Random(0))
    assert len(pasted) == 0 and used == [] and not img.any()


def test_no_room_means_no_paste():
    img = np.zeros((64, 64, 3), np.uint8)
    pasted, used = paste_boxes(img, np.array([[0, 0, 64, 64]], np.float32), np.full((64, 64, 3), 9, np.uint8),
                               np.array([[10, 10, 20, 20]], np.float32), random.Random(0))
    assert used == [] and not img.any()


def test_training_set_uses_box_paste(tmp_path):
    """Through Ultralytics' own dataset builder: with copy_paste 1 every training image gains the pasted
    boxes; with 0 nothing is replaced."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    data_yaml = make_yolo_dataset(tmp_path / "ds", n_train=6, n_val=2, bad=False)
    data = check_det_dataset(str(data_yaml))
    random.seed(0)
    np.random.seed(0)
    for p in (0.0, 1.0):
        cfg = get_cfg(overrides={"copy_paste": p, "mosaic": 0.0, "imgsz": 64, "fliplr": 0.0, "scale": 0.0,
                                 "translate": 0.0, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0})
        ds = build_yolo_dataset(cfg, data["train"], 2, data, mode="train")
        assert use_box_paste(ds, p) is (p > 0)
        found = []

        def find(t):
            for x in getattr(t, "transforms", []):
                found.append(x)
                find(x)
        find(ds.transforms)
        assert any(isinstance(x, BoxPaste) for x in found) is (p > 0)
        if p > 0:
            counts = [len(ds[i]["cls"]) for i in range(len(ds))]
            assert max(counts) >= 2  # one box per generated image, plus pasted ones
            assert all(np.isfinite(ds[i]["bboxes"].numpy()).all() for i in range(len(ds)))


@pytest.mark.parametrize("p", [0.0, -1.0])
def test_off_does_nothing(p):
    labels = {"img": np.zeros((8, 8, 3), np.uint8)}
    assert BoxPaste(None, p)(labels) is labels


@pytest.mark.slow
def test_trainer_pastes_boxes_with_copy_paste(tmp_path):
    """``--copy-paste P`` reaches the trainer's training set (SafeTrainer.build_dataset)."""
    import torch
    import yaml
    from _tiny import TINY_T1 as TINY_CFG
    from _yolo_data import TRAIN_KW

    from detector.engine.trainer import train

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CFG, sort_keys=False))
    data = make_yolo_dataset(tmp_path / "ds", n_train=4, n_val=2, bad=False)
    det = torch.are_deterministic_algorithms_enabled()
    try:
        t = train(data, cfg, epochs=1, seed=0, project=tmp_path / "runs", name="cp", val=False, copy_paste=0.5,
                  **TRAIN_KW)
    finally:
        torch.use_deterministic_algorithms(det)
    found = []

    def find(x):
        for y in getattr(x, "transforms", []):
            found.append(y)
            find(y)
    find(t.train_loader.dataset.transforms)
    assert [x.p for x in found if isinstance(x, BoxPaste)] == [0.5]


def test_patches_stay_off_the_mosaic_border():
    img = np.full((100, 200, 3), 114, np.uint8)  # Ultralytics' grey fill ...
    img[:, 100:] = 30  # ... and a scene on the right half
    src = np.full((100, 100, 3), 200, np.uint8)
    pasted, used = paste_boxes(img, np.zeros((0, 4), np.float32), src, np.array([[40, 40, 50, 50]], np.float32),
                               random.Random(1))
    assert used == [0] and pasted[0][0] >= 100 - 9  # the patch (box + 4 px margins) lies mostly on the scene
    assert (img[:, :90] == 114).all()

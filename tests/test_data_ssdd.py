"""SSDD: all 1,160 real images and VOC annotations through the VOC reader and the writer."""

from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import yaml

from detector.data import check_output, convert_ssdd, read_ssdd, read_voc


@pytest.fixture(scope="module")
def ssdd(tmp_path_factory: pytest.TempPathFactory, ssdd_root: Path) -> dict:
    out = tmp_path_factory.mktemp("ssdd_out")
    report = convert_ssdd(ssdd_root, out, overwrite=True, link="hardlink")
    # Boxes per image, counted straight from the XML files.
    boxes = {p.stem: len(ET.parse(p).getroot().findall("object")) for p in (ssdd_root / "Annotations").glob("*.xml")}
    return {"out": out, "report": report, "boxes": boxes}


def test_counts_follow_the_1_or_9_rule(ssdd: dict) -> None:
    rep, out, boxes = ssdd["report"], ssdd["out"], ssdd["boxes"]
    test_ids = {k for k in boxes if k[-1] in "19"}
    assert len(boxes) == 1160 and len(test_ids) == 232
    assert {s: v["images"] for s, v in rep["splits"].items()} == {"train": 928, "test": 232}
    assert {p.stem for p in (out / "images" / "test").iterdir()} == test_ids
    assert rep["splits"]["test"]["boxes"] == sum(boxes[k] for k in test_ids) == 533
    assert rep["splits"]["train"]["boxes"] == sum(n for k, n in boxes.items() if k not in test_ids) == 2007
    assert rep["total"]["boxes"] == 2540
    assert rep["problems"] == []  # the real SSDD annotations are clean
    assert rep["splits"]["train"]["images_without_boxes"] == 0


def test_labels_and_coco_agree(ssdd: dict) -> None:
    out = ssdd["out"]
    on_disk = check_output(out)  # loads the COCO json with pycocotools and compares every image
    assert {s: v["boxes"] for s, v in on_disk.items()} == {"train": 2007, "test": 533}
    values = [float(v) for s in ("train", "test") for p in (out / "labels" / s).glob("*.txt")
              for line in p.read_text().splitlines() for v in line.split()[1:]]
    assert len(values) == 4 * 2540 and all(0.0 <= v <= 1.0 for v in values)
    # 000001.xml: 416 x 323, ship (208, 50)-(273, 151); its id ends in 1, so it is a test image.
    assert (out / "labels" / "test" / "000001.txt").read_text() == "0 0.578125 0.311146 0.156250 0.312693\n"
    coco = json.loads((out / "annotations" / "test.json").read_text())
    img = next(i for i in coco["images"] if i["file_name"] == "000001.jpg")
    assert (img["width"], img["height"]) == (416, 323) and isinstance(img["id"], int)
    (ann,) = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
    assert ann["bbox"] == [208, 50, 65, 101] and ann["category_id"] == 1
    assert coco["categories"] == [{"id": 1, "name": "ship", "supercategory": "object"}]


def test_data_yaml(ssdd: dict) -> None:
    out, rep = ssdd["out"], ssdd["report"]
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert Path(data["path"]).is_absolute() and Path(data["path"]) == out.resolve()
    # No val split by default (the SSDD protocol): val points at the test split, and the report says so.
    assert data["train"] == "images/train" and data["val"] == "images/test" and data["test"] == "images/test"
    assert data["names"] == {0: "ship"}
    assert data["coco_json"] == {"train": "annotations/train.json", "val": "annotations/test.json",
                                 "test": "annotations/test.json"}
    assert any("val" in n and "images/test" in n for n in rep["notes"])


def test_val_fraction_carves_from_train_only(ssdd_root: Path) -> None:
    a = {r.name: r.split for r in read_ssdd(ssdd_root, val_fraction=0.1, seed=3).records}
    b = {r.name: r.split for r in read_ssdd(ssdd_root, val_fraction=0.1, seed=3).records}
    assert a == b and Counter(a.values()) == {"train": 835, "val": 93, "test": 232}
    assert all(n[-5] not in "19" for n, s in a.items() if s == "val")  # test is untouched
    c = {r.name: r.split for r in read_ssdd(ssdd_root, val_fraction=0.1, seed=4).records}
    assert c != a and {n for n, s in c.items() if s == "test"} == {n for n, s in a.items() if s == "test"}
    # The generic VOC reader discovers the single class and, with no ImageSets, splits 60/20/20.
    voc = read_voc(ssdd_root)
    assert voc.names == ["ship"] and Counter(r.split for r in voc.records) == {"train": 696, "val": 232, "test": 232}


def test_ultralytics_reads_the_output(ssdd: dict) -> None:
    """The trainer's own dataset class finds every image and box and calls none corrupt."""
    from ultralytics.data import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    with contextlib.redirect_stdout(io.StringIO()):
        data = check_det_dataset(str(ssdd["out"] / "data.yaml"))
        ds = YOLODataset(img_path=data["val"], data=data, task="detect", augment=False, imgsz=320)
    labels = ds.get_labels()
    assert len(labels) == 232 and sum(len(lb["cls"]) for lb in labels) == 533

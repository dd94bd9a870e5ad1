"""Crafted bad inputs for each reader and the writer: every problem is reported with its file and action."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from detector.data import (DataProblemWarning, check_output, convert_coco, convert_nwpu, convert_voc, read_voc,
                           write_dataset)


def _img(path: Path, size: tuple[int, int] = (100, 80), **save: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path, **save)
    return path


def _problems(report: dict, kind: str) -> list[dict]:
    return [p for p in report["problems"] if p["kind"] == kind]


def _one(report: dict, kind: str, file_end: str, action: str, where: str | None = None) -> dict:
    """The single problem of ``kind`` whose file ends with ``file_end``; checks its action and place."""
    found = [p for p in _problems(report, kind) if p["file"].endswith(file_end)]
    assert len(found) == 1, (kind, file_end, report["problems"])
    assert action in found[0]["action"], found[0]
    if where is not None:
        assert found[0]["where"] == where, found[0]
    return found[0]


# ---------------------------------------------------------------------------------------------- NWPU

NWPU_001 = """(10,10),(50,50),1

(10,10),(50,50)
hello
(10,10),(50,50),11
(10,10),(50,50),0
(20,20),(20,60),2
(60,60),(30,30),3
(80,70),(130,90),4
(150,150),(200,200),5
(10,10),(50,50),1
 ( 5 , 6 ),( 40 , 45 ) , 10 """


@pytest.fixture
def bad_nwpu(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> dict:
    root = tmp_path / "nwpu"
    gt, pos = root / "ground truth", root / "positive image set"
    gt.mkdir(parents=True)
    (gt / "001.txt").write_text(NWPU_001)
    _img(pos / "001.jpg")
    (gt / "002.txt").write_text("(1,1),(9,9),1\n")  # no image
    _img(pos / "003.jpg")  # no ground truth
    (gt / "004.txt").write_text("(1,1),(9,9),1\n")
    (pos / "004.jpg").write_bytes(b"this is not a jpeg")
    (gt / "005.txt").write_text("\n  \n")  # a positive image without any box
    _img(pos / "005.jpg")
    (gt / "006.txt").write_text("(1,1),(4,4),1\n")
    _img(pos / "006.jpg", (5, 5))
    (gt / "007.txt").write_text("(1,1),(9,9),1\n")
    exif = Image.Exif()
    exif[0x0112] = 6
    _img(pos / "007.jpg", exif=exif)
    (gt / "008.txt").write_text("(1,1),(9,9),1\n")
    data = _img(pos / "008.jpg").read_bytes()
    (pos / "008.jpg").write_bytes(data[:-2])  # no end marker
    caplog.set_level(logging.WARNING, logger="detector.data")
    with pytest.warns(DataProblemWarning, match="data problem"):
        report = convert_nwpu(root, tmp_path / "out", ratios=(1.0, 0.0, 0.0))
    return {"report": report, "out": tmp_path / "out", "log": caplog.text}


def test_nwpu_bad_lines(bad_nwpu: dict) -> None:
    rep = bad_nwpu["report"]
    assert [(Path(p["file"]).name, p["where"], p["action"]) for p in _problems(rep, "malformed_line")] == [
        ("001.txt", "line 3", "line skipped"), ("001.txt", "line 4", "line skipped")]
    assert [(Path(p["file"]).name, p["where"]) for p in _problems(rep, "unknown_class")] == [
        ("001.txt", "line 5"), ("001.txt", "line 6")]
    assert all(p["action"] == "box dropped" for p in _problems(rep, "unknown_class"))
    _one(rep, "zero_area", "001.txt", "box dropped", "line 7")
    _one(rep, "inverted_box", "001.txt", "box dropped", "line 8")
    _one(rep, "box_clipped", "001.txt", "clipped to (80, 70, 100, 80)", "line 9")
    _one(rep, "outside_image", "001.txt", "box dropped (nothing left after clipping)", "line 10")
    _one(rep, "duplicate_box", "001.txt", "box dropped", "line 11")
    # Kept: line 1, the clipped line 9 and the padded line 12 (class 10 -> index 9).
    assert (bad_nwpu["out"] / "labels" / "train" / "001.txt").read_text().splitlines() == [
        "0 0.300000 0.375000 0.400000 0.500000",
        "3 0.900000 0.937500 0.200000 0.125000",
        "9 0.225000 0.318750 0.350000 0.487500",
    ]


def test_nwpu_bad_files(bad_nwpu: dict) -> None:
    rep, out = bad_nwpu["report"], bad_nwpu["out"]
    _one(rep, "missing_image", "positive image set/002.jpg", "image skipped (1 box(es)")
    _one(rep, "no_annotation", "positive image set/003.jpg", "image skipped")
    _one(rep, "unreadable_image", "positive image set/004.jpg", "image skipped")
    _one(rep, "no_boxes", "ground truth/005.txt", "image skipped")
    _one(rep, "image_too_small", "positive image set/006.jpg", "image skipped")
    _one(rep, "exif_orientation", "positive image set/007.jpg", "kept")
    _one(rep, "truncated_jpeg", "positive image set/008.jpg", "kept")
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["001.jpg", "007.jpg", "008.jpg"]
    assert rep["total"]["images"] == 3 and rep["total"]["boxes"] == 5
    # Every problem is logged with its file name, and report.json on disk matches the returned report.
    for p in rep["problems"]:
        assert Path(p["file"]).name in bad_nwpu["log"]
    assert json.loads((out / "report.json").read_text())["problems"] == rep["problems"]
    assert sum(rep["problem_counts"].values()) == len(rep["problems"]) == 16
    assert any("val" in n for n in rep["notes"])  # ratios 1/0/0: val falls back to train, said in notes
    check_output(out)


# ----------------------------------------------------------------------------------------------- VOC


def _xml(path: Path, objects: list[str], size: tuple[int, int] | None = (100, 80)) -> None:
    size_xml = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{path.stem}.jpg</filename>{size_xml}{''.join(objects)}</annotation>")


def _obj(name: str, box: tuple[object, ...] | None, difficult: int = 0) -> str:
    bnd = "" if box is None else "<bndbox>" + "".join(
        f"<{t}>{v}</{t}>" for t, v in zip(("xmin", "ymin", "xmax", "ymax"), box)) + "</bndbox>"
    return f"<object><name>{name}</name><difficult>{difficult}</difficult>{bnd}</object>"


@pytest.fixture
def voc_root(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    ann, img = root / "Annotations", root / "JPEGImages"
    _xml(ann / "a.xml", [_obj("ship", (10, 10, 30, 30)), _obj("boat", (5, 5, 9, 9)), _obj("ship", None),
                         _obj("ship", (1, 1, "abc", 5)), _obj("ship", (90, 70, 120, 95))], size=(200, 100))
    _img(img / "a.jpg")
    ann.joinpath("b.xml").write_text("<annotation><object>")  # broken XML
    _img(img / "b.jpg")
    _img(img / "c.jpg")  # no XML
    _xml(ann / "d.xml", [_obj("ship", (1, 1, 20, 20))])  # no image
    _xml(ann / "e.xml", [_obj(" ship ", (1, 1, 20, 20))], size=None)
    _img(img / "e.jpg")
    _xml(ann / "f.xml", [_obj("ship", (1, 1, 20, 20), difficult=1), _obj("ship", (30, 30, 50, 50))])
    _img(img / "f.jpg")
    _xml(ann / "g.xml", [_obj("ship", (1, 1, 20, 20))])
    _img(img / "g.jpg")
    _img(img / "g.png")
    return root


def test_voc_bad_inputs(voc_root: Path, tmp_path: Path) -> None:
    with pytest.warns(DataProblemWarning):
        rep = convert_voc(voc_root, tmp_path / "out", classes=["ship"], split="seeded", ratios=(1, 0, 0),
                          skip_difficult=True)
    _one(rep, "size_mismatch", "Annotations/a.xml", "used the image file's size")
    assert "200x100" in _problems(rep, "size_mismatch")[0]["problem"]
    _one(rep, "unknown_class", "Annotations/a.xml", "box dropped", "object 2")
    assert [(Path(p["file"]).name, p["where"], p["action"]) for p in _problems(rep, "malformed_object")] == [
        ("a.xml", "object 3", "box dropped"), ("a.xml", "object 4", "box dropped")]
    _one(rep, "box_clipped", "Annotations/a.xml", "clipped to (90, 70, 100, 80)", "object 5")
    _one(rep, "unreadable_annotation", "Annotations/b.xml", "image skipped")
    _one(rep, "no_annotation", "JPEGImages/c.jpg", "image skipped")
    _one(rep, "missing_image", "JPEGImages/d.jpg", "image skipped (1 box(es) from")
    _one(rep, "no_size", "Annotations/e.xml", "used the image file's size")
    _one(rep, "difficult_skipped", "Annotations/f.xml", "box dropped", "object 1")
    _one(rep, "ambiguous_image", "JPEGImages/g", "used g.jpg")
    assert not _problems(rep, "no_annotation")[0]["file"].endswith("b.jpg")  # b is reported once, as its XML
    labels = tmp_path / "out" / "labels" / "train"
    assert sorted(p.name for p in labels.iterdir()) == ["a.txt", "e.txt", "f.txt", "g.txt"]
    assert len((labels / "a.txt").read_text().splitlines()) == 2
    assert len((labels / "f.txt").read_text().splitlines()) == 1
    assert rep["class_map"] == {"ship": 0}
    check_output(tmp_path / "out")


def test_voc_classes_discovered_and_imagesets(voc_root: Path, tmp_path: Path) -> None:
    sets = voc_root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("a\ne\n")
    (sets / "val.txt").write_text("f\nzzz\n")
    (sets / "test.txt").write_text("a\ng\n")
    ds = read_voc(voc_root)  # auto: ImageSets present
    assert ds.names == ["boat", "ship"]  # discovered, sorted; " ship " is stripped
    assert {r.name: r.split for r in ds.records} == {"a.jpg": "train", "e.jpg": "train", "f.jpg": "val",
                                                     "g.jpg": "test"}
    kinds = {(p.kind, Path(p.file).name, p.where, p.action) for p in ds.problems.items}
    assert ("duplicate_id", "test.txt", "line 1", "kept in 'train'") in kinds
    assert ("missing_annotation", "Main", None, "id skipped") in kinds
    assert ("unlisted_id", "d.xml", None, "image skipped") in kinds
    assert not any(p.kind == "unknown_class" for p in ds.problems.items)
    # Without val.txt the split files make no val; val_fraction carves it out of train.
    (sets / "val.txt").unlink()
    ds = read_voc(voc_root, val_fraction=0.5)
    assert sorted(r.split for r in ds.records) == ["test", "train", "val"]
    with pytest.raises(ValueError, match="split must be one of"):
        read_voc(voc_root, split="random")
    with pytest.raises(FileNotFoundError, match="VOC folder not found"):
        read_voc(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------- COCO


@pytest.fixture
def bad_coco(tmp_path: Path) -> dict:
    root = tmp_path / "coco"
    img = root / "train2017"
    _img(img / "a.jpg")
    _img(img / "b.jpg")
    _img(img / "x" / "c.jpg")
    _img(img / "y" / "c.jpg")
    _img(img / "extra.jpg")  # not in the json
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
        {"id": 2, "file_name": "b.jpg", "width": 50, "height": 50},  # wrong size
        {"id": 3, "file_name": "missing.jpg", "width": 100, "height": 80},
        {"id": 1, "file_name": "dup.jpg", "width": 100, "height": 80},  # repeated id
        {"id": 4, "file_name": "a.jpg", "width": 100, "height": 80},  # repeated file
        {"id": 5, "width": 100, "height": 80},  # no file_name
        {"id": 6, "file_name": "x/c.jpg", "width": 100, "height": 80},
        {"id": 7, "file_name": "y/c.jpg", "width": 100, "height": 80},  # same output name c.jpg
    ]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20]},
        {"id": 2, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20]},
        {"id": 3, "image_id": 99, "category_id": 0, "bbox": [10, 10, 20, 20]},
        {"id": 4, "image_id": 1, "category_id": 0, "bbox": [1, 2, 3]},
        {"id": 5, "image_id": 1, "category_id": 0, "bbox": [10, 10, 20, 20], "iscrowd": 1},
        {"id": 6, "image_id": 1, "category_id": 0, "bbox": [30, 30, 0, 10]},
        {"id": 7, "image_id": 1, "category_id": 0, "bbox": [90, 70, 20, 20]},
        {"id": 8, "image_id": 4, "category_id": 0, "bbox": [10, 10, 20, 20]},  # merged into 1: a duplicate
        {"id": 5, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10]},  # repeated annotation id
    ]
    cats = [{"id": 0, "name": "well"}, {"id": 1, "name": "tank"}]
    (root / "annotations").mkdir()
    (root / "annotations" / "train.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                                "categories": cats}))
    with pytest.warns(DataProblemWarning):
        report = convert_coco(root, tmp_path / "out")
    return {"report": report, "out": tmp_path / "out"}


def test_coco_bad_inputs(bad_coco: dict) -> None:
    rep, out = bad_coco["report"], bad_coco["out"]
    _one(rep, "category_id_zero", "train.json", "mapped to class index 0 (output category_id 1)")
    _one(rep, "unknown_category", "train.json", "annotation dropped", "annotation id 2")
    _one(rep, "unknown_image_id", "train.json", "annotation dropped", "annotation id 3")
    assert _problems(rep, "malformed_bbox")[0]["where"] == "annotation id 4"
    _one(rep, "crowd_box", "train.json", "annotation dropped", "annotation id 5")
    _one(rep, "zero_area", "train.json", "box dropped", "annotation id 6, image a.jpg")
    _one(rep, "box_clipped", "train.json", "clipped to (90, 70, 100, 80)", "annotation id 7, image a.jpg")
    _one(rep, "duplicate_box", "train.json", "box dropped", "annotation id 8, image a.jpg")
    _one(rep, "duplicate_annotation_id", "train.json", "kept", "annotation id 5")
    _one(rep, "duplicate_image_id", "train.json", "entry skipped", "images[3]")
    _one(rep, "duplicate_file_name", "train.json", "merged into image id 1", "images[4]")
    _one(rep, "malformed_image_entry", "train.json", "entry skipped", "images[5]")
    _one(rep, "size_mismatch", "train.json", "used the image file's size")
    assert "b.jpg is 100x80" in _problems(rep, "size_mismatch")[0]["problem"]
    _one(rep, "missing_image", "train2017/missing.jpg", "image skipped")
    _one(rep, "unlisted_image", "train2017/extra.jpg", "image skipped")
    _one(rep, "duplicate_name", "y/c.jpg", "written as 'c_2.jpg'")
    assert sorted(p.name for p in (out / "images" / "train").iterdir()) == ["a.jpg", "b.jpg", "c.jpg", "c_2.jpg"]
    assert (out / "labels" / "train" / "a.txt").read_text().splitlines() == [
        "0 0.200000 0.250000 0.200000 0.250000", "0 0.950000 0.937500 0.100000 0.125000"]
    assert (out / "labels" / "train" / "c_2.txt").read_text() == ""
    coco = json.loads((out / "annotations" / "train.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == ["a.jpg", "b.jpg", "c.jpg", "c_2.jpg"]
    assert [i["id"] for i in coco["images"]] == [1, 2, 3, 4]
    assert len({a["id"] for a in coco["annotations"]}) == len(coco["annotations"]) == 3
    check_output(out)


def test_same_image_in_two_splits(tmp_path: Path) -> None:
    root = tmp_path / "rf"
    _img(root / "images" / "a.jpg")
    cats = [{"id": 1, "name": "x"}]
    for split in ("train", "valid"):
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}], "categories": cats}))
    with pytest.warns(DataProblemWarning):
        rep = convert_coco(root, tmp_path / "out")
    _one(rep, "image_in_several_splits", "images/a.jpg", "kept in each")
    assert rep["splits"]["train"]["images"] == rep["splits"]["val"]["images"] == 1


# -------------------------------------------------------------------------------------------- writer


def test_output_folder_safety(tmp_path: Path) -> None:
    root = tmp_path / "src"
    _xml(root / "Annotations" / "a.xml", [_obj("ship", (1, 1, 20, 20))])
    _img(root / "JPEGImages" / "a.jpg")
    out = tmp_path / "out"
    convert_voc(root, out, split="seeded", ratios=(1, 0, 0))
    (out / "labels" / "train" / "stale.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_voc(root, out, split="seeded", ratios=(1, 0, 0))
    assert (out / "labels" / "train" / "stale.txt").exists()  # refused before touching anything
    convert_voc(root, out, split="seeded", ratios=(1, 0, 0), overwrite=True)
    # --overwrite replaces only what the converter wrote (its manifest): the user's own files stay
    assert (out / "labels" / "train" / "stale.txt").read_text() == "0 0.5 0.5 0.1 0.1\n"
    assert (out / "notes.txt").read_text() == "mine" and (out / "labels" / "train" / "a.txt").is_file()
    with pytest.raises(ValueError, match="source folder"):
        convert_voc(root, root, split="seeded", overwrite=True)
    with pytest.raises(ValueError, match="source folder"):
        convert_voc(root, tmp_path, split="seeded", overwrite=True)  # the output would contain the source
    with pytest.raises(ValueError, match="link must be"):
        convert_voc(root, tmp_path / "o2", link="move")
    # Nothing usable: a clear error, and an earlier output is left alone.
    (root / "JPEGImages" / "a.jpg").write_bytes(b"broken")
    with pytest.raises(ValueError, match="no usable images"):
        write_dataset(read_voc(root, split="seeded"), out, overwrite=True)
    assert (out / "report.json").exists()

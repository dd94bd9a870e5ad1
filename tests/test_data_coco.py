"""COCO-json sources: the real NEPU-OWOD set (category id 0) and crafted category-id layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from detector.data import DataProblemWarning, check_output, convert_coco, discover_coco_splits, read_coco


@pytest.fixture(scope="module")
def nepu(tmp_path_factory: pytest.TempPathFactory, nepu_root: Path) -> dict:
    out = tmp_path_factory.mktemp("nepu_out")
    with pytest.warns(DataProblemWarning, match="category_id_zero"):
        report = convert_coco(nepu_root, out, overwrite=True, link="symlink")
    return {"out": out, "report": report}


def test_nepu_keeps_its_splits(nepu: dict, nepu_root: Path) -> None:
    rep = nepu["report"]
    src = {s: json.loads((nepu_root / "annotations" / f"{j}.json").read_text()) for s, j in (("train", "train"), ("val", "valid"))}
    for split, data in src.items():
        assert rep["splits"][split]["images"] == len(data["images"])
        assert rep["splits"][split]["boxes"] == len(data["annotations"])
    assert {s: (v["images"], v["boxes"]) for s, v in rep["splits"].items()} == {"train": (345, 944), "val": (87, 248)}
    assert "test" not in rep["splits"] and not (nepu["out"] / "images" / "test").exists()
    assert {s: v["boxes"] for s, v in check_output(nepu["out"]).items()} == {"train": 944, "val": 248}


def test_nepu_category_zero_reported_and_mapped(nepu: dict, nepu_root: Path) -> None:
    rep = nepu["report"]
    assert rep["names"] == {"0": "oil-well"} and rep["class_map"] == {"0": 0}
    zero = [p for p in rep["problems"] if p["kind"] == "category_id_zero"]
    assert sorted(Path(p["file"]).name for p in zero) == ["train.json", "valid.json"]
    assert all("class index 0" in p["action"] and "category_id 1" in p["action"] for p in zero)
    assert [p["kind"] for p in rep["problems"]] == ["category_id_zero"] * 2  # nothing else is wrong
    data = yaml.safe_load((nepu["out"] / "data.yaml").read_text())
    assert data["names"] == {0: "oil-well"} and data["val"] == "images/val" and "test" not in data
    assert data["coco_json"] == {"train": "annotations/train.json", "val": "annotations/val.json"}


def test_nepu_boxes_unchanged(nepu: dict, nepu_root: Path) -> None:
    """Every source box reappears in the output json (matched by file name), category 0 -> 1."""
    for split, name in (("train", "train"), ("val", "valid")):
        src = json.loads((nepu_root / "annotations" / f"{name}.json").read_text())
        dst = json.loads((nepu["out"] / "annotations" / f"{split}.json").read_text())
        src_name = {i["id"]: i["file_name"] for i in src["images"]}
        dst_name = {i["id"]: i["file_name"] for i in dst["images"]}
        assert min(dst_name) == 1  # output ids start at 1 even though the source starts at 0
        a = sorted((src_name[x["image_id"]], x["category_id"] + 1, *x["bbox"]) for x in src["annotations"])
        b = sorted((dst_name[x["image_id"]], x["category_id"], *x["bbox"]) for x in dst["annotations"])
        assert len(a) == len(b)
        for u, v in zip(a, b):
            assert u[:2] == v[:2] and all(abs(p - q) < 1e-3 for p, q in zip(u[2:], v[2:]))
        assert all(x["iscrowd"] == 0 and x["area"] > 0 for x in dst["annotations"])
    # Symlinked images point back at the source files.
    some = next((nepu["out"] / "images" / "val").iterdir())
    assert some.is_symlink() and some.resolve().parent == (nepu_root / "val2017").resolve()


def _coco_set(root: Path, categories: list[dict], anns: list[tuple[int, list[float]]], split: str = "train") -> None:
    """Two 100x80 images and the given (category_id, bbox) annotations, all on image 1."""
    img_dir = root / f"{split}2017"
    img_dir.mkdir(parents=True, exist_ok=True)
    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (100, 80)).save(img_dir / name)
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                       {"id": 2, "file_name": "b.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": k, "image_id": 1, "category_id": c, "bbox": b, "iscrowd": 0}
                            for k, (c, b) in enumerate(anns, start=1)],
            "categories": categories}
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(data))


def test_sparse_category_ids_become_contiguous(tmp_path: Path) -> None:
    cats = [{"id": 7, "name": "tank"}, {"id": 0, "name": "well"}, {"id": 3, "name": "ship"}, {"id": 9, "name": "dock"}]
    _coco_set(tmp_path / "src", cats, [(0, [1, 1, 10, 10]), (3, [20, 20, 10, 10]), (7, [40, 40, 10, 10])])
    _coco_set(tmp_path / "src", cats, [(3, [5, 5, 20, 20])], split="val")
    with pytest.warns(DataProblemWarning, match="unused_category"):
        rep = convert_coco(tmp_path / "src", tmp_path / "out")
    assert rep["class_map"] == {"0": 0, "3": 1, "7": 2, "9": 3}
    assert rep["names"] == {"0": "well", "1": "ship", "2": "tank", "3": "dock"}
    assert sorted((tmp_path / "out" / "labels" / "train" / "a.txt").read_text().split("\n")[i].split()[0]
                  for i in range(3)) == ["0", "1", "2"]
    assert (tmp_path / "out" / "labels" / "train" / "b.txt").read_text() == ""  # image without boxes
    unused = [p for p in rep["problems"] if p["kind"] == "unused_category"]
    assert len(unused) == 1 and "dock" in unused[0]["problem"] and "class index 3" in unused[0]["action"]
    assert rep["splits"]["train"]["images_without_boxes"] == 1
    coco = json.loads((tmp_path / "out" / "annotations" / "val.json").read_text())
    assert [a["category_id"] for a in coco["annotations"]] == [2]  # ship: class 1 -> category_id 2
    check_output(tmp_path / "out")


def test_split_discovery(tmp_path: Path) -> None:
    cats = [{"id": 1, "name": "x"}]
    _coco_set(tmp_path, cats, [(1, [1, 1, 5, 5])])
    _coco_set(tmp_path, cats, [(1, [1, 1, 5, 5])], split="test")
    found = discover_coco_splits(tmp_path)
    assert {s: p.name for s, (p, _) in found.items()} == {"train": "instances_train2017.json",
                                                         "test": "instances_test2017.json"}
    ds = read_coco(tmp_path)
    assert {r.src.parent.name for r in ds.records if r.split == "test"} == {"test2017"}
    (tmp_path / "annotations" / "extra.json").write_text("{}")
    with pytest.raises(ValueError, match="extra.json"):
        read_coco(tmp_path)
    (tmp_path / "annotations" / "extra.json").unlink()
    (tmp_path / "annotations" / "train_copy.json").write_text("{}")
    with pytest.raises(ValueError, match="train split"):
        read_coco(tmp_path)
    # Explicit splits; a json that is not COCO is named in the error.
    ds = read_coco(tmp_path, splits={"val": ("annotations/instances_train2017.json", "train2017")})
    assert {r.split for r in ds.records} == {"val"}
    with pytest.raises(ValueError, match="train_copy.json"):
        read_coco(tmp_path, splits={"train": ("annotations/train_copy.json", None)})


def test_nepu_held_out_test_split_with_val_carved_from_train(tmp_path: Path, nepu_root: Path) -> None:
    """The NEPU model's layout (README, weights/README.md): ``valid`` becomes the untouched test split and val is
    a seeded 15 % of train, the same images on every run."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    outs = []
    for k in range(2):
        out = tmp_path / f"nepu{k}"
        r = subprocess.run([sys.executable, str(repo / "tools" / "convert.py"), "coco", "--root", str(nepu_root), "--out",
                            str(out), "--link", "symlink", "--ann", "train=annotations/train.json",
                            "test=annotations/valid.json", "--images", "train=train2017", "test=val2017",
                            "--val-fraction", "0.15"], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(out)
    counts = {s: v["images"] for s, v in check_output(outs[0]).items()}
    assert counts == {"train": 293, "val": 52, "test": 87}
    valid = {im["file_name"] for im in json.loads((nepu_root / "annotations" / "valid.json").read_text())["images"]}
    assert {p.name for p in (outs[0] / "images" / "test").iterdir()} == valid
    assert sorted(p.name for p in (outs[0] / "images" / "val").iterdir()) == \
        sorted(p.name for p in (outs[1] / "images" / "val").iterdir())

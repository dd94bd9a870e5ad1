"""NWPU VHR-10: the 650 real ground-truth files, paired with generated black images of fitting size."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from detector.data import NWPU_CLASSES, check_output, convert_nwpu, read_nwpu

# Box counts per class in the real release (independently counted with grep; see also below).
REAL_BOXES_PER_CLASS = {
    "airplane": 757, "ship": 302, "storage tank": 655, "baseball diamond": 390, "tennis court": 524,
    "basketball court": 159, "ground track field": 163, "harbor": 224, "bridge": 124, "vehicle": 598,
}
N_NEG = 10
_NUMS = re.compile(r"-?\d+")


def _independent_parse(gt_dir: Path) -> dict[str, list[tuple[int, ...]]]:
    """stem -> [(x1, y1, x2, y2, class)], by pulling the five integers out of each non-blank line."""
    out = {}
    for f in sorted(gt_dir.glob("*.txt")):
        out[f.stem] = [tuple(int(v) for v in _NUMS.findall(line)) for line in f.read_text().splitlines() if line.strip()]
    return out


@pytest.fixture(scope="module")
def nwpu(tmp_path_factory: pytest.TempPathFactory, nwpu_annotations_root: Path) -> dict:
    """The original layout in tmp: the real 'ground truth' folder linked in, black JPEGs that fit the boxes."""
    root = tmp_path_factory.mktemp("nwpu") / "NWPU VHR-10 dataset"
    (root / "positive image set").mkdir(parents=True)
    (root / "negative image set").mkdir()
    (root / "ground truth").symlink_to(nwpu_annotations_root / "ground truth")
    boxes = _independent_parse(nwpu_annotations_root / "ground truth")
    sizes = {}
    for stem, rows in boxes.items():
        size = (max(r[2] for r in rows) + 20, max(r[3] for r in rows) + 20)
        Image.new("L", size).save(root / "positive image set" / f"{stem}.jpg", quality=50)
        sizes[stem] = size
    for k in range(1, N_NEG + 1):
        Image.new("L", (300, 200)).save(root / "negative image set" / f"{k:03d}.jpg", quality=50)
    out = tmp_path_factory.mktemp("nwpu_out")
    report = convert_nwpu(root, out, overwrite=True, link="hardlink")
    return {"root": root, "out": out, "report": report, "boxes": boxes, "sizes": sizes}


def test_real_annotations_all_parsed(nwpu: dict) -> None:
    rep = nwpu["report"]
    expected = Counter(NWPU_CLASSES[r[4] - 1] for rows in nwpu["boxes"].values() for r in rows)
    assert dict(expected) == REAL_BOXES_PER_CLASS
    assert rep["total"]["images"] == 650
    assert rep["total"]["boxes"] == 3896
    assert rep["total"]["boxes_per_class"] == REAL_BOXES_PER_CLASS
    # The real files are clean apart from padding and blank lines, which are not problems.
    assert rep["problems"] == []
    assert rep["names"] == {str(i): n for i, n in enumerate(NWPU_CLASSES)}
    assert rep["class_map"]["1"] == 0 and rep["class_map"]["10"] == 9


def test_split_60_20_20_and_disk_agrees(nwpu: dict) -> None:
    rep, out = nwpu["report"], nwpu["out"]
    assert {s: v["images"] for s, v in rep["splits"].items()} == {"train": 390, "val": 130, "test": 130}
    on_disk = check_output(out)  # re-reads labels + COCO json and cross-checks them
    for split, stats in rep["splits"].items():
        assert on_disk[split]["images"] == stats["images"]
        assert on_disk[split]["boxes"] == stats["boxes"]
        assert on_disk[split]["boxes_per_class"] == stats["boxes_per_class"]
    stems = [{p.stem for p in (out / "images" / s).iterdir()} for s in ("train", "val", "test")]
    assert set.union(*stems) == set(nwpu["boxes"]) and sum(map(len, stems)) == 650
    # Negatives are off by default.
    assert not any(p.name.startswith("neg_") for s in ("train", "val", "test") for p in (out / "images" / s).iterdir())


def test_label_values_by_hand(nwpu: dict) -> None:
    out = nwpu["out"]
    # 001.txt is "(563,478),(630,573),1 "; its generated image is (630+20) x (573+20) = 650 x 593.
    assert nwpu["sizes"]["001"] == (650, 593)
    split = next(s for s in ("train", "val", "test") if (out / "images" / s / "001.jpg").exists())
    line = (out / "labels" / split / "001.txt").read_text().strip()
    assert line == "0 0.917692 0.886172 0.103077 0.160202"
    coco = json.loads((out / "annotations" / f"{split}.json").read_text())
    img = next(i for i in coco["images"] if i["file_name"] == "001.jpg")
    (ann,) = [a for a in coco["annotations"] if a["image_id"] == img["id"]]
    assert ann["bbox"] == [563, 478, 67, 95] and ann["category_id"] == 1 and ann["area"] == 67 * 95
    assert ann["iscrowd"] == 0 and (img["width"], img["height"]) == (650, 593)


def test_split_is_seeded_and_reproducible(nwpu: dict) -> None:
    def assignment(seed: int) -> dict[str, str]:
        return {Path(r.name).stem: r.split for r in read_nwpu(nwpu["root"], seed=seed).records}

    a, b, c = assignment(0), assignment(0), assignment(1)
    assert a == b
    assert a != c and Counter(c.values()) == Counter(a.values())
    assert Counter(assignment(0).values()) == {"train": 390, "val": 130, "test": 130}
    other = {Path(r.name).stem: r.split for r in read_nwpu(nwpu["root"], ratios=(0.8, 0.1, 0.1)).records}
    assert Counter(other.values()) == {"train": 520, "val": 65, "test": 65}
    with pytest.raises(ValueError, match="sum to 1"):
        read_nwpu(nwpu["root"], ratios=(0.5, 0.2, 0.2))


def test_negatives_optional(nwpu: dict, tmp_path: Path) -> None:
    report = convert_nwpu(nwpu["root"], tmp_path / "out", include_negatives=True)
    assert report["total"]["images"] == 650 + N_NEG
    assert report["total"]["images_without_boxes"] == N_NEG
    assert report["total"]["boxes"] == 3896
    assert report["options"]["include_negatives"] is True
    negs = sorted(p for s in ("train", "val", "test") for p in (tmp_path / "out" / "labels" / s).glob("neg_*.txt"))
    assert len(negs) == N_NEG and all(p.read_text() == "" for p in negs)  # empty label file each
    # Negatives are split on their own with the same ratios: 6 / 2 / 2.
    assert Counter(p.parent.name for p in negs) == {"train": 6, "val": 2, "test": 2}
    # Positives keep the same split as without negatives.
    for split in ("train", "val", "test"):
        with_neg = {p.name for p in (tmp_path / "out" / "images" / split).iterdir() if not p.name.startswith("neg_")}
        assert with_neg == {p.name for p in (nwpu["out"] / "images" / split).iterdir()}
    check_output(tmp_path / "out")

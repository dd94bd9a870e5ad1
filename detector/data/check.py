"""Re-read a converted dataset from disk and check that its parts agree.

Independent of the writer's in-memory state: it starts from ``data.yaml`` and checks that every
image has a label file, every label line is a valid normalised YOLO box, and each split's COCO json
(loaded with pycocotools) holds the same boxes as the label files. Used by the tests and useful
before a long training run.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import yaml

from .images import is_image

_TOL = 1e-6  # label files round to 6 decimals


def _read_labels(path: Path, nc: int, issues: list[str]) -> list[tuple[int, float, float, float, float]]:
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        try:
            cls, *xywh = int(parts[0]), *(float(v) for v in parts[1:])
        except (ValueError, IndexError):
            issues.append(f"{path}:{lineno}: not 'cls cx cy w h': {line!r}")
            continue
        if len(xywh) != 4 or not 0 <= cls < nc or not all(0.0 <= v <= 1.0 for v in xywh) or min(xywh[2:]) <= 0:
            issues.append(f"{path}:{lineno}: invalid YOLO row {line!r}")
            continue
        rows.append((cls, *xywh))
    return rows


def check_output(out: str | Path) -> dict[str, dict[str, Any]]:
    """Per split ``{"images", "boxes", "boxes_per_class"}`` from the label files; raises ``ValueError``
    listing the first inconsistencies found (a label file missing, a bad row, COCO json disagreeing)."""
    from pycocotools.coco import COCO  # heavy import, only needed here

    out = Path(out)
    data = yaml.safe_load((out / "data.yaml").read_text())
    names: dict[int, str] = data["names"]
    nc = len(names)
    issues: list[str] = []
    summary: dict[str, dict[str, Any]] = {}
    for split in ("train", "val", "test"):
        img_dir = out / "images" / split
        if not img_dir.is_dir():
            continue
        per_image: dict[str, list[tuple[int, float, float, float, float]]] = {}
        for img in sorted(p for p in img_dir.iterdir() if is_image(p)):
            label = out / "labels" / split / f"{img.stem}.txt"
            if not label.is_file():
                issues.append(f"{img}: no label file {label}")
                continue
            per_image[img.name] = _read_labels(label, nc, issues)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco = COCO(str(out / "annotations" / f"{split}.json"))
        if sorted(c["id"] for c in coco.dataset["categories"]) != list(range(1, nc + 1)):
            issues.append(f"{split}.json: categories are not 1..{nc}")
        coco_names = {im["file_name"]: im for im in coco.dataset["images"]}
        if set(coco_names) != set(per_image):
            issues.append(f"{split}.json: images differ from images/{split} "
                          f"({sorted(set(coco_names) ^ set(per_image))[:5]} ...)")
        for fname, rows in per_image.items():
            im = coco_names.get(fname)
            if im is None:
                continue
            W, H = im["width"], im["height"]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=[im["id"]]))
            from_coco = sorted((a["category_id"] - 1, (a["bbox"][0] + a["bbox"][2] / 2) / W,
                                (a["bbox"][1] + a["bbox"][3] / 2) / H, a["bbox"][2] / W, a["bbox"][3] / H) for a in anns)
            # Compare in pixels: the json rounds to 1e-4 px, the labels to 1e-6 of the side.
            tol = 1e-3 + _TOL * max(W, H)
            scale = (W, H, W, H)
            if len(from_coco) != len(rows) or any(
                    a[0] != b[0] or max(abs(x - y) * s for x, y, s in zip(a[1:], b[1:], scale)) > tol
                    for a, b in zip(from_coco, sorted(rows))):
                issues.append(f"{split}/{fname}: COCO json and label file disagree ({len(from_coco)} vs {len(rows)} boxes)")
        counts = [0] * nc
        for rows in per_image.values():
            for r in rows:
                counts[r[0]] += 1
        summary[split] = {"images": len(per_image), "boxes": sum(counts),
                          "boxes_per_class": {names[i]: counts[i] for i in range(nc)}}
    if issues:
        shown = "\n  ".join(issues[:20])
        raise ValueError(f"{len(issues)} inconsistencies in {out}:\n  {shown}")
    return summary

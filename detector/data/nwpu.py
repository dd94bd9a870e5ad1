"""NWPU VHR-10 reader: the original release layout into a :class:`SourceDataset`.

Layout::

    ROOT/positive image set/NNN.jpg     650 images, each with at least one object
    ROOT/negative image set/NNN.jpg     150 images without objects
    ROOT/ground truth/NNN.txt           one box per line: "(x1,y1),(x2,y2),class", class 1..10

The real files pad numbers with spaces, end lines with a space and hold blank lines; all of that is
accepted. Positive images are split at random with a fixed seed (default train/val/test 60/20/20).
Negative images are left out by default (the usual NWPU protocol); with ``include_negatives`` they
are split with the same ratios and seed on their own and written as ``neg_NNN.jpg`` with empty
label files (their numbers overlap the positives').
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from .images import index_images, regular_files
from .records import DEFAULT_RATIOS, Box, ImageRecord, ProblemLog, SourceDataset
from .splits import seeded_split

NWPU_CLASSES = (
    "airplane", "ship", "storage tank", "baseball diamond", "tennis court",
    "basketball court", "ground track field", "harbor", "bridge", "vehicle",
)
POSITIVE_DIR, NEGATIVE_DIR, GT_DIR = "positive image set", "negative image set", "ground truth"

_NUM = r"\s*([-+]?\d+(?:\.\d*)?)\s*"
_LINE = re.compile(rf"^\({_NUM},{_NUM}\)\s*,\s*\({_NUM},{_NUM}\)\s*,\s*(\d+)\s*$")


def parse_nwpu_lines(text: str, file: str, log: ProblemLog) -> list[Box]:
    """Boxes from the text of one ground-truth file; bad lines are reported and skipped."""
    boxes: list[Box] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue  # blank lines are part of the original release, not a problem
        m = _LINE.match(line)
        where = f"line {lineno}"
        if m is None:
            log.add("malformed_line", file, f"cannot parse {line!r} as '(x1,y1),(x2,y2),class'", "line skipped", where)
            continue
        x1, y1, x2, y2 = (float(g) for g in m.groups()[:4])
        label = int(m.group(5))
        if not 1 <= label <= len(NWPU_CLASSES):
            log.add("unknown_class", file, f"class {label} is not one of 1..{len(NWPU_CLASSES)}", "box dropped", where)
            continue
        boxes.append(Box(x1, y1, x2, y2, label - 1, where))
    return boxes


def read_nwpu(
    root: str | Path,
    *,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    include_negatives: bool = False,
) -> SourceDataset:
    """Read NWPU VHR-10 from ``root`` (see the module doc); raises ``FileNotFoundError`` naming the folder."""
    root = Path(root)
    gt_dir = root / GT_DIR
    if not gt_dir.is_dir():
        raise FileNotFoundError(f"NWPU VHR-10 ground-truth folder not found: {gt_dir}")
    log = ProblemLog()
    positives = index_images(root / POSITIVE_DIR)
    gt_files = {p.stem: p for p in regular_files(sorted(gt_dir.glob("*.txt")), log)}

    records: list[ImageRecord] = []
    split = seeded_split(gt_files, ratios, seed)
    for stem, gt in gt_files.items():
        try:
            text = gt.read_text(encoding="utf-8-sig", errors="replace")
        except OSError as exc:
            log.add("unreadable_annotation", gt, f"cannot read: {exc}", "image skipped")
            continue
        boxes = parse_nwpu_lines(text, str(gt), log)
        if not boxes:
            # Every image in the positive set shows objects; without boxes it would teach misses.
            log.add("no_boxes", gt, "ground-truth file of a positive image holds no valid box", "image skipped")
            continue
        candidates = positives.get(stem, [])
        if len(candidates) > 1:
            log.add("ambiguous_image", root / POSITIVE_DIR / stem, f"several files share stem {stem!r}: "
                    f"{[p.name for p in candidates]}", f"used {candidates[0].name}")
        # A missing image still becomes a record: the writer reports it with the boxes lost.
        src = candidates[0] if candidates else root / POSITIVE_DIR / f"{stem}.jpg"
        records.append(ImageRecord(src=src, split=split[stem], name=src.name, boxes=boxes, ann_file=str(gt)))
    for stem, paths in positives.items():
        if stem not in gt_files:
            log.add("no_annotation", paths[0], f"positive image has no {GT_DIR}/{stem}.txt",
                    "image skipped (a positive image without boxes would teach the model to miss objects)")

    if include_negatives:
        negatives = index_images(root / NEGATIVE_DIR)
        if not negatives:
            log.add("no_negatives", root / NEGATIVE_DIR, "include_negatives is set but no images were found",
                    "nothing added")
        neg_split = seeded_split(negatives, ratios, seed)
        for stem, paths in negatives.items():
            records.append(ImageRecord(src=paths[0], split=neg_split[stem], name=f"neg_{paths[0].name}", boxes=[],
                                       ann_file=str(paths[0])))

    return SourceDataset(
        format="nwpu", root=root, names=list(NWPU_CLASSES), records=records, problems=log,
        class_map={str(i + 1): i for i in range(len(NWPU_CLASSES))},
        options={"ratios": list(ratios), "seed": seed, "include_negatives": include_negatives},
        image_dirs=[root / POSITIVE_DIR, root / NEGATIVE_DIR],
    )

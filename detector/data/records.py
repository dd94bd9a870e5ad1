"""The in-memory dataset every converter produces, and the problem log that travels with it.

Readers (NWPU, VOC, COCO) only parse their source format into :class:`SourceDataset`; the one
writer (:mod:`detector.data.writer`) checks images and boxes and emits every output file. Anything a
reader or the writer cannot take as-is becomes a :class:`Problem` that names the file, the place in
it, what was wrong and what was done about it, so nothing is ever dropped silently.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LOGGER = logging.getLogger("detector.data")

SPLITS = ("train", "val", "test")
# Train/val/test fractions for seeded random splits (NWPU VHR-10, VOC without split files).
DEFAULT_RATIOS = (0.6, 0.2, 0.2)


class DataProblemWarning(UserWarning):
    """Issued once per conversion when the report lists problems (details are logged and in report.json)."""


@dataclass(frozen=True)
class Box:
    """One box in source pixel coordinates (corners), with a 0-based class index.

    ``where`` says where the box came from inside its annotation file ("line 3", "object 2",
    "annotation id 17") so that problems found later can point at it.
    """

    x1: float
    y1: float
    x2: float
    y2: float
    cls: int
    where: str


@dataclass
class ImageRecord:
    """One image to write: where it is, which split it goes to, its name there, and its boxes."""

    src: Path
    split: str
    name: str
    boxes: list[Box]
    ann_file: str
    # (width, height) stated by the annotation (VOC <size>, COCO width/height); None when the
    # format has none (NWPU). The writer reads the real size from the image and compares.
    declared_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class Problem:
    """A problem found in the source data: ``kind`` is a stable code, the rest is for people."""

    kind: str
    file: str
    where: str | None
    problem: str
    action: str


class ProblemLog:
    """Collects problems; every problem is also logged as a warning naming its file."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, kind: str, file: str | Path, problem: str, action: str, where: str | None = None) -> None:
        item = Problem(kind=kind, file=str(file), where=where, problem=problem, action=action)
        self.items.append(item)
        place = f" ({where})" if where else ""
        LOGGER.warning("%s%s: %s -> %s", item.file, place, problem, action)

    def extend(self, other: ProblemLog) -> None:
        self.items.extend(other.items)

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(p) for p in self.items]

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class SourceDataset:
    """What a reader hands to the writer: class names (index = class id), records and problems.

    ``class_map`` maps each source label (NWPU class number, VOC name, COCO category id, as a string)
    to its 0-based class index; ``options`` are the reader's settings, stored in the report so that a
    conversion can be repeated exactly; ``notes`` are facts about the result that are not problems.
    """

    format: str
    root: Path
    names: list[str]
    records: list[ImageRecord]
    problems: ProblemLog = field(default_factory=ProblemLog)
    class_map: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Folders images are read from besides ``root`` (a VOC image folder, COCO's image folders, which
    # may be given explicitly and lie elsewhere). The writer takes an image only from inside ``root``
    # or one of these, after resolving links: a file name in an annotation cannot reach elsewhere.
    image_dirs: list[Path] = field(default_factory=list)


def parse_number(text: str | None) -> float | None:
    """A finite float from annotation text, or None when it is missing or not a number."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None

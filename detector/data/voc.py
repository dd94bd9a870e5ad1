"""Pascal VOC reader (SSDD and any VOC-layout set) into a :class:`SourceDataset`.

Layout: ``ROOT/Annotations/ID.xml`` and ``ROOT/JPEGImages/ID.jpg``, optionally
``ROOT/ImageSets/Main/{train,val,test,trainval}.txt``. Box corners are used as written, as continuous
pixel coordinates (the mmdetection convention; no +-1 shift). Classes are the ones given, in that
order, or else every name found in the XMLs, sorted.

Split rules (``split``):

- ``"imagesets"``: ImageSets/Main/train.txt, val.txt, test.txt; trainval.txt stands for train when
  neither train.txt nor val.txt exists.
- ``"seeded"``: random with a fixed seed, ``ratios`` train/val/test (default 60/20/20).
- ``"ssdd"``: ids whose last digit is 1 or 9 are test (232 of SSDD's 1,160), the rest train.
- ``"auto"``: ``"imagesets"`` when ImageSets/Main holds any of those files, else ``"seeded"``.

With ``"ssdd"`` or ``"imagesets"`` without val.txt, ``val_fraction`` > 0 moves that seeded-random
fraction of train to val; at 0 there is no val split and data.yaml's ``val`` points to the test split.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .images import index_images, regular_files
from .records import DEFAULT_RATIOS, Box, ImageRecord, ProblemLog, SourceDataset, parse_number
from .splits import carve_val, seeded_split, ssdd_split

SPLIT_RULES = ("auto", "imagesets", "seeded", "ssdd")
_SPLIT_FILES = ("train", "val", "test", "trainval")


@dataclass
class _VocObject:
    name: str
    corners: tuple[float, float, float, float]
    difficult: bool
    where: str


@dataclass
class _VocFile:
    path: Path
    filename: str | None
    size: tuple[int, int] | None
    objects: list[_VocObject] = field(default_factory=list)


def parse_voc_xml(path: Path, log: ProblemLog) -> _VocFile | None:
    """One annotation file; None (reported) when it cannot be parsed at all."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        log.add("unreadable_annotation", path, f"cannot parse XML: {exc}", "image skipped")
        return None
    size = None
    w, h = parse_number(root.findtext("size/width")), parse_number(root.findtext("size/height"))
    if w and h and w > 0 and h > 0:
        size = (int(w), int(h))
    else:
        log.add("no_size", path, "no usable <size><width>/<height>", "used the image file's size")
    parsed = _VocFile(path=path, filename=(root.findtext("filename") or "").strip() or None, size=size)
    for k, obj in enumerate(root.iter("object"), start=1):
        where = f"object {k}"
        name = (obj.findtext("name") or "").strip()
        corners = [parse_number(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")]
        if not name or any(c is None for c in corners):
            log.add("malformed_object", path, "object without a <name> or numeric <bndbox> corners",
                    "box dropped", where)
            continue
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        parsed.objects.append(_VocObject(name, tuple(corners), difficult, where))  # type: ignore[arg-type]
    return parsed


def _read_imagesets(folder: Path, log: ProblemLog) -> dict[str, str]:
    """id -> split from ImageSets/Main; an id listed twice keeps its first split (reported)."""
    files = {s: folder / f"{s}.txt" for s in _SPLIT_FILES if (folder / f"{s}.txt").is_file()}
    if "trainval" in files and ("train" in files or "val" in files):
        del files["trainval"]  # train.txt/val.txt are finer; trainval.txt is then their union
    split: dict[str, str] = {}
    for name, path in files.items():
        target = "train" if name == "trainval" else name
        for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            key = line.split()[0] if line.split() else ""
            if not key:
                continue
            if key in split:
                if split[key] != target:
                    log.add("duplicate_id", path, f"id {key!r} is already in split {split[key]!r}",
                            f"kept in {split[key]!r}", f"line {lineno}")
                continue
            split[key] = target
    return split


def read_voc(
    root: str | Path,
    *,
    classes: Sequence[str] | None = None,
    split: str = "auto",
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    val_fraction: float = 0.0,
    skip_difficult: bool = False,
    images_dir: str = "JPEGImages",
    annotations_dir: str = "Annotations",
) -> SourceDataset:
    """Read a VOC-layout dataset (see the module doc); raises ``FileNotFoundError`` naming the folder."""
    root = Path(root)
    if split not in SPLIT_RULES:
        raise ValueError(f"split must be one of {SPLIT_RULES}, got {split!r}")
    ann_dir, img_dir = root / annotations_dir, root / images_dir
    for folder in (ann_dir, img_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"VOC folder not found: {folder}")
    log = ProblemLog()
    images = index_images(img_dir)
    xmls = sorted(ann_dir.glob("*.xml"))
    readable = set(regular_files(xmls, log))
    parsed = {p.stem: parse_voc_xml(p, log) if p in readable else None for p in xmls}
    notes: list[str] = []

    sets_dir = root / "ImageSets" / "Main"
    regular_files([p for s in _SPLIT_FILES if (p := sets_dir / f"{s}.txt").exists() or p.is_symlink()], log)
    rule = split
    if rule == "auto":
        rule = "imagesets" if any((sets_dir / f"{s}.txt").is_file() for s in _SPLIT_FILES) else "seeded"
    if rule == "imagesets":
        assignment = _read_imagesets(sets_dir, log)
        for key in sorted(set(assignment) - set(parsed)):
            log.add("missing_annotation", sets_dir, f"id {key!r} is listed but {annotations_dir}/{key}.xml does not exist",
                    "id skipped")
        for key in sorted(k for k in set(parsed) - set(assignment) if parsed[k] is not None):
            log.add("unlisted_id", ann_dir / f"{key}.xml", "id is in no ImageSets/Main split file", "image skipped")
        assignment = {k: s for k, s in assignment.items() if k in parsed}
    elif rule == "seeded":
        assignment = seeded_split(parsed, ratios, seed)
    else:  # ssdd
        assignment = {}
        for key in parsed:
            s = ssdd_split(key)
            if s is None:
                log.add("ssdd_rule", ann_dir / f"{key}.xml", "id does not end in a digit; the SSDD 1-or-9 rule cannot place it",
                        "put in train")
                s = "train"
            assignment[key] = s
    if rule in ("ssdd", "imagesets") and "val" not in assignment.values():
        if val_fraction > 0:
            assignment = carve_val(assignment, val_fraction, seed)
            notes.append(f"val is {val_fraction:g} of train, seeded random (seed {seed})")
    elif val_fraction > 0:
        notes.append(f"val_fraction {val_fraction:g} ignored: split rule {rule!r} already makes a val split")

    if classes is None:
        names = sorted({o.name for f in parsed.values() if f for o in f.objects})
    else:
        names = [c.strip() for c in classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names repeat: {names}")
    index = {n: i for i, n in enumerate(names)}

    records: list[ImageRecord] = []
    for key, ann in parsed.items():
        if ann is None or key not in assignment:
            continue
        candidates = images.get(key, [])
        if not candidates and ann.filename:
            candidates = [img_dir / ann.filename]
        if len(candidates) > 1:
            log.add("ambiguous_image", img_dir / key, f"several files share stem {key!r}: {[p.name for p in candidates]}",
                    f"used {candidates[0].name}")
        src = candidates[0] if candidates else img_dir / f"{key}.jpg"
        boxes: list[Box] = []
        for o in ann.objects:
            if o.name not in index:
                log.add("unknown_class", ann.path, f"class {o.name!r} is not one of {names}", "box dropped", o.where)
                continue
            if o.difficult and skip_difficult:
                log.add("difficult_skipped", ann.path, "object marked difficult", "box dropped (skip_difficult)", o.where)
                continue
            boxes.append(Box(*o.corners, index[o.name], o.where))
        records.append(ImageRecord(src=src, split=assignment[key], name=src.name, boxes=boxes,
                                   ann_file=str(ann.path), declared_size=ann.size))
    used = {r.src for r in records}
    for key, paths in images.items():
        if key not in parsed and not used.intersection(paths):
            log.add("no_annotation", paths[0], f"no {annotations_dir}/{key}.xml for this image",
                    "image skipped (no annotation: it cannot be told from a negative)")

    return SourceDataset(
        format="ssdd" if rule == "ssdd" else "voc", root=root, names=names, records=records, problems=log,
        class_map=dict(index), notes=notes,
        options={"classes": classes if classes is None else list(classes), "split": rule, "ratios": list(ratios),
                 "seed": seed, "val_fraction": val_fraction, "skip_difficult": skip_difficult,
                 "images_dir": images_dir, "annotations_dir": annotations_dir},
        image_dirs=[img_dir],
    )

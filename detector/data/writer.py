"""The one writer: checks every image and box of a :class:`SourceDataset` and writes the output.

Output layout (what Ultralytics trains on and pycocotools evaluates on)::

    OUT/images/{split}/NAME          image files (copied, hard-linked or symlinked)
    OUT/labels/{split}/STEM.txt      YOLO labels "cls cx cy w h", normalised, 0-based class; empty
                                     file for an image without boxes
    OUT/annotations/{split}.json     COCO ground truth; category_id = class index + 1
    OUT/data.yaml                    Ultralytics dataset YAML, plus coco_json paths
    OUT/report.json                  counts per split and class, and every problem found

Checks made here, for every format alike: the image exists, can be read and is large enough; its
real size (from the file header) against the size the annotation states; boxes with no area or
inverted corners (dropped), boxes reaching outside the image (clipped; dropped when nothing is left),
class indices out of range and exact duplicate boxes (dropped); output-name collisions (renamed).
"""

from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from ..checks import inside
from ..files import DiskFullError, atomic_copy, atomic_write_text, file_kind, remove_leftovers, writing
from ..io.images import convert_to_8bit
from .images import MIN_SIDE, ImageInfo, is_image, probe_image
from .records import SPLITS, DataProblemWarning, ImageRecord, ProblemLog, SourceDataset

LINK_MODES = ("copy", "hardlink", "symlink")
# What the writer creates inside OUT. Every file it writes is listed in OUT/.snnvit-convert (the
# manifest), as it is written; with overwrite=True exactly the listed files are removed first, never
# anything else (a file of the user's in OUT/images stays, and so does its folder).
MANAGED = ("images", "labels", "annotations", "data.yaml", "report.json")
MANIFEST = ".snnvit-convert"


class _Manifest:
    """Appends each written file (relative to OUT) to the manifest as it is written."""

    def __init__(self, out: Path):
        self.out = out
        self.f = open(out / MANIFEST, "a", encoding="utf-8")

    def add(self, path: Path) -> Path:
        with writing(self.out / MANIFEST):
            self.f.write(path.relative_to(self.out).as_posix() + "\n")
            self.f.flush()
        return path

    def close(self) -> None:
        self.f.close()


def _manifest_files(out: Path) -> list[Path] | None:
    """The files the converter wrote into ``out`` (from its manifest), or None without a manifest. An
    entry pointing outside ``out`` (an edited manifest) is refused."""
    m = out / MANIFEST
    if not m.is_file():
        return None
    files = []
    for line in m.read_text(encoding="utf-8", errors="replace").splitlines():
        rel = line.strip()
        if not rel:
            continue
        p = out / rel
        # no absolute path, no "..", and nothing reached through a link that leads out of ``out``
        if rel.startswith("/") or ".." in Path(rel).parts or not inside(p.resolve(strict=False), out.resolve()):
            raise ValueError(f"{m} lists {rel!r}, which is not a path inside {out}; refusing to delete anything")
        files.append(p)
    return files


@dataclass
class _CleanBox:
    cls: int
    x1: float
    y1: float
    x2: float
    y2: float
    line: str  # the YOLO label line


@dataclass
class _Accepted:
    rec: ImageRecord
    name: str
    info: ImageInfo
    boxes: list[_CleanBox]


def _fmt(x: float) -> str:
    return f"{x:g}"


def yolo_line(cls: int, x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> str:
    """One YOLO label line for a box already clipped to the image."""
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    w, h = (x2 - x1) / width, (y2 - y1) / height
    return f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def _clean_boxes(rec: ImageRecord, info: ImageInfo, n_classes: int, log: ProblemLog) -> list[_CleanBox]:
    W, H = info.width, info.height
    kept: list[_CleanBox] = []
    lines: set[str] = set()
    for b in rec.boxes:
        corners = f"({_fmt(b.x1)}, {_fmt(b.y1)}, {_fmt(b.x2)}, {_fmt(b.y2)})"
        if not 0 <= b.cls < n_classes:
            log.add("unknown_class", rec.ann_file, f"class index {b.cls} is not one of the {n_classes} classes",
                    "box dropped", b.where)
            continue
        if b.x2 < b.x1 or b.y2 < b.y1:
            log.add("inverted_box", rec.ann_file, f"box {corners} has x2 < x1 or y2 < y1", "box dropped", b.where)
            continue
        if b.x2 == b.x1 or b.y2 == b.y1:
            log.add("zero_area", rec.ann_file, f"box {corners} has zero width or height", "box dropped", b.where)
            continue
        x1, y1 = min(max(b.x1, 0.0), W), min(max(b.y1, 0.0), H)
        x2, y2 = min(max(b.x2, 0.0), W), min(max(b.y2, 0.0), H)
        if (x1, y1, x2, y2) != (b.x1, b.y1, b.x2, b.y2):
            if x2 <= x1 or y2 <= y1:
                log.add("outside_image", rec.ann_file, f"box {corners} lies outside the {W}x{H} image",
                        "box dropped (nothing left after clipping)", b.where)
                continue
            log.add("box_clipped", rec.ann_file, f"box {corners} reaches outside the {W}x{H} image",
                    f"clipped to ({_fmt(x1)}, {_fmt(y1)}, {_fmt(x2)}, {_fmt(y2)})", b.where)
        line = yolo_line(b.cls, x1, y1, x2, y2, W, H)
        # Ultralytics drops repeated label rows itself; dropping them here keeps the COCO json and
        # the label files in agreement.
        if line in lines:
            log.add("duplicate_box", rec.ann_file, f"box {corners} of class {b.cls} repeats an earlier box",
                    "box dropped", b.where)
            continue
        lines.add(line)
        kept.append(_CleanBox(b.cls, x1, y1, x2, y2, line))
    return kept


def _check_image(rec: ImageRecord, sources: list[Path], log: ProblemLog) -> ImageInfo | None:
    """Probe one record's image; None (and a reported problem) when it cannot be used. The image must
    lie inside one of the ``sources`` folders after resolving links ("../", absolute paths or links in
    an annotation would otherwise copy or link files from anywhere)."""
    lost = f"{len(rec.boxes)} box(es) from {rec.ann_file} not used" if rec.boxes else "no boxes lost"
    if not any(inside(rec.src, s) for s in sources):
        log.add("outside_source", rec.ann_file, f"image {rec.src} lies outside the source folder(s) "
                f"{', '.join(str(s) for s in sources)}", f"image skipped ({lost})")
        return None
    if not is_image(rec.src):
        log.add("unsupported_format", rec.src, f"suffix {rec.src.suffix!r} is not an image format Ultralytics loads",
                f"image skipped ({lost})")
        return None
    if not rec.src.is_file():
        if rec.src.exists() or rec.src.is_symlink():  # a FIFO, a device, a broken link: never read
            log.add("not_a_file", rec.src, f"image is {file_kind(rec.src)}, not a regular file", f"image skipped ({lost})")
        else:
            log.add("missing_image", rec.src, f"image file not found (annotations in {rec.ann_file})",
                    f"image skipped ({lost})")
        return None
    try:
        info = probe_image(rec.src)
    except OSError as exc:
        log.add("unreadable_image", rec.src, str(exc), f"image skipped ({lost})")
        return None
    if min(info.width, info.height) < MIN_SIDE:
        log.add("image_too_small", rec.src, f"image is {info.width}x{info.height}; Ultralytics rejects sides < {MIN_SIDE} px",
                f"image skipped ({lost})")
        return None
    if rec.declared_size is not None and rec.declared_size != (info.width, info.height):
        dw, dh = rec.declared_size
        hint = " (width and height swapped)" if (dh, dw) == (info.width, info.height) else ""
        log.add("size_mismatch", rec.ann_file,
                f"annotation says {dw}x{dh} but {rec.src.name} is {info.width}x{info.height}{hint}",
                "used the image file's size; boxes checked against it")
    if info.exif_orientation != 1:
        log.add("exif_orientation", rec.src,
                f"EXIF orientation {info.exif_orientation}: OpenCV/Ultralytics rotate the pixels on load, so boxes "
                "drawn on the stored pixels may not line up", "kept as stored; check the boxes")
    if info.truncated_jpeg:
        log.add("truncated_jpeg", rec.src, "JPEG has no end marker (truncated or padded)",
                "kept (Ultralytics re-saves such files when it loads them)")
    return info


def _unique_name(rec: ImageRecord, taken: set[str], log: ProblemLog) -> str:
    """The record's output name, renamed when its label stem is already used in the split."""
    name = Path(rec.name).name
    stem, suffix = Path(name).stem, Path(name).suffix
    if stem not in taken:
        taken.add(stem)
        return name
    k = 2
    while f"{stem}_{k}" in taken:
        k += 1
    new = f"{stem}_{k}{suffix}"
    taken.add(f"{stem}_{k}")
    log.add("duplicate_name", rec.src,
            f"output name {name!r} (label {stem}.txt) is already used in split {rec.split!r}",
            f"written as {new!r}")
    return new


def _check_out(out: Path, ds: SourceDataset, overwrite: bool) -> list[Path]:
    """Earlier converter output in ``out`` that will be replaced (the files its manifest lists); raises
    before anything is touched when ``out`` is a source folder, holds a source image, or holds output
    the converter did not write."""
    root = ds.root.resolve()
    if out == root or out in root.parents:
        raise ValueError(f"output folder {out} is (or contains) the source folder {root}; choose another --out")
    for rec in ds.records:
        src = rec.src.resolve()
        if out in src.parents:
            raise ValueError(f"source image {rec.src} lies inside the output folder {out}; choose another --out")
    present = [out / m for m in MANAGED if (out / m).exists() or (out / m).is_symlink()]
    if present and not overwrite:
        raise FileExistsError(f"{out} already holds {', '.join(p.name for p in present)}; "
                              "pass overwrite=True (--overwrite) to replace them")
    if not present:
        return []
    files = _manifest_files(out)
    if files is None:
        raise ValueError(f"{out} holds {', '.join(p.name for p in present)} but no {MANIFEST}: they were not "
                         "written by this converter, so --overwrite will not delete them; choose another --out")
    return files


def _clear(out: Path, files: list[Path]) -> None:
    """Remove the converter's own files (and the temporary files a killed run left beside them), then
    the folders of MANAGED that are left empty."""
    for f in files:
        if f.is_symlink() or f.is_file():
            f.unlink()
    remove_leftovers(files)
    for top in ("images", "labels", "annotations"):
        d = out / top
        if not d.is_dir() or d.is_symlink():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            if not any(sub.iterdir()):
                sub.rmdir()
        if not any(d.iterdir()):
            d.rmdir()
    (out / MANIFEST).unlink(missing_ok=True)


def _place(src: Path, dst: Path, link: str) -> None:
    if convert_to_8bit(src, dst):  # 16-bit / float: detection's own 8-bit scaling, written once (any link mode)
        return
    if link == "symlink":
        dst.symlink_to(src.resolve())
        return
    if link == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # another file system or no permission: fall back to a copy
    atomic_copy(src, dst)


def _split_stats(items: list[_Accepted], names: list[str]) -> dict[str, Any]:
    boxes = Counter(b.cls for it in items for b in it.boxes)
    images = Counter(c for it in items for c in {b.cls for b in it.boxes})
    return {
        "images": len(items),
        "boxes": sum(boxes.values()),
        "images_without_boxes": sum(1 for it in items if not it.boxes),
        "boxes_per_class": {n: boxes.get(i, 0) for i, n in enumerate(names)},
        "images_per_class": {n: images.get(i, 0) for i, n in enumerate(names)},
    }


def _coco_json(items: list[_Accepted], names: list[str], description: str) -> dict[str, Any]:
    images, annotations = [], []
    for image_id, it in enumerate(items, start=1):
        images.append({"id": image_id, "file_name": it.name, "width": it.info.width, "height": it.info.height})
        for b in it.boxes:
            w, h = b.x2 - b.x1, b.y2 - b.y1
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": b.cls + 1,
                "bbox": [round(b.x1, 4), round(b.y1, 4), round(w, 4), round(h, 4)],
                "area": round(w * h, 4), "iscrowd": 0, "segmentation": [],
            })
    return {
        "info": {"description": description, "date_created": datetime.now(timezone.utc).isoformat(timespec="seconds")},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "object"} for i, n in enumerate(names)],
    }


def _write_split(out: Path, split: str, items: list[_Accepted], ds: SourceDataset, link: str, manifest: _Manifest) -> None:
    """Images, label files and the COCO json of one split."""
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for it in items:
        dst = out / "images" / split / it.name
        if dst.exists() or dst.is_symlink():
            raise FileExistsError(f"{dst} exists and was not written by this converter; choose another --out")
        _place(it.rec.src, manifest.add(dst), link)
        text = "".join(b.line + "\n" for b in it.boxes)  # empty file for an image without boxes
        atomic_write_text(manifest.add(out / "labels" / split / f"{Path(it.name).stem}.txt"), text)
    (out / "annotations").mkdir(exist_ok=True)
    coco = _coco_json(items, ds.names, f"{ds.format} {split} split converted from {ds.root}")
    atomic_write_text(manifest.add(out / "annotations" / f"{split}.json"), json.dumps(coco))


def _data_yaml(out: Path, present: list[str], names: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The Ultralytics dataset dict, and notes on entries that had to point elsewhere."""
    notes: list[str] = []
    data: dict[str, Any] = {"path": str(out)}
    if "train" in present:
        data["train"] = "images/train"
    else:
        notes.append("no train split: data.yaml has no 'train' entry")
    # Ultralytics needs a val entry; without a val split, validate on test (else train) and say so.
    val_split = next(s for s in ("val", "test", "train") if s in present)
    if val_split != "val":
        notes.append(f"no val split: data.yaml 'val' points to images/{val_split}")
    data["val"] = f"images/{val_split}"
    if "test" in present:
        data["test"] = "images/test"
    data["names"] = dict(enumerate(names))
    # One COCO json per split key, following where that key points (val may point at test).
    data["coco_json"] = {k: f"annotations/{Path(data[k]).name}.json" for k in SPLITS if k in data}
    return data, notes


def write_dataset(ds: SourceDataset, out: str | Path, *, link: str = "copy", overwrite: bool = False) -> dict[str, Any]:
    """Check ``ds`` and write images, YOLO labels, COCO json, data.yaml and report.json under ``out``.

    Returns the report (also written to ``out/report.json``). Raises ``FileExistsError`` when ``out``
    already holds converter output and ``overwrite`` is False, and ``ValueError`` when no image at all
    survives the checks (usually a wrong ``root``).
    """
    if link not in LINK_MODES:
        raise ValueError(f"link must be one of {LINK_MODES}, got {link!r}")
    out = Path(out).resolve()
    stale = _check_out(out, ds, overwrite)
    log = ProblemLog()
    log.extend(ds.problems)

    for rec in ds.records:
        if rec.split not in SPLITS:
            raise ValueError(f"record for {rec.src} has split {rec.split!r}; expected one of {SPLITS}")

    accepted: dict[str, list[_Accepted]] = {s: [] for s in SPLITS}
    taken: dict[str, set[str]] = {s: set() for s in SPLITS}
    splits_of_src: dict[Path, set[str]] = {}
    # Sorted so that image ids, renames and the report do not depend on directory listing order.
    sources = [ds.root, *ds.image_dirs]
    for rec in sorted(ds.records, key=lambda r: (SPLITS.index(r.split), r.name, str(r.src))):
        info = _check_image(rec, sources, log)
        if info is None:
            continue
        boxes = _clean_boxes(rec, info, len(ds.names), log)
        name = _unique_name(rec, taken[rec.split], log)
        accepted[rec.split].append(_Accepted(rec, name, info, boxes))
        splits_of_src.setdefault(rec.src.resolve(), set()).add(rec.split)
    for src, in_splits in splits_of_src.items():
        if len(in_splits) > 1:
            order = [s for s in SPLITS if s in in_splits]
            log.add("image_in_several_splits", src, f"the same image is in splits {order}",
                    "kept in each (the dataset's own split)")

    present = [s for s in SPLITS if accepted[s]]
    if not present:
        raise ValueError(f"no usable images found under {ds.root} ({len(ds.records)} listed, "
                         f"{len(log)} problems; see the log) — is it the right folder?")

    ours = {p.resolve() for p in stale}
    for split in present:  # every file about to be written: none may be someone else's
        for it in accepted[split]:
            for dst in (out / "images" / split / it.name, out / "labels" / split / f"{Path(it.name).stem}.txt"):
                if (dst.exists() or dst.is_symlink()) and dst.resolve() not in ours:
                    raise FileExistsError(f"{dst} exists and was not written by this converter; choose another --out")
    _clear(out, stale)
    out.mkdir(parents=True, exist_ok=True)
    try:
        manifest = _Manifest(out)
        try:
            for split in present:
                _write_split(out, split, accepted[split], ds, link, manifest)
            return _write_meta(out, ds, present, accepted, log, link, manifest)
        finally:
            manifest.close()
    except DiskFullError as e:  # data.yaml is written last: without it the output cannot pass for finished
        raise DiskFullError(e.errno, f"{e}; {out} is incomplete (no data.yaml): rerun with --overwrite "
                                     "once there is room") from e


def _write_meta(out: Path, ds: SourceDataset, present: list[str], accepted: dict, log: ProblemLog, link: str,
                manifest: _Manifest) -> dict[str, Any]:
    """data.yaml and report.json; returns the report."""
    data, notes = _data_yaml(out, present, ds.names)
    notes = ds.notes + notes
    header = (f"# Ultralytics dataset YAML written by detector.data ({ds.format} converter); details in report.json.\n"
              "# coco_json: COCO ground truth per entry, category_id = class index + 1.\n")
    atomic_write_text(manifest.add(out / "data.yaml"), header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    report: dict[str, Any] = {
        "format": ds.format,
        "source": str(ds.root.resolve()),
        "out": str(out),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": {**ds.options, "link": link},
        "names": {str(i): n for i, n in enumerate(ds.names)},
        "class_map": ds.class_map,
        "coco_category_id": "class index + 1",
        "splits": {s: _split_stats(accepted[s], ds.names) for s in present},
        "total": _split_stats([it for s in present for it in accepted[s]], ds.names),
        "notes": notes,
        "problem_counts": dict(sorted(Counter(p.kind for p in log.items).items())),
        "problems": log.to_list(),
    }
    atomic_write_text(manifest.add(out / "report.json"), json.dumps(report, indent=2, ensure_ascii=False))
    if len(log):
        warnings.warn(f"{len(log)} data problem(s) in {ds.root}: {report['problem_counts']}; "
                      f"details in {out / 'report.json'}", DataProblemWarning, stacklevel=3)
    return report

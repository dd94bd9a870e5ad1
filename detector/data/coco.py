"""COCO-json reader (any COCO detection set, e.g. NEPU-OWOD) into a :class:`SourceDataset`.

The dataset's own splits are kept: one json per split. Without explicit ``splits`` the reader looks
for ``ROOT/annotations/*.json`` and Roboflow-style ``ROOT/{split}/_annotations.coco.json``; the split
comes from the name (``train``; ``val``/``valid``; ``test``) and the image folder is whichever of
``{split}2017``, ``{split}``, ``images/{split}``, ``images``, the json's folder or ``ROOT`` holds the
most of the json's images.

Category ids, whatever they are (0 included), become contiguous 0-based class indices in order of
id; the union of the categories of all split files is used, so indices agree across splits.
Crowd annotations (``iscrowd: 1``) are regions, not objects: they are reported and left out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import file_kind
from .images import index_images
from .records import Box, ImageRecord, ProblemLog, SourceDataset, parse_number
from .splits import carve_val_records

_SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


@dataclass
class _SplitSource:
    split: str
    json_path: Path
    image_dir: Path


def split_from_name(name: str) -> str | None:
    """train/val/test from a json or folder name such as ``instances_val2017`` or ``valid``."""
    tokens = [t for t in re.split(r"[^a-z]+", name.lower()) if t]
    found = {_SPLIT_ALIASES[t] for t in tokens if t in _SPLIT_ALIASES}
    return found.pop() if len(found) == 1 else None


def _load_json(path: Path) -> dict[str, Any]:
    if (path.exists() or path.is_symlink()) and not path.is_file():  # reading a FIFO would block forever
        raise ValueError(f"COCO json {path} is not a regular file ({file_kind(path)})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read COCO json {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("categories"), list):
        raise ValueError(f"{path} is not a COCO detection json (needs 'images' and 'categories' lists)")
    return data


def _pick_image_dir(root: Path, split: str, json_path: Path, file_names: list[str]) -> Path:
    candidates = [root / f"{split}2017", root / json_path.stem, root / split, root / "images" / split,
                  root / "images", json_path.parent, root]
    if split == "val":
        candidates[2:2] = [root / "valid", root / "images" / "valid"]
    if not file_names:
        return json_path.parent
    sample = file_names[:200]  # enough to tell folders apart without touching every file
    best, hits = None, 0
    for folder in candidates:
        if folder.is_dir():
            n = sum(1 for f in sample if (folder / f).is_file() or (folder / Path(f).name).is_file())
            if n > hits:
                best, hits = folder, n
    if best is None:
        raise FileNotFoundError(f"none of the images listed in {json_path} was found in any of "
                                f"{[str(c) for c in candidates]}; give the image folder explicitly")
    return best


def discover_coco_splits(root: str | Path) -> dict[str, tuple[Path, Path | None]]:
    """split -> (json, None) found under ``root``; raises ``ValueError`` when a name is ambiguous."""
    root = Path(root)
    found: dict[str, tuple[Path, Path | None]] = {}
    jsons = sorted((root / "annotations").glob("*.json")) + sorted(root.glob("*/_annotations.coco.json"))
    for path in jsons:
        split = split_from_name(path.stem) or split_from_name(path.parent.name)
        if split is None:
            raise ValueError(f"cannot tell the split of {path} from its name; pass the splits explicitly")
        if split in found:
            raise ValueError(f"both {found[split][0]} and {path} look like the {split} split; pass the splits explicitly")
        found[split] = (path, None)
    if not found:
        raise FileNotFoundError(f"no COCO json found under {root}/annotations or {root}/*/_annotations.coco.json")
    return found


def read_coco(
    root: str | Path,
    *,
    splits: Mapping[str, str | Path | tuple[str | Path, str | Path | None]] | None = None,
    images: Mapping[str, str | Path] | None = None,
    val_fraction: float = 0.0,
    seed: int = 0,
) -> SourceDataset:
    """Read COCO jsons with their images; ``splits`` maps train/val/test to a json or to (json, image
    folder or None), ``images`` a split to its image folder (default: found, see the module doc).
    ``val_fraction`` > 0 carves a seeded-random val split from train when the files give none.

    Relative paths are taken relative to ``root``. Raises ``ValueError`` naming the file for a json
    that is not COCO detection format.
    """
    root = Path(root)
    log = ProblemLog()
    images = dict(images or {})
    if splits is not None and set(images) - set(splits):
        raise ValueError(f"image folders given for splits without a json: {sorted(set(images) - set(splits))}")
    wanted = dict(discover_coco_splits(root) if splits is None else
                  {k: v if isinstance(v, tuple) else (v, images.get(k)) for k, v in splits.items()})
    sources: list[_SplitSource] = []
    loaded: dict[str, dict[str, Any]] = {}
    for name, (json_path, image_dir) in wanted.items():
        split = _SPLIT_ALIASES.get(name.lower())
        if split is None:
            raise ValueError(f"unknown split {name!r}; use train, val or test")
        if split in loaded:
            raise ValueError(f"split {split!r} is given twice")
        json_path = root / json_path
        data = _load_json(json_path)
        loaded[split] = data
        names = [str(im.get("file_name", "")) for im in data["images"] if isinstance(im, dict)]
        folder = root / image_dir if image_dir is not None else _pick_image_dir(root, split, json_path, names)
        sources.append(_SplitSource(split, json_path, folder))

    # Categories: union over the split files, by id; indices follow the sorted ids.
    categories: dict[int, str] = {}
    for src in sources:
        seen_here: set[int] = set()
        for k, cat in enumerate(loaded[src.split]["categories"]):
            cid = cat.get("id") if isinstance(cat, dict) else None
            if not isinstance(cid, int) or isinstance(cid, bool):
                log.add("malformed_category", src.json_path, f"category entry {cat!r} has no integer id",
                        "category ignored", f"categories[{k}]")
                continue
            name = str(cat.get("name", cid))
            if cid in seen_here:
                log.add("duplicate_category", src.json_path, f"category id {cid} is declared twice",
                        "kept the first declaration", f"categories[{k}]")
                continue
            seen_here.add(cid)
            if cid in categories and categories[cid] != name:
                log.add("category_conflict", src.json_path, f"category id {cid} is {name!r} here but "
                        f"{categories[cid]!r} in an earlier split file", f"kept {categories[cid]!r}", f"categories[{k}]")
                continue
            categories.setdefault(cid, name)
    if not categories:
        raise ValueError(f"no usable categories in {[str(s.json_path) for s in sources]}")
    cat_index = {cid: i for i, cid in enumerate(sorted(categories))}
    names = [categories[cid] for cid in sorted(categories)]
    if 0 in cat_index:
        # Id 0 is legal COCO but trips tools that treat 0 as "no category"; say how it is mapped.
        files = [str(s.json_path) for s in sources if any(isinstance(c, dict) and c.get("id") == 0
                                                         for c in loaded[s.split]["categories"])]
        for f in files:
            log.add("category_id_zero", f, f"category id 0 ({categories[0]!r}) is used",
                    f"mapped to class index {cat_index[0]} (output category_id {cat_index[0] + 1})")

    records: list[ImageRecord] = []
    listed: dict[Path, set[str]] = {}
    for src in sources:
        records.extend(_read_split(src, loaded[src.split], cat_index, log))
        listed.setdefault(src.image_dir, set()).update(
            Path(str(im.get("file_name", ""))).name for im in loaded[src.split]["images"] if isinstance(im, dict))
    for folder, names_listed in listed.items():
        for stem, paths in index_images(folder).items():
            for p in paths:
                if p.name not in names_listed:
                    log.add("unlisted_image", p, "image is in no annotation json that uses this folder", "image skipped")

    used = {cid: sum(1 for r in records for b in r.boxes if b.cls == i) for cid, i in cat_index.items()}
    for cid, n in used.items():
        if n == 0:
            log.add("unused_category", sources[0].json_path, f"category id {cid} ({categories[cid]!r}) has no boxes",
                    f"kept as class index {cat_index[cid]}")

    ds = SourceDataset(
        format="coco", root=root, names=names, records=records, problems=log,
        class_map={str(cid): i for cid, i in cat_index.items()},
        options={"splits": {s.split: [str(s.json_path), str(s.image_dir)] for s in sources}},
        notes=[f"{s.split}: {s.json_path} with images in {s.image_dir}" for s in sources],
        image_dirs=[s.image_dir for s in sources],
    )
    carve_val_records(ds, val_fraction, seed)
    return ds


def _read_split(src: _SplitSource, data: dict[str, Any], cat_index: dict[int, int], log: ProblemLog) -> list[ImageRecord]:
    """Records of one split file: image entries, then their annotations."""
    jp = src.json_path
    by_id: dict[int, ImageRecord] = {}
    by_name: dict[str, int] = {}
    alias: dict[int, int] = {}  # image id of a duplicate file_name entry -> id of the first entry
    for k, im in enumerate(data["images"]):
        where = f"images[{k}]"
        iid = im.get("id") if isinstance(im, dict) else None
        fname = str(im.get("file_name", "")).strip() if isinstance(im, dict) else ""
        if not isinstance(iid, int) or isinstance(iid, bool) or not fname:
            log.add("malformed_image_entry", jp, f"image entry {im!r} lacks an integer id or a file_name",
                    "entry skipped", where)
            continue
        if iid in by_id:
            log.add("duplicate_image_id", jp, f"image id {iid} ({fname!r}) repeats the id of {by_id[iid].name!r}",
                    "entry skipped; annotations with this id go to the first entry", where)
            continue
        if fname in by_name:
            first = by_name[fname]
            alias[iid] = first
            log.add("duplicate_file_name", jp, f"file {fname!r} is listed again as image id {iid} (first as id {first})",
                    f"entry merged into image id {first}; its annotations are kept there", where)
            continue
        w, h = parse_number(str(im.get("width"))), parse_number(str(im.get("height")))
        size = (int(w), int(h)) if w and h and w > 0 and h > 0 else None
        if size is None:
            log.add("no_size", jp, f"image {fname!r} has no usable width/height", "used the image file's size", where)
        path = src.image_dir / fname
        if not path.is_file() and (src.image_dir / Path(fname).name).is_file():
            path = src.image_dir / Path(fname).name
        by_id[iid] = ImageRecord(src=path, split=src.split, name=Path(fname).name, boxes=[], ann_file=str(jp),
                                 declared_size=size)
        by_name[fname] = iid

    seen_ann: set[Any] = set()
    for k, ann in enumerate(data.get("annotations") or []):
        if not isinstance(ann, dict):
            log.add("malformed_bbox", jp, f"annotation {ann!r} is not an object", "annotation dropped", f"annotations[{k}]")
            continue
        aid = ann.get("id")
        where = f"annotation id {aid}" if aid is not None else f"annotations[{k}]"
        if aid is not None:
            if aid in seen_ann:
                log.add("duplicate_annotation_id", jp, f"annotation id {aid} is used twice",
                        "kept (output annotation ids are renumbered)", where)
            seen_ann.add(aid)
        iid = alias.get(ann.get("image_id"), ann.get("image_id"))  # type: ignore[arg-type]
        rec = by_id.get(iid) if isinstance(iid, int) else None
        if rec is None:
            log.add("unknown_image_id", jp, f"image_id {ann.get('image_id')!r} is not in images", "annotation dropped", where)
            continue
        cid = ann.get("category_id")
        if cid not in cat_index or isinstance(cid, bool):
            log.add("unknown_category", jp, f"category_id {cid!r} is not in categories (image {rec.name})",
                    "annotation dropped", where)
            continue
        bbox = ann.get("bbox")
        nums = [parse_number(str(v)) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else None
        if nums is None or any(v is None for v in nums):
            log.add("malformed_bbox", jp, f"bbox {bbox!r} is not four numbers x, y, w, h (image {rec.name})",
                    "annotation dropped", where)
            continue
        if ann.get("iscrowd", 0):
            log.add("crowd_box", jp, f"iscrowd annotation on image {rec.name} is a region, not one object",
                    "annotation dropped", where)
            continue
        x, y, w, h = nums  # type: ignore[misc]
        rec.boxes.append(Box(x, y, x + w, y + h, cat_index[cid], f"{where}, image {rec.name}"))
    return list(by_id.values())

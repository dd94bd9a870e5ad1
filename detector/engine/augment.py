"""Copy-paste for datasets labelled with boxes only (SSDD, NWPU VHR-10): ``BoxPaste``.

Ultralytics' ``copy_paste`` pastes objects cut out along their polygons and does nothing on a dataset
without polygons, which is what the project's SAR ship data has. ``BoxPaste`` takes its place there
(``use_box_paste``, called by the trainers for the training set): with probability ``copy_paste`` per
image it cuts ship boxes out of another training image, each with a margin of its surroundings (the sea
clutter and speckle around a ship are part of what a SAR detector learns; a tight box pasted onto
another sea would show an artificial edge), and pastes them at random places of the current image
where the pasted patch covers no labelled object (nor mostly the mosaic's grey border), adding their boxes. Boxes whose patch would take part
of another object with it are not used (that part would be an unlabelled object). Closing mosaic turns
it off with the rest of the mixing augmentations (Ultralytics sets ``copy_paste`` to 0 then).

It sits where Ultralytics puts its own copy-paste (after mosaic), so patches land on the mosaic canvas
and go through the same affine, colour and flip augmentations. Random numbers come from Python's
``random``, which Ultralytics seeds (``--seed``), as its own transforms do.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np

# Patch margin on each side, as a fraction of the box's width / height (at least MIN_MARGIN pixels).
MARGIN = 0.25
MIN_MARGIN = 4
MAX_PASTE = 8  # boxes pasted into one image at most
TRIES = 10  # random places tried per box
PAD = 114  # the grey Ultralytics' mosaic and letterbox fill empty canvas with


def _overlaps(rect: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of ``boxes`` (n, 4, xyxy) intersect ``rect`` (4, xyxy) with a positive area."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=bool)
    iw = np.minimum(rect[2], boxes[:, 2]) - np.maximum(rect[0], boxes[:, 0])
    ih = np.minimum(rect[3], boxes[:, 3]) - np.maximum(rect[1], boxes[:, 1])
    return (iw > 0) & (ih > 0)


def paste_boxes(img: np.ndarray, boxes: np.ndarray, src: np.ndarray, src_boxes: np.ndarray,
                rng: random.Random, max_paste: int = MAX_PASTE) -> tuple[np.ndarray, list[int]]:
    """Paste box patches of ``src`` (with their margins) into ``img`` in place, away from ``boxes``.

    ``boxes`` / ``src_boxes``: (n, 4) xyxy pixels. Returns the pasted boxes (m, 4, xyxy pixels in ``img``)
    and, for each, the index of the source box it came from."""
    h, w = img.shape[:2]
    sh, sw = src.shape[:2]
    taken = boxes.astype(np.float32).reshape(-1, 4)
    new: list[np.ndarray] = []
    used: list[int] = []
    order = list(range(len(src_boxes)))
    rng.shuffle(order)
    for i in order:
        if len(new) >= max_paste:
            break
        x0, y0, x1, y1 = (float(v) for v in src_boxes[i])
        mx, my = max(MIN_MARGIN, MARGIN * (x1 - x0)), max(MIN_MARGIN, MARGIN * (y1 - y0))
        px0, py0 = int(max(0, np.floor(x0 - mx))), int(max(0, np.floor(y0 - my)))
        px1, py1 = int(min(sw, np.ceil(x1 + mx))), int(min(sh, np.ceil(y1 + my)))
        pw, ph = px1 - px0, py1 - py0
        if x1 - x0 < 1 or y1 - y0 < 1 or pw >= w or ph >= h:
            continue
        others = np.delete(src_boxes, i, axis=0)
        if _overlaps(np.array([px0, py0, px1, py1], np.float32), others).any():
            continue  # the patch would carry part of another, unlabelled, object
        for _ in range(TRIES):
            dx, dy = rng.randrange(0, w - pw + 1), rng.randrange(0, h - ph + 1)
            if _overlaps(np.array([dx, dy, dx + pw, dy + ph], np.float32), taken).any():
                continue
            if (img[dy:dy + ph, dx:dx + pw] == PAD).all(-1).mean() > 0.5:
                continue  # mostly the mosaic's grey border: a patch of sea there is no scene a detector meets
            img[dy:dy + ph, dx:dx + pw] = src[py0:py1, px0:px1]
            box = np.array([x0 - px0 + dx, y0 - py0 + dy, x1 - px0 + dx, y1 - py0 + dy], np.float32)
            new.append(box)
            used.append(i)
            # the whole patch is taken: a later patch must not cover this one's margin or ship
            taken = np.concatenate([taken, np.array([[dx, dy, dx + pw, dy + ph]], np.float32)])
            break
    return (np.stack(new) if new else np.zeros((0, 4), np.float32)), used


class BoxPaste:
    """Copy-paste of box patches from another training image (module docstring), probability ``p``."""

    def __init__(self, dataset, p: float):
        self.dataset = dataset
        self.p = float(p)

    def __call__(self, labels: dict[str, Any]) -> dict[str, Any]:
        if self.p <= 0 or random.random() >= self.p:
            return labels
        from ultralytics.utils.instance import Instances

        img = labels["img"]
        inst = labels["instances"]
        inst.convert_bbox(format="xyxy")
        inst.denormalize(img.shape[1], img.shape[0])
        other = self.dataset.get_image_and_label(random.randrange(len(self.dataset)))
        src_inst = other["instances"]
        src_inst.convert_bbox(format="xyxy")
        src_inst.denormalize(other["img"].shape[1], other["img"].shape[0])
        img = np.ascontiguousarray(img)
        pasted, used = paste_boxes(img, inst.bboxes, other["img"], src_inst.bboxes, random.Random(random.random()))
        if not used:
            return labels
        segs = np.zeros((0, *inst.segments.shape[1:]), np.float32)  # box-only labels carry no polygon, as Ultralytics'
        added = Instances(pasted, segments=segs, bbox_format="xyxy", normalized=False)
        labels["img"] = img
        labels["instances"] = Instances.concatenate([inst, added])
        labels["cls"] = np.concatenate([labels["cls"].reshape(-1, 1), other["cls"].reshape(-1, 1)[used]])
        return labels


def use_box_paste(dataset, p: float) -> bool:
    """Replace Ultralytics' copy-paste in ``dataset``'s training transforms by ``BoxPaste`` when the
    dataset has no polygons (its copy-paste would do nothing). Returns whether it did."""
    from ultralytics.data.augment import Compose, CopyPaste

    if p <= 0 or getattr(dataset, "use_segments", False):
        return False
    if any(len(lb.get("segments", ())) for lb in getattr(dataset, "labels", [])):
        return False  # polygons: Ultralytics' own copy-paste works
    done = False

    def walk(compose) -> None:
        nonlocal done
        for k, t in enumerate(compose.transforms):
            if isinstance(t, CopyPaste):
                compose.transforms[k] = BoxPaste(dataset, p)
                done = True
            elif isinstance(t, Compose):
                walk(t)
            elif isinstance(getattr(t, "pre_transform", None), Compose):
                walk(t.pre_transform)

    walk(dataset.transforms)
    return done

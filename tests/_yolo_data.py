"""Generated YOLO-layout datasets for in-process training tests, and the cheap training settings they
run with (shared by test modules; not a test module itself)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

IMGSZ = 64
# Cheap, quiet training settings for in-process runs. nbs=batch: an optimizer step after every batch
# (Ultralytics' default nbs=64 would accumulate a tiny run's few batches into one step at warmup lr 0).
TRAIN_KW = dict(imgsz=IMGSZ, batch=2, nbs=2, workers=0, plots=False, close_mosaic=0, patience=100)


def write_image(path: Path, img: np.ndarray) -> Path:
    """Write with cv2 (PNG/JPEG) or tifffile (TIFF); works with any characters in the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in {".tif", ".tiff"}:
        import tifffile

        tifffile.imwrite(str(path), img)
    else:
        ok, buf = cv2.imencode(path.suffix, img)
        assert ok, path
        buf.tofile(str(path))
    return path


def scene(rng: np.random.Generator, h: int = IMGSZ, w: int = IMGSZ) -> tuple[np.ndarray, str]:
    """A dark BGR image with one bright box, and its YOLO label line (class 0)."""
    img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
    bw, bh = (int(v) for v in rng.integers(w // 4, w // 2, 2))
    x0, y0 = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
    img[y0:y0 + bh, x0:x0 + bw] = (60, 200, 240)
    line = f"0 {(x0 + bw / 2) / w:.6f} {(y0 + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}\n"
    return img, line


def make_yolo_dataset(root: Path, n_train: int = 4, n_val: int = 2, bad: bool = True) -> Path:
    """A YOLO-layout dataset of generated images (one box each) under ``root``; returns data.yaml.

    With ``bad``, it also holds what real data sets contain: a grayscale image, an RGBA image, a
    16-bit single-band TIFF, a file name with a space and non-ASCII characters (all usable), and a
    corrupt image, an empty image and images with malformed labels (which must be skipped, named).
    """
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            img, line = scene(rng)
            write_image(root / "images" / split / f"{split}{i}.png", img)
            (root / "labels" / split).mkdir(parents=True, exist_ok=True)
            (root / "labels" / split / f"{split}{i}.txt").write_text(line)
    if bad:
        lab = root / "labels" / "train"
        for name, convert in (("gray.png", lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)),
                              ("rgba.png", lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA)),
                              ("sixteen.tif", lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257),
                              ("ñandú 北京.png", lambda im: im)):
            img, line = scene(rng)
            write_image(root / "images" / "train" / name, convert(img))
            (lab / f"{Path(name).stem}.txt").write_text(line)
        for split in ("train", "val"):
            img, line = scene(rng)
            (root / "images" / split / f"corrupt_{split}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 8)
            (root / "labels" / split / f"corrupt_{split}.txt").write_text(line)
            (root / "images" / split / f"empty_{split}.png").write_bytes(b"")
            (root / "labels" / split / f"empty_{split}.txt").write_text(line)
            write_image(root / "images" / split / f"badlabel_{split}.png", img)
        (lab / "badlabel_train.txt").write_text("0 0.5 0.5 0.2\n")  # 4 columns
        (root / "labels" / "val" / "badlabel_val.txt").write_text("0 1.7 0.5 0.2 0.2\n")  # out of the image
    data = root / "data.yaml"
    data.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                    "names": {0: "box"}}, allow_unicode=True), encoding="utf-8")
    return data

"""Helpers for the tests that run the tools as commands and feed them small made-up inputs: the
subprocess runner, the one-line-error check, and tiny datasets (a YOLO dataset, a folder of images,
raw NWPU / VOC / COCO layouts for the converter). Not a test module: test modules import from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
IMGSZ = 64


def run_tool(*args, timeout: float = 300, memory_gb: float | None = None) -> subprocess.CompletedProcess:
    """Run a tool (or ``-c`` code) with this Python; ``memory_gb`` caps the process's address space, so a
    regression that tries to allocate an absurd amount fails there instead of exhausting the machine."""
    env = {**os.environ, "SNNVIT_THREADS": os.environ.get("SNNVIT_THREADS", "2"), "PYTHONIOENCODING": "utf-8"}

    def limit():
        import resource

        cap = int(memory_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=REPO, preexec_fn=limit if memory_gb else None)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    """The tool failed with exit code 2 and a single 'error: ...' line, no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout[-1500:], r.stderr[-1500:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr[-2000:]
    return errors[0]


def make_dataset(root: Path, names=("ship",), n: int = 4, labels: bool = True) -> Path:
    """A tiny YOLO dataset (bright boxes on dark 64 px images) with train = val; returns its YAML."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 30, (IMGSZ, IMGSZ, 3), dtype=np.uint8)
            img[16:40, 20:44] = 220
            cv2.imwrite(str(root / "images" / split / f"{i}.png"), img)
            if labels:
                (root / "labels" / split / f"{i}.txt").write_text("0 0.5 0.4375 0.375 0.375\n")
    cfg = root / "data.yaml"
    cfg.write_text(yaml.safe_dump({"path": str(root), "train": "images/train", "val": "images/val",
                                   "names": dict(enumerate(names))}))
    return cfg


def images_folder(root: Path, names) -> Path:
    """Random 64 x 48 images at the relative paths ``names`` under ``root``."""
    rng = np.random.default_rng(1)
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return root


def tiny_nwpu(root: Path) -> Path:
    """NWPU VHR-10's raw layout: ten positive images (one box of class k on image k), one negative."""
    (root / "ground truth").mkdir(parents=True)
    (root / "positive image set").mkdir()
    for k in range(1, 11):
        Image.new("L", (120, 100)).save(root / "positive image set" / f"{k:03d}.jpg")
        (root / "ground truth" / f"{k:03d}.txt").write_text(f"({k},{k}),({k + 50},{k + 40}),{k}\n")
    (root / "negative image set").mkdir()
    Image.new("L", (120, 100)).save(root / "negative image set" / "001.jpg")
    return root


def tiny_voc(root: Path) -> Path:
    """A VOC layout (SSDD's): ten images with one ship each."""
    for k in range(1, 11):
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        (root / "JPEGImages").mkdir(exist_ok=True)
        Image.new("L", (64, 48)).save(root / "JPEGImages" / f"{k:06d}.jpg")
        (root / "Annotations" / f"{k:06d}.xml").write_text(
            "<annotation><size><width>64</width><height>48</height></size><object><name>ship</name>"
            "<bndbox><xmin>4</xmin><ymin>4</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object></annotation>")
    return root


def tiny_coco(root: Path) -> Path:
    """A COCO layout with a train and a valid split of one image and one box each."""
    for split, name in (("train", "train"), ("val", "valid")):
        (root / f"{split}2017").mkdir(parents=True)
        Image.new("RGB", (64, 64)).save(root / f"{split}2017" / f"{split}.jpg")
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{name}.json").write_text(json.dumps({
            "images": [{"id": 0, "file_name": f"{split}.jpg", "width": 64, "height": 64}],
            "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [1, 2, 10, 12], "iscrowd": 0}],
            "categories": [{"id": 0, "name": "oil-well", "supercategory": "none"}]}))
    return root


def training_checkpoint(tmp_path: Path, ds: Path, **train_args) -> Path:
    """A plain-data training checkpoint (passes weights_only) whose stored arguments are ``train_args``."""
    from detector import weights as W
    from _tiny import tiny_ship_model

    args = {"data": str(ds), "epochs": 2, "imgsz": IMGSZ, "batch": 2, "workers": 0, "model": "x", **train_args}
    run = tmp_path / "run" / "weights"
    return W.save_checkpoint(run / "last.pt", tiny_ship_model(), optimizer={"state": {}, "param_groups": []}, epoch=0,
                             train_args=args, ema_state_dict=None)

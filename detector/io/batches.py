"""Image lists and letterboxed batches for measurements (energy, heatmap calibration, benchmarks):
the images of a source or of a dataset split, read and letterboxed exactly as detection does."""

from __future__ import annotations

import glob
import warnings
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .images import ImageReadError, expand_source, is_image, read_image
from .letterbox import letterbox_tensor
from .scene import read_scene, read_window, scene_shape
from .tiles import OVERLAP, tile_grid


def find_images(source: str | Path) -> list[Path]:
    """Image files from a file, a folder (recursive) or a glob pattern, sorted (the same expansion
    ``tools/detect.py`` uses)."""
    images = expand_source(source).images
    if not images:
        raise FileNotFoundError(f"no images found in {source}")
    return images


def dataset_images(data: str | Path, split: str = "val") -> list[Path]:
    """The ``split`` images of a dataset YAML (a local file, checked: nothing downloaded or run),
    resolved the way Ultralytics resolves them (folders searched recursively, ``.txt`` lists)."""
    from .dataset_yaml import load_dataset

    info = load_dataset(data, split)
    entries = info.get(split)
    if not entries:
        raise FileNotFoundError(f"{data} has no '{split}' split")
    files: list[Path] = []
    for e in entries if isinstance(entries, list) else [entries]:
        p = Path(e)
        if p.is_dir():
            files += [Path(f) for f in glob.glob(str(Path(glob.escape(str(p))) / "**" / "*.*"), recursive=True)]
        elif p.is_file() and p.suffix.lower() == ".txt":
            for line in p.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line:
                    files.append(p.parent / line[2:] if line.startswith("./") else Path(line))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{data}: '{split}' path not found: {p}")
    out = sorted({f for f in files if is_image(f)})
    if not out:
        raise FileNotFoundError(f"no '{split}' images found for {data}")
    return out


def load_letterboxed(path: str | Path, imgsz: int) -> torch.Tensor:
    """Read an image robustly (``detector.io.images``), letterbox it to ``imgsz`` x ``imgsz`` exactly as
    detection does, and return RGB float (3, imgsz, imgsz) in [0, 1]. Raises ``ImageReadError``."""
    return letterbox_tensor(read_image(path), imgsz)[0]


def image_batches(paths: Sequence[str | Path], imgsz: int, batch_size: int = 1,
                  skipped: list[tuple[str, str]] | None = None, tile: int | None = None,
                  overlap: float = OVERLAP) -> Iterator[torch.Tensor]:
    """Batches (B, 3, imgsz, imgsz) of letterboxed images in [0, 1]; with ``tile``, of the letterboxed
    tiles of each image (the grid of sliced detection, ``detector.io.tiles``). An unreadable file is
    skipped with a warning and appended to ``skipped`` as (path, reason)."""
    buf: list[torch.Tensor] = []
    for p in paths:
        try:
            img = read_scene(p, tile is not None)
        except ImageReadError as e:
            warnings.warn(f"skipped: {e}", stacklevel=2)
            if skipped is not None:
                skipped.append((str(p), str(e)))
            continue
        parts = [(0, 0, *scene_shape(img)[1::-1])] if tile is None else tile_grid(scene_shape(img)[:2], tile, overlap)
        for window in parts:  # a large raster is read window by window (detector.io.scene)
            buf.append(letterbox_tensor(read_window(img, *window), imgsz)[0])
            if len(buf) == batch_size:
                yield torch.stack(buf)
                buf = []
    if buf:
        yield torch.stack(buf)

"""Traps and runs shared by the hostile-raster tests (``test_hostile_rasters.py``: what GDAL may open;
``test_hostile_outputs.py``: map files, the output folder and the survey's sources). Not a test module:
test modules import from it. rasterio is imported where it is used: the test modules skip without it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from detector.infer import detect
from _boxes import FixedBox


def geotiff(path: Path, size: int = 64, value: int = 7, **extra) -> Path:
    """A small uint8 GeoTIFF of one value (``extra``: rasterio's profile, e.g. ``crs``, ``transform``)."""
    import rasterio

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8", **extra) as ds:
            ds.write(np.full((1, size, size), value, np.uint8))
    return path


def plain_png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((64, 64, 3), 90, np.uint8))
    return path


def run_detect(src: Path, out: Path, **kw):
    kw.setdefault("outputs", ("json", "geojson"))
    return detect(src, out=out, model=FixedBox((8.0, 8.0, 40.0, 40.0)), imgsz=64, verbose=False, **kw)


def aged(path: Path) -> int:
    """Set ``path``'s access time before its modification time, so that a read moves it (relatime)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_mtime_ns - 10**11, st.st_mtime_ns))
    return os.stat(path).st_atime_ns


def read_moves_atime(path: Path) -> bool:
    before = aged(path)
    path.read_bytes()
    moved = os.stat(path).st_atime_ns != before
    aged(path)
    return moved


def outside_secret(tmp_path: Path, text: str, name: str = "secret.txt") -> Path:
    """A file outside the source folder whose access time shows a read (the test skips where none is kept)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / name
    secret.write_text(text)
    if not read_moves_atime(secret):
        pytest.skip("this file system does not record access times")
    return secret

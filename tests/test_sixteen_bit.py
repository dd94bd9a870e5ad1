"""16-bit (and float, complex) imagery to 8 bits: one documented stretch (``detector.io.images.to_uint8``),
applied the same way when a dataset is converted for training and when detection reads a file.

* the stretch is the formula the README states: percentiles 0.5 and 99.5 of the finite values, linear,
  clipped, truncated; non-finite values black; complex values by their amplitude;
* the converter writes a 16-bit image as the 8-bit pixels detection reads from the original, and
  Ultralytics' own reader (what training sees) gets exactly those pixels - not the high byte it takes
  from a 16-bit file; 8-bit images are copied unchanged.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile
from ultralytics.utils.patches import imread as ultralytics_imread

from detector.data import convert_voc
from detector.io.images import STRETCH_SAMPLES, convert_to_8bit, is_8bit, read_image, stretch_range, to_uint8


def test_stretch_is_the_documented_formula():
    rng = np.random.default_rng(0)
    sar = rng.gamma(1.0, 300.0, (120, 90)).astype(np.uint16)  # speckle-like amplitude
    sar[10:14, 20:26] = 60000  # a bright ship: saturates, does not set the scale
    lo, hi = np.percentile(sar.astype(np.float64), (0.5, 99.5))
    expected = np.floor(np.clip((sar - lo) * 255.0 / (hi - lo), 0, 255)).astype(np.uint8)
    assert np.array_equal(to_uint8(sar), expected)
    assert (to_uint8(sar)[10:14, 20:26] == 255).all() and np.median(to_uint8(sar)) < 80  # dark sea, as SSDD

    f = sar.astype(np.float32)
    f[0, :3] = [np.nan, np.inf, -np.inf]  # non-finite: left out of the percentiles, written black
    finite = np.isfinite(f)
    lo, hi = np.percentile(f[finite].astype(np.float64), (0.5, 99.5))
    with np.errstate(invalid="ignore"):
        want = np.where(finite, np.floor(np.clip((f.astype(np.float64) - lo) * 255.0 / (hi - lo), 0, 255)), 0)
    assert stretch_range(f) == (lo, hi) and np.array_equal(to_uint8(f), want.astype(np.uint8))
    z = sar * np.exp(1j * rng.uniform(0, 2 * np.pi, sar.shape))  # single-look complex: stretched by amplitude
    assert np.abs(to_uint8(z).astype(int) - expected.astype(int)).max() <= 1  # amplitude equals sar up to rounding
    assert to_uint8(np.full((4, 4), 7, np.uint16)).tolist() == [[0] * 4] * 4  # flat image: no division by zero

    big = rng.integers(0, 5000, STRETCH_SAMPLES * 3 + 5, dtype=np.uint16)  # sampled: every k-th value
    k = big.size // STRETCH_SAMPLES
    assert stretch_range(big) == tuple(np.percentile(big[::k].astype(np.float64), (0.5, 99.5)))


def test_converter_writes_training_images_as_detection_reads_them(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    images = {
        "000001.png": (rng.gamma(1.0, 400.0, (48, 64))).astype(np.uint16),  # 16-bit PNG (grey)
        "000002.tif": (rng.gamma(1.0, 400.0, (48, 64))).astype(np.uint16),  # 16-bit GeoTIFF-like (grey)
        "000003.tif": rng.integers(0, 3000, (48, 64, 3), dtype=np.uint16),  # 16-bit RGB
        "000004.png": rng.integers(0, 255, (48, 64, 3), dtype=np.uint8),  # 8-bit: copied as it is
        "000005.jp2": rng.integers(0, 3000, (48, 64, 3), dtype=np.uint16),  # 16-bit JPEG 2000 (lossless)
    }
    for name, img in images.items():
        path = root / "JPEGImages" / name
        if name.endswith(".tif"):
            tifffile.imwrite(str(path), img)
        else:
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, 1000] if name.endswith(".jp2") else [])
        (root / "Annotations" / f"{Path(name).stem}.xml").write_text(
            "<annotation><size><width>64</width><height>48</height></size><object><name>ship</name>"
            "<bndbox><xmin>4</xmin><ymin>4</ymin><xmax>20</xmax><ymax>30</ymax></bndbox></object></annotation>")
    convert_voc(root, tmp_path / "out", ratios=(1.0, 0.0, 0.0))
    for name in images:
        src = root / "JPEGImages" / name
        (dst,) = (tmp_path / "out" / "images").rglob(name)
        detection = read_image(src)
        training = ultralytics_imread(str(dst))  # what Ultralytics' data loader gives the model
        assert is_8bit(dst) and np.array_equal(training, detection), name
        if images[name].dtype == np.uint16:
            assert not is_8bit(src)
            assert not np.array_equal(ultralytics_imread(str(src)), detection)  # the high byte: why we convert
        else:
            assert dst.read_bytes() == src.read_bytes()
    assert convert_to_8bit(root / "JPEGImages" / "000004.png", tmp_path / "x.png") is False
    assert not (tmp_path / "x.png").exists()

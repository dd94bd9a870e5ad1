"""The project's own demo images: synthetic SAR-like scenes with ships, generated from a seed.

A scene is sea clutter (multiplicative gamma speckle over a slowly varying backscatter), optional
land (a bright, textured region behind a wavy coastline, with a harbour pier), and ships: elongated
bright targets at random headings made of a few strong point scatterers with cross-shaped sidelobes,
as ships look in SAR amplitude images (SSDD-like). Returned boxes are the ships' axis-aligned extents.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def _speckle(rng: np.random.Generator, shape: tuple[int, int], looks: float = 3.0) -> np.ndarray:
    return rng.gamma(looks, 1.0 / looks, size=shape).astype(np.float32)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale: int) -> np.ndarray:
    h, w = shape
    small = rng.standard_normal((max(2, h // scale), max(2, w // scale))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _ship(canvas: np.ndarray, rng: np.random.Generator, cx: float, cy: float, length: float, width: float,
          angle: float, brightness: float) -> tuple[float, float, float, float]:
    """Draw one ship into ``canvas`` (float intensity) and return its box (x1, y1, x2, y2)."""
    h, w = canvas.shape
    ca, sa = np.cos(angle), np.sin(angle)
    # hull: a filled rotated ellipse of moderate brightness
    hull = np.zeros_like(canvas)
    cv2.ellipse(hull, (int(round(cx)), int(round(cy))), (max(1, int(length / 2)), max(1, int(width / 2))),
                float(np.degrees(angle)), 0, 360, 1.0, -1, lineType=cv2.LINE_AA)
    canvas += hull * brightness * 0.6
    # strong scatterers along the keel with short cross-shaped sidelobes
    n = rng.integers(3, 7)
    for s in np.linspace(-0.4, 0.4, n):
        px, py = cx + s * length * ca, cy + s * length * sa
        amp = brightness * rng.uniform(0.8, 1.6)
        ix, iy = int(round(px)), int(round(py))
        if 0 <= ix < w and 0 <= iy < h:
            canvas[iy, ix] += amp * 2.0
            for d in (1, 2):
                for dx, dy in ((d, 0), (-d, 0), (0, d), (0, -d)):
                    if 0 <= ix + dx < w and 0 <= iy + dy < h:
                        canvas[iy + dy, ix + dx] += amp / (1.5 * d)
    ex = abs(length / 2 * ca) + abs(width / 2 * sa) + 2
    ey = abs(length / 2 * sa) + abs(width / 2 * ca) + 2
    return max(0.0, cx - ex), max(0.0, cy - ey), min(w - 1.0, cx + ex), min(h - 1.0, cy + ey)


def make_sar_scene(seed: int, size: tuple[int, int] = (512, 512), ships: tuple[int, int] = (2, 7),
                   land: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One grayscale uint8 scene ``(H, W)`` and its ship boxes ``(n, 4)`` x1, y1, x2, y2 in pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = 0.18 * np.exp(0.25 * _smooth_field(rng, size, 64))  # sea backscatter
    land = bool(rng.random() < 0.5) if land is None else land
    land_mask = np.zeros(size, np.float32)
    if land:
        xs = np.arange(w, dtype=np.float32)
        coast = h * rng.uniform(0.65, 0.85) + 18 * np.sin(xs / rng.uniform(25, 60)) + 10 * _smooth_field(rng, (1, w), 16)[0]
        yy = np.arange(h, dtype=np.float32)[:, None]
        land_mask = (yy > coast[None, :]).astype(np.float32)
        texture = 0.8 * np.exp(1.1 * _smooth_field(rng, size, 6))
        base = base * (1 - land_mask) + texture * land_mask
        px = int(rng.uniform(0.2, 0.8) * w)  # a pier sticking out of the coast
        top = int(coast[px] - rng.uniform(30, 60))
        cv2.rectangle(base, (px - 3, top), (px + 3, int(coast[px]) + 5), 4.0, -1)
    canvas = np.zeros(size, np.float32)
    boxes = []
    for _ in range(int(rng.integers(ships[0], ships[1] + 1))):
        for _try in range(20):
            length, width = rng.uniform(14, 44), rng.uniform(6, 13)
            cx, cy = rng.uniform(0.08, 0.92) * w, rng.uniform(0.08, 0.92) * h
            if land_mask[int(cy), int(cx)] > 0:
                continue
            if any(abs(cx - (b[0] + b[2]) / 2) < 40 and abs(cy - (b[1] + b[3]) / 2) < 40 for b in boxes):
                continue
            boxes.append(_ship(canvas, rng, cx, cy, length, width, rng.uniform(0, np.pi), rng.uniform(8.0, 20.0)))
            break
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.2)  # the radar's point spread: blob-like targets
    # speckle correlated over ~2 px, as in multi-look SAR products
    speckle = cv2.resize(_speckle(rng, (h // 2, w // 2)), (w, h), interpolation=cv2.INTER_NEAREST)
    img = np.sqrt(np.clip((base + canvas) * speckle, 0, None))  # amplitude
    img = np.clip(img / 5.0 * 255, 0, 255).astype(np.uint8)
    return img, np.array(boxes, np.float32).reshape(-1, 4)


def write_demo_images(out: str | Path, count: int = 6, seed: int = 2025, size: tuple[int, int] = (512, 512)) -> list[Path]:
    """Write ``count`` scenes as PNG into ``out`` (deterministic for a seed); return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        img, _ = make_sar_scene(seed + i, size)
        p = out / f"sar_scene_{i + 1:02d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths

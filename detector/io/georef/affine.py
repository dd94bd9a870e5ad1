"""An affine geotransform - north-up, rotated or sheared: GeoTIFF tags (tie point + pixel scale, or the
transformation matrix; a pixel-is-point file is moved half a pixel, as GDAL does), JPEG 2000 (GeoJP2,
GMLJP2), a world file (``.tfw``, ``.jgw``, ``.pgw``, ``.wld`` ...) or a ``.aux.xml``. Unusable: a
non-finite, singular or overflowing geotransform."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import GeoReference, RasterFacts, crs_fields


@dataclass(frozen=True)
class AffineReference(GeoReference):
    """``transform`` = (a, b, c, d, e, f): ``X = a x + b y + c``, ``Y = d x + e y + f``."""

    kind: ClassVar[str] = "affine"

    transform: tuple[float, ...] = ()

    @classmethod
    def from_facts(cls, facts: RasterFacts) -> "AffineReference | None":
        if facts.transform is None or facts.transform.is_identity:  # GDAL's default (0, 1, 0, 0, 0, 1): none
            return None
        vals = tuple(float(v) for v in tuple(facts.transform)[:6])
        geo = cls(path=facts.path, transform=vals, notes=facts.notes, **crs_fields(facts.crs))
        a, b, _, d, e, _ = vals
        if not all(math.isfinite(v) for v in vals):
            return geo.unusable(f"non-finite geotransform {vals}")
        if a * e - b * d == 0:
            return geo.unusable(f"singular geotransform {vals} (zero pixel area)")
        if not math.isfinite(a * e - b * d):
            return geo.unusable(f"geotransform {vals} overflows (pixel area not finite)")
        return geo

    def _map(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, c, d, e, f = self.transform
        with np.errstate(over="ignore", invalid="ignore"):  # overflow is caught as non-finite by to_map
            return a * xs + b * ys + c, d * xs + e * ys + f

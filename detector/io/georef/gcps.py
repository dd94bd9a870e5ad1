"""Ground control points, the form of Sentinel-1 GRD products (a grid of GCPs in longitude/latitude, no
geotransform): pixels are mapped through GDAL's GCP transformer, a least-squares polynomial of order 1
for 3 to 5 GCPs and order 2 for 6 or more (GDAL's choice when asked for none; it avoids order 3 as
unstable). GCPs in longitude/latitude are first projected to a transverse Mercator centred on them
(PROJ), and the polynomial is fitted there: a ground-range image is nearly affine in a local conformal
projection, while in degrees the scale of longitude changes across a large scene and an order-2
polynomial misses by tens of metres or more (docs/design.md has the measurements). How well it fits is
measured at the GCPs themselves: ``gcp_residual_m`` is the largest distance, in metres, between a GCP
and the polynomial at that GCP's pixel. Unusable: fewer than 3 GCPs, non-finite ones, or a fit GDAL or
PROJ cannot solve (collinear GCPs, off the Earth)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from .. import gdal
from .base import GeoError, GeoReference, RasterFacts, crs_fields, one_line

Points = tuple[tuple[float, float, float, float], ...]  # (col, row, X, Y) each


@dataclass(frozen=True)
class GcpReference(GeoReference):
    """``gcps``: the file's GCPs in its CRS; ``fit_gcps``: where the polynomial is fitted, in ``fit_wkt``
    when that is not ``crs`` (the local transverse Mercator)."""

    kind: ClassVar[str] = "gcps"

    gcps: Points = ()
    fit_gcps: Points = ()
    fit_wkt: str | None = None
    gcp_order: int = 0
    gcp_residual_m: float | None = None

    @classmethod
    def from_facts(cls, facts: RasterFacts) -> "GcpReference | None":
        if not facts.gcps:
            return None
        pts = tuple((float(g.col), float(g.row), float(g.x), float(g.y)) for g in facts.gcps)
        n = len(pts)
        geo = cls(path=facts.path, gcps=pts, fit_gcps=pts, gcp_order=1 if n < 6 else 2, notes=facts.notes,
                  **crs_fields(facts.gcp_crs))
        if n < 3:
            return geo.unusable(f"{n} ground control point(s); a polynomial needs at least 3")
        if not all(math.isfinite(v) for p in pts for v in p):
            return geo.unusable("non-finite ground control points")
        try:
            if facts.gcp_crs is not None and facts.gcp_crs.is_geographic:
                fit_wkt, fit_gcps = local_projection(facts.gcp_crs, pts)
                geo = replace(geo, fit_wkt=fit_wkt, fit_gcps=fit_gcps)
            residual = geo.residual_m()
        except Exception as e:  # noqa: BLE001 - PROJ or GDAL cannot use the GCPs (collinear, off the Earth)
            return geo.unusable(f"GCP polynomial not solvable: {one_line(e)}")
        return replace(geo, gcp_residual_m=None if residual is None else round(residual, 3))

    def details(self) -> dict[str, Any]:
        return {"gcps": len(self.gcps), "gcp_order": self.gcp_order, "gcp_residual_m": self.gcp_residual_m}

    def _map(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        X, Y = self._fit(xs, ys)
        if not self.fit_wkt:
            return X, Y
        from rasterio.crs import CRS
        from rasterio.warp import transform

        with gdal.environment():  # local transverse Mercator -> the GCPs' own CRS
            try:
                X, Y = transform(CRS.from_wkt(self.fit_wkt), self._crs, X.ravel().tolist(), Y.ravel().tolist())
            except Exception as e:  # noqa: BLE001 - PROJ: outside the projection's domain
                raise GeoError(f"pixels do not map to the GCPs' CRS ({one_line(e)})") from e
        return np.asarray(X, np.float64).reshape(xs.shape), np.asarray(Y, np.float64).reshape(xs.shape)

    def _fit(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels -> the CRS of ``fit_gcps`` through GDAL's GCP polynomial."""
        from rasterio.control import GroundControlPoint
        from rasterio.transform import GCPTransformer

        pts = [GroundControlPoint(row=r, col=c, x=x, y=y) for c, r, x, y in self.fit_gcps]
        with gdal.environment(), GCPTransformer(pts) as t:
            X, Y = t.xy(ys.ravel(), xs.ravel(), offset="ul")
        return np.asarray(X, np.float64).reshape(xs.shape), np.asarray(Y, np.float64).reshape(xs.shape)

    def residual_m(self) -> float | None:
        """The largest distance in metres between a GCP and the fitted polynomial at its pixel; None when
        the fit's CRS has no linear unit."""
        from rasterio.crs import CRS

        c, r, X, Y = (np.array(v, np.float64) for v in zip(*self.fit_gcps))
        Xf, Yf = self._fit(c, r)
        wkt = self.fit_wkt or self.crs_wkt
        crs = CRS.from_wkt(wkt) if wkt else None
        if crs is None or not crs.is_projected:
            return None
        return float(np.hypot(Xf - X, Yf - Y).max() * float(crs.linear_units_factor[1]))


def local_projection(crs, pts: Points) -> tuple[str, Points]:
    """A transverse Mercator centred on GCPs given in longitude/latitude (``crs`` geographic), and the
    GCPs in it: ``(WKT, ((col, row, x, y), ...))``. The centre's longitude is a circular mean, so a
    scene across the antimeridian is centred on it."""
    from rasterio.crs import CRS
    from rasterio.warp import transform

    lon, lat = transform(crs, "EPSG:4326", [p[2] for p in pts], [p[3] for p in pts])
    rad = np.radians(lon)
    lon0 = float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))
    tm = CRS.from_proj4(f"+proj=tmerc +lat_0={float(np.mean(lat)):.9f} +lon_0={lon0:.9f} +k=1 +x_0=0 +y_0=0 "
                        "+ellps=WGS84 +units=m +no_defs")
    x, y = transform("EPSG:4326", tm, lon, lat)
    return tm.to_wkt(), tuple((p[0], p[1], float(a), float(b)) for p, a, b in zip(pts, x, y))

"""Georeferencing kinds, one class each, chosen by one function (rasterio's ``get_transformer``).

``KINDS`` is the table: a kind's name -> its class (a ``GeoReference`` subclass, ``base.py``), in the
order they are tried, which is GDAL's precedence: a geotransform GDAL reports wins over GCPs, GCPs over
RPCs and geolocation arrays (which are reported, not used). ``georeference`` builds the first kind the
raster has from what GDAL reported (``RasterFacts``) and checks its image corners. A new kind is one
module with a subclass (``from_facts``, ``_map``; ``details`` for what the GeoJSON's ``rasters`` member
says of it) and one row here; the classes never import this table.
"""

from __future__ import annotations

from .affine import AffineReference
from .base import GeoError, GeoReference, RasterFacts
from .gcps import GcpReference
from .reported import GeolocationReference, RpcReference

KINDS: dict[str, type[GeoReference]] = {
    "affine": AffineReference,
    "gcps": GcpReference,
    "rpcs": RpcReference,
    "geolocation": GeolocationReference,
}

__all__ = ["KINDS", "GeoError", "GeoReference", "RasterFacts", "georeference"]


def georeference(facts: RasterFacts) -> GeoReference | None:
    """The georeferencing GDAL reported for a raster: the first kind of ``KINDS`` it has, with ``problem``
    set when it cannot be used (its own checks, then its image corners); None when it has none."""
    for cls in KINDS.values():
        geo = cls.from_facts(facts)
        if geo is not None:
            return geo if geo.problem else geo.checked(facts.width, facts.height)
    return None

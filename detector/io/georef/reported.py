"""Kinds GDAL reads that the detector does not use, reported instead of guessed: rational polynomial
coefficients (they need a terrain model) and geolocation arrays (Sentinel-3, swath products). A file
georeferenced only by one of them comes back unusable, saying which."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import GeoReference, RasterFacts


@dataclass(frozen=True)
class NotUsed(GeoReference):
    """A kind that is recognised and reported, never mapped (``_map`` raises): present when the
    ``RasterFacts`` field ``found_in`` is set."""

    found_in: ClassVar[str] = ""
    why: ClassVar[str] = ""

    @classmethod
    def from_facts(cls, facts: RasterFacts) -> "NotUsed | None":
        if getattr(facts, cls.found_in) is None:
            return None
        return cls(path=facts.path, notes=facts.notes, problem=f"only {cls.kind} ({cls.why})")


@dataclass(frozen=True)
class RpcReference(NotUsed):
    kind: ClassVar[str] = "rpcs"
    found_in: ClassVar[str] = "rpcs"
    why: ClassVar[str] = "rational polynomial coefficients need a terrain model"


@dataclass(frozen=True)
class GeolocationReference(NotUsed):
    kind: ClassVar[str] = "geolocation"
    found_in: ClassVar[str] = "geolocation"
    why: ClassVar[str] = "geolocation arrays are not read"

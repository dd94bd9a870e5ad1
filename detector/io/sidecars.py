"""Sidecar files: what GIS software writes next to an image, named after it.

``scene.tif`` may come with ``scene.tif.aux.xml`` (GDAL's PAM: CRS, statistics), a world file
(``scene.tfw``, ``scene.tifw`` or ``scene.wld``: the pixel size and position, GDAL's naming),
``scene.prj`` (ESRI's CRS), overviews (``scene.tif.ovr``), a mask (``scene.tif.msk``), ESRI metadata
(``scene.tif.xml``), RPCs (``scene.rpb``, ``scene_rpc.txt``), DigitalGlobe metadata (``scene.imd``),
a MapInfo ``scene.tab``. They belong to the image: ``expand_source`` lists them as sidecars, not as
skipped inputs, and ``load_image`` asks GDAL for the georeferencing of a PNG or JPEG only when one of
the georeferencing sidecars is there (so plain images never load GDAL).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

# after the image's full name: scene.tif.aux.xml, scene.tif.ovr ...
NAME_SUFFIXES = ("aux.xml", "ovr", "msk", "xml", "aux", "ovr.aux.xml", "msk.aux.xml")
# after the image's stem: scene.tfw, scene.prj ...
STEM_SUFFIXES = frozenset({"wld", "prj", "aux", "rpb", "imd", "tab"})


def world_file_suffixes(image_suffix: str) -> set[str]:
    """GDAL's world-file names for an image suffix: first and last letter + ``w`` (``tif`` -> ``tfw``),
    the suffix + ``w`` (``tifw``) and ``wld``."""
    s = image_suffix.lower().lstrip(".")
    return {f"{s[0]}{s[-1]}w", f"{s}w", "wld"} if s else {"wld"}


def georeferencing_sidecars(image: str | Path) -> list[Path]:
    """The sidecar files next to ``image`` that can georeference it (world files, ``.aux.xml``), found by
    name in either case, as GDAL looks for them."""
    image = Path(image)
    bases = [(image.name, "aux.xml")] + [(image.stem, s) for s in sorted(world_file_suffixes(image.suffix))]
    found = []
    for base, suffix in bases:
        for cand in (f"{base}.{suffix}", f"{base}.{suffix.upper()}"):
            p = image.with_name(cand)
            if p.is_file():
                found.append(p)
                break
    return found


def find_sidecars(files: Iterable[Path], is_image: Callable[[Path], bool]) -> set[Path]:
    """Those of ``files`` that are sidecars of an image among ``files`` (same folder, named after it)."""
    files = list(files)
    names: set[tuple[Path, str]] = set()  # (folder, image name), lower case
    stems: dict[tuple[Path, str], set[str]] = {}  # (folder, image stem) -> the suffixes its sidecars may have
    for f in files:
        if is_image(f):
            names.add((f.parent, f.name.lower()))
            stems.setdefault((f.parent, f.stem.lower()), set(STEM_SUFFIXES)).update(world_file_suffixes(f.suffix))
    out = set()
    for f in files:
        low = f.name.lower()
        if is_image(f):
            continue
        stem, _, suffix = low.rpartition(".")
        if (any(low.endswith("." + s) and (f.parent, low[: -len(s) - 1]) in names for s in NAME_SUFFIXES)
                or suffix in stems.get((f.parent, stem), ())
                or (low.endswith("_rpc.txt") and (f.parent, low[:-8]) in stems)):
            out.add(f)
    return out

"""What a survey writes into its output folder:

* ``scenes/NAME.parquet``: one GeoParquet 1.1 file per georeferenced scene, one row per detection:
  ``scene``, ``class``, ``class_id``, ``score``, the pixel box ``x1 y1 x2 y2``, ``bbox`` (the
  polygon's bounds, GeoParquet 1.1's bbox covering) and ``geometry``: the box as a WKB polygon in
  longitude/latitude (OGC:CRS84), the polygon of the GeoJSON output (``detector.io.geojson``:
  counter-clockwise, cut at the antimeridian into a MultiPolygon). A scene without detections is a
  file without rows.
* ``pixels/NAME.pixels.parquet``: a scene without usable georeferencing, in pixel coordinates only
  (plain Parquet, no geometry and no 'geo' metadata, so that no GIS places it on a map), with the
  reason in its metadata.
* ``manifest.csv``: one row per scene (``Manifest``).
* ``detections.parquet`` (``merge``): every scene file's rows in one GeoParquet file.

Every file carries the survey's record in its Parquet metadata (key ``snnvit_survey``: the scene, its
file's size and modification time, the model's name and sha256, the detection settings and their
hash), is written whole through a temporary file and a rename (``detector.files``), and replaces only
a file that carries that record (a file the survey wrote).
"""

from __future__ import annotations

import csv
import io
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write_bytes, atomic_write_text, temp_path, writing
from ..io.geojson import GeoJsonCollection
from .catalog import SceneRef

GEOPARQUET_VERSION = "1.1.0"
KEY = b"snnvit_survey"
MAP_DIR, PIXEL_DIR = "scenes", "pixels"
MERGED = "detections.parquet"


@lru_cache(maxsize=1)
def lonlat_projjson() -> dict:
    """OGC:CRS84 (WGS 84, longitude first) as PROJJSON, from PROJ (rasterio's)."""
    from rasterio.crs import CRS

    return CRS.from_user_input("OGC:CRS84").to_dict(projjson=True)


def map_reason(geo) -> str | None:
    """Why a scene cannot be placed on the map (None when it can)."""
    if geo is None:
        return "no georeferencing"
    if geo.problem:
        return f"georeferencing unusable: {geo.problem}"
    if not geo.crs_wkt:
        return "no CRS: map coordinates cannot be placed on the Earth"
    if not geo.on_earth:
        return "the CRS is a local one, not tied to the Earth"
    return None


def _columns(scene: SceneRef, det: np.ndarray, names: dict[int, str]) -> dict[str, Any]:
    import pyarrow as pa

    cls = det[:, 5].astype(np.int32)
    return {"scene": pa.array([scene.id] * len(det), pa.string()),
            "class": pa.array([names.get(int(c), str(int(c))) for c in cls], pa.string()),
            "class_id": pa.array(cls, pa.int32()), "score": pa.array(det[:, 4].astype(np.float32), pa.float32()),
            **{k: pa.array(det[:, i], pa.float64()) for i, k in enumerate(("x1", "y1", "x2", "y2"))}}


def geo_metadata(types: list[str], bbox: list[float] | None) -> dict:
    col: dict[str, Any] = {"encoding": "WKB", "geometry_types": types, "crs": lonlat_projjson(),
                           "orientation": "counterclockwise", "edges": "planar",
                           "covering": {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}}
    if bbox is not None:
        col["bbox"] = bbox
    return {"version": GEOPARQUET_VERSION, "primary_column": "geometry", "columns": {"geometry": col}}


def scene_table(scene: SceneRef, det: np.ndarray, geo, names: dict[int, str], record: dict):
    """(``map`` or ``pixel``, the table with its metadata) for one scene's detections (N, 6)."""
    import pyarrow as pa
    import shapely

    det = np.asarray(det, np.float64).reshape(-1, 6)
    cols = _columns(scene, det, names)
    reason = map_reason(geo)
    if reason is None:
        feats = GeoJsonCollection(names, "wgs84").features(geo, det, scene.id)
        bad = [f["properties"].get("problem") for f in feats if f["properties"]["coordinates"] != "lonlat"]
        reason = f"coordinates: {bad[0]}" if bad else None
    if reason is not None:
        meta = {KEY: json.dumps(record | {"coordinates": "pixel", "reason": reason}).encode()}
        return "pixel", pa.table(cols).replace_schema_metadata(meta)
    geoms = shapely.from_geojson([json.dumps(f["geometry"]) for f in feats]) if feats else np.array([], object)
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    cols["bbox"] = pa.StructArray.from_arrays([pa.array(bounds[:, i], pa.float64()) for i in range(4)],
                                              names=["xmin", "ymin", "xmax", "ymax"])
    cols["geometry"] = pa.array(shapely.to_wkb(geoms) if len(geoms) else [], pa.binary())
    types = sorted(set(shapely.get_type_id(geoms).tolist())) if len(geoms) else []
    type_names = [{3: "Polygon", 6: "MultiPolygon"}[t] for t in types]
    bbox = [float(v) for v in (*bounds[:, :2].min(0), *bounds[:, 2:].max(0))] if len(geoms) else None
    info = geo.info()
    meta = {b"geo": json.dumps(geo_metadata(type_names, bbox)).encode(),
            KEY: json.dumps(record | {"coordinates": "lonlat", "georeferencing": info}).encode()}
    return "map", pa.table(cols).replace_schema_metadata(meta)


def ours(path: Path) -> bool:
    """Whether ``path`` is a Parquet file the survey wrote (its metadata holds the survey's record)."""
    import pyarrow.parquet as pq

    try:
        return KEY in (pq.read_schema(path).metadata or {})
    except Exception:  # noqa: BLE001 - not Parquet at all: not ours
        return False


def write_table(path: Path, table) -> Path:
    """Write ``table`` to ``path`` whole (temporary file, rename), refusing to replace a file the survey
    did not write."""
    import pyarrow.parquet as pq

    if path.exists() and not ours(path):
        raise FileExistsError(f"{path} exists and was not written by a survey; not replaced")
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, buf.getvalue())


def output_path(out: Path, scene: SceneRef, kind: str) -> Path:
    return out / MAP_DIR / f"{scene.name}.parquet" if kind == "map" else out / PIXEL_DIR / f"{scene.name}.pixels.parquet"


def merge_scenes(out: Path, files: list[Path]) -> Path | None:
    """``detections.parquet``: the rows of the scene files ``files``, streamed into one GeoParquet file
    (bbox and geometry types the union of theirs); None without files."""
    import pyarrow.parquet as pq

    if not files:
        return None
    dest = out / MERGED
    if dest.exists() and not ours(dest):
        raise FileExistsError(f"{dest} exists and was not written by a survey; not replaced")
    types: set[str] = set()
    boxes = []
    for f in files:
        col = json.loads(pq.read_schema(f).metadata[b"geo"])["columns"]["geometry"]
        types.update(col["geometry_types"])
        if "bbox" in col:
            boxes.append(col["bbox"])
    b = np.array(boxes).reshape(-1, 4)
    bbox = [float(v) for v in (*b[:, :2].min(0), *b[:, 2:].max(0))] if len(b) else None
    first = pq.read_schema(files[0])
    meta = {b"geo": json.dumps(geo_metadata(sorted(types), bbox)).encode(),
            KEY: json.dumps({"merged": [f.name for f in files]}).encode()}
    schema = first.with_metadata(meta)
    tmp = temp_path(dest)
    try:
        with writing(dest), pq.ParquetWriter(tmp, schema, compression="zstd") as w:
            for f in files:
                w.write_table(pq.read_table(f).replace_schema_metadata(meta))
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


class Manifest:
    """``manifest.csv``: one row per scene the output folder has seen, by scene id: its file (path, size,
    modification time), the model's sha256 and the settings' hash it ran with, ``status`` (``done``,
    ``skipped`` = done by an earlier run and unchanged, ``failed``, ``pending`` = not run yet or
    interrupted), detections, tiles, seconds, the output file, and the one-line error. Written whole
    (temporary file, rename) after scenes finish and when the run ends, Ctrl-C included, so it is
    always true of the files beside it."""

    COLUMNS = ("scene", "path", "size", "mtime_ns", "model_sha256", "settings_sha256", "status", "detections",
               "tiles", "seconds", "output", "error")

    def __init__(self, path: Path):
        self.path = path
        self.rows: dict[str, dict[str, str]] = {}
        if path.exists():
            with open(path, newline="", encoding="utf-8") as f:
                r = csv.DictReader(f)
                if tuple(r.fieldnames or ()) != self.COLUMNS:
                    raise ValueError(f"{path} is not a survey manifest (columns {r.fieldnames}); not replaced")
                self.rows = {row["scene"]: row for row in r}

    def current(self, scene: SceneRef, model_sha: str, settings_sha: str, out: Path) -> dict[str, str] | None:
        """The row of a scene done with this model and settings whose file is unchanged and whose output is
        still there; else None (the scene is to be run)."""
        row = self.rows.get(scene.id)
        if row is None or row["status"] not in ("done", "skipped"):
            return None
        same = (row["path"], row["size"], row["mtime_ns"], row["model_sha256"], row["settings_sha256"]) == \
            (scene.path, str(scene.size), str(scene.mtime_ns), model_sha, settings_sha)
        return row if same and row["output"] and (out / row["output"]).is_file() else None

    def set(self, scene: SceneRef, **fields: Any) -> None:
        row = self.rows.get(scene.id, {})
        row.update(scene=scene.id, path=scene.path, size=scene.size, mtime_ns=scene.mtime_ns)
        row.update(fields)
        self.rows[scene.id] = {k: "" if row.get(k) is None else str(row.get(k)) for k in self.COLUMNS}

    def save(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows.values())
        atomic_write_text(self.path, buf.getvalue())

#!/usr/bin/env python
"""Detect objects in images or videos and write rendered results.

    python tools/detect.py --source images/
    python tools/detect.py --source "data/*.tif" --weights runs/train/exp/weights/best.pt --out out/ --save-json
    python tools/detect.py --source scene.tif --tile auto --save-geojson     # a large GeoTIFF scene, lon/lat polygons
    python tools/detect.py --source images/ --weights ssdd --runtime compiled  # a shipped model by name, compiled
    python tools/detect.py --source images/ --runtime eager                  # the reference (auto: int8 on a CPU)
    python tools/detect.py --weights list                                    # the shipped models

Outputs go to a fresh runs/detect/expN unless --out names a folder; the tool never writes into a source
folder and never replaces a file it did not write (see README, "Security and data safety").
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401  (offline settings first)
from detector.infer import detect
from detector.infer.options import DetectOptions


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", help="folder, image, glob pattern or video")
    ap.add_argument("--out", default=None, help="output folder (default: a fresh runs/detect/expN)")
    _bootstrap.add_options(ap, DetectOptions)  # --weights, --imgsz, --device, --runtime, --conf, --iou, --tile...
    ap.add_argument("--save-txt", action="store_true", help="write YOLO txt files (class cx cy w h score)")
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results format)")
    ap.add_argument("--save-geojson", action="store_true",
                    help="write detections.geojson: polygons on the map for georeferenced inputs, else in pixels")
    ap.add_argument("--no-render", action="store_true", help="do not write rendered images / videos")
    a = ap.parse_args(argv)
    if getattr(a, "weights", None) == "list":
        return _bootstrap.list_weights()
    if not a.source:
        ap.error("--source is required")
    outputs = tuple(n for n, on in (("image", not a.no_render), ("txt", a.save_txt), ("json", a.save_json),
                                    ("geojson", a.save_geojson)) if on)
    if not outputs:
        ap.error("nothing to write: --no-render without --save-txt, --save-json or --save-geojson")
    s = detect(a.source, out=a.out, options=_bootstrap.options(DetectOptions, a, outputs=outputs))
    return 0 if s.images or s.frames else 1


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

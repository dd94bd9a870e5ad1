#!/usr/bin/env python
"""Detect objects in images or videos and write rendered results.

    python tools/detect.py --source images/
    python tools/detect.py --source "data/*.tif" --weights runs/train/exp/weights/best.pt --out out/ --save-json
    python tools/detect.py --source scene.tif --tile auto --save-geojson     # a large GeoTIFF scene, map polygons

Outputs go to a fresh runs/detect/expN unless --out names a folder; the tool never writes into a source
folder and never replaces a file it did not write (see README, "Security and data safety").
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401  (offline settings first)
from detector.engine.predictor import detect


def tile_arg(v: str):
    if v in {"auto", "none"}:
        return v if v == "auto" else None
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile takes a size in pixels, 'auto' or 'none', got {v!r}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="folder, image, glob pattern or video")
    ap.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights in weights/)")
    ap.add_argument("--out", default=None, help="output folder (default: a fresh runs/detect/expN)")
    ap.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    ap.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    ap.add_argument("--imgsz", type=int, default=None,
                    help="inference size, a multiple of 32 (default: the size the weights were trained at, else 640)")
    ap.add_argument("--max-det", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save-txt", action="store_true", help="write YOLO txt files (class cx cy w h score)")
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results format)")
    ap.add_argument("--save-geojson", action="store_true",
                    help="write detections.geojson: polygons in map coordinates for georeferenced inputs, else pixels")
    ap.add_argument("--no-render", action="store_true", help="do not write rendered images / videos")
    ap.add_argument("--tile", type=tile_arg, default=None, metavar="SIZE|auto",
                    help="sliced inference: tiles of SIZE px, or 'auto' (tiles of the training images' size, for "
                         "scenes more than twice that size)")
    ap.add_argument("--overlap", type=float, default=0.2, help="overlap between tiles, a fraction (default 0.2)")
    ap.add_argument("--vid-stride", type=int, default=1, help="process every n-th video frame")
    a = ap.parse_args(argv)
    outputs = [n for n, on in (("image", not a.no_render), ("txt", a.save_txt), ("json", a.save_json),
                               ("geojson", a.save_geojson)) if on]
    if not outputs:
        ap.error("nothing to write: --no-render without --save-txt, --save-json or --save-geojson")
    s = detect(a.source, a.weights, a.out, a.conf, a.iou, a.imgsz, outputs, a.device, a.max_det, a.vid_stride, a.tile,
               a.overlap)
    return 0 if s.images or s.frames else 1


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

#!/usr/bin/env python
"""Detect objects in images or videos and write rendered results.

    python tools/detect.py --source images/
    python tools/detect.py --source "data/*.tif" --weights runs/train/exp/weights/best.pt --out out/ --save-json
    python tools/detect.py --source scene.tif --tile auto --save-geojson     # a large GeoTIFF scene, lon/lat polygons
    python tools/detect.py --source images/ --weights ssdd --runtime compiled  # a shipped model by name, compiled
    python tools/detect.py --weights list                                    # the shipped models

Outputs go to a fresh runs/detect/expN unless --out names a folder; the tool never writes into a source
folder and never replaces a file it did not write (see README, "Security and data safety").
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401  (offline settings first)
from detector.infer import DETECT, OVERLAP, RUNTIMES, detect


def tile_arg(v: str):
    if v in {"auto", "none"}:
        return v if v == "auto" else None
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--tile takes a size in pixels, 'auto' or 'none', got {v!r}") from None


def add_model_options(ap: argparse.ArgumentParser, tile_default=None) -> None:
    """The options of the model and of sliced inference, shared by detect and survey."""
    ap.add_argument("--weights", default=None, help=_bootstrap.WEIGHTS_HELP + "; or an .onnx export")
    ap.add_argument("--runtime", default="auto", choices=["auto", *RUNTIMES],
                    help="what runs the model: auto (eager for .pt, onnx for .onnx), eager, compiled (torch.compile: "
                         "slow first call per input shape, time printed, cached on disk), cudagraph (CUDA), onnx")
    ap.add_argument("--conf", type=float, default=DETECT.conf, help="confidence threshold")
    ap.add_argument("--iou", type=float, default=DETECT.iou, help="NMS IoU threshold")
    ap.add_argument("--imgsz", type=int, default=None,
                    help="inference size, a multiple of 32 (default: the size the weights were trained at, else 640)")
    ap.add_argument("--max-det", type=int, default=DETECT.max_det, help="most detections per image (per tile with --tile)")
    ap.add_argument("--device", default="cpu", help="cpu, mps, cuda, cuda:N or N")
    ap.add_argument("--tile", type=tile_arg, default=tile_default, metavar="SIZE|auto",
                    help="sliced inference: tiles of SIZE px, or 'auto' (tiles of the training images' size, for "
                         f"scenes more than twice that size); default {tile_default or 'none'}")
    ap.add_argument("--overlap", type=float, default=OVERLAP, help=f"overlap between tiles, a fraction (default {OVERLAP})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", help="folder, image, glob pattern or video")
    ap.add_argument("--out", default=None, help="output folder (default: a fresh runs/detect/expN)")
    add_model_options(ap)
    ap.add_argument("--save-txt", action="store_true", help="write YOLO txt files (class cx cy w h score)")
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results format)")
    ap.add_argument("--save-geojson", action="store_true",
                    help="write detections.geojson: polygons on the map for georeferenced inputs, else in pixels")
    ap.add_argument("--geojson-crs", choices=("wgs84", "native"), default="wgs84",
                    help="GeoJSON coordinates: wgs84 = RFC 7946 longitude/latitude (web maps, QGIS; default), "
                         "native = the raster's own CRS, named in a 'crs' member")
    ap.add_argument("--no-render", action="store_true", help="do not write rendered images / videos")
    ap.add_argument("--vid-stride", type=int, default=1, help="process every n-th video frame")
    a = ap.parse_args(argv)
    if a.weights == "list":
        return _bootstrap.list_weights()
    if not a.source:
        ap.error("--source is required")
    outputs = [n for n, on in (("image", not a.no_render), ("txt", a.save_txt), ("json", a.save_json),
                               ("geojson", a.save_geojson)) if on]
    if not outputs:
        ap.error("nothing to write: --no-render without --save-txt, --save-json or --save-geojson")
    s = detect(a.source, a.weights, a.out, a.conf, a.iou, a.imgsz, outputs, a.device, a.max_det, a.vid_stride, a.tile,
               a.overlap, geojson_crs=a.geojson_crs, runtime=a.runtime)
    return 0 if s.images or s.frames else 1


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

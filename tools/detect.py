#!/usr/bin/env python
"""Detect objects in images or videos and write rendered results.

    python tools/detect.py --source images/
    python tools/detect.py --source "data/*.tif" --weights runs/train/exp/weights/best.pt --out out/ --save-json
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401  (offline settings first)
from detector.engine.predictor import detect


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="folder, image, glob pattern or video")
    ap.add_argument("--weights", default=None, help="checkpoint (default: the shipped weights in weights/)")
    ap.add_argument("--out", default="runs/detect/exp", help="output folder")
    ap.add_argument("--conf", type=float, default=0.25, help="confidence threshold")
    ap.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold")
    ap.add_argument("--imgsz", type=int, default=None,
                    help="inference size, a multiple of 32 (default: the size the weights were trained at, else 640)")
    ap.add_argument("--max-det", type=int, default=300)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--save-txt", action="store_true", help="write YOLO txt files (class cx cy w h score)")
    ap.add_argument("--save-json", action="store_true", help="write predictions.json (COCO results format)")
    ap.add_argument("--vid-stride", type=int, default=1, help="process every n-th video frame")
    a = ap.parse_args(argv)
    s = detect(a.source, a.weights, a.out, a.conf, a.iou, a.imgsz, a.save_txt, a.save_json, a.device, a.max_det,
               a.vid_stride)
    return 0 if s.images or s.per_image else 1


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

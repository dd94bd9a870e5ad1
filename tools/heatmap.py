#!/usr/bin/env python
"""SSSA attention heatmaps beside detections: one panel PNG per image (rows: every SSSA block's
salience and spike mask; columns: detections | t=0..T-1 | mean over T).

    python tools/heatmap.py --source images/
    python tools/heatmap.py --source scene.tif --weights runs/train/exp/weights/best.pt --blocks p5 --timesteps 0 3
    python tools/heatmap.py --source images/ --model n --out runs/heatmap/untrained   # untrained, labelled so
"""

import argparse
import sys

import _bootstrap  # noqa: F401

import detector  # noqa: F401  (offline settings first)
from detector.analysis.heatmap import INTERPOLATIONS, heatmaps
from detector.infer import DETECT, OVERLAP


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", help="folder, image or glob pattern")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--weights", default=None, help=_bootstrap.WEIGHTS_HELP)
    g.add_argument("--model", choices=["n", "s", "m"], default=None,
                   help="an UNTRAINED variant instead of weights (seeded; batch-norm statistics calibrated on "
                        "the first --calib source images); panels are labelled untrained")
    ap.add_argument("--seed", type=int, default=0, help="initialisation seed for --model")
    ap.add_argument("--calib", type=int, default=8, help="images used to calibrate batch norm for --model")
    ap.add_argument("--out", default=None, help="output folder (default: a fresh runs/heatmap/expN)")
    ap.add_argument("--blocks", nargs="+", default=None,
                    help="SSSA blocks to show, by index or name substring (e.g. 0 2, or p5); default all")
    ap.add_argument("--timesteps", nargs="+", type=int, default=None, help="timesteps to show; default all")
    ap.add_argument("--imgsz", type=int, default=None,
                    help="inference size, a multiple of 32 (default: the size the weights were trained at, else 640)")
    ap.add_argument("--conf", type=float, default=DETECT.conf, help="confidence threshold")
    ap.add_argument("--iou", type=float, default=DETECT.iou, help="NMS IoU threshold")
    ap.add_argument("--max-det", type=int, default=DETECT.max_det)
    ap.add_argument("--device", default="cpu", help="cpu, mps, cuda, cuda:N or N")
    ap.add_argument("--max-images", type=int, default=None, help="process only the first N images")
    ap.add_argument("--interp", choices=INTERPOLATIONS, default="bilinear",
                    help="salience upsampling (nearest shows the token grid)")
    ap.add_argument("--dpi", type=int, default=100)
    ap.add_argument("--save-npz", action="store_true", help="also write the raw maps as .npz")
    ap.add_argument("--tile", type=int, default=None, metavar="SIZE",
                    help="cut each image into the tiles of sliced detection (SIZE px) and show each tile")
    ap.add_argument("--overlap", type=float, default=OVERLAP, help=f"overlap between tiles (default {OVERLAP})")
    a = ap.parse_args(argv)
    if a.weights == "list":
        return _bootstrap.list_weights()
    if not a.source:
        ap.error("--source is required")
    try:
        s = heatmaps(a.source, a.weights, a.out, a.blocks, a.timesteps, a.imgsz, a.conf, a.iou, a.max_det,
                     variant=a.model, seed=a.seed, calib=a.calib, save_raw=a.save_npz, max_images=a.max_images,
                     interp=a.interp, dpi=a.dpi, tile=a.tile, overlap=a.overlap, device=a.device)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if s.panels else 1


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

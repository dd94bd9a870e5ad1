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
from detector.analysis.heatmap import HeatmapOptions, heatmaps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", help="folder, image or glob pattern")
    ap.add_argument("--out", default=None, help="output folder (default: a fresh runs/heatmap/expN)")
    which = ap.add_mutually_exclusive_group()  # --weights or an untrained --model
    _bootstrap.add_options(ap, HeatmapOptions, skip=("weights", "variant"))
    _bootstrap.add_options(ap, HeatmapOptions, only=("weights", "variant"), group=which)
    a = ap.parse_args(argv)
    if getattr(a, "weights", None) == "list":
        return _bootstrap.list_weights()
    if not a.source:
        ap.error("--source is required")
    try:
        s = heatmaps(a.source, out=a.out, options=_bootstrap.options(HeatmapOptions, a))
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if s.panels else 1


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

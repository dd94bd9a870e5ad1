#!/usr/bin/env python
"""Evaluate weights on a dataset split: precision, recall, mAP@0.5 and mAP@0.5:0.95, overall and per
class, by Ultralytics' metrics and independently by pycocotools.

    python tools/val.py --data data/ssdd/data.yaml --weights ssdd --split test --json val.json
    python tools/val.py --data data/ssdd/data.yaml --weights runs/train/exp/weights/best.pt --runtime compiled
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401
from detector.engine.validator import evaluate
from detector.infer.options import ValOptions


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="dataset YAML")
    _bootstrap.add_options(ap, ValOptions)  # --weights, --imgsz, --device, --runtime, --split, --batch, --conf...
    ap.add_argument("--map", nargs="+", default=None, metavar="MODEL=DATASET",
                    help="score model class MODEL as dataset class DATASET (names must otherwise match)")
    a = ap.parse_args(argv)
    if getattr(a, "weights", None) == "list":
        return _bootstrap.list_weights()
    if not a.data:
        ap.error("--data is required")
    class_map = None
    if a.map:
        pairs = [m.partition("=") for m in a.map]
        if any(not k or not sep or not v for k, sep, v in pairs):
            ap.error("--map expects MODEL_NAME=DATASET_NAME pairs")
        class_map = {k: v for k, _, v in pairs}
    evaluate(a.data, options=_bootstrap.options(ValOptions, a, class_map=class_map))
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

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
from detector.infer import VAL


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="dataset YAML")
    ap.add_argument("--weights", default=None, help=_bootstrap.WEIGHTS_HELP)
    ap.add_argument("--runtime", default="auto", choices=["auto", "eager", "compiled", "int8"],
                    help="auto = eager (PyTorch, batch norm folded); compiled = torch.compile (first calls compile, "
                         "time printed, cached on disk); int8 = integer convolutions through OpenVINO (CPU)")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--json", default=None, help="write the metrics to this JSON file")
    ap.add_argument("--imgsz", type=int, default=None, help="default: the size the weights were trained at, else 640")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--conf", type=float, default=VAL.conf)
    ap.add_argument("--iou", type=float, default=VAL.iou)
    ap.add_argument("--device", default="cpu", help="cpu, mps, cuda, cuda:N or N")
    ap.add_argument("--project", default="runs/val")
    ap.add_argument("--name", default="exp")
    ap.add_argument("--map", nargs="+", default=None, metavar="MODEL=DATASET",
                    help="score model class MODEL as dataset class DATASET (names must otherwise match)")
    a = ap.parse_args(argv)
    if a.weights == "list":
        return _bootstrap.list_weights()
    if not a.data:
        ap.error("--data is required")
    class_map = None
    if a.map:
        pairs = [m.partition("=") for m in a.map]
        if any(not k or not sep or not v for k, sep, v in pairs):
            ap.error("--map expects MODEL_NAME=DATASET_NAME pairs")
        class_map = {k: v for k, _, v in pairs}
    evaluate(a.data, a.weights, a.split, a.imgsz, a.batch, a.conf, a.iou, a.device, a.json, a.project, a.name,
             class_map=class_map, runtime=a.runtime)
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

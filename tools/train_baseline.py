#!/usr/bin/env python
"""Train the same-budget baseline, YOLOv8n from scratch (Ultralytics' trainer, no download), and
evaluate it on a split.

    python tools/train_baseline.py --data data/ssdd/data.yaml --epochs 26 --imgsz 320 --batch 16 --close-mosaic 4
    python tools/train_baseline.py --resume runs/baseline/yolov8n/weights/last.pt --epochs 26 --close-mosaic 4
    python tools/train_baseline.py --eval runs/baseline/yolov8n/weights/best.pt --data data/ssdd/data.yaml --imgsz 320
    python tools/train_baseline.py --eval runs/baseline/yolov8n/weights/best.pt --data data/ssdd/data.yaml --imgsz 320 --int8

--int8 evaluates the weights quantised as an edge user would (static int8 through ONNX Runtime, run by
OpenVINO on the CPU; detector/infer/ann_int8.py), calibrated on --calib-images images of the train split.

Checkpoints are plain tensors and values (detector/weights.py, ANN format), never pickles: --resume and
--eval refuse any file with pickled code. A finished run's best.pt is the distillation teacher for
tools/train.py --teacher.
"""

import argparse
import json

import _bootstrap  # noqa: F401

import detector  # noqa: F401
from detector.engine.baseline import evaluate_baseline, train_baseline
from detector.infer.ann_int8 import CALIBRATION_IMAGES, check_calibration_images
from detector.engine.train_options import NEW_RUN, TrainOptions


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="dataset YAML (written by tools/convert.py)")
    ap.add_argument("--model", default="yolov8n.yaml", help="Ultralytics' bundled yolov8{n,s,m,l,x}.yaml (random weights)")
    # the flags it shares with tools/train.py, and their defaults, from the training options record
    _bootstrap.add_options(ap, TrainOptions, only=("epochs", "imgsz", "batch", "device"))
    ap.add_argument("--no-amp", action="store_true", help="train in fp32 (default: mixed precision: fp16 on CUDA, bf16 on a CPU "
                    "with native bf16)")
    ap.add_argument("--resume", default=None, help="a last.pt of an earlier baseline run")
    ap.add_argument("--close-mosaic", type=int, default=None, help="last epochs without mosaic (default 10)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--project", default="runs/baseline")
    ap.add_argument("--name", default="yolov8n")
    ap.add_argument("--eval", default=None, metavar="WEIGHTS", help="only evaluate these baseline weights")
    ap.add_argument("--split", default="test", choices=["train", "val", "test"], help="split evaluated after training")
    # not the models' --runtime (its table of runtimes is the spiking model's): the baseline runs float32 or int8
    ap.add_argument("--int8", action="store_true", help="evaluate the weights quantised to int8 as an edge user would "
                    "(on the CPU; the int8 extra)")
    ap.add_argument("--calib-images", type=int, default=CALIBRATION_IMAGES,
                    help=f"--int8: train images its activations are calibrated on (default {CALIBRATION_IMAGES})")
    ap.add_argument("--json", default=None, help="write the evaluation to this JSON file")
    a = ap.parse_args(argv)
    if not a.resume and not a.data:
        ap.error("--data is required unless --resume is given")
    runtime = "int8" if a.int8 else "eager"
    if a.int8:
        check_calibration_images(a.calib_images)  # before training, not after it
    from pathlib import Path

    from detector import checks
    from detector.files import atomic_write_text

    checks.output_file(a.json, "--json")  # before training, not after it
    o = _bootstrap.options(TrainOptions, a, model=a.model)
    epochs, (imgsz, batch), device = o.epochs, (NEW_RUN[k] if getattr(o, k) is None else getattr(o, k)
                                                for k in ("imgsz", "batch")), o.device.ultralytics
    weights = a.eval
    if weights is None:
        extra = {} if a.close_mosaic is None else {"close_mosaic": a.close_mosaic}
        if not a.resume:
            extra.update(seed=a.seed, workers=a.workers, close_mosaic=10 if a.close_mosaic is None else a.close_mosaic)
        t = train_baseline(a.data, epochs, imgsz, batch, device, a.resume, a.project, a.name, model=a.model,
                           **({"amp": False} if a.no_amp else {}), **extra)  # amp on by default (Ultralytics')
        print(f"run folder: {t.save_dir}\nbest: {t.best}\nlast: {t.last}")
        weights, data, imgsz = t.best, a.data or t.args.data, int(t.args.imgsz)
    else:
        data = a.data
        if not data:
            ap.error("--eval needs --data")
    rep = evaluate_baseline(weights, data, a.split, imgsz, batch, device, a.project, f"{a.name}-{a.split}{'-int8' * a.int8}", runtime,
                            a.calib_images)
    print(f"{a.split} ({runtime}): mAP@0.5 {rep['map50']:.4f}  mAP@0.5:0.95 {rep['map50_95']:.4f}")
    tp = (rep.get("scores") or {}).get("tp_scores")
    if tp:
        print("true-positive scores: " + "  ".join(f"{k} {v:.3f}" for k, v in tp.items()))
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(a.json, json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

#!/usr/bin/env python
"""Make an inference-only weights file from a training checkpoint (EMA weights, fp16, no optimizer),
about a third of the size of ``best.pt``; prints its sha256 for the model card.

    python tools/export_weights.py runs/train/exp/weights/best.pt weights/snnvit-yolo-n-ssdd.pt
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401
from detector.weights import export_weights, sha256


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="a training checkpoint (best.pt / last.pt), spiking or YOLOv8 (train_baseline.py)")
    ap.add_argument("dst", help="the file to write")
    ap.add_argument("--fp32", action="store_true", help="keep float32 weights")
    ap.add_argument("--raw", action="store_true", help="the raw model weights instead of the EMA")
    ap.add_argument("--note", default=None, help="a free-text note stored in the file")
    ap.add_argument("--overwrite", action="store_true", help="replace DST if it exists (never SRC itself)")
    a = ap.parse_args(argv)
    extra = {"note": a.note} if a.note else {}
    path = export_weights(a.src, a.dst, half=not a.fp32, use_ema=not a.raw, overwrite=a.overwrite, **extra)
    print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB  sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

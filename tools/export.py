#!/usr/bin/env python
"""Export weights for deployment.

    python tools/export.py --format onnx --out snnvit-yolo-n-ssdd.onnx            # the default shipped model
    python tools/export.py --format onnx --weights best.pt --out best.onnx --imgsz 320
    python tools/detect.py --source images/ --weights snnvit-yolo-n-ssdd.onnx      # run it (ONNX Runtime)
    python tools/export.py --format pt --weights best.pt --out small.pt             # inference-only .pt

ONNX needs the optional extra: pip install -e ".[onnx]". The graph is traced on the CPU (it does not
depend on the device it later runs on), with batch norm folded into the convolutions.
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401
from detector.export import EXPORTS, export, export_formats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--format", choices=list(EXPORTS), help=export_formats())
    ap.add_argument("--weights", default=None, help=_bootstrap.WEIGHTS_HELP)
    ap.add_argument("--out", help="the file to write")
    ap.add_argument("--imgsz", type=int, default=None, help="ONNX input size (default: the weights' training size)")
    ap.add_argument("--batch", type=int, default=None, help="ONNX: example batch for tracing (the batch axis stays dynamic)")
    ap.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never the source)")
    a = ap.parse_args(argv)
    if a.weights == "list":
        return _bootstrap.list_weights()
    if not a.format or not a.out:
        ap.error("--format and --out are required")
    path = export(a.format, a.weights, a.out, overwrite=a.overwrite, imgsz=a.imgsz, batch=a.batch)
    from detector.weights import sha256

    print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB  sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

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
from detector.export import ExportOptions, export


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="the file to write")
    _bootstrap.add_options(ap, ExportOptions)  # --format, --weights, --imgsz, --batch, --overwrite
    a = ap.parse_args(argv)
    if getattr(a, "weights", None) == "list":
        return _bootstrap.list_weights()
    if not hasattr(a, "format") or not a.out:
        ap.error("--format and --out are required")
    path = export(a.out, _bootstrap.options(ExportOptions, a))
    from detector.weights import sha256

    print(f"{path}  {path.stat().st_size / 2**20:.1f} MiB  sha256 {sha256(path)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

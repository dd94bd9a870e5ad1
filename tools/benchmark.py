#!/usr/bin/env python
"""CPU speed benchmark of SNN-ViT-YOLO variants and YOLOv8n in the same run.

    python tools/benchmark.py --json bench.json
    python tools/benchmark.py --variants n --sizes 512 --batches 1 --timesteps 2
"""

import argparse
import json

import _bootstrap  # noqa: F401

import detector  # noqa: F401
from detector.analysis.benchmark import markdown, run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["n", "s", "m"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[512, 640])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--timesteps", type=int, default=None, help="T (default: each config's)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-baseline", action="store_true", help="skip YOLOv8n")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    rep = run(a.variants, a.sizes, a.batches, a.timesteps, a.warmup, a.repeats, not a.no_baseline)
    print(markdown(rep))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as f:
            json.dump(rep, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

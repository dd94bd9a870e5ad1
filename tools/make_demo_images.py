#!/usr/bin/env python
"""Regenerate the project's own demo images (synthetic SAR-like scenes with ships) in images/.

    python tools/make_demo_images.py --out images --count 6 --seed 2025
"""

import argparse

import _bootstrap  # noqa: F401

from detector.demo import write_demo_images


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="images")
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    a = ap.parse_args(argv)
    for p in write_demo_images(a.out, a.count, a.seed, tuple(a.size)):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

"""Convert a dataset to the project layout (YOLO labels + COCO json + data.yaml + report.json).

    python tools/convert.py nwpu --root NWPU_VHR-10 --out data/nwpu [--split-seed 0] [--ratios .6 .2 .2] [--negatives]
    python tools/convert.py ssdd --root SSDD --out data/ssdd [--val-fraction 0.1]
    python tools/convert.py voc  --root VOCROOT --out data/voc [--classes a b] [--split auto|imagesets|seeded|ssdd]
    python tools/convert.py coco --root COCOROOT --out data/coco [--ann train=annotations/train.json --images train=train2017]
                                 [--val-fraction 0.15]  # a val split carved from train, when the files give none

A thin shell over :mod:`detector.data`; every option maps to a reader argument of the same name.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

try:
    import detector.data as dd
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import detector.data as dd


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"{flag} expects SPLIT=PATH, got {item!r}")
        out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="format", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, type=Path, help="source dataset folder")
    common.add_argument("--out", required=True, type=Path, help="output folder")
    common.add_argument("--link", choices=dd.LINK_MODES, default="copy", help="how images are placed (default copy)")
    common.add_argument("--overwrite", action="store_true", help="replace earlier converter output in --out")
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--split-seed", type=int, default=0, help="seed of every random split (default 0)")
    ratios = argparse.ArgumentParser(add_help=False)
    ratios.add_argument("--ratios", type=float, nargs=3, default=list(dd.DEFAULT_RATIOS), metavar=("TRAIN", "VAL", "TEST"),
                        help="seeded random split fractions (default 0.6 0.2 0.2; voc: only with the seeded rule)")
    val = argparse.ArgumentParser(add_help=False)
    val.add_argument("--val-fraction", type=float, default=0.0,
                     help="seeded fraction of train moved to val when the split rule gives no val (default 0)")

    nwpu = sub.add_parser("nwpu", parents=[common, seed, ratios], help="NWPU VHR-10 original layout")
    nwpu.add_argument("--negatives", action="store_true", help="also convert 'negative image set' (off by default)")
    sub.add_parser("ssdd", parents=[common, seed, val], help="SSDD (VOC layout, test = ids ending in 1 or 9)")
    voc = sub.add_parser("voc", parents=[common, seed, ratios, val], help="any VOC layout")
    voc.add_argument("--classes", nargs="+", help="class names in index order (default: all names found, sorted)")
    voc.add_argument("--split", choices=("auto", "imagesets", "seeded", "ssdd"), default="auto")
    voc.add_argument("--skip-difficult", action="store_true", help="leave out objects marked difficult")
    coco = sub.add_parser("coco", parents=[common, seed, val], help="COCO json per split")
    coco.add_argument("--ann", nargs="+", metavar="SPLIT=JSON", help="split files (default: found under --root)")
    coco.add_argument("--images", nargs="+", metavar="SPLIT=DIR", help="image folder per split (default: found)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = _convert(args)
    except (OSError, ValueError) as exc:  # missing or special files, a full disk (named), bad input
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    for split, st in report["splits"].items():
        print(f"{split:5s} {st['images']:6d} images {st['boxes']:7d} boxes ({st['images_without_boxes']} without boxes)")
    for note in report["notes"]:
        print(f"note: {note}")
    print(f"{len(report['problems'])} problem(s) {report['problem_counts']}; report: {Path(report['out']) / 'report.json'}")
    print(f"dataset YAML: {Path(report['out']) / 'data.yaml'}")
    return 0


def _convert(args: argparse.Namespace) -> dict[str, Any]:
    if args.format == "nwpu":
        ds = dd.read_nwpu(args.root, ratios=args.ratios, seed=args.split_seed, include_negatives=args.negatives)
    elif args.format == "ssdd":
        ds = dd.read_ssdd(args.root, val_fraction=args.val_fraction, seed=args.split_seed)
    elif args.format == "voc":
        ds = dd.read_voc(args.root, classes=args.classes, split=args.split, ratios=args.ratios, seed=args.split_seed,
                         val_fraction=args.val_fraction, skip_difficult=args.skip_difficult)
    else:
        anns, dirs = _pairs(args.ann, "--ann"), _pairs(args.images, "--images")
        if set(dirs) - set(anns):
            raise SystemExit(f"--images names splits without --ann: {sorted(set(dirs) - set(anns))}")
        ds = dd.read_coco(args.root, splits={s: (j, dirs.get(s)) for s, j in anns.items()} if anns else None)
        dd.carve_val_records(ds, args.val_fraction, args.split_seed)
    return dd.write_dataset(ds, args.out, link=args.link, overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(main())

"""Convert a dataset to the project layout (YOLO labels + COCO json + data.yaml + report.json).

    python tools/convert.py nwpu --root NWPU_VHR-10 --out data/nwpu [--split-seed 0] [--ratios .6 .2 .2] [--negatives]
    python tools/convert.py ssdd --root SSDD --out data/ssdd [--val-fraction 0.1]
    python tools/convert.py voc  --root VOCROOT --out data/voc [--classes a b] [--split auto|imagesets|seeded|ssdd]
    python tools/convert.py coco --root COCOROOT --out data/coco [--ann train=annotations/train.json --images train=train2017]
                                 [--val-fraction 0.15]  # a val split carved from train, when the files give none

A thin shell over :mod:`detector.data`: one subcommand per row of its reader table (``READERS``), each
option a keyword of the reader's read function, its default the function's.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

# this checkout's package first, as tools/_bootstrap.py does (this tool is also loaded by file path, where
# tools/ is not importable)
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import detector.data as dd  # noqa: E402


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"{flag} expects SPLIT=PATH, got {item!r}")
        out[key] = value
    return out


def _add_option(parser: argparse.ArgumentParser, reader: dd.Reader, o: dd.Option) -> None:
    """``o`` as a flag of ``reader``'s subcommand; its default is the read function's."""
    default = reader.default(o.name)
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    help = o.help if o.kind == "flag" or default is None else f"{o.help} (default {shown})"
    if o.kind == "flag":
        parser.add_argument(o.flag, dest=o.name, action="store_true", help=help)
        return
    nargs = {"value": None, "list": o.nargs, "pairs": "+"}[o.kind]
    parser.add_argument(o.flag, dest=o.name, type=o.type if o.kind != "pairs" else str, nargs=nargs,
                        default=list(default) if isinstance(default, tuple) else default, choices=o.choices,
                        metavar=o.metavar, help=help)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="format", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", required=True, type=Path, help="source dataset folder")
    common.add_argument("--out", required=True, type=Path, help="output folder")
    common.add_argument("--link", choices=dd.LINK_MODES, default="copy", help="how images are placed (default copy)")
    common.add_argument("--overwrite", action="store_true", help="replace earlier converter output in --out")
    for reader in dd.READERS.values():  # one subcommand per row of the reader table
        sp = sub.add_parser(reader.name, parents=[common], help=reader.summary)
        for o in reader.options:
            _add_option(sp, reader, o)
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
    reader = dd.READERS[args.format]
    options = {o.name: _pairs(getattr(args, o.name), o.flag) or None if o.kind == "pairs" else getattr(args, o.name)
               for o in reader.options}
    return dd.convert(args.format, args.root, args.out, link=args.link, overwrite=args.overwrite, **options)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Survey an archive: run a model over every scene of a folder, glob, list or local STAC catalog on Dask
(an embedded cluster of worker processes, or an existing scheduler), writing GeoParquet per scene.

    python tools/survey.py --source archive/ --out survey/                        # 1 worker per core here
    python tools/survey.py --source "s1/*.tif" --out survey/ --workers 4 --merge  # + detections.parquet
    python tools/survey.py --source items.json --asset vv --out survey/            # a local STAC ItemCollection
    python tools/survey.py --source scenes.txt --out survey/ --scheduler tcp://10.0.0.5:8786

A rerun into the same --out skips the scenes already done with the same model and settings (files
unchanged) and redoes the rest; see README, "Surveying an archive".
"""

import argparse

import _bootstrap  # noqa: F401

import detector  # noqa: F401  (offline settings first)
from detector.infer.options import DetectOptions
from detector.survey import SurveyOptions, survey

# detect's model and sliced-inference flags, generated from its options record (tile: the survey's default)
MODEL_FLAGS = ("weights", "runtime", "conf", "iou", "imgsz", "max_det", "device", "tile", "overlap")

DEFAULTS = SurveyOptions()  # the record's defaults, written once there


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True,
                    help="a folder, a glob pattern, an image, a .txt list of paths, or a local STAC .json")
    ap.add_argument("--out", required=True, help="output folder (scene files, manifest.csv); reruns resume there")
    _bootstrap.add_options(ap, DetectOptions, only=MODEL_FLAGS)  # --tile left out: the survey's default, auto
    ap.add_argument("--workers", type=int, default=DEFAULTS.workers,
                    help="worker processes of the embedded cluster, one thread each (default: the CPU cores)")
    ap.add_argument("--scheduler", default=None, help="tcp://HOST:PORT of a running Dask scheduler to use instead")
    ap.add_argument("--resources", nargs="*", default=[], metavar="NAME=N",
                    help="Dask resources each task needs, e.g. GPU=1 (workers started with --resources GPU=1)")
    ap.add_argument("--tiles-per-task", type=int, default=DEFAULTS.tiles_per_task,
                    help="tiles in one task of a large scene (default %(default)s)")
    ap.add_argument("--split-pixels", type=int, default=DEFAULTS.split_pixels,
                    help="scenes of more pixels are read window by window and split into tiles tasks "
                         "(default %(default)s)")
    ap.add_argument("--retries", type=int, default=DEFAULTS.retries,
                    help="reruns of a task that raised (a lost worker's tasks are rerun anyway)")
    ap.add_argument("--asset", default=None, help="STAC asset key to survey (default: every image asset)")
    ap.add_argument("--merge", action="store_true", help="also write detections.parquet: every georeferenced scene")
    a = ap.parse_args(argv)
    opts = _bootstrap.options(SurveyOptions, a)  # by keyword; flags left out take the record's defaults
    try:
        s = survey(a.source, a.out, opts)
    except KeyboardInterrupt:  # the scene files written are whole and the manifest says which (run.py)
        print(f"interrupted: the scenes finished so far are in {a.out} (manifest.csv); run again to go on")
        return 130
    return 1 if s.failed or s.scenes == 0 else 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

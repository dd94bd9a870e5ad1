"""Dataset conversion: NWPU VHR-10, VOC (SSDD) and COCO-json sources to one YOLO + COCO layout.

Each reader (``read_nwpu``, ``read_voc``, ``read_ssdd``, ``read_coco``; one module each) parses its
source into a :class:`SourceDataset` of image records; :func:`write_dataset` is the only code that
checks images and boxes and writes output (see :mod:`detector.data.writer` for the layout).
``READERS`` (:mod:`detector.data.readers`) is the table of readers; ``convert(format, ...)`` does both.
"""

from __future__ import annotations

from functools import partial

from .check import check_output
from .coco import discover_coco_splits, read_coco
from .nwpu import NWPU_CLASSES, parse_nwpu_lines, read_nwpu
from .records import DEFAULT_RATIOS, SPLITS, Box, DataProblemWarning, ImageRecord, Problem, ProblemLog, SourceDataset
from .splits import carve_val, carve_val_records, seeded_split, ssdd_split
from .readers import READERS, Option, Reader, convert
from .ssdd import read_ssdd
from .voc import read_voc
from .writer import LINK_MODES, write_dataset, yolo_line


# convert_<format>(root, out, **options): the reader table's rows under the names callers use
convert_nwpu, convert_voc, convert_ssdd, convert_coco = (partial(convert, name) for name in ("nwpu", "voc", "ssdd", "coco"))


__all__ = [
    "DEFAULT_RATIOS", "LINK_MODES", "NWPU_CLASSES", "SPLITS", "Box", "DataProblemWarning", "ImageRecord", "Problem",
    "Option", "ProblemLog", "READERS", "Reader", "SourceDataset", "carve_val", "carve_val_records", "check_output", "convert", "convert_coco", "convert_nwpu", "convert_ssdd", "convert_voc",
    "discover_coco_splits", "parse_nwpu_lines", "read_coco", "read_nwpu", "read_ssdd", "read_voc", "seeded_split",
    "ssdd_split", "write_dataset", "yolo_line",
]

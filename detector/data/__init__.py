"""Dataset conversion: NWPU VHR-10, VOC (SSDD) and COCO-json sources to one YOLO + COCO layout.

Each reader (``read_nwpu``, ``read_voc``/``read_ssdd``, ``read_coco``) parses its source into a
:class:`SourceDataset` of image records; :func:`write_dataset` is the only code that checks images
and boxes and writes output (see :mod:`detector.data.writer` for the layout). ``convert_*`` do both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .check import check_output
from .coco import discover_coco_splits, read_coco
from .nwpu import NWPU_CLASSES, parse_nwpu_lines, read_nwpu
from .records import DEFAULT_RATIOS, SPLITS, Box, DataProblemWarning, ImageRecord, Problem, ProblemLog, SourceDataset
from .splits import carve_val, carve_val_records, seeded_split, ssdd_split
from .voc import read_ssdd, read_voc
from .writer import LINK_MODES, write_dataset, yolo_line


def convert_nwpu(root: str | Path, out: str | Path, *, link: str = "copy", overwrite: bool = False,
                 **read_options: Any) -> dict[str, Any]:
    """Read NWPU VHR-10 (:func:`read_nwpu` options) and write it; returns the report."""
    return write_dataset(read_nwpu(root, **read_options), out, link=link, overwrite=overwrite)


def convert_voc(root: str | Path, out: str | Path, *, link: str = "copy", overwrite: bool = False,
                **read_options: Any) -> dict[str, Any]:
    """Read a VOC-layout set (:func:`read_voc` options) and write it; returns the report."""
    return write_dataset(read_voc(root, **read_options), out, link=link, overwrite=overwrite)


def convert_ssdd(root: str | Path, out: str | Path, *, link: str = "copy", overwrite: bool = False,
                 **read_options: Any) -> dict[str, Any]:
    """Read SSDD (:func:`read_ssdd` options) and write it; returns the report."""
    return write_dataset(read_ssdd(root, **read_options), out, link=link, overwrite=overwrite)


def convert_coco(root: str | Path, out: str | Path, *, link: str = "copy", overwrite: bool = False,
                 **read_options: Any) -> dict[str, Any]:
    """Read COCO-json splits (:func:`read_coco` options) and write them; returns the report."""
    return write_dataset(read_coco(root, **read_options), out, link=link, overwrite=overwrite)


__all__ = [
    "DEFAULT_RATIOS", "LINK_MODES", "NWPU_CLASSES", "SPLITS", "Box", "DataProblemWarning", "ImageRecord", "Problem",
    "ProblemLog", "SourceDataset", "carve_val", "carve_val_records", "check_output", "convert_coco", "convert_nwpu", "convert_ssdd", "convert_voc",
    "discover_coco_splits", "parse_nwpu_lines", "read_coco", "read_nwpu", "read_ssdd", "read_voc", "seeded_split",
    "ssdd_split", "write_dataset", "yolo_line",
]

"""The dataset readers, one row each: ``READERS`` maps a format name to its read function and the
options a user may set. ``tools/convert.py`` builds one subcommand per row (``--flag`` per option,
its default read from the read function's signature, so it is written once), and :func:`convert`
runs any row. A new dataset format is one reader module in this package and one row here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .coco import read_coco
from .nwpu import read_nwpu
from .records import SourceDataset
from .ssdd import read_ssdd
from .voc import SPLIT_RULES, read_voc
from .writer import write_dataset


@dataclass(frozen=True)
class Option:
    """One option of a reader: the read function's keyword ``name``, given on the command line as
    ``flag``. ``kind``: ``value`` (one value of ``type``), ``flag`` (on/off), ``list`` (``nargs``
    values of ``type``) or ``pairs`` (``SPLIT=PATH`` items, given to the reader as a dict)."""

    name: str
    flag: str
    help: str
    kind: str = "value"
    type: type = str
    nargs: int | str | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | tuple[str, ...] | None = None


@dataclass(frozen=True)
class Reader:
    """One row of the reader table."""

    name: str
    read: Callable[..., SourceDataset]
    summary: str
    options: tuple[Option, ...]

    def default(self, option: str) -> Any:
        """The read function's default for ``option`` (the one place it is written)."""
        return inspect.signature(self.read).parameters[option].default


SEED = Option("seed", "--split-seed", "seed of every random split", type=int)
RATIOS = Option("ratios", "--ratios", "seeded random split fractions (voc: only with the seeded rule)", kind="list",
                type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"))
VAL_FRACTION = Option("val_fraction", "--val-fraction", "seeded fraction of train moved to val when the split rule "
                      "gives no val", type=float)

READERS: dict[str, Reader] = {r.name: r for r in (
    Reader("nwpu", read_nwpu, "NWPU VHR-10 original layout", (
        SEED, RATIOS, Option("include_negatives", "--negatives", "also convert 'negative image set'", kind="flag"))),
    Reader("ssdd", read_ssdd, "SSDD (VOC layout, test = ids ending in 1 or 9)", (SEED, VAL_FRACTION)),
    Reader("voc", read_voc, "any VOC layout", (
        SEED, RATIOS, VAL_FRACTION,
        Option("classes", "--classes", "class names in index order (default: all names found, sorted)", kind="list",
               nargs="+"),
        Option("split", "--split", "split rule", choices=SPLIT_RULES),
        Option("skip_difficult", "--skip-difficult", "leave out objects marked difficult", kind="flag"))),
    Reader("coco", read_coco, "COCO json per split", (
        SEED, VAL_FRACTION,
        Option("splits", "--ann", "split files (default: found under --root)", kind="pairs", metavar="SPLIT=JSON"),
        Option("images", "--images", "image folder per split (default: found)", kind="pairs", metavar="SPLIT=DIR"))),
)}


def convert(fmt: str, root: str | Path, out: str | Path, *, link: str = "copy", overwrite: bool = False,
            **read_options: Any) -> dict[str, Any]:
    """Read ``root`` with the reader ``fmt`` (its read function's options) and write the project layout
    to ``out`` (:func:`detector.data.write_dataset`); returns the report."""
    if fmt not in READERS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {', '.join(READERS)}")
    return write_dataset(READERS[fmt].read(root, **read_options), out, link=link, overwrite=overwrite)

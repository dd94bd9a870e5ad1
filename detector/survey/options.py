"""The survey's options: one record, checked once at the door (``SurveyOptions``), and the part of it
that changes detections (``detection_settings``), whose hash decides whether a scene done by an
earlier run can be kept."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass

from .. import checks
from ..infer.options import DETECT, OVERLAP, check_model_options
from ..io.scene import LAZY_PIXELS

SCHEDULER = re.compile(r"^(tcp|tls|inproc|ucx)://[^\s/]+$")
RESOURCE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*=\d+(\.\d+)?$")


@dataclass(frozen=True)
class SurveyOptions:
    """What a survey runs and how. The model's options are detect's (``tools/detect.py``); ``tile`` defaults
    to ``auto`` here, archives being scenes larger than the model's input.

    * ``workers``: worker processes of the embedded cluster (one thread each); ignored with ``scheduler``
      (``tcp://HOST:PORT`` of a running Dask scheduler) or a client passed to ``survey``.
    * ``split_pixels``: a scene of more pixels is read window by window and its tiles run as separate
      tasks of ``tiles_per_task`` tiles, so one huge scene keeps every worker busy; smaller scenes are
      one task each, read whole (as ``detect`` reads them).
    * ``retries``: how often a task that raised unexpectedly is run again (a lost worker is rerun by
      the scheduler itself, up to Dask's ``allowed-failures``).
    * ``resources``: Dask resources every task asks for (``GPU=1``): the scheduler runs tasks only on
      workers that declared them.
    * ``asset``: the STAC asset key to survey (default: every image asset of each item).
    * ``merge``: also write one ``detections.parquet`` of every georeferenced scene.
    """

    weights: str | None = None
    runtime: str = "auto"
    device: str = "cpu"
    conf: float = DETECT.conf
    iou: float = DETECT.iou
    imgsz: int | None = None
    max_det: int = DETECT.max_det
    tile: int | str | None = "auto"
    overlap: float = OVERLAP
    workers: int = max(1, os.cpu_count() or 1)
    scheduler: str | None = None
    split_pixels: int = LAZY_PIXELS
    tiles_per_task: int = 64
    retries: int = 1
    resources: tuple[str, ...] = ()
    asset: str | None = None
    merge: bool = False

    def __post_init__(self) -> None:
        check_model_options(self.conf, self.iou, self.max_det, self.imgsz, self.tile, self.overlap)
        checks.positive_int("workers", self.workers, 4096)
        checks.positive_int("split_pixels", self.split_pixels, 1 << 40)
        checks.positive_int("tiles_per_task", self.tiles_per_task, 100_000)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 0 <= self.retries <= 10:
            raise ValueError(f"retries must be an integer in 0..10, got {self.retries!r}")
        if self.scheduler is not None and not SCHEDULER.match(self.scheduler):
            raise ValueError(f"scheduler must be an address like tcp://HOST:PORT, got {self.scheduler!r}")
        bad = [r for r in self.resources if not RESOURCE.match(r)]
        if bad:
            raise ValueError(f"resources are NAME=AMOUNT (e.g. GPU=1), got {', '.join(map(repr, bad))}")

    def resource_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in (r.split("=") for r in self.resources)}


def detection_settings(opts: SurveyOptions) -> dict:
    """The options that change a scene's detections (not where or how fast it runs: the device, workers and
    task sizes are left out; ``imgsz`` None means the model's own size, fixed by its sha256)."""
    keys = ("runtime", "conf", "iou", "imgsz", "max_det", "tile", "overlap", "split_pixels")
    return {k: v for k, v in asdict(opts).items() if k in keys}


def settings_sha256(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

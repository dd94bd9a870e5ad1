"""The options of the entry points: one frozen record per entry point, built by keyword and checked once,
at construction (here: the shared ``ModelOptions``, detect, evaluation; export's is ``detector.export.ExportOptions``; the analysis tools'
records extend ``ModelOptions`` beside their code: ``detector.analysis.heatmap.HeatmapOptions``,
``detector.analysis.energy.EnergyOptions``, ``detector.analysis.benchmark.BenchmarkOptions``;
training's is ``detector.engine.trainer.TrainOptions``);
the functions behind them take the record and never check its values again. Every default is a field
default here (or a constant below), written once. A field's ``metadata`` says how a tool offers it
(``help``, and ``flag`` / ``type`` / ``choices`` / ``nargs`` / ``action``; ``cli=False``: the tool maps
it by hand); ``tools/_bootstrap.add_options`` generates the tools' flags from it, so the shared ones
(``--weights``, ``--imgsz``, ``--device``, ``--runtime``, ``--conf``, ``--iou``...) are declared once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .. import checks
from ..io.geojson import CRS_MODES
from ..models.settings import DEFAULT_IMGSZ
from ..io.tiles import OVERLAP, check_overlap, check_tiling

__all__ = ["DETECT", "VAL", "OVERLAP", "TILE_BATCH", "MAX_TILES", "MAX_UPSCALE", "Thresholds", "ModelOptions",
           "DetectOptions", "ValOptions", "build", "check_model_options", "opt", "parse_tile", "tiling"]


@dataclass(frozen=True)
class Thresholds:
    """Confidence threshold, NMS IoU threshold, and the most detections kept per image (per tile in
    sliced inference)."""

    conf: float
    iou: float
    max_det: int


DETECT = Thresholds(conf=0.25, iou=0.45, max_det=300)  # detection and heatmaps: boxes worth drawing
VAL = Thresholds(conf=0.001, iou=0.7, max_det=300)  # evaluation: the whole precision-recall curve (Ultralytics')

TILE_BATCH = 8  # tiles per forward pass
MAX_TILES = 100_000  # a scene needing more tiles is refused (at ~50 ms a tile on a CPU core: over an hour)
MAX_UPSCALE = 4  # a tile may be enlarged at most this much to the model input (--imgsz / --tile)

WEIGHTS_HELP = ("a shipped model's name (e.g. ssdd; 'list' shows them) or a checkpoint path "
                "(default: the default shipped model)")


def opt(default: Any = None, help: str = "", **cli: Any) -> Any:
    """A record field with its command-line description (module docstring)."""
    return field(default=default, metadata={"help": help, **cli})


def parse_tile(v: str | int | None) -> int | str | None:
    """A tile option as the user wrote it: a size in pixels, ``auto``, or ``none`` / None."""
    if v is None or v == "none":
        return None
    if v == "auto" or isinstance(v, int):
        return v
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"tile takes a size in pixels, 'auto' or 'none', got {v!r}") from None


def tiling(tile: Any, overlap: float, auto: bool) -> None:
    """The tile size (``auto`` where ``auto``) and the overlap, checked."""
    if tile is None or (auto and tile == "auto"):
        check_overlap(overlap)
    else:
        check_tiling(tile, overlap)  # the overlap included


def check_model_options(conf: float, iou: float, max_det: int, imgsz: int | None, tile: int | str | None,
                        overlap: float) -> None:
    """The checks of the options every record that runs a model over scenes shares (``DetectOptions``,
    ``detector.survey.SurveyOptions``)."""
    checks.unit_interval("conf", conf)
    checks.unit_interval("iou", iou)
    checks.positive_int("max_det", max_det, 100_000)
    if imgsz is not None:
        checks.imgsz(imgsz)
    tiling(tile, overlap, auto=True)


@dataclass(frozen=True)
class ModelOptions:
    """What every entry point that runs a model takes: the weights, the input size (None: the size the
    weights were trained at), and the device (resolved once here: a ``detector.devices.Device``)."""

    weights: str | Path | None = opt(None, WEIGHTS_HELP)
    imgsz: int | None = opt(None, "input size, a multiple of 32 (default: the size the weights were trained at, "
                                  f"else {DEFAULT_IMGSZ})", type=int)
    device: Any = opt("cpu", "cpu, mps, cuda, cuda:N or N")

    def __post_init__(self) -> None:
        from ..devices import resolve_device

        if self.imgsz is not None:
            checks.imgsz(self.imgsz)
        object.__setattr__(self, "device", resolve_device(self.device))


def _runtime_field(validates: bool = False, detection: bool = False) -> Any:
    """``--runtime``, auto by default: ``validates``: only the runtimes that can run evaluation (their
    row's ``validates``); ``detection``: auto chooses as for detection (``AUTO_DETECTION``)."""
    from .runtime import AUTO, AUTO_DETECTION, RUNTIMES

    names = [n for n, spec in RUNTIMES.items() if spec.validates or not validates]
    auto = ", ".join(f"{name} for {suffix}" for suffix, name in AUTO.items())
    if detection:
        auto = "".join(f"{name} for {suffix} on a {kind} where the {RUNTIMES[name].extra} extra is installed, else "
                       for (kind, suffix), name in AUTO_DETECTION.items()) + auto
    return opt("auto", f"what runs the model: auto ({auto}) or a runtime of the table (detector.infer.RUNTIMES)",
               choices=("auto", *names))


@dataclass(frozen=True)
class DetectOptions(ModelOptions):
    """``detect``'s options (``detector.infer.pipeline``)."""

    runtime: str = _runtime_field(detection=True)
    conf: float = opt(DETECT.conf, "confidence threshold", type=float)
    iou: float = opt(DETECT.iou, "NMS IoU threshold", type=float)
    max_det: int = opt(DETECT.max_det, "most detections per image (per tile with --tile)", type=int)
    outputs: tuple[str, ...] = opt(("image",), cli=False)
    vid_stride: int = opt(1, "process every n-th video frame", type=int)
    tile: int | str | None = opt(None, "sliced inference: tiles of SIZE px, or 'auto' (tiles of the training images' "
                                       "size, for scenes more than twice that size)", type=parse_tile,
                                 metavar="SIZE|auto")
    overlap: float = opt(OVERLAP, "overlap between tiles, a fraction", type=float)
    geojson_crs: str = opt("wgs84", "GeoJSON coordinates: wgs84 = RFC 7946 longitude/latitude (web maps, QGIS), "
                                    "native = the raster's own CRS, named in a 'crs' member (the GeoJSON writer checks it)",
                         choices=CRS_MODES)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_model_options(self.conf, self.iou, self.max_det, None, self.tile, self.overlap)  # imgsz: above
        checks.positive_int("vid_stride", self.vid_stride)
        object.__setattr__(self, "outputs", tuple(self.outputs))


@dataclass(frozen=True)
class ValOptions(ModelOptions):
    """``evaluate``'s options (``detector.engine.validator``)."""

    runtime: str = _runtime_field(validates=True)
    split: str = opt("val", "dataset split", choices=("train", "val", "test"))
    batch: int = opt(8, "images per batch", type=int)
    conf: float = opt(VAL.conf, "confidence threshold", type=float)
    iou: float = opt(VAL.iou, "NMS IoU threshold", type=float)
    json_out: str | Path | None = opt(None, "write the metrics to this JSON file", flag="--json")
    project: str | Path = opt("runs/val", "folder of the run folders")
    name: str = opt("exp", "run folder name")
    plots: bool = opt(True, cli=False)
    class_map: dict[str, str] | None = opt(None, cli=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.split not in ("train", "val", "test"):
            raise ValueError(f"split must be train, val or test, got {self.split!r}")
        checks.unit_interval("conf", self.conf)
        checks.unit_interval("iou", self.iou)
        checks.positive_int("batch", self.batch, 1024)
        checks.output_file(self.json_out, "--json")


def build(cls: type, options: Any = None, **given: Any) -> Any:
    """An options record of type ``cls``: ``options`` as it is, or with the keywords ``given`` (None
    values left out: the record's defaults apply) replacing its fields; checked once, here."""
    given = {k: v for k, v in given.items() if v is not None}
    unknown = set(given) - {f.name for f in fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no option {', '.join(sorted(unknown))}")
    if options is None:
        return cls(**given)
    if not isinstance(options, cls):
        raise TypeError(f"expected {cls.__name__}, got {type(options).__name__}")
    return replace(options, **given) if given else options

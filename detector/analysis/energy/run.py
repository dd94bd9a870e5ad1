"""The energy measurement behind ``tools/energy.py``: a model (weights, batch norm folded, or an untrained
variant), the images of a folder or a dataset split (whole, or cut into the tiles of sliced detection),
one ``EnergyReport``. Its options are one record, ``EnergyOptions``, checked once at construction."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ... import checks
from ...infer.options import OVERLAP, ModelOptions, build, opt, tiling
from ..constants import DEFAULT_PRESET, PRESETS, get_constants
from .meter import measure_energy
from .report import EnergyReport


@dataclass(frozen=True)
class EnergyOptions(ModelOptions):
    """The energy measurement's options (``measure``). ``variant``: an untrained variant instead of weights."""

    variant: str | None = opt(None, "analyse a freshly initialised (untrained) variant", flag="--model",
                              choices=("n", "s", "m"))
    split: str = opt("val", "dataset split with --data")
    timesteps: int | None = opt(None, "T to run with (default and maximum: the model's T)", type=int)
    max_images: int | None = opt(None, "measure at most this many images", type=int)
    batch: int = opt(4, "images per forward pass (does not change the counts)", type=int)
    preset: str = opt(DEFAULT_PRESET, "energy constants (detector.analysis.constants: Horowitz 2014 is the default, "
                                      "E_MAC 4.6 pJ, E_AC 0.9 pJ)", choices=tuple(sorted(PRESETS)))
    e_mac: float | None = opt(None, "override E_MAC in pJ", type=float)
    e_ac: float | None = opt(None, "override E_AC in pJ", type=float)
    json: str | None = opt(None, "write the full report (totals, constants, per-layer) as JSON")
    csv: str | None = opt(None, "write the per-layer table as CSV")
    plot: str | None = opt(None, "write a PNG of per-layer firing rates and energy")
    tile: int | None = opt(None, "measure the tiles of sliced detection (SIZE px) instead of whole images: energy "
                                 "per tile", type=int, metavar="SIZE")
    overlap: float = opt(OVERLAP, "overlap between tiles, a fraction", type=float)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_images is not None:
            checks.positive_int("max_images", self.max_images)
        checks.positive_int("batch", self.batch, 1024)
        outs = [(f"--{k}", p) for k, p in (("json", self.json), ("csv", self.csv), ("plot", self.plot)) if p]
        for flag, path in outs:  # before the measurement, not after it
            checks.output_file(path, flag)
        if len({str(Path(p).resolve()) for _, p in outs}) < len(outs):
            raise ValueError(f"{', '.join(f for f, _ in outs)} name the same file")
        tiling(self.tile, self.overlap, auto=False)



@dataclass
class EnergyRun:
    """What ``measure`` returns: the report, the model's one-line description, whether it is untrained,
    and the images that could not be read (path, why)."""

    report: EnergyReport
    model: str
    untrained: bool
    imgsz: int
    skipped: list[tuple[str, str]] = field(default_factory=list)


def load_model(o: EnergyOptions) -> tuple[nn.Module, str, bool]:
    """(model, description, untrained) for ``o.variant`` or ``o.weights`` (default: the shipped weights)."""
    if o.variant:
        from ...models import SNNViTYOLO

        model = SNNViTYOLO(o.variant, verbose=False).eval()
        return model, f"snnvit-yolo-{o.variant} (UNTRAINED, random initialisation)", True
    from ...infer.runtime import load_torch_model
    from ...models.settings import settings_of

    try:
        model = load_torch_model(o.weights, o.device)  # batch norm folded: the spikes, and the counts, are the same
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}; or --model n|s|m to analyse an untrained variant") from e
    return model, settings_of(model).source, False


def measure(source: str | Path | None = None, data: str | Path | None = None, options: EnergyOptions | None = None,
            **fields) -> EnergyRun:
    """Measure the energy per image (per tile with ``tile``) of the images of ``source`` (a file, folder
    or glob) or of ``data``'s split; ``options`` is an ``EnergyOptions`` (or its fields as keywords)."""
    from ...io.batches import dataset_images, find_images, image_batches
    from ...models.settings import settings_of

    o = build(EnergyOptions, options, **fields)
    if (source is None) == (data is None):
        raise ValueError("give one of a source (images) or a dataset YAML")
    constants = get_constants(o.preset, o.e_mac, o.e_ac)
    model, desc, untrained = load_model(o)
    imgsz = o.imgsz or settings_of(model).imgsz()
    model.to(o.device.torch)
    paths = find_images(source) if source is not None else dataset_images(data, o.split)
    if o.max_images:
        paths = paths[: o.max_images]
    skipped: list[tuple[str, str]] = []
    meta = {"model": desc, "untrained": untrained, "source": str(source or data), "imgsz": imgsz, "skipped": skipped}
    if o.tile is not None:
        meta["per"] = f"tile of {o.tile} px (overlap {o.overlap})"
    try:
        report = measure_energy(model, image_batches(paths, imgsz, o.batch, skipped, o.tile, o.overlap),
                                timesteps=o.timesteps, constants=constants, max_images=o.max_images, meta=meta)
    except RuntimeError as e:
        if "no images were measured" not in str(e):
            raise
        raise ValueError(f"none of the {len(paths)} image(s) could be read") from e
    return EnergyRun(report, desc, untrained, imgsz, skipped)

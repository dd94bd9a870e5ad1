"""Heatmaps of a folder: the model (trained weights, or an untrained variant with calibrated batch
norm), one forward per image under ``SSSACapture``, a panel PNG (and optionally raw .npz) per image.

Untrained models: at initialisation with default batch-norm statistics (mean 0, var 1) the spikes die
out before the SSSA stages (measured for the n variant: every salience exactly 0). ``untrained_model``
therefore calibrates the batch-norm statistics on a few images (a data-dependent initialisation; no
weight is trained), and such runs are labelled "untrained" in every panel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from ultralytics.utils import LOGGER

from ...checks import positive_int
from ...infer.options import DETECT, OVERLAP, ModelOptions, build, opt, tiling
from ...infer.predict import predict_image
from ...infer.runtime import load_torch_model
from ...models.settings import DEFAULT_IMGSZ, settings_of
from ...io.images import ImageReadError, expand_source
from ...io.scene import as_array, read_scene, read_window, scene_shape
from ...io.letterbox import Letterbox, letterbox_tensor
from ...io.outputs import OutputFolder, next_run_folder
from .capture import SSSACapture, find_sssa_blocks, select_blocks
from .panel import INTERPOLATIONS, HeatmapResult, block_maps, check_dpi, check_timesteps, render_panel, save_npz


def heatmap_image(model: nn.Module, img_bgr: np.ndarray, imgsz: int, conf: float = DETECT.conf,
                  iou: float = DETECT.iou, max_det: int = DETECT.max_det, blocks: Iterable[str | int] | None = None,
                  interp: str = "bilinear", source: str = "", label: str = "") -> HeatmapResult:
    """Detect and capture the SSSA maps of one BGR image with a single forward pass (``imgsz``: a checked
    input size, as ``HeatmapOptions`` checks it)."""
    model.eval()
    with SSSACapture(model, blocks) as cap:
        det = predict_image(model, img_bgr, imgsz, conf, iou, max_det)
    geom = Letterbox.fit(img_bgr.shape[:2], imgsz)
    thresholds = {n: m.saccade.v_threshold.detach().cpu().numpy().copy() for n, m in cap.blocks}
    maps = [block_maps(c, geom, 0, interp, thresholds[n]) for n, c in cap.results().items()]
    names = {int(k): str(v) for k, v in getattr(model, "names", {}).items()}
    return HeatmapResult(source, img_bgr, det.numpy(), geom, maps, names, label)


def calibrate_bn(model: nn.Module, images: Sequence[np.ndarray], imgsz: int, batch: int = 8) -> int:
    """Set every batch-norm layer's running statistics to the statistics of ``images`` (BGR arrays,
    letterboxed like inference). No weight changes. Returns the number of images used."""
    from ...models.calibration import recalibrate_bn

    device = next(model.parameters()).device
    return recalibrate_bn(model, (torch.cat([letterbox_tensor(img, imgsz, device) for img in images[k:k + batch]])
                                  for k in range(0, len(images), batch)))


def untrained_model(variant: str = "n", seed: int = 0, calib_images: Sequence[np.ndarray] = (),
                    imgsz: int = DEFAULT_IMGSZ, nc: int = 1):
    """A freshly initialised SNN-ViT-YOLO (seeded; the global RNG is left untouched), with batch-norm
    statistics calibrated on ``calib_images`` (see the module docstring). Returns (model, label)."""
    from ...models import SNNViTYOLO

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SNNViTYOLO(variant, nc=nc, verbose=False)
    model.set_names({i: "object" if nc == 1 else f"class{i}" for i in range(nc)})
    n = calibrate_bn(model, calib_images, imgsz) if len(calib_images) else 0
    model.eval()
    return model, untrained_label(variant, seed, n)


def untrained_label(variant: str, seed: int, n_calib: int) -> str:
    bn = f"BN calibrated on {n_calib} image(s)" if n_calib else "default BN"
    return f"UNTRAINED {variant} (seed {seed}, {bn})"


@dataclass(frozen=True)
class HeatmapOptions(ModelOptions):
    """``heatmaps``' options (``detector.analysis.heatmap``). ``variant``: an untrained variant instead of
    weights (batch norm calibrated on the first ``calib`` images)."""

    variant: str | None = opt(None, "an UNTRAINED variant instead of weights (seeded; batch-norm statistics calibrated "
                                    "on the first --calib source images); panels are labelled untrained", flag="--model",
                              choices=("n", "s", "m"))
    seed: int = opt(0, "initialisation seed for --model", type=int)
    calib: int = opt(8, "images used to calibrate batch norm for --model", type=int)
    blocks: tuple[str, ...] | None = opt(None, "SSSA blocks to show, by index or name substring (e.g. 0 2, or p5); "
                                               "default all", nargs="+")
    timesteps: tuple[int, ...] | None = opt(None, "timesteps to show; default all", type=int, nargs="+")
    conf: float = opt(DETECT.conf, "confidence threshold", type=float)
    iou: float = opt(DETECT.iou, "NMS IoU threshold", type=float)
    max_det: int = opt(DETECT.max_det, "most detections per image", type=int)
    max_images: int | None = opt(None, "process only the first N images", type=int)
    interp: str = opt("bilinear", "salience upsampling (nearest shows the token grid)", choices=INTERPOLATIONS)
    dpi: int = opt(100, "panel resolution (bounded by the panel's size: detector.analysis.heatmap.panel.check_dpi)",
                   type=int)
    save_raw: bool = opt(False, "also write the raw maps as .npz", flag="--save-npz", action="store_true")
    tile: int | None = opt(None, "cut each image into the tiles of sliced detection (SIZE px) and show each tile",
                           type=int, metavar="SIZE")
    overlap: float = opt(OVERLAP, "overlap between tiles, a fraction", type=float)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.interp not in INTERPOLATIONS:
            raise ValueError(f"unknown interpolation {self.interp!r}; choose from {INTERPOLATIONS}")
        if self.max_images is not None:  # a slice [:-1] would silently drop the last image
            positive_int("max_images", self.max_images)
        if isinstance(self.calib, bool) or not isinstance(self.calib, int) or self.calib < 0:
            raise ValueError(f"calib must be a non-negative integer, got {self.calib!r}")
        tiling(self.tile, self.overlap, auto=False)


@dataclass
class HeatmapSummary:
    out_dir: Path
    panels: list[Path] = field(default_factory=list)
    npz: list[Path] = field(default_factory=list)
    results: list[HeatmapResult] = field(default_factory=list)  # filled when keep=True
    skipped: list[tuple[str, str]] = field(default_factory=list)
    label: str = ""


def heatmaps(source: str | Path, weights: str | Path | None = None, out: str | Path | None = None,
             options: HeatmapOptions | None = None, *, model: nn.Module | None = None, label: str | None = None,
             keep: bool = False, verbose: bool = True, **fields) -> HeatmapSummary:
    """Write one panel PNG (and optionally one .npz) per image of ``source`` into ``out`` (default: a
    fresh ``runs/heatmap/expN``; the output rules are ``detector.io.writers.OutputFolder``'s); ``options``
    is a ``HeatmapOptions`` (or its fields as keywords). With ``tile``, every image is cut into the tiles
    sliced detection uses (``detector.io.tiles``) and each tile gets its own panel, named after its
    origin (``STEM_x0_y0_heatmap.png``).

    The model is ``model`` if given, else an untrained ``variant`` (n/s/m, BN calibrated on the first
    ``calib`` source images, ``max_images`` notwithstanding), else the checkpoint ``weights`` (a shipped
    model's name or a path; default: the default shipped model), batch norm folded, on ``device``; a
    missing file raises ``FileNotFoundError`` saying how to proceed. ``keep`` keeps every ``HeatmapResult`` (maps
    in memory) in the summary; otherwise only paths are returned.
    """
    o = build(HeatmapOptions, options, weights=weights, **fields)
    max_images, variant, tile, overlap, blocks, timesteps = o.max_images, o.variant, o.tile, o.overlap, o.blocks, o.timesteps
    src = expand_source(source)
    paths = src.images[:max_images] if max_images else src.images
    folder = OutputFolder(next_run_folder("runs/heatmap/exp") if out is None else out, src.images, src.root, src.folders)
    summary = HeatmapSummary(folder.path, skipped=list(src.skipped))
    summary.skipped += [(str(v), "videos are not supported by the heatmap tool") for v in src.videos]

    def load(p: Path, record: bool = True, tiled: bool = False):
        try:
            return read_scene(p, tiled)  # tiled: a large raster as a lazy scene, read window by window
        except ImageReadError as e:
            if record:
                summary.skipped.append((str(p), str(e)))
            return None

    if model is None and variant:
        model, _ = untrained_model(variant, o.seed)  # batch norm calibrated below, once the options are checked
        model.to(o.device.torch)
        auto_label = None
    elif model is None:
        try:
            model = load_torch_model(o.weights, o.device)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}; or --model n|s|m to look at an untrained model") from e
        auto_label = f"weights {Path(settings_of(model).source).name}"
    else:
        auto_label = "model"
    label = label or auto_label
    summary.label = label
    imgsz = settings_of(model).imgsz() if o.imgsz is None else o.imgsz  # the weights' training size; the default for an untrained model
    # fail on a bad --blocks / --timesteps before any image is processed
    found = find_sssa_blocks(model)
    if not found:
        raise ValueError("the model has no SSSA blocks (is its attention 'ssa'?); nothing to show")
    shown = select_blocks([n for n, _ in found], blocks)
    check_dpi(o.dpi, len(shown), len(check_timesteps(timesteps, found[0][1].saccade.T)))  # the canvas is bounded
    if auto_label is None:
        calib_imgs = [im for im in (load(p, record=False) for p in src.images[:o.calib]) if im is not None]
        n = calibrate_bn(model, calib_imgs, imgsz) if calib_imgs else 0
        label = label or untrained_label(variant, o.seed, n)
        summary.label = label
    model.eval()
    if tile is None:
        folder.check_all(folder.path / f"{folder.stem(p)}_heatmap{ext}" for p in paths for ext in (".png", ".npz"))
    folder.prepare()
    try:
        for k, p in enumerate(paths, 1):
            img = load(p, tiled=tile is not None)
            if img is None:
                continue
            for name, part, origin in image_parts(img, folder.stem(p), tile, overlap):
                res = heatmap_image(model, part, imgsz, o.conf, o.iou, o.max_det, blocks, o.interp,
                                    str(p) + (f" tile at {origin}" if origin else ""), label)
                panel = folder.claim(folder.path / f"{name}_heatmap.png")
                summary.panels.append(render_panel(res, panel, timesteps, o.dpi, o.interp))
                if o.save_raw:
                    summary.npz.append(save_npz(res, folder.claim(folder.path / f"{name}_heatmap.npz")))
                if keep:
                    summary.results.append(res)
                if verbose:
                    print(f"image {k}/{len(paths)} {p}{f' tile {origin}' if origin else ''}: {len(res.detections)} "
                          f"detection(s), {len(res.blocks)} SSSA block(s) -> {res.panel}")
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{len(summary.panels)} panel(s) written whole in {folder.path}") from None
    finally:
        folder.release()
    for f, why in summary.skipped:
        LOGGER.warning(f"skipped {f}: {why}")
    if verbose:
        print(f"{len(summary.panels)} panel(s) -> {folder.path} [{label}]")
    return summary


def image_parts(img, stem: Path, tile: int | None, overlap: float):
    """(output name, pixels, tile origin or None) for a whole image, or for each of its tiles (``img``: an
    array or a lazy scene, ``detector.io.scene``)."""
    if tile is None:
        yield str(stem), as_array(img), None
        return
    from ...io.tiles import tile_grid

    for x0, y0, x1, y1 in tile_grid(scene_shape(img)[:2], tile, overlap):
        yield f"{stem}_{x0}_{y0}", read_window(img, x0, y0, x1, y1), (x0, y0)

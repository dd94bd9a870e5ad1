"""SSSA attention heatmaps beside detections (the paper's saliency figures), observed through hooks.

What is captured, per SSSA block (every ``SSSA`` module of the model, named by its module path such as
``model.0.p4_blocks.0.attn``) and per timestep, with forward hooks only:

* salience ``P[t, b, head, n]`` in [0, 1] - the input of the block's saccadic neuron (``attn.saccade``),
  i.e. (Q firing rate of token n) x (mean K firing rate), see ``detector.nn.attention``;
* spike mask ``S[t, b, head, n]`` in {0, 1} - the saccadic neuron's output: which tokens the block
  "looks at" at timestep t;
* the block's token grid ``(h, w)`` - from the SSSA module's input ``(T, B, C, h, w)``; token
  ``n = i * w + j`` (row-major, as ``split_heads`` flattens it).

Hooks live in ``SSSACapture`` (a context manager) and are removed on exit, also on error. The model's
forward is not changed and runs once per image: ``predict_image`` is called while the hooks are
active, so the detections are exactly those of ``tools/detect.py``.

Token -> pixel mapping (``grid_to_image``): token (i, j) covers the letterboxed input box
``[i*s, (i+1)*s) x [j*s, (j+1)*s)`` with stride ``s = input side / grid side``. Every output pixel
centre is carried through the inverse letterbox (scale by the resized content size, shift by the top /
left padding) onto the token grid and sampled there (``nearest``: the token it falls in; ``bilinear``:
interpolated between token centres). That is "upsample to the letterboxed size, crop the padding,
resize to the original size" done as one exact resampling, so no second interpolation blurs the map,
and padding tokens never reach the output. Letterbox geometry comes from Ultralytics' own
``LetterBox.get_params`` (the code that letterboxed the input).

Untrained models: at initialisation with default batch-norm statistics (mean 0, var 1) the spikes die
out before the SSSA stages (measured for the n variant: every salience exactly 0). ``untrained_model`` therefore calibrates
the batch-norm statistics on a few images (a data-dependent initialisation; no weight is trained), and
such runs are labelled "untrained" in every panel.
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np
import torch
from torch import nn
from ultralytics.utils import LOGGER

from ..engine.predictor import letterbox_tensor, output_name, predict_image, render
from ..engine.sources import ImageReadError, expand_source, read_image
from ..nn.attention import SSSA

INTERPOLATIONS = ("nearest", "bilinear")

# --------------------------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------------------------


def find_sssa_blocks(model: nn.Module) -> list[tuple[str, SSSA]]:
    """Every SSSA module of ``model`` in forward (registration) order, with its module path."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SSSA)]


def select_blocks(names: Sequence[str], selectors: Iterable[str | int] | None) -> list[str]:
    """Pick block names by index (``0``, ``"2"``, ``-1``) or by name substring (``"p5"``), keeping model
    order and dropping repeats. ``None`` or empty selects all. Raises ``ValueError`` naming the choices."""
    names = list(names)
    if not selectors:
        return names
    chosen: set[str] = set()
    for sel in selectors:
        s = str(sel).strip()
        if re.fullmatch(r"-?\d+", s):
            k = int(s)
            if not -len(names) <= k < len(names):
                raise ValueError(f"block index {k} out of range; SSSA blocks: {_listing(names)}")
            chosen.add(names[k])
            continue
        hits = [n for n in names if s in n]
        if not hits:
            raise ValueError(f"no SSSA block matches {s!r}; SSSA blocks: {_listing(names)}")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n}" for i, n in enumerate(names)) or "(none)"


@dataclass
class BlockCapture:
    """What one SSSA block showed during one forward: salience and spike mask ``(T, B, nh, N)``
    (float32, CPU) and the token grid ``(h, w)`` with ``h * w == N``."""

    name: str
    grid: tuple[int, int]
    salience: torch.Tensor
    mask: torch.Tensor

    @property
    def timesteps(self) -> int:
        return int(self.salience.shape[0])

    @property
    def heads(self) -> int:
        return int(self.salience.shape[2])


class SSSACapture(AbstractContextManager):
    """Forward hooks on the selected SSSA blocks; removed on exit (also when the body raises).

        with SSSACapture(model) as cap:
            det = predict_image(model, img)
        blocks = cap.results()      # {name: BlockCapture}

    Streaming-mode calls (one timestep per call) are concatenated along T. ``clear()`` forgets what was
    captured, for the next image.
    """

    def __init__(self, model: nn.Module, blocks: Iterable[str | int] | None = None):
        found = find_sssa_blocks(model)
        if not found:
            raise ValueError("the model has no SSSA blocks (is its attention 'ssa'?); nothing to show")
        keep = set(select_blocks([n for n, _ in found], blocks))
        self.blocks = [(n, m) for n, m in found if n in keep]
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.clear()

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.blocks]

    def clear(self) -> None:
        self._sal: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._mask: dict[str, list[torch.Tensor]] = {n: [] for n in self.names}
        self._grid: dict[str, tuple[int, int]] = {}

    def __enter__(self) -> "SSSACapture":
        try:
            for name, mod in self.blocks:
                self._handles.append(mod.saccade.register_forward_hook(self._saccade_hook(name)))
                self._handles.append(mod.register_forward_hook(self._grid_hook(name)))
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()
        return None  # never swallow the body's exception

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _saccade_hook(self, name: str):
        def hook(module, args, output):
            # args[0]: salience (T, B, nh, N); output: spike mask (T, B, nh, N)
            self._sal[name].append(args[0].detach().float().cpu().clone())
            self._mask[name].append(output.detach().float().cpu().clone())

        return hook

    def _grid_hook(self, name: str):
        def hook(module, args, output):
            x = args[0]  # (T, B, C, h, w)
            if x.ndim != 5:
                raise ValueError(f"{name}: SSSA input must be (T, B, C, h, w), got {tuple(x.shape)}")
            self._grid[name] = (int(x.shape[-2]), int(x.shape[-1]))

        return hook

    def results(self) -> dict[str, BlockCapture]:
        """``{name: BlockCapture}`` for the blocks that ran, in model order."""
        out = {}
        for name in self.names:
            if not self._sal[name]:
                continue
            sal = torch.cat(self._sal[name])  # (T, B, nh, N)
            mask = torch.cat(self._mask[name])
            h, w = self._grid[name]
            if h * w != sal.shape[-1]:
                raise ValueError(f"{name}: grid {h}x{w} does not match {sal.shape[-1]} tokens")
            out[name] = BlockCapture(name, (h, w), sal, mask)
        return out


# --------------------------------------------------------------------------------------------
# Geometry: tokens -> letterboxed input -> original pixels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LetterboxGeometry:
    """How an ``orig_shape`` image was letterboxed into ``input_shape``: resized to ``unpad_shape``
    (both ``(height, width)``) and padded by ``top`` / ``left`` (the rest at bottom / right)."""

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    unpad_shape: tuple[int, int]
    top: int
    left: int

    def as_array(self) -> np.ndarray:
        """[H0, W0, Hin, Win, Hu, Wu, top, left] for storing in .npz files."""
        return np.array([*self.orig_shape, *self.input_shape, *self.unpad_shape, self.top, self.left], np.int64)


def letterbox_geometry(orig_shape: tuple[int, int], imgsz: int) -> LetterboxGeometry:
    """The geometry ``letterbox_tensor(img, imgsz)`` applies, from Ultralytics' own ``LetterBox``."""
    from ultralytics.data.augment import LetterBox

    H0, W0 = int(orig_shape[0]), int(orig_shape[1])
    p = LetterBox(new_shape=(imgsz, imgsz), auto=False, stride=32).get_params({"img": np.empty((H0, W0, 0), np.uint8)})
    uw, uh = p["new_unpad"]
    return LetterboxGeometry((H0, W0), (int(p["new_shape"][0]), int(p["new_shape"][1])), (int(uh), int(uw)),
                             int(p["top"]), int(p["left"]))


def tokens_to_grid(tokens: np.ndarray | torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """(..., N) -> (..., h, w), row-major (token n = i * w + j)."""
    a = tokens.numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    h, w = grid
    if a.shape[-1] != h * w:
        raise ValueError(f"{a.shape[-1]} tokens do not fill a {h}x{w} grid")
    return a.reshape(*a.shape[:-1], h, w)


def grid_to_image(maps: np.ndarray, geom: LetterboxGeometry, out_shape: tuple[int, int] | None = None,
                  interp: str = "bilinear") -> np.ndarray:
    """Token maps (..., h, w) on the letterboxed input -> (..., H, W) on the original image (or on the
    original image resized to ``out_shape``). See the module docstring for the mapping."""
    if interp not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interp!r}; choose from {INTERPOLATIONS}")
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[-2:]
    Hin, Win = geom.input_shape
    if Hin % h or Win % w:
        raise ValueError(f"token grid {h}x{w} does not tile the {Hin}x{Win} input")
    Ho, Wo = out_shape or geom.orig_shape
    Hu, Wu = geom.unpad_shape
    # output pixel centres -> letterboxed input coordinates (continuous, pixel edges at integers)
    u = geom.left + (np.arange(Wo) + 0.5) * (Wu / Wo)  # (Wo,)
    v = geom.top + (np.arange(Ho) + 0.5) * (Hu / Ho)  # (Ho,)
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, h, w)  # (K, h, w)
    if interp == "nearest":
        j = np.clip(np.floor(u * w / Win).astype(np.int64), 0, w - 1)
        i = np.clip(np.floor(v * h / Hin).astype(np.int64), 0, h - 1)
        out = flat[:, i[:, None], j[None, :]]  # (K, Ho, Wo)
    else:
        gx = torch.from_numpy(2.0 * u / Win - 1.0).float()  # grid_sample coordinates, align_corners=False
        gy = torch.from_numpy(2.0 * v / Hin - 1.0).float()
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).unsqueeze(0)  # (1, Ho, Wo, 2) as (x, y)
        src = torch.from_numpy(np.ascontiguousarray(flat)).unsqueeze(0)  # (1, K, h, w)
        out = torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="border",
                                              align_corners=False)[0].numpy()  # (K, Ho, Wo)
    return out.reshape(*lead, Ho, Wo)


# --------------------------------------------------------------------------------------------
# Per-image maps
# --------------------------------------------------------------------------------------------


@dataclass
class BlockMaps:
    """One block's maps for one image.

    ``salience_tokens`` / ``mask_tokens``: per head on the token grid, ``(T, nh, h, w)``.
    ``salience`` / ``mask``: averaged over heads (the mask average is the fraction of heads firing) and
    mapped to original image pixels, ``(T, H0, W0)``.
    """

    name: str
    grid: tuple[int, int]
    stride: int
    salience_tokens: np.ndarray
    mask_tokens: np.ndarray
    salience: np.ndarray
    mask: np.ndarray
    threshold: np.ndarray | None = None  # per-head saccadic threshold V_th

    @property
    def timesteps(self) -> int:
        return int(self.salience_tokens.shape[0])

    @property
    def heads(self) -> int:
        return int(self.salience_tokens.shape[1])

    @property
    def salience_mean(self) -> np.ndarray:
        """Salience averaged over heads and time, (H0, W0)."""
        return self.salience.mean(0)

    @property
    def mask_mean(self) -> np.ndarray:
        """Fraction of (head, timestep) pairs that fired, (H0, W0)."""
        return self.mask.mean(0)


@dataclass
class HeatmapResult:
    """Detections and attention maps of one image; ``panel`` / ``npz`` are set once written."""

    source: str
    image: np.ndarray  # original BGR (H0, W0, 3)
    detections: np.ndarray  # (n, 6): x1, y1, x2, y2, score, class in original pixels
    geometry: LetterboxGeometry
    blocks: list[BlockMaps]
    names: dict[int, str]
    label: str = ""
    panel: Path | None = None
    panel_shape: tuple[int, int] | None = None  # (height, width) of the PNG in pixels
    npz: Path | None = None

    def block(self, key: str | int) -> BlockMaps:
        """A block by index or (sub)name."""
        return {b.name: b for b in self.blocks}[select_blocks([b.name for b in self.blocks], [key])[0]]


def block_maps(cap: BlockCapture, geom: LetterboxGeometry, batch_index: int = 0, interp: str = "bilinear",
               threshold: np.ndarray | None = None) -> BlockMaps:
    """Turn one capture (sample ``batch_index``) into token-grid and original-pixel maps."""
    h, w = cap.grid
    sal = tokens_to_grid(cap.salience[:, batch_index], cap.grid)  # (T, nh, h, w)
    mask = tokens_to_grid(cap.mask[:, batch_index], cap.grid)  # (T, nh, h, w)
    stride = geom.input_shape[0] // h
    return BlockMaps(cap.name, (h, w), stride, sal, mask,
                     grid_to_image(sal.mean(1), geom, interp=interp),  # (T, H0, W0)
                     grid_to_image(mask.mean(1), geom, interp="nearest"),  # a firing fraction: keep token edges
                     threshold)


def heatmap_image(model: nn.Module, img_bgr: np.ndarray, imgsz: int = 640, conf: float = 0.25, iou: float = 0.45,
                  max_det: int = 300, blocks: Iterable[str | int] | None = None, interp: str = "bilinear",
                  source: str = "", label: str = "") -> HeatmapResult:
    """Detect and capture the SSSA maps of one BGR image with a single forward pass."""
    if imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
    model.eval()
    with SSSACapture(model, blocks) as cap:
        det = predict_image(model, img_bgr, imgsz, conf, iou, max_det)
    geom = letterbox_geometry(img_bgr.shape[:2], imgsz)
    thresholds = {n: m.saccade.v_threshold.detach().cpu().numpy().copy() for n, m in cap.blocks}
    maps = [block_maps(c, geom, 0, interp, thresholds[n]) for n, c in cap.results().items()]
    names = {int(k): str(v) for k, v in getattr(model, "names", {}).items()}
    return HeatmapResult(source, img_bgr, det.numpy(), geom, maps, names, label)


# --------------------------------------------------------------------------------------------
# Output: panel PNG and raw .npz
# --------------------------------------------------------------------------------------------

CELL_W = 3.4  # inches per panel column (image + colour bar)
TITLE_H = 0.55  # inches per row for the two-line titles
DISPLAY_MAX = 480  # longest side (pixels) at which images and maps are drawn


def panel_figsize(n_blocks: int, n_steps: int, aspect: float) -> tuple[float, float]:
    """Figure (width, height) in inches: rows = 2 per block (salience, spike mask), columns =
    detections | the selected t | mean over T. ``aspect`` = image height / width."""
    a = float(np.clip(aspect, 0.25, 4.0))
    cols, rows = n_steps + 2, 2 * n_blocks
    return CELL_W * cols, rows * ((CELL_W - 0.6) * a + TITLE_H) + 0.5


def _display_shape(shape: tuple[int, int]) -> tuple[int, int]:
    H0, W0 = shape
    k = min(1.0, DISPLAY_MAX / max(H0, W0))
    return max(1, round(H0 * k)), max(1, round(W0 * k))


def render_panel(res: HeatmapResult, path: str | Path, timesteps: Sequence[int] | None = None, dpi: int = 100,
                 interp: str = "bilinear", cmap: str = "jet", alpha: float = 0.75) -> Path:
    """Write the panel PNG of ``res``: for every block a salience row and a spike-mask row; columns are
    the rendered detections (mask row: the block's numbers), the selected timesteps and the mean over T.
    Salience colour scales are shared along a row (0 to the row maximum) so timesteps compare; the mask
    scale is 0..1 (fraction of heads firing)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not res.blocks:
        raise ValueError("no SSSA block was captured for this image")
    T = res.blocks[0].timesteps
    ts = check_timesteps(timesteps, T)
    H0, W0 = res.geometry.orig_shape
    disp = _display_shape((H0, W0))
    gray = cv2.resize(cv2.cvtColor(res.image, cv2.COLOR_BGR2GRAY), disp[::-1], interpolation=cv2.INTER_AREA)
    det_vis = render(res.image, torch.from_numpy(res.detections), res.names, res.source)
    det_vis = cv2.resize(det_vis, disp[::-1], interpolation=cv2.INTER_AREA)[..., ::-1]  # RGB
    fw, fh = panel_figsize(len(res.blocks), len(ts), H0 / W0)
    fig = Figure(figsize=(fw, fh), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    cols = len(ts) + 2
    axes = fig.subplots(2 * len(res.blocks), cols, squeeze=False)
    fig.suptitle(f"{Path(res.source).name or 'image'} ({W0}x{H0}) | {res.label} | {len(res.detections)} "
                 f"detection(s) | T={T}, input {res.geometry.input_shape[1]}x{res.geometry.input_shape[0]}",
                 fontsize=10)
    for r, b in enumerate(res.blocks):
        # display-size maps straight from the token grid (one resampling, see grid_to_image)
        sal = grid_to_image(b.salience_tokens.mean(1), res.geometry, disp, interp)  # (T, h', w')
        msk = grid_to_image(b.mask_tokens.mean(1), res.geometry, disp, "nearest")
        srow, mrow = axes[2 * r], axes[2 * r + 1]
        hdr = f"{b.name} [{b.grid[0]}x{b.grid[1]} tokens, {b.heads} heads]"
        srow[0].imshow(det_vis)
        srow[0].set_title(f"{hdr}\ndetections", fontsize=7)
        mrow[0].axis("off")
        vth = "" if b.threshold is None else ", ".join(f"{v:.3g}" for v in np.ravel(b.threshold))
        mrow[0].text(0.02, 0.98, f"{b.name}\ntoken grid {b.grid[0]}x{b.grid[1]} (stride {b.stride})\n"
                     f"heads {b.heads}, V_th [{vth}]\nmax salience {b.salience_tokens.max():.4g}\n"
                     f"mean salience {b.salience_tokens.mean():.4g}\ntokens firing {b.mask_tokens.mean():.1%}",
                     va="top", ha="left", fontsize=7, family="monospace", transform=mrow[0].transAxes)
        smean, mmean = sal.mean(0), msk.mean(0)
        vmax = float(max(sal[ts].max(), smean.max()))
        vmax = vmax if vmax > 0 else 1e-6  # a silent block: an all-zero map on a valid scale
        for c, (t, s_img, m_img) in enumerate([*((t, sal[t], msk[t]) for t in ts), ("mean", smean, mmean)], 1):
            tl = f"t={t}" if t != "mean" else f"mean over T={T}"
            for ax, m, kind, vmx in ((srow[c], s_img, "salience", vmax), (mrow[c], m_img, "spike mask", 1.0)):
                ax.imshow(gray, cmap="gray", vmin=0, vmax=255)
                # opacity grows with the value, so low-salience areas show the image underneath
                im = ax.imshow(m, cmap=cmap, vmin=0.0, vmax=vmx, alpha=alpha * np.clip(m / vmx, 0.25, 1.0))
                what = kind if kind == "salience" else "heads firing" + (" (rate)" if t == "mean" else "")
                ax.set_title(f"{b.name}\n{what} {tl}", fontsize=7)
                cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
                cb.ax.tick_params(labelsize=6)
        for ax in (*srow, *mrow[1:]):
            ax.set_xticks([])
            ax.set_yticks([])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    res.panel = path
    res.panel_shape = fig.canvas.get_width_height()[::-1]
    return path


def check_timesteps(timesteps: Sequence[int] | None, T: int) -> list[int]:
    """Validate the timesteps to show (None: all), keeping the given order without repeats."""
    if timesteps is None or len(timesteps) == 0:
        return list(range(T))
    bad = [t for t in timesteps if not 0 <= int(t) < T]
    if bad:
        raise ValueError(f"timesteps {bad} out of range; the model runs T={T} (0..{T - 1})")
    return list(dict.fromkeys(int(t) for t in timesteps))


def save_npz(res: HeatmapResult, path: str | Path) -> Path:
    """Raw maps: ``block_names``; per block i ``salience_tokens_i`` / ``mask_tokens_i`` (T, nh, h, w)
    and ``salience_i`` / ``mask_i`` (T, H0, W0, float16); ``geometry`` (see ``LetterboxGeometry.as_array``)
    and ``detections`` (n, 6)."""
    arrays: dict[str, np.ndarray] = {
        "block_names": np.array([b.name for b in res.blocks]),
        "geometry": res.geometry.as_array(),
        "detections": res.detections.astype(np.float32),
    }
    for i, b in enumerate(res.blocks):
        arrays[f"salience_tokens_{i}"] = b.salience_tokens.astype(np.float32)
        arrays[f"mask_tokens_{i}"] = b.mask_tokens.astype(np.uint8)
        arrays[f"salience_{i}"] = b.salience.astype(np.float16)
        arrays[f"mask_{i}"] = b.mask.astype(np.float16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    res.npz = path
    return path


# --------------------------------------------------------------------------------------------
# Models and folders
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def calibrate_bn(model: nn.Module, images: Sequence[np.ndarray], imgsz: int, batch: int = 8) -> int:
    """Set every batch-norm layer's running statistics to the statistics of ``images`` (BGR arrays,
    letterboxed like inference). No weight changes. Returns the number of images used."""
    from ..models.calibration import recalibrate_bn

    device = next(model.parameters()).device
    return recalibrate_bn(model, (torch.cat([letterbox_tensor(img, imgsz, device) for img in images[k:k + batch]])
                                  for k in range(0, len(images), batch)))


def untrained_model(variant: str = "n", seed: int = 0, calib_images: Sequence[np.ndarray] = (), imgsz: int = 640,
                    nc: int = 1):
    """A freshly initialised SNN-ViT-YOLO (seeded; the global RNG is left untouched), with batch-norm
    statistics calibrated on ``calib_images`` (see the module docstring). Returns (model, label)."""
    from ..models import SNNViTYOLO

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


@dataclass
class HeatmapSummary:
    out_dir: Path
    panels: list[Path] = field(default_factory=list)
    npz: list[Path] = field(default_factory=list)
    results: list[HeatmapResult] = field(default_factory=list)  # filled when keep=True
    skipped: list[tuple[str, str]] = field(default_factory=list)
    label: str = ""


def heatmaps(
    source: str | Path,
    weights: str | Path | None = None,
    out: str | Path = "runs/heatmap/exp",
    blocks: Iterable[str | int] | None = None,
    timesteps: Sequence[int] | None = None,
    imgsz: int | None = None,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    variant: str | None = None,
    seed: int = 0,
    calib: int = 8,
    save_raw: bool = False,
    max_images: int | None = None,
    interp: str = "bilinear",
    dpi: int = 100,
    model: nn.Module | None = None,
    label: str | None = None,
    keep: bool = False,
    verbose: bool = True,
) -> HeatmapSummary:
    """Write one panel PNG (and optionally one .npz) per image of ``source`` into ``out``.

    The model is ``model`` if given, else an untrained ``variant`` (n/s/m, BN calibrated on the first
    ``calib`` source images, ``max_images`` notwithstanding), else the checkpoint ``weights`` (default: the shipped weights; a missing
    file raises ``FileNotFoundError`` saying how to proceed). ``keep`` keeps every ``HeatmapResult`` (maps
    in memory) in the summary; otherwise only paths are returned.
    """
    from .. import weights as W

    if interp not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interp!r}; choose from {INTERPOLATIONS}")
    if imgsz is not None and imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
    src = expand_source(source)
    paths = src.images[:max_images] if max_images else src.images
    summary = HeatmapSummary(Path(out), skipped=list(src.skipped))
    summary.skipped += [(str(v), "videos are not supported by the heatmap tool") for v in src.videos]

    def load(p: Path, record: bool = True) -> np.ndarray | None:
        try:
            return read_image(p)
        except ImageReadError as e:
            if record:
                summary.skipped.append((str(p), str(e)))
            return None

    if model is None and variant:
        model, _ = untrained_model(variant, seed)  # batch norm calibrated below, once the options are checked
        auto_label = None
    elif model is None:
        wpath = Path(weights) if weights else W.DEFAULT_WEIGHTS
        if not wpath.is_file():
            raise FileNotFoundError(
                f"weights not found: {wpath}" + (" (the default weights)" if not weights else "")
                + "; pass --weights PATH, or --model n|s|m to look at an untrained model")
        model = W.load_model(wpath)
        auto_label = f"weights {wpath.name}"
    else:
        auto_label = "model"
    label = label or auto_label
    summary.label = label
    imgsz = imgsz or W.default_imgsz(model)  # the weights' training size; 640 for an untrained model
    if imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
    # fail on a bad --blocks / --timesteps before any image is processed
    found = find_sssa_blocks(model)
    if not found:
        raise ValueError("the model has no SSSA blocks (is its attention 'ssa'?); nothing to show")
    select_blocks([n for n, _ in found], blocks)
    check_timesteps(timesteps, found[0][1].saccade.T)
    if auto_label is None:
        calib_imgs = [im for im in (load(p, record=False) for p in src.images[:calib]) if im is not None]
        n = calibrate_bn(model, calib_imgs, imgsz) if calib_imgs else 0
        label = label or untrained_label(variant, seed, n)
        summary.label = label
    model.eval()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = Path(source) if Path(source).is_dir() else None
    for k, p in enumerate(paths, 1):
        img = load(p)
        if img is None:
            continue
        res = heatmap_image(model, img, imgsz, conf, iou, max_det, blocks, interp, str(p), label)
        stem = output_name(p, root)
        summary.panels.append(render_panel(res, out_dir / f"{stem}_heatmap.png", timesteps, dpi, interp))
        if save_raw:
            summary.npz.append(save_npz(res, out_dir / f"{stem}_heatmap.npz"))
        if keep:
            summary.results.append(res)
        if verbose:
            print(f"image {k}/{len(paths)} {p}: {len(res.detections)} detection(s), "
                  f"{len(res.blocks)} SSSA block(s) -> {res.panel}")
    for f, why in summary.skipped:
        LOGGER.warning(f"skipped {f}: {why}")
    if verbose:
        print(f"{len(summary.panels)} panel(s) -> {out_dir} [{label}]")
    return summary

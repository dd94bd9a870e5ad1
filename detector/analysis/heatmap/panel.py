"""Heatmap panels: token maps taken back to image pixels, and the PNG / .npz outputs.

Token -> pixel mapping (``grid_to_image``): token (i, j) covers the letterboxed input box
``[i*s, (i+1)*s) x [j*s, (j+1)*s)`` with stride ``s = input side / grid side``. Every output pixel
centre is carried through the inverse letterbox (``detector.io.letterbox.Letterbox``: scale by the
resized content size, shift by the top / left padding) onto the token grid and sampled there
(``nearest``: the token it falls in; ``bilinear``: interpolated between token centres). That is
"upsample to the letterboxed size, crop the padding, resize to the original size" done as one exact
resampling, so no second interpolation blurs the map, and padding tokens never reach the output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from ...files import atomic_write_bytes
from ...io.letterbox import Letterbox
from ...io.writers import render
from .capture import BlockCapture

INTERPOLATIONS = ("nearest", "bilinear")


def tokens_to_grid(tokens: np.ndarray | torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """(..., N) -> (..., h, w), row-major (token n = i * w + j)."""
    a = tokens.numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    h, w = grid
    if a.shape[-1] != h * w:
        raise ValueError(f"{a.shape[-1]} tokens do not fill a {h}x{w} grid")
    return a.reshape(*a.shape[:-1], h, w)


def grid_to_image(maps: np.ndarray, geom: Letterbox, out_shape: tuple[int, int] | None = None,
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
    def salience_mean(self) -> np.ndarray:
        """Salience averaged over heads and time, (H0, W0)."""
        return self.salience.mean(0)

    @property
    def timesteps(self) -> int:
        return int(self.salience_tokens.shape[0])

    @property
    def heads(self) -> int:
        return int(self.salience_tokens.shape[1])


@dataclass
class HeatmapResult:
    """Detections and attention maps of one image; ``panel`` / ``npz`` are set once written."""

    source: str
    image: np.ndarray  # original BGR (H0, W0, 3)
    detections: np.ndarray  # (n, 6): x1, y1, x2, y2, score, class in original pixels
    geometry: Letterbox
    blocks: list[BlockMaps]
    names: dict[int, str]
    label: str = ""
    panel: Path | None = None
    panel_shape: tuple[int, int] | None = None  # (height, width) of the PNG in pixels
    npz: Path | None = None



def block_maps(cap: BlockCapture, geom: Letterbox, batch_index: int = 0, interp: str = "bilinear",
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


CELL_W = 3.4  # inches per panel column (image + colour bar)
TITLE_H = 0.55  # inches per row for the two-line titles
DISPLAY_MAX = 480  # longest side (pixels) at which images and maps are drawn


def panel_figsize(n_blocks: int, n_steps: int, aspect: float) -> tuple[float, float]:
    """Figure (width, height) in inches: rows = 2 per block (salience, spike mask), columns =
    detections | the selected t | mean over T. ``aspect`` = image height / width."""
    a = float(np.clip(aspect, 0.25, 4.0))
    cols, rows = n_steps + 2, 2 * n_blocks
    return CELL_W * cols, rows * ((CELL_W - 0.6) * a + TITLE_H) + 0.5


MAX_PANEL_PIXELS = 2**27  # ~134 Mpx: an RGBA canvas of ~0.5 GB
MAX_PANEL_SIDE = 2**16 - 1  # Agg's largest side


def check_dpi(dpi, n_blocks: int, n_steps: int) -> int:
    """Refuse (one line) a ``dpi`` whose panel could exceed ``MAX_PANEL_PIXELS`` or Agg's largest side for
    this many blocks and timesteps (checked for the tallest images, aspect 4, before any work)."""
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"dpi must be a positive integer, got {dpi!r}")
    fw, fh = panel_figsize(n_blocks, n_steps, 4.0)
    w, h = fw * dpi, fh * dpi
    if w * h > MAX_PANEL_PIXELS or max(w, h) > MAX_PANEL_SIDE:
        fits = int(min((MAX_PANEL_PIXELS / (fw * fh)) ** 0.5, MAX_PANEL_SIDE / max(fw, fh)))
        raise ValueError(f"dpi {dpi} makes panels of up to {w:.0f}x{h:.0f} px ({n_blocks} block(s), {n_steps} "
                         f"timestep(s)); at most {MAX_PANEL_PIXELS / 1e6:.0f} Mpx and {MAX_PANEL_SIDE} px a side: use "
                         f"dpi {fits} or less (or fewer --blocks / --timesteps)")
    return dpi


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
    det_vis = render(res.image, res.detections, res.names, res.source)
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())  # never a half-written panel
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
    and ``salience_i`` / ``mask_i`` (T, H0, W0, float16); ``geometry`` (see ``Letterbox.as_array``)
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
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())
    res.npz = path
    return path

"""Firing rates, synaptic operations (SOPs) and energy of spiking models, measured from real spikes.

The meter observes a model through forward hooks only (DESIGN.md: "energy observes the flow, never
changes it"); it works on any network built from ``torch.nn`` layers and this project's modules: the
SNN-ViT backbone, the full SNN-ViT-YOLO detector or a small hand-built net.

What is counted
---------------
* Every ``nn.Conv2d`` and ``nn.Linear`` ("synaptic" layers), whether it runs on the time-folded batch
  ``(T*B, ...)`` (``detector.nn.time.SeqModule``, ``GLSPS``) or once on ``(B, ...)`` (the encoding
  conv ``stem``, which sees the real image ONCE and is repeated over T, so its MACs count once).
  Per layer: whether its input is binary (checked on the real tensor values of every call, never
  assumed), its firing rate (fraction of nonzero inputs), its dense MACs per image and timestep, and
  its SOPs in two definitions:

  (a) ``sops_rate = firing_rate x T x MACs`` - the field convention (DESIGN.md section 4);
  (b) ``sops`` - exact: every input spike triggers one addition per output position (and output
      channel) it reaches, with borders, stride, dilation and groups accounted for. Computed by
      running the same convolution with an all-ones kernel (no bias) on the spike map and summing;
      for a Linear it is ``nnz(input) x out_features``.

  Energy uses (b). (a) overcounts at zero-padded borders (a padded position never spikes) and, for
  strided kernels smaller than their stride, on inputs no output reads; it is reported beside (b)
  as ``sops_rate`` / ``energy_mj_rate_convention`` for comparison with papers.
  A layer whose input is binary costs ``E_AC x sops``; a layer with real-valued input costs
  ``E_MAC x MACs x (number of timesteps it actually ran)``.
* The SSSA attention's own work (spike counting, alpha, salience, normalisation, ``M_w`` mixing,
  threshold, mask), and the Spikformer-style baseline's ``Q K^T`` and ``attn V``, op by op, each
  with its price (AC or MAC) stated where it is counted (``sssa_ops`` / ``ssa_ops``).

What is not counted (the usual convention, stated so nobody has to guess)
-------------------------------------------------------------------------
* Batch norm: assumed folded into the preceding conv/linear at inference (zero cost).
* Biases (including the ones BN folding creates), residual additions on the membrane path, branch
  sums (GL-SPS) and the time average of the head: not counted.
* Neuron updates (membrane leak, integrate, fire, reset): not priced; their number is reported
  separately as ``neuron_updates`` (one per neuron per timestep).
* Memory access and data movement: not modelled (compute-only energy, as in the literature).
* Functional convolutions / matmuls in custom modules are invisible to forward hooks; the report
  lists other conv-like modules it found but did not count under ``uncounted_modules``.

The ANN equivalent is the same architecture run once (T = 1) on real-valued activations: every
synaptic layer costs ``MACs x E_MAC``; the attention ops are counted dense for one pass, additions
priced at E_AC (a real-valued add: it is the same fp32 adder) and multiplications at E_MAC.

Everything is reported per image, averaged over all measured images (plus the spread of the
per-image total). Constants live in ``detector.analysis.constants``.
"""

from __future__ import annotations

import csv
import glob
import inspect
import json
import math
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from detector.analysis.constants import DEFAULT_PRESET, PRESETS, EnergyConstants
from detector.nn.attention import SSSA, SpikingSelfAttention, split_heads

AC, MAC = "AC", "MAC"

METHOD_NOTES = [
    "Counts come from forward hooks on every nn.Conv2d / nn.Linear and on the project's attention modules.",
    "Binary inputs are detected from the actual tensor values of every call (all values in {0, 1}).",
    "Binary-input layers cost E_AC x exact SOPs (spike fan-out incl. borders, stride, dilation, groups).",
    "Real-valued-input layers cost E_MAC x dense MACs x the timesteps they actually ran "
    "(the encoding conv runs once per image, not T times).",
    "sops_rate = firing_rate x T x MACs (field convention) is reported beside the exact SOPs; "
    "energy uses the exact SOPs.",
    "SSSA ops are counted and priced op by op (see the 'ops' of each attention row).",
    "BatchNorm is assumed folded into the conv; biases, residual adds and neuron updates are not priced.",
    "ANN equivalent: the same network run once on real values, MACs x E_MAC (attention adds x E_AC).",
    "Compute energy only: memory access is not modelled.",
]


# --------------------------------------------------------------------------------------------
# Counting primitives (pure functions)
# --------------------------------------------------------------------------------------------


def is_binary(x: torch.Tensor) -> bool:
    """True when every value of ``x`` is exactly 0 or 1 (an all-zero map counts as binary)."""
    if x.dtype == torch.bool:
        return True
    return bool(((x == 0) | (x == 1)).all())


def time_passes(shape: Sequence[int], T: int, B: int) -> int:
    """How many timesteps one call of a layer covers, from the leading dims of its input.

    ``(T*B, ...)`` time-folded -> T; ``(T, B, ...)`` time-first -> T; ``(B, ...)`` -> 1 (run once per
    image, like the encoding conv). Checked in that order, so T = 1 is unambiguous."""
    if shape[0] == T * B:
        return T
    if len(shape) >= 2 and shape[0] == T and shape[1] == B:
        return T
    if shape[0] == B:
        return 1
    raise ValueError(
        f"cannot tell the time layout of a layer input of shape {tuple(shape)} for T={T}, B={B} images; "
        "expected (T*B, ...), (T, B, ...) or (B, ...)"
    )


def _per_sample_view(x: torch.Tensor, passes: int, B: int) -> torch.Tensor:
    """View ``x`` as (passes, B, ...) so per-image sums are possible (time-major fold: index t*B + b)."""
    if x.shape[0] == passes * B:
        return x.reshape(passes, B, *x.shape[1:])
    return x[:passes, :B]  # (T, B, ...) already time-first


def conv_fanout(conv: nn.Conv2d, spikes: torch.Tensor) -> torch.Tensor:
    """Exact synaptic operations per sample of a conv fed by a binary map ``spikes`` (N, C, H, W).

    Each spike at (c, y, x) triggers one addition per output position its kernel reaches and per
    output channel of its group. Summing that over spikes equals the conv of the spike map with an
    all-ones kernel (no bias). By linearity the channels of one group can be summed first, so the
    check conv has one input channel per group: cheap, and exact in float64. Returns (N,) float64.
    """
    N, C, H, W = spikes.shape
    g = conv.groups
    xs = spikes.to(torch.float64).reshape(N, g, C // g, H, W).sum(2)  # (N, g, H, W) spikes per group
    padding = conv.padding
    if conv.padding_mode != "zeros":  # reflect/replicate/circular padding repeats border spikes
        xs = F.pad(xs, conv._reversed_padding_repeated_twice, mode=conv.padding_mode)
        padding = 0
    ones = torch.ones(g, 1, *conv.kernel_size, dtype=torch.float64, device=xs.device)
    reach = F.conv2d(xs, ones, None, conv.stride, padding, conv.dilation, g)  # (N, g, Ho, Wo)
    return reach.sum(dim=(1, 2, 3)) * (conv.out_channels // g)


def _nnz_per_sample(x: torch.Tensor, batch_dim: int) -> torch.Tensor:
    dims = tuple(d for d in range(x.ndim) if d != batch_dim)
    return x.ne(0).sum(dim=dims).to(torch.float64)


@dataclass
class Op:
    """One kind of operation inside an attention module.

    ``count``: per image in this call (B,), spike-driven where the op is triggered by spikes;
    ``ann_count``: the same op dense for ONE timestep on real values (ANN equivalent), per image."""

    type: str  # AC or MAC: how the SNN op is priced
    count: torch.Tensor
    ann_type: str
    ann_count: float
    note: str


def sssa_ops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, version: str, t0: int = 0) -> dict[str, Op]:
    """Operations of one SSSA call, from its Q, K, V spikes ``(T_in, B, C, H, W)``.

    ``t0``: index of the first timestep of this call (nonzero only in streaming mode), needed because
    the causal ``M_w`` row of timestep t has t + 1 terms. Shapes follow ``detector.nn.attention``.
    """
    T_in, B, C, H, W = q.shape
    nh, hd, N = heads, C // heads, H * W
    steps = T_in * nh  # (timestep, head) pairs per image
    mix_terms = sum(t + 1 for t in range(t0, t0 + T_in))  # sum of causal M_w row lengths: T(T+1)/2 from t0=0
    full = lambda n: torch.full((B,), float(n), dtype=torch.float64)  # noqa: E731 - same count for every image
    ops = {
        # Q'[t,n] = sum_d Q[t,n,d]: each Q spike increments its token's counter -> 1 add per spike.
        "q_count": Op(AC, _nnz_per_sample(q, 1), AC, nh * N * (hd - 1), "1 add per Q spike (token spike count Q')"),
        # K'[t,m] = sum_d K[t,m,d]: same for K.
        "k_count": Op(AC, _nnz_per_sample(k, 1), AC, nh * N * (hd - 1), "1 add per K spike (token spike count K')"),
    }
    if version == "sssa_v2":
        # alpha[t] = sum_m K'[t,m]: N - 1 integer additions per (timestep, head).
        ops["alpha"] = Op(AC, full(steps * (N - 1)), AC, nh * (N - 1), "N-1 adds per timestep and head")
        # Patch[t,n] = Q'[t,n] * alpha[t]: one multiplication per token and head, priced as a MAC.
        ops["salience"] = Op(MAC, full(steps * N), MAC, nh * N, "1 multiply per token and head")
    elif version == "sssa_v1":
        # CroAtt = Q' K'^T (N x N) and its row sums: N*N multiply-accumulates per (timestep, head).
        ops["cross_attention"] = Op(MAC, full(steps * N * N), MAC, nh * N * N,
                                    "N*N multiply-accumulates per timestep and head")
    else:
        raise ValueError(f"unknown SSSA version {version!r}")
    # Patch / (N hd^2): one multiplication by a constant per token and head, priced as a MAC. (It could be
    # folded exactly into V_th, since M_w mixing is linear; counted because the code performs it.)
    ops["normalise"] = Op(MAC, full(steps * N), MAC, nh * N, "1 multiply per token and head (foldable into V_th)")
    # H[t] = sum_{s<=t} M_w[t,s] P[s]: t + 1 multiply-accumulates per token and head at timestep t,
    # T(T+1)/2 per token and head over a run from t = 0 (dense: zeros of M_w are not skipped).
    ops["mw_mix"] = Op(MAC, full(mix_terms * nh * N), MAC, nh * N, "t+1 MACs per token and head at timestep t")
    # S = Heaviside(H - V_th): one comparison (a subtraction) per token and head, priced as an AC.
    ops["threshold"] = Op(AC, full(steps * N), AC, nh * N, "1 compare per token and head")
    # S * V: each V spike is passed or dropped by its token's mask bit; priced as one AC per V spike
    # (an upper bound for a 1-bit AND). In the ANN equivalent V is real: one multiply per element.
    ops["mask_v"] = Op(AC, _nnz_per_sample(v, 1), MAC, nh * N * hd, "1 gate per V spike")
    return ops


def ssa_ops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> dict[str, Op]:
    """Operations of the Spikformer-style baseline ``LIF(scale * Q K^T V)`` from Q, K, V spikes."""
    T_in, B, C, H, W = q.shape
    nh, hd, N = heads, C // heads, H * W
    steps = T_in * nh

    def split(x):  # (T, B, C, H, W) -> (T, B, nh, N, hd), the attention's own head split
        return split_heads(x, nh).to(torch.float64)

    qs, ks = split(q), split(k)
    # Q K^T on spikes: each coincident pair q[n,d] = k[m,d] = 1 adds 1 to score (n, m):
    # sum over d of (Q spikes in column d) x (K spikes in column d) ACs.
    pairs = (qs.sum(-2) * ks.sum(-2)).sum(dim=(0, 2, 3))  # (B,)
    return {
        "qk": Op(AC, pairs, MAC, nh * N * N * hd, "1 add per coincident (Q, K) spike pair"),
        # scores * scale: one multiplication per score, priced as a MAC.
        "scale": Op(MAC, torch.full((B,), float(steps * N * N), dtype=torch.float64), MAC, nh * N * N,
                    "1 multiply per score"),
        # attn @ V with binary V: a V spike at (m, d) adds column m of attn into N outputs -> N ACs.
        "attn_v": Op(AC, _nnz_per_sample(v, 1) * N, MAC, nh * N * N * hd, "N adds per V spike"),
    }


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


@dataclass
class LayerEnergy:
    """One row of the report: a synaptic layer (conv/linear) or an attention module's own ops.
    All counts are per image, averaged over the measured images."""

    name: str
    type: str
    kind: str  # "synaptic" or "attention"
    input_binary: bool | None  # synaptic: the input was 0/1 in every call
    firing_rate: float | None  # synaptic with binary input: fraction of nonzero inputs
    timesteps: float  # timesteps the layer ran per image (T; 1 for the encoding conv)
    macs: float | None  # synaptic: dense MACs per image and timestep (the ANN layer's MACs)
    sops_rate: float | None  # synaptic, binary input: firing_rate x timesteps x macs (convention)
    sops: float | None  # synaptic, binary input: exact spike-triggered additions
    ac_ops: float  # the AC-priced operations used for energy
    mac_ops: float  # the MAC-priced operations used for energy
    energy_pj: float  # energy used for the report (exact SOPs)
    energy_rate_pj: float  # the same with the convention SOPs (a), for comparison
    ann_energy_pj: float
    calls: int
    input_elements: float | None = None  # synaptic: input values per image, all timesteps together
    input_shape: list[int] | None = None  # per image and timestep, e.g. [C, H, W]
    ops: dict | None = None  # attention: {op: {type, count, ann_type, ann_count, note}}
    rates: dict | None = None  # attention: firing rates of q, k, v and the saccadic mask


CSV_COLUMNS = ["name", "type", "kind", "input_binary", "firing_rate", "timesteps", "macs", "sops_rate", "sops",
               "ac_ops", "mac_ops", "energy_pj", "energy_rate_pj", "ann_energy_pj", "calls"]


@dataclass
class EnergyReport:
    """Per-image energy of a spiking model and its ANN equivalent, with the per-layer table."""

    layers: list[LayerEnergy]
    constants: EnergyConstants
    timesteps: int
    images: int
    image_energy_pj: list[float]  # total energy of every measured image
    neuron_updates: float  # per image; not priced (see module docstring)
    trained_timesteps: int | None = None
    uncounted_modules: list[str] = field(default_factory=list)
    idle_modules: list[str] = field(default_factory=list)  # conv/linear that never ran
    meta: dict = field(default_factory=dict)  # free-form: model, weights, source, imgsz, untrained...

    # -- totals --------------------------------------------------------------------------------
    @property
    def energy_mj(self) -> float:
        return sum(l.energy_pj for l in self.layers) * 1e-9

    @property
    def ann_energy_mj(self) -> float:
        return sum(l.ann_energy_pj for l in self.layers) * 1e-9

    @property
    def energy_mj_rate_convention(self) -> float:
        return sum(l.energy_rate_pj for l in self.layers) * 1e-9

    def _sum(self, attr: str, kind: str | None = None, binary: bool | None = None) -> float:
        return sum(
            getattr(l, attr) or 0.0
            for l in self.layers
            if (kind is None or l.kind == kind) and (binary is None or l.input_binary == binary)
        )

    def to_dict(self) -> dict:
        syn_bin = [l for l in self.layers if l.kind == "synaptic" and l.input_binary]
        n_in = sum(l.input_elements for l in syn_bin)
        mean_rate = sum(l.firing_rate * l.input_elements for l in syn_bin) / n_in if n_in else None
        e = torch.tensor(self.image_energy_pj, dtype=torch.float64) * 1e-9
        d = {
            **self.meta,
            "timesteps": self.timesteps,
            "trained_timesteps": self.trained_timesteps,
            "images": self.images,
            "constants": self.constants.to_dict(),
            "energy_mj": self.energy_mj,
            "energy_mj_std": float(e.std(unbiased=False)) if len(e) else None,
            "energy_mj_min": float(e.min()) if len(e) else None,
            "energy_mj_max": float(e.max()) if len(e) else None,
            "ann_energy_mj": self.ann_energy_mj,
            "ann_over_snn": self.ann_energy_mj / self.energy_mj if self.energy_mj else None,
            "energy_mj_rate_convention": self.energy_mj_rate_convention,
            "energy_breakdown_mj": {
                "real_valued_input_MAC": self._sum("energy_pj", "synaptic", False) * 1e-9,
                "spiking_synaptic_AC": self._sum("energy_pj", "synaptic", True) * 1e-9,
                "attention_ops": self._sum("energy_pj", "attention") * 1e-9,
            },
            "sops": self._sum("sops", "synaptic", True),
            "sops_rate": self._sum("sops_rate", "synaptic", True),
            "macs_real_valued": self._sum("mac_ops", "synaptic", False),
            "attention_ac_ops": self._sum("ac_ops", "attention"),
            "attention_mac_ops": self._sum("mac_ops", "attention"),
            "ann_macs": self._sum("macs", "synaptic"),
            "mean_firing_rate": mean_rate,
            "neuron_updates": self.neuron_updates,
            "uncounted_modules": self.uncounted_modules,
            "idle_modules": self.idle_modules,
            "method": METHOD_NOTES,
            "layers": [asdict(l) for l in self.layers],
        }
        return d

    # -- outputs -------------------------------------------------------------------------------
    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path

    def save_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
            w.writeheader()
            for l in self.layers:
                row = asdict(l)
                w.writerow({c: "" if row[c] is None else row[c] for c in CSV_COLUMNS})
        return path

    def save_plot(self, path: str | Path, title: str | None = None) -> Path:
        """Per-layer firing rates (top) and energy, SNN vs ANN equivalent, on a log axis (bottom)."""
        import matplotlib

        matplotlib.use("Agg")  # headless; no display needed
        import matplotlib.pyplot as plt

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        n = len(self.layers)
        x = list(range(n))
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8.0, 0.22 * n + 2), 8), sharex=True)
        rates = [l.firing_rate if l.firing_rate is not None else 0.0 for l in self.layers]
        colors = ["tab:blue" if l.kind == "synaptic" and l.input_binary else "tab:gray" for l in self.layers]
        ax1.bar(x, rates, color=colors)
        ax1.set_ylim(0, max(max(rates) * 1.15, 1e-3))
        ax1.set_ylabel("input firing rate")
        ax1.set_title(title or f"T={self.timesteps}, {self.images} image(s): {self.energy_mj:.4g} mJ/image "
                      f"(ANN equivalent {self.ann_energy_mj:.4g} mJ)")
        ax1.grid(axis="y", alpha=0.3)
        kind_color = {True: "tab:orange", False: "tab:red", None: "tab:green"}
        snn = [l.energy_pj * 1e-6 for l in self.layers]  # uJ
        ann = [l.ann_energy_pj * 1e-6 for l in self.layers]
        positive = [v for v in snn + ann if v > 0]
        floor = min(positive) / 3 if positive else 1e-6
        # zero-energy layers (no spikes) get no bar: a log axis cannot show 0, and a clamped bar would lie
        ax2.bar(x, [v if v > 0 else float("nan") for v in snn], color=[kind_color[l.input_binary] for l in self.layers])
        ax2.plot(x, [v if v > 0 else float("nan") for v in ann], "k_", markersize=8, label="ANN equivalent")
        ax2.set_yscale("log")
        ax2.set_ylim(bottom=floor)
        ax2.set_ylabel("energy per image (uJ); no bar = 0")
        ax2.grid(axis="y", alpha=0.3)
        from matplotlib.patches import Patch

        handles = [Patch(color="tab:orange", label="spike input (AC)"),
                   Patch(color="tab:red", label="real input (MAC)"),
                   Patch(color="tab:green", label="attention ops"), ax2.lines[0]]
        ax2.legend(handles=handles, fontsize=8)
        ax2.set_xticks(x)
        ax2.set_xticklabels([l.name for l in self.layers], rotation=90, fontsize=6)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path

    def format_table(self, max_name: int = 44) -> str:
        """A plain-text per-layer table and the totals."""
        lines = [f"{'layer':<{max_name}} {'type':<16} {'rate':>6} {'T':>3} {'MACs':>10} {'SOPs':>10} "
                 f"{'SOPs(rate)':>10} {'E (uJ)':>9} {'ANN (uJ)':>9}"]
        fmt = lambda v: "-" if v is None else f"{v:.3g}"  # noqa: E731
        for l in self.layers:
            rate = "-" if l.firing_rate is None else f"{l.firing_rate:.3f}"
            lines.append(f"{l.name[-max_name:]:<{max_name}} {l.type[:16]:<16} {rate:>6} {l.timesteps:>3g} "
                         f"{fmt(l.macs):>10} {fmt(l.sops):>10} {fmt(l.sops_rate):>10} "
                         f"{l.energy_pj * 1e-6:>9.3f} {l.ann_energy_pj * 1e-6:>9.3f}")
        d = self.to_dict()
        rate = "-" if d["mean_firing_rate"] is None else f"{d['mean_firing_rate']:.4f}"
        lines += [
            "",
            f"images: {self.images}   timesteps: {self.timesteps}   constants: {self.constants.name} "
            f"(E_MAC {self.constants.e_mac_pj} pJ, E_AC {self.constants.e_ac_pj} pJ)",
            f"energy per image: {self.energy_mj:.6g} mJ (std {d['energy_mj_std']:.3g})   "
            f"ANN equivalent: {self.ann_energy_mj:.6g} mJ   ratio ANN/SNN: {d['ann_over_snn'] or float('nan'):.3g}",
            f"with the firing-rate SOP convention: {self.energy_mj_rate_convention:.6g} mJ",
            f"SOPs (exact): {d['sops']:.4g}   SOPs (rate x T x MACs): {d['sops_rate']:.4g}   "
            f"real-valued MACs: {d['macs_real_valued']:.4g}   mean input firing rate: {rate}",
        ]
        if self.uncounted_modules:
            lines.append(f"NOT counted (unsupported module types): {', '.join(self.uncounted_modules)}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The meter: forward hooks that accumulate counts
# --------------------------------------------------------------------------------------------


class _PerImage:
    """Per-image counts of one layer: a buffer for the running batch, flushed at batch end, so
    several calls per batch (streaming, shared layers) add up and images a layer never saw get 0."""

    def __init__(self):
        self.done: dict[str, list[torch.Tensor]] = {}
        self.cur: dict[str, torch.Tensor] = {}

    def add(self, key: str, v: torch.Tensor) -> None:
        v = v.detach().to("cpu", torch.float64)
        self.cur[key] = self.cur[key] + v if key in self.cur else v

    def flush(self, images_before: int, B: int) -> None:
        for key in set(self.done) | set(self.cur):
            lst = self.done.setdefault(key, [])
            lst.append(torch.zeros(images_before - sum(t.numel() for t in lst), dtype=torch.float64))
            lst.append(self.cur.get(key, torch.zeros(B, dtype=torch.float64)))
        self.cur = {}

    def get(self, key: str, n: int) -> torch.Tensor:
        v = torch.cat(self.done.get(key, [torch.zeros(0, dtype=torch.float64)]))
        return torch.cat([v, torch.zeros(n - v.numel(), dtype=torch.float64)])


class _Synaptic:
    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.calls = 0
        self.binary = True
        self.nnz = 0
        self.numel = 0
        self.image_passes = 0  # sum over calls of timesteps x images
        self.dense_macs = 0.0
        self.input_shape: list[int] | None = None
        self.per_image = _PerImage()  # keys: sops, dense


class _Attention:
    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.calls = 0
        self.image_passes = 0
        self.ops: dict[str, dict] = {}  # op name -> type, ann_type, note, ann (dense one-pass count x passes)
        self.rate_counts: dict[str, list[int]] = {}
        self.cur: dict[str, torch.Tensor] = {}  # Q, K, V spikes of the running call
        self.t0 = 0
        self.per_image = _PerImage()  # keys: op names


class EnergyMeter:
    """Collects per-layer counts through forward hooks while the model runs.

    Usage::

        meter = EnergyMeter(model, timesteps=4)
        with torch.no_grad(), meter:     # installs hooks; eval mode while measuring
            for x in batches:
                with meter.batch(x.shape[0]):
                    model(x, T=4)        # any call(s) that run the model on these images
        report = meter.report(get_constants())

    ``timesteps`` is the T the model is run with; it tells the meter which layers ran on the
    time-folded batch (T*B) and which once per image (B).
    """

    SUPPORTED = (nn.Conv2d, nn.Linear)

    def __init__(self, model: nn.Module, timesteps: int | None = None):
        self.model = model
        trained = getattr(model, "timesteps", None)
        self.trained_timesteps = int(trained) if isinstance(trained, (int, float)) else None
        T = timesteps if timesteps is not None else (self.trained_timesteps or 1)
        if T < 1:
            raise ValueError(f"timesteps must be >= 1, got {T}")
        if self.trained_timesteps is not None and T > self.trained_timesteps:
            raise ValueError(f"timesteps={T} exceeds the model's trained T={self.trained_timesteps}")
        self.T = int(T)
        self._order: list = []  # layers in the order they first ran (data flow)
        self._syn: dict[nn.Module, _Synaptic] = {}
        self._att: dict[nn.Module, _Attention] = {}
        self._handles: list = []
        self._B: int | None = None
        self.images = 0
        self.neuron_updates = 0.0
        self.uncounted: list[str] = []
        self._was_training = False

    # -- hooks ---------------------------------------------------------------------------------
    def _syn_hook(self, module, inputs, output):
        B = self._require_batch()
        acc = self._syn[module]
        if acc.calls == 0:
            self._order.append(acc)
        x = inputs[0]
        passes = time_passes(x.shape, self.T, B)
        folded = x.shape[0] == passes * B  # else time-first (T, B, ...)
        acc.calls += 1
        acc.image_passes += passes * B
        binary = is_binary(x)
        acc.binary &= binary
        acc.nnz += int(x.count_nonzero())
        acc.numel += x.numel()
        acc.input_shape = list(x.shape[1:] if folded else x.shape[2:])  # per image and timestep
        if isinstance(module, nn.Conv2d):
            dense = output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:  # Linear: every input row meets every output feature
            dense = x.numel() * module.out_features
        acc.dense_macs += dense
        acc.per_image.add("dense", torch.full((B,), dense / B, dtype=torch.float64))
        if binary:
            xs = _per_sample_view(x, passes, B)  # (passes, B, ...)
            if isinstance(module, nn.Conv2d):
                sops = conv_fanout(module, xs.sum(0))  # the conv is linear: sum the timesteps first
            else:
                sops = _nnz_per_sample(xs, 1) * module.out_features
            acc.per_image.add("sops", sops)

    def _spike_hook(self, att: _Attention, key: str):
        def hook(module, inputs, output):
            att.cur[key] = output.detach()
        return hook

    def _saccade_pre_hook(self, att: _Attention):
        def hook(module, inputs):
            # streaming mode keeps the salience history: this call starts at timestep len(history)
            att.t0 = len(module._history) if getattr(module, "streaming", False) else 0
        return hook

    def _att_ops_hook(self, att: _Attention):
        def hook(module, *args):
            B = self._require_batch()
            m = att.module
            q, k, v = att.cur.pop("q"), att.cur.pop("k"), att.cur.pop("v")
            if att.calls == 0:
                self._order.append(att)
            att.calls += 1
            att.image_passes += q.shape[0] * B
            if isinstance(m, SSSA):
                ops = sssa_ops(q, k, v, m.heads, m.version, att.t0)
                mask = args[1]  # forward hook on the saccadic neuron: (inputs, output = token mask)
            else:
                ops = ssa_ops(q, k, v, m.heads)
                mask = None
            for key, t in (("q", q), ("k", k), ("v", v), ("mask", mask)):
                if t is not None:
                    c = att.rate_counts.setdefault(key, [0, 0])
                    c[0] += int(t.count_nonzero())
                    c[1] += t.numel()
            for name, op in ops.items():
                rec = att.ops.setdefault(name, {"type": op.type, "ann_type": op.ann_type, "note": op.note, "ann": 0.0})
                att.per_image.add(name, op.count)
                rec["ann"] += op.ann_count * q.shape[0] * B  # one timestep's dense ops, weighted by timesteps run
        return hook

    def _neuron_hook(self, module, inputs, output):
        self._require_batch()
        self.neuron_updates += output.numel()  # one membrane update per neuron per timestep

    def _require_batch(self) -> int:
        if self._B is None:
            raise RuntimeError("run the model inside `with meter.batch(n_images):` so counts can be per image")
        return self._B

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> "EnergyMeter":
        from spikingjelly.activation_based.neuron import BaseNode

        self._was_training = self.model.training
        self.model.eval()  # measure as deployed: BN uses running statistics
        try:
            for name, m in self.model.named_modules():
                name = name or type(m).__name__
                if isinstance(m, self.SUPPORTED):
                    self._syn.setdefault(m, _Synaptic(name, m))
                    self._handles.append(m.register_forward_hook(self._syn_hook))
                elif isinstance(m, (nn.modules.conv._ConvNd, nn.Bilinear)):
                    self.uncounted.append(f"{name} ({type(m).__name__})")
                if isinstance(m, (SSSA, SpikingSelfAttention)):
                    att = self._att.setdefault(m, _Attention(f"{name}.ops", m))
                    for key in ("q", "k", "v"):
                        self._handles.append(getattr(m, f"{key}_lif").register_forward_hook(self._spike_hook(att, key)))
                    if isinstance(m, SSSA):
                        self._handles.append(m.saccade.register_forward_pre_hook(self._saccade_pre_hook(att)))
                        self._handles.append(m.saccade.register_forward_hook(self._att_ops_hook(att)))
                    else:  # the baseline's ops are known once Q, K, V exist; count them before attn_lif
                        self._handles.append(m.attn_lif.register_forward_pre_hook(self._att_ops_hook(att)))
                if isinstance(m, BaseNode):
                    self._handles.append(m.register_forward_hook(self._neuron_hook))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.model.train(self._was_training)

    @contextmanager
    def batch(self, n_images: int) -> Iterator[None]:
        """Everything the model runs inside this block processes the same ``n_images`` images."""
        if self._B is not None:
            raise RuntimeError("meter.batch() blocks cannot be nested")
        self._B = int(n_images)
        try:
            yield
        finally:
            self._B = None
        for acc in self._order:
            acc.per_image.flush(self.images, int(n_images))
        self.images += int(n_images)

    # -- report --------------------------------------------------------------------------------
    def report(self, constants: EnergyConstants | None = None, meta: dict | None = None) -> EnergyReport:
        """Per-image averages over every image measured so far."""
        c = constants or PRESETS[DEFAULT_PRESET]
        n = self.images
        if n == 0:
            raise RuntimeError("no images were measured")
        rows: list[LayerEnergy] = []
        per_image = torch.zeros(n, dtype=torch.float64)
        price = {AC: c.e_ac_pj, MAC: c.e_mac_pj}
        for acc in self._order:
            if isinstance(acc, _Synaptic):
                sops_v, dense_v = acc.per_image.get("sops", n), acc.per_image.get("dense", n)
                e_v = c.e_ac_pj * sops_v if acc.binary else c.e_mac_pj * dense_v
                per_image += e_v
                macs = acc.dense_macs / acc.image_passes  # per image and timestep
                steps = acc.image_passes / n
                m = acc.module
                kind = ""
                if isinstance(m, nn.Conv2d):
                    kind = f" {m.kernel_size[0]}x{m.kernel_size[1]}/{m.stride[0]}"
                    kind += f" d{m.dilation[0]}" if m.dilation[0] > 1 else ""
                if acc.binary:
                    rate = acc.nnz / acc.numel if acc.numel else 0.0
                    sops = float(sops_v.sum()) / n
                    sops_rate = rate * steps * macs
                    energy, energy_rate, ac_ops, mac_ops = c.e_ac_pj * sops, c.e_ac_pj * sops_rate, sops, 0.0
                else:
                    rate = sops = sops_rate = None
                    mac_ops = acc.dense_macs / n
                    energy = energy_rate = c.e_mac_pj * mac_ops
                    ac_ops = 0.0
                rows.append(LayerEnergy(
                    name=acc.name, type=type(m).__name__ + kind, kind="synaptic", input_binary=acc.binary,
                    firing_rate=rate, timesteps=steps, macs=macs, sops_rate=sops_rate, sops=sops, ac_ops=ac_ops,
                    mac_ops=mac_ops, energy_pj=energy, energy_rate_pj=energy_rate, ann_energy_pj=c.e_mac_pj * macs,
                    calls=acc.calls, input_elements=acc.numel / n, input_shape=acc.input_shape,
                ))
            else:
                ops, ac, mac, ann = {}, 0.0, 0.0, 0.0
                for name, r in acc.ops.items():
                    v = acc.per_image.get(name, n)
                    per_image += price[r["type"]] * v
                    cnt = float(v.sum()) / n
                    ann_cnt = r["ann"] / acc.image_passes  # dense ops of one timestep, per image
                    ops[name] = {"type": r["type"], "count": cnt, "ann_type": r["ann_type"], "ann_count": ann_cnt,
                                 "note": r["note"]}
                    ac += cnt if r["type"] == AC else 0.0
                    mac += cnt if r["type"] == MAC else 0.0
                    ann += price[r["ann_type"]] * ann_cnt
                m = acc.module
                energy = c.e_ac_pj * ac + c.e_mac_pj * mac
                rows.append(LayerEnergy(
                    name=acc.name, type=m.version.upper() if isinstance(m, SSSA) else "SSA", kind="attention",
                    input_binary=None, firing_rate=None, timesteps=acc.image_passes / n, macs=None, sops_rate=None,
                    sops=None, ac_ops=ac, mac_ops=mac, energy_pj=energy, energy_rate_pj=energy, ann_energy_pj=ann,
                    calls=acc.calls, ops=ops, rates={k: a / b for k, (a, b) in acc.rate_counts.items() if b},
                ))
        idle = [a.name for a in self._syn.values() if a.calls == 0]
        return EnergyReport(
            layers=rows, constants=c, timesteps=self.T, images=n, image_energy_pj=per_image.tolist(),
            neuron_updates=self.neuron_updates / n, trained_timesteps=self.trained_timesteps,
            uncounted_modules=list(self.uncounted), idle_modules=idle, meta=dict(meta or {}),
        )


def _accepts_T(model: nn.Module) -> bool:
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "T" or p.kind == inspect.Parameter.VAR_KEYWORD for p in params)


def default_runner(model: nn.Module, timesteps: int | None) -> Callable[[nn.Module, torch.Tensor], object]:
    """``model(x, T=timesteps)`` when the forward takes T (SNNViT, SNNViTYOLO), else ``model(x)``."""
    if timesteps is not None and _accepts_T(model):
        return lambda m, x: m(x, T=timesteps)
    return lambda m, x: m(x)


@torch.no_grad()
def measure_energy(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    timesteps: int | None = None,
    run: Callable[[nn.Module, torch.Tensor], object] | None = None,
    constants: EnergyConstants | None = None,
    max_images: int | None = None,
    meta: dict | None = None,
) -> EnergyReport:
    """Run ``model`` on image ``batches`` (each (B, ...)) and return the per-image energy report.

    ``timesteps``: T to run with (default: the model's own ``timesteps``; must not exceed it).
    ``run(model, x)``: how to run one batch (default ``model(x, T=T)`` or ``model(x)``).
    ``max_images``: stop after this many images (the last batch is cut to fit).
    ``meta``: free-form facts copied into the report (model name, weights, source, image size...).
    """
    meter = EnergyMeter(model, timesteps)
    if run is None and not _accepts_T(model) and meter.T != (meter.trained_timesteps or meter.T):
        raise ValueError(f"{type(model).__name__}.forward takes no T: pass run=... to run it with T={meter.T}")
    run = run or default_runner(model, meter.T)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with meter:
        for x in batches:
            if max_images is not None:
                left = max_images - meter.images
                if left <= 0:
                    break
                x = x[:left]
            with meter.batch(x.shape[0]):
                run(model, x.to(device))
    return meter.report(constants, meta)


# --------------------------------------------------------------------------------------------
# Images: files, folders, globs and Ultralytics dataset YAMLs
# --------------------------------------------------------------------------------------------


def find_images(source: str | Path) -> list[Path]:
    """Image files from a file, a folder (recursive) or a glob pattern, sorted
    (``detector.engine.sources.expand_source``, the same expansion ``tools/detect.py`` uses)."""
    from detector.engine.sources import expand_source

    images = expand_source(source).images
    if not images:
        raise FileNotFoundError(f"no images found in {source}")
    return images


def dataset_images(data: str | Path, split: str = "val") -> list[Path]:
    """The ``split`` images of an Ultralytics dataset YAML (``path`` + ``val``), resolved the way
    Ultralytics resolves them (``check_det_dataset``; folders searched recursively, ``.txt`` lists)."""
    from ultralytics.data.utils import IMG_FORMATS, check_det_dataset

    info = check_det_dataset(str(data), autodownload=False)
    entries = info.get(split)
    if not entries:
        raise FileNotFoundError(f"{data} has no '{split}' split")
    files: list[Path] = []
    for e in entries if isinstance(entries, list) else [entries]:
        p = Path(e)
        if p.is_dir():
            files += [Path(f) for f in glob.glob(str(Path(glob.escape(str(p))) / "**" / "*.*"), recursive=True)]
        elif p.is_file() and p.suffix.lower() == ".txt":
            for line in p.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if line:
                    files.append(p.parent / line[2:] if line.startswith("./") else Path(line))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{data}: '{split}' path not found: {p}")
    out = sorted({f for f in files if f.suffix.lower().lstrip(".") in IMG_FORMATS})
    if not out:
        raise FileNotFoundError(f"no '{split}' images found for {data}")
    return out


def load_image(path: str | Path, imgsz: int) -> torch.Tensor:
    """Read an image robustly (grayscale SAR, 16-bit, RGBA, TIFF: ``detector.engine.sources``),
    letterbox it to ``imgsz`` x ``imgsz`` exactly as detection does, and return RGB float
    (3, imgsz, imgsz) in [0, 1]. Raises ``ImageReadError`` naming an unreadable file."""
    if imgsz <= 0 or imgsz % 32:
        raise ValueError(f"imgsz must be a positive multiple of 32, got {imgsz}")
    from detector.engine.predictor import letterbox_tensor
    from detector.engine.sources import read_image

    return letterbox_tensor(read_image(path), imgsz)[0]


def image_batches(paths: Sequence[str | Path], imgsz: int, batch_size: int = 1,
                  skipped: list[tuple[str, str]] | None = None) -> Iterator[torch.Tensor]:
    """Batches (B, 3, imgsz, imgsz) of letterboxed images in [0, 1]. An unreadable file is skipped
    with a warning and appended to ``skipped`` as (path, reason)."""
    from detector.engine.sources import ImageReadError

    buf: list[torch.Tensor] = []
    for p in paths:
        try:
            buf.append(load_image(p, imgsz))
        except ImageReadError as e:
            warnings.warn(f"skipped: {e}", stacklevel=2)
            if skipped is not None:
                skipped.append((str(p), str(e)))
            continue
        if len(buf) == batch_size:
            yield torch.stack(buf)
            buf = []
    if buf:
        yield torch.stack(buf)

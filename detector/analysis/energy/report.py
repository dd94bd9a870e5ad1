"""The energy report: per-layer rows and per-image totals, and their JSON, CSV, plot and text forms."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ...files import atomic_write_bytes, atomic_write_text
from ..constants import EnergyConstants

METHOD_NOTES = [
    "Counts come from forward hooks on every nn.Conv2d / nn.Linear and on each attention's declared operations.",
    "Spike inputs are recognised from the actual tensor values of every call (integers in [0, D]).",
    "Spike-input layers cost E_AC x exact SOPs: every spike event times its fan-out (borders, stride, dilation, "
    "groups); an integer spike c is c events, the binary events of its spike-driven expansion.",
    "Real-valued-input layers cost E_MAC x dense MACs x the timesteps they actually ran "
    "(the encoding conv runs once per image, not T times).",
    "sops_rate = firing_rate x T x D x MACs (field convention) is reported beside the exact SOPs; "
    "energy uses the exact SOPs.",
    "Attention ops are counted and priced op by op (see the 'ops' of each attention row).",
    "BatchNorm is assumed folded into the conv; biases, residual adds and neuron updates are not priced.",
    "ANN equivalent: the same network run once on real values, MACs x E_MAC (attention adds x E_AC).",
    "Compute energy only: memory access is not modelled.",
]


@dataclass
class LayerEnergy:
    """One row of the report: a synaptic layer (conv/linear) or an attention module's own ops.
    All counts are per image, averaged over the measured images."""

    name: str
    type: str
    kind: str  # "synaptic" or "attention"
    input_spikes: bool | None  # synaptic: the input was spikes (0/1, or integer counts 0..D) in every call
    firing_rate: float | None  # synaptic with spike input: events / (input values x D)
    timesteps: float  # timesteps the layer ran per image (T; 1 for the encoding conv)
    macs: float | None  # synaptic: dense MACs per image and timestep (the ANN layer's MACs)
    sops_rate: float | None  # synaptic, spike input: firing_rate x timesteps x D x macs (convention)
    sops: float | None  # synaptic, spike input: exact spike-triggered additions
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


CSV_COLUMNS = ["name", "type", "kind", "input_spikes", "firing_rate", "timesteps", "macs", "sops_rate", "sops",
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
    levels: int = 1  # D: the largest spike count per timestep (1 = binary); T x D binary slots per image
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

    def _sum(self, attr: str, kind: str | None = None, spikes: bool | None = None) -> float:
        return sum(
            getattr(l, attr) or 0.0
            for l in self.layers
            if (kind is None or l.kind == kind) and (spikes is None or l.input_spikes == spikes)
        )

    def to_dict(self) -> dict:
        syn_bin = [l for l in self.layers if l.kind == "synaptic" and l.input_spikes]
        n_in = sum(l.input_elements for l in syn_bin)
        mean_rate = sum(l.firing_rate * l.input_elements for l in syn_bin) / n_in if n_in else None
        e = torch.tensor(self.image_energy_pj, dtype=torch.float64) * 1e-9
        d = {
            **self.meta,
            "timesteps": self.timesteps,
            "levels": self.levels,
            "binary_slots": self.timesteps * self.levels,
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
            "idle_modules": self.idle_modules,
            "method": METHOD_NOTES,
            "layers": [asdict(l) for l in self.layers],
        }
        return d

    # -- outputs -------------------------------------------------------------------------------
    def save_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2))  # written whole or not at all

    def save_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = io.StringIO(newline="")
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for l in self.layers:
            row = asdict(l)
            w.writerow({c: "" if row[c] is None else row[c] for c in CSV_COLUMNS})
        return atomic_write_text(path, f.getvalue())

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
        colors = ["tab:blue" if l.kind == "synaptic" and l.input_spikes else "tab:gray" for l in self.layers]
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
        ax2.bar(x, [v if v > 0 else float("nan") for v in snn], color=[kind_color[l.input_spikes] for l in self.layers])
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
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120)
        plt.close(fig)
        return atomic_write_bytes(path, buf.getvalue())

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
            f"images: {self.images}   timesteps: {self.timesteps}   spike levels D: {self.levels}   constants: {self.constants.name} "
            f"(E_MAC {self.constants.e_mac_pj} pJ, E_AC {self.constants.e_ac_pj} pJ)",
            f"energy per image: {self.energy_mj:.6g} mJ (std {d['energy_mj_std']:.3g})   "
            f"ANN equivalent: {self.ann_energy_mj:.6g} mJ   ratio ANN/SNN: {d['ann_over_snn'] or float('nan'):.3g}",
            f"with the firing-rate SOP convention: {self.energy_mj_rate_convention:.6g} mJ",
            f"SOPs (exact): {d['sops']:.4g}   SOPs (rate x T x MACs): {d['sops_rate']:.4g}   "
            f"real-valued MACs: {d['macs_real_valued']:.4g}   mean input firing rate: {rate}",
        ]
        return "\n".join(lines)

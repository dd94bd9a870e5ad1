"""Energy-per-operation constants: the one place they live, each preset with its source.

The energy model (docs/design.md, section 5) prices two operation types:

* ``E_MAC``: one multiply-accumulate on real values (multiply + add), used where a layer's input is
  real-valued (the encoding conv, the ANN equivalent, and the multiplications inside SSSA);
* ``E_AC``: one accumulate (add), used for every spike-triggered synaptic operation and for the
  additions/comparisons inside SSSA.

All presets below come from ONE table: M. Horowitz, "1.1 Computing's energy problem (and what we can
do about it)", ISSCC 2014, doi:10.1109/ISSCC.2014.6757323, Fig. 1.1.9 (45 nm, 0.9 V):

    8-bit int:  add 0.03 pJ, mult 0.2 pJ       16-bit float: add 0.4 pJ, mult 1.1 pJ
    32-bit int: add 0.1 pJ,  mult 3.1 pJ       32-bit float: add 0.9 pJ, mult 3.7 pJ

A MAC is priced as one multiply plus one add of the same format (e.g. fp32: 3.7 + 0.9 = 4.6 pJ), an
AC as one add. The fp32 pair (4.6 / 0.9 pJ) is the convention of the SNN literature (used e.g. by
Spikformer, ICLR 2023, and Spike-driven Transformer, NeurIPS 2023) and the default here. The fp16
and int8 presets are the same derivation SpikingJelly 2.0 ships
(``spikingjelly.activation_based.op_counter.simple_energy.SimpleEnergyCostConfig``); int32 follows it.

No preset for other process nodes is offered: the numbers that circulate for 28/22/7 nm are rarely
traceable to a primary measurement. For another node pass your own values (``e_mac_pj``/``e_ac_pj``,
or ``--e-mac``/``--e-ac`` on the command line); the report records them as ``custom``.
These are compute-only costs: memory access, data movement and neuron-state updates are not priced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

HOROWITZ_2014 = (
    'M. Horowitz, "Computing\'s energy problem (and what we can do about it)", ISSCC 2014, '
    "doi:10.1109/ISSCC.2014.6757323, Fig. 1.1.9 (45 nm, 0.9 V)"
)


@dataclass(frozen=True)
class EnergyConstants:
    """Energy per operation in picojoules, with where the numbers come from."""

    e_mac_pj: float
    e_ac_pj: float
    name: str = "custom"
    source: str = "user supplied"

    def __post_init__(self):
        if not (self.e_mac_pj >= 0 and self.e_ac_pj >= 0):
            raise ValueError(f"energy constants must be non-negative, got E_MAC={self.e_mac_pj}, E_AC={self.e_ac_pj}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, EnergyConstants] = {
    # default: 32-bit float, the field convention (MAC = FMult32 3.7 + FAdd32 0.9; AC = FAdd32)
    "45nm-fp32": EnergyConstants(4.6, 0.9, "45nm-fp32", HOROWITZ_2014 + ": fp32 mult 3.7 + add 0.9 pJ; add 0.9 pJ"),
    "45nm-fp16": EnergyConstants(1.5, 0.4, "45nm-fp16", HOROWITZ_2014 + ": fp16 mult 1.1 + add 0.4 pJ; add 0.4 pJ"),
    "45nm-int32": EnergyConstants(3.2, 0.1, "45nm-int32", HOROWITZ_2014 + ": int32 mult 3.1 + add 0.1 pJ; add 0.1 pJ"),
    "45nm-int8": EnergyConstants(0.23, 0.03, "45nm-int8", HOROWITZ_2014 + ": int8 mult 0.2 + add 0.03 pJ; add 0.03 pJ"),
}
DEFAULT_PRESET = "45nm-fp32"


def get_constants(
    preset: str = DEFAULT_PRESET, e_mac_pj: float | None = None, e_ac_pj: float | None = None
) -> EnergyConstants:
    """A preset by name, optionally with ``e_mac_pj`` / ``e_ac_pj`` overridden (then named custom)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown energy preset {preset!r}; choose from {sorted(PRESETS)}")
    c = PRESETS[preset]
    if e_mac_pj is None and e_ac_pj is None:
        return c
    new = replace(c, e_mac_pj=c.e_mac_pj if e_mac_pj is None else float(e_mac_pj),
                  e_ac_pj=c.e_ac_pj if e_ac_pj is None else float(e_ac_pj))
    source = f"user override: E_MAC={new.e_mac_pj} pJ, E_AC={new.e_ac_pj} pJ; values not overridden: {c.source}"
    return replace(new, name=f"custom (from {preset})", source=source)

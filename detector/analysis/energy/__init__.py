"""Firing rates, synaptic operations (SOPs) and energy of spiking models, measured from real spikes.

Split by concern: ``counting`` (pure counting rules), ``meter`` (the forward hooks that collect
counts while a model runs), ``report`` (per-layer rows, totals, JSON / CSV / plot). The rules, in
short (each is stated where it is implemented):

* every ``nn.Conv2d`` / ``nn.Linear`` is counted from its real inputs: spike inputs (binary, or the
  integer counts of I-LIF neurons: their spike-driven form expands a count c into c binary events)
  cost ``E_AC`` per exact synaptic operation (each event times its fan-out); real-valued inputs (the
  encoding conv) cost ``E_MAC`` per MAC, once per timestep they actually ran;
* an attention's own work is what it declares (``detector.nn.opcount``); a module whose work the
  meter cannot see is refused, never silently left out;
* batch norm (folded), biases, residual additions and neuron updates are not priced; memory access is
  not modelled (compute energy, as in the literature).
"""

from .counting import conv_fanout, is_spike_map, time_passes
from .meter import EnergyMeter, UncountableModuleError, default_runner, measure_energy
from .report import EnergyReport, LayerEnergy
from .run import EnergyOptions, EnergyRun, measure

__all__ = ["EnergyMeter", "EnergyOptions", "EnergyReport", "EnergyRun", "measure", "LayerEnergy", "UncountableModuleError", "conv_fanout", "default_runner",
           "is_spike_map", "measure_energy", "time_passes"]

"""Spiking network layers: neurons, SSSA attention, GL-SPS, blocks, the SNN-ViT backbone and neck."""

from .attention import SSSA, SpikingSelfAttention, make_attention, salience_v1, salience_v2
from .backbone import SNNViT, SNNViTConfig
from .blocks import GLSPS, ConvRPE, SpikeConv, SpikeCSP, SpikeResBlock, SpikingMLP, SSSABlock
from .neurons import NEURONS, FusedNeuron, SaccadicNeuron, SJNeuron, SpikingNeuron, StatefulMixin, make_neuron
from .streaming import reset_states, stream, streaming
from .synapse import SynapticConv2d, spike_driven

__all__ = [
    "SSSA", "SpikingSelfAttention", "make_attention", "salience_v1", "salience_v2", "SNNViT", "SNNViTConfig",
    "GLSPS", "ConvRPE", "SpikeConv", "SpikeCSP", "SpikeResBlock", "SpikingMLP", "SSSABlock", "SaccadicNeuron",
    "SJNeuron", "SpikingNeuron", "FusedNeuron", "NEURONS", "StatefulMixin", "make_neuron", "reset_states",
    "stream", "streaming", "SynapticConv2d", "spike_driven",
]

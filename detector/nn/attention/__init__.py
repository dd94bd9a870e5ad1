"""Spiking self-attention variants, chosen by name (``make_attention``; ``ATTENTIONS`` lists them).

A new variant is one module here (see ``base``), imported below so that it registers itself."""

from . import sssa, ssa  # noqa: F401  (registration)
from .base import ATTENTIONS, SpikingAttention, Tap, make_attention, merge_heads, register, split_heads
from .ssa import SpikingSelfAttention, ssa_ops
from .sssa import SALIENCE, SSSA, salience_v1, salience_v2, sssa_ops

__all__ = ["ATTENTIONS", "SALIENCE", "SSSA", "SpikingAttention", "SpikingSelfAttention", "Tap", "make_attention",
           "merge_heads", "register", "salience_v1", "salience_v2", "split_heads", "ssa_ops", "sssa_ops"]

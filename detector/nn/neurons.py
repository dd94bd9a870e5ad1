"""Spiking neurons: the neuron registry (LIF, IF, integer-spike I-LIF) and the saccadic spiking neuron.

Every stateful module here follows one contract (``StatefulMixin``):

* parallel mode (default): a call sees the whole sequence ``(T, ...)``; state is reset before and
  after, so nothing leaks between calls or between samples;
* streaming mode (``detector.nn.streaming``): a call sees the next chunk of timesteps (usually one)
  and the state it needs is kept until ``reset_state()``. Outputs equal the parallel form exactly.

Neurons are chosen by name through ``make_neuron`` (``NEURONS`` lists them). A neuron's ``levels``
(D) is the largest count it emits per timestep: 1 for the binary LIF / IF, ``max_spikes`` for the
integer-spike I-LIF (SpikeYOLO, ECCV 2024), whose counts ``c in {0..D}`` a spike-driven deployment
expands into D binary events (``detector.nn.synapse``).

Each neuron has two implementations, chosen by ``backend``: ``fused`` (``detector.nn.kernels``: one
pass over time per element, in C when the kernel library is built, else in PyTorch) and
``spikingjelly`` (SpikingJelly 2.0's own node, the reference). They give bit-identical spikes and
gradients (tests compare them); ``auto`` picks ``fused`` where it supports the settings.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

from . import kernels

SURROGATES = {
    "atan": sj_surrogate.ATan,
    "sigmoid": sj_surrogate.Sigmoid,
    "erf": sj_surrogate.Erf,
    "piecewise_quadratic": sj_surrogate.PiecewiseQuadratic,
}
BACKENDS = ("auto", "fused", "spikingjelly")


def make_surrogate(name: str = "atan", alpha: float | None = None) -> nn.Module:
    """Surrogate gradient of the Heaviside step, chosen by name (SpikingJelly implementations)."""
    if name not in SURROGATES:
        raise ValueError(f"unknown surrogate {name!r}; choose from {sorted(SURROGATES)}")
    return SURROGATES[name]() if alpha is None else SURROGATES[name](alpha=alpha)


class StatefulMixin:
    """State contract shared by every neuron; see the module docstring."""

    streaming: bool = False

    def reset_state(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class SpikingNeuron(nn.Module, StatefulMixin):
    """Base of the multi-step neurons: input and output are time-first ``(T, ...)``; the output holds
    spike counts in ``{0, ..., levels}`` (exactly 0.0 or 1.0 for binary neurons)."""

    levels: int = 1

    def __init__(self):
        super().__init__()
        self.streaming = False


class SJNeuron(SpikingNeuron):
    """A SpikingJelly multi-step node with explicit, leak-free state handling (the reference backend)."""

    def __init__(self, node: nn.Module, levels: int = 1):
        super().__init__()
        self.node = node
        self.levels = int(levels)

    def reset_state(self) -> None:
        self.node.reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.streaming:
            return self.node(x)  # state carried over from the previous chunk
        self.node.reset()
        y = self.node(x)
        self.node.reset()  # drop the final membrane so no state survives the call
        return y

    def extra_repr(self) -> str:
        return f"levels={self.levels}, streaming={self.streaming}"


class FusedNeuron(SpikingNeuron):
    """A neuron run by ``detector.nn.kernels``: the whole time loop in one call (forward and backward),
    no per-timestep tensors. ``params`` are the kernel's settings (see ``kernels.LIFParams`` /
    ``kernels.ILIFParams``)."""

    def __init__(self, params):
        super().__init__()
        self.params = params
        self._v: torch.Tensor | None = None

    @property
    def levels(self) -> int:
        """D, as the kernel's settings state it."""
        return int(self.params.levels)

    def reset_state(self) -> None:
        self._v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v0 = self._v if self.streaming else None
        spikes, v = kernels.run(self.params, x, v0, keep_state=self.streaming)
        if self.streaming:
            self._v = v
        return spikes

    def extra_repr(self) -> str:
        return f"{self.params}, streaming={self.streaming}"


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------


def _pick(backend: str, fused_ok: bool, name: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown neuron backend {backend!r}; choose from {list(BACKENDS)}")
    if backend == "fused" and not fused_ok:
        raise ValueError(f"the fused {name} kernel does not support these settings; use backend 'spikingjelly'")
    return "fused" if backend == "auto" and fused_ok else ("spikingjelly" if backend == "auto" else backend)


def lif_neuron(tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0, surrogate: str = "atan",
               alpha: float | None = None, detach_reset: bool = True, backend: str = "auto") -> SpikingNeuron:
    """Leaky integrate-and-fire: ``H = V + (X - (V - V_reset)) / tau``, binary spike ``H >= V_th``,
    hard reset to ``v_reset`` (or soft reset by ``V_th`` when ``v_reset`` is None)."""
    sg = make_surrogate(surrogate, alpha)
    params = kernels.lif_params(tau, v_threshold, v_reset, sg, detach_reset, decay=True)
    if _pick(backend, params is not None, "lif") == "fused":
        return FusedNeuron(params)
    return SJNeuron(sj_neuron.LIFNode(tau=float(tau), v_threshold=v_threshold, v_reset=v_reset, surrogate_function=sg,
                                      detach_reset=detach_reset, step_mode="m"))


def if_neuron(v_threshold: float = 1.0, v_reset: float | None = 0.0, surrogate: str = "atan",
              alpha: float | None = None, detach_reset: bool = True, backend: str = "auto") -> SpikingNeuron:
    """Integrate-and-fire (no leak): ``H = V + X``; binary spike and reset as ``lif``."""
    sg = make_surrogate(surrogate, alpha)
    params = kernels.lif_params(None, v_threshold, v_reset, sg, detach_reset, decay=False)
    if _pick(backend, params is not None, "if") == "fused":
        return FusedNeuron(params)
    return SJNeuron(sj_neuron.IFNode(v_threshold=v_threshold, v_reset=v_reset, surrogate_function=sg,
                                     detach_reset=detach_reset, step_mode="m"))


def ilif_neuron(max_spikes: int = 4, tau: float = 4.0 / 3.0, v_threshold: float = 1.0, detach_reset: bool = True,
                backend: str = "auto") -> SpikingNeuron:
    """Integer-spike LIF (I-LIF, SpikeYOLO): ``H = (1 - 1/tau) V + X``, count
    ``C = round(clip(H / V_th, 0, D))`` with ``D = max_spikes``, soft reset ``V = H - C V_th``; the
    gradient passes straight through where ``H / V_th`` lies in ``[0, D]``. ``tau`` 4/3 is the paper's
    decay 0.25; with T = 1 the neuron is a (D+1)-level quantiser of its input."""
    if isinstance(max_spikes, bool) or not isinstance(max_spikes, int) or not 1 <= max_spikes <= 64:
        raise ValueError(f"max_spikes must be an integer in 1..64, got {max_spikes!r}")
    params = kernels.ilif_params(tau, v_threshold, max_spikes, detach_reset)
    if _pick(backend, params is not None, "ilif") == "fused":
        return FusedNeuron(params)
    sg = sj_surrogate.MultiLevelSpikeCount(int(max_spikes))
    node = sj_neuron.ILIFNode(tau=float(tau), v_threshold=v_threshold, surrogate_function=sg,
                              detach_reset=detach_reset, step_mode="m")
    return SJNeuron(node, levels=max_spikes)


NEURONS: dict[str, Callable[..., SpikingNeuron]] = {"lif": lif_neuron, "if": if_neuron, "ilif": ilif_neuron}


def neuron_options(name: str) -> list[str]:
    """The options a neuron takes (besides ``name``)."""
    if name not in NEURONS:
        raise ValueError(f"unknown neuron {name!r}; choose from {sorted(NEURONS)}")
    return list(inspect.signature(NEURONS[name]).parameters)


def neuron_defaults(name: str) -> dict[str, Any]:
    """The options a neuron takes with their defaults (its constructor's: written there only)."""
    neuron_options(name)  # a known name
    return {k: p.default for k, p in inspect.signature(NEURONS[name]).parameters.items()}


def make_neuron(name: str = "lif", **options) -> SpikingNeuron:
    """Neuron factory: ``make_neuron("lif", tau=2.0)``, ``make_neuron("ilif", max_spikes=4)``.
    An option the neuron does not take is an error naming it (never silently ignored).

    Defaults follow the project choice for ``lif``: tau=2, V_th=1, hard reset to 0, detached reset,
    ATan surrogate."""
    allowed = neuron_options(name)
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ValueError(f"neuron {name!r} takes no option {bad[0]!r}; its options: {allowed}")
    return NEURONS[name](**options)


# --------------------------------------------------------------------------------------------
# Saccadic spiking neuron
# --------------------------------------------------------------------------------------------


def causal_mix_step(w_row: torch.Tensor, history: list[torch.Tensor]) -> torch.Tensor:
    """H[t] = sum_{s<=t} M_w[t, s] * P[s], accumulated in the order s = 0..t.

    Pure function shared by the parallel and the streaming path, so both do the very same floating
    point operations in the same order and agree bit for bit.
    """
    h = w_row[0] * history[0]
    for s in range(1, len(history)):
        h = h + w_row[s] * history[s]
    return h


def init_mixing(T: int, mode: str) -> torch.Tensor:
    """Initial lower-triangular M_w: ``identity`` (start as a per-timestep threshold) or
    ``causal_mean`` (H[t] = mean of P[0..t])."""
    if mode == "identity":
        return torch.eye(T)
    if mode == "causal_mean":
        return torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1).unsqueeze(1)
    raise ValueError(f"unknown M_w init {mode!r}; choose 'identity' or 'causal_mean'")


class SaccadicNeuron(nn.Module, StatefulMixin):
    """Saccadic spiking neuron: mixes salience across time with a learnable lower-triangular
    ``M_w`` (T x T) and fires against a learnable threshold.

    Input: salience ``P`` of shape ``(T, B, nh, N)``. Output: token mask ``S`` of the same shape,
    exactly 0 or 1; ``S = Heaviside(M_w P - V_th)`` along T, with a surrogate gradient in training.
    ``V_th`` is one learnable value per head. With T = 1, ``M_w`` is a single learnable gain.
    """

    def __init__(
        self,
        timesteps: int,
        heads: int,
        vth_init: float = 0.005,
        mw_init: str = "identity",
        surrogate: str = "atan",
        alpha: float = 40.0,
    ):
        super().__init__()
        self.T = int(timesteps)
        self.weight = nn.Parameter(init_mixing(self.T, mw_init))  # only its lower triangle is used
        self.register_buffer("tril_mask", torch.tril(torch.ones(self.T, self.T)), persistent=False)
        self.v_threshold = nn.Parameter(torch.full((heads,), float(vth_init)))
        # Salience lives in [0, 1], usually below 0.1: a steep surrogate keeps gradients local.
        self.surrogate = make_surrogate(surrogate, alpha)
        self.streaming = False
        self._history: list[torch.Tensor] = []

    @property
    def mixing(self) -> torch.Tensor:
        """The effective causal mixing matrix M_w (strictly upper part is zero)."""
        return self.weight * self.tril_mask

    def reset_state(self) -> None:
        self._history = []

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        if patch.ndim != 4:
            raise ValueError(f"salience must be (T, B, nh, N), got shape {tuple(patch.shape)}")
        T_in, _, nh, _ = patch.shape
        if nh != self.v_threshold.numel():
            raise ValueError(f"salience has {nh} heads, neuron was built for {self.v_threshold.numel()}")
        history = self._history if self.streaming else []
        t0 = len(history)
        if t0 + T_in > self.T:
            raise ValueError(
                f"saccadic neuron was built for T={self.T} timesteps, got {t0 + T_in}"
                + (" (call reset_state() to start a new stream)" if self.streaming else "")
            )
        mw = self.mixing
        vth = self.v_threshold.view(1, nh, 1)  # (1, nh, 1) against (B, nh, N)
        out = []
        for i in range(T_in):
            history.append(patch[i])
            t = t0 + i
            h = causal_mix_step(mw[t, : t + 1], history)  # (B, nh, N)
            out.append(self.surrogate(h - vth))
        if self.streaming:
            self._history = history
        return torch.stack(out)  # (T_in, B, nh, N)

    def extra_repr(self) -> str:
        return f"T={self.T}, heads={self.v_threshold.numel()}, streaming={self.streaming}"

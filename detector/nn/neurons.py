"""Spiking neurons: the LIF factory and the saccadic spiking neuron.

Every stateful module here follows one contract (``StatefulMixin``):

* parallel mode (default): a call sees the whole sequence ``(T, ...)``; state is reset before and
  after, so nothing leaks between calls or between samples;
* streaming mode (``detector.nn.streaming``): a call sees the next chunk of timesteps (usually one)
  and the state it needs is kept until ``reset_state()``. Outputs equal the parallel form exactly.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based import surrogate as sj_surrogate
from torch import nn

SURROGATES = {
    "atan": sj_surrogate.ATan,
    "sigmoid": sj_surrogate.Sigmoid,
    "erf": sj_surrogate.Erf,
    "piecewise_quadratic": sj_surrogate.PiecewiseQuadratic,
}


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


class SJNeuron(nn.Module, StatefulMixin):
    """A SpikingJelly multi-step neuron with explicit, leak-free state handling.

    Input and output are time-first ``(T, ...)``; the output holds exactly 0.0 or 1.0.
    """

    def __init__(self, node: nn.Module):
        super().__init__()
        self.node = node
        self.streaming = False

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
        return f"streaming={self.streaming}"


def make_neuron(
    name: str = "lif",
    tau: float = 2.0,
    v_threshold: float = 1.0,
    v_reset: float | None = 0.0,
    surrogate: str = "atan",
    alpha: float | None = None,
    detach_reset: bool = True,
) -> SJNeuron:
    """Neuron factory. ``name``: ``lif`` (leaky, tau) or ``if`` (integrate-and-fire).

    Defaults follow the project choice: tau=2, V_th=1, hard reset to 0, detached reset, ATan surrogate.
    """
    sg = make_surrogate(surrogate, alpha)
    common = dict(
        v_threshold=v_threshold, v_reset=v_reset, surrogate_function=sg, detach_reset=detach_reset, step_mode="m"
    )
    if name == "lif":
        node = sj_neuron.LIFNode(tau=float(tau), **common)
    elif name == "if":
        node = sj_neuron.IFNode(**common)
    else:
        raise ValueError(f"unknown neuron {name!r}; choose from ['if', 'lif']")
    return SJNeuron(node)


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
    ``V_th`` is one learnable value per head.
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

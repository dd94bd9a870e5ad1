"""Saccadic Spike Self-Attention (SSSA), the paper's attention: V1 (explicit N x N) and V2 (linear).

Salience (paper, Sec. "spatial relevance"): with per-token spike counts Q'[t,n] = sum_d Q[t,n,d] and
K'[t,m] = sum_d K[t,m,d], CroAtt = Q' K'^T (N x N) and Patch[t,n] = sum_m CroAtt[t,n,m].
V1 forms CroAtt; V2 uses (Q' K'^T) 1 = Q' * (K'^T 1), never forming anything N x N.
With the integer-spike neuron (D levels) the spikes are counts in {0..D} and so are Q', K' sums of
counts. Project choice: Patch is normalised by N * (hd * D)^2, i.e. (Q firing rate of token n) x
(mean K firing rate) with rates = counts / D, a number in [0, 1], so the saccadic threshold does not
depend on N, the head width or the number of spike levels D.

The saccadic neuron turns salience into a token mask per timestep, which selects the V spikes the
block passes on: at each timestep the block "looks at" a subset of tokens.
"""

from __future__ import annotations

import torch

from ..neurons import SaccadicNeuron
from ..opcount import AC, MAC, Op, events_per_sample, per_image
from .base import SpikingAttention, merge_heads, register, split_heads


# Under CPU autocast (bf16 training) the salience and the saccadic neuron are an fp32 island: the spike
# counts are summed in fp32 (bf16 holds integers exactly only up to 256, and K' summed over all tokens
# reaches ~10^5), and the saccadic threshold compares the salience in fp32; both are small (T, B, nh, N)
# tensors. The binary token mask goes back to the V spikes' dtype, exactly.
def _counts_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)  # bf16 -> fp32; fp32 and fp64 unchanged


def salience_v1(q: torch.Tensor, k: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Explicit form: build the N x N relevance CroAtt = Q' K'^T and take its row sums.

    q, k: spikes (T, B, nh, N, hd) with counts up to ``levels``. Returns normalised salience
    (T, B, nh, N). O(N^2) time/memory.
    """
    N, hd = q.shape[-2], q.shape[-1]
    qc = q.sum(-1, dtype=_counts_dtype(q))  # (T, B, nh, N) spike counts Q' (fp32 under autocast: note above)
    kc = k.sum(-1, dtype=_counts_dtype(k))  # (T, B, nh, N) spike counts K'
    cro = qc.unsqueeze(-1) * kc.unsqueeze(-2)  # (T, B, nh, N, N) outer product (a product, not a matmul: autocast leaves it fp32)
    return cro.sum(-1) / (N * (hd * levels) ** 2)


def salience_v2(q: torch.Tensor, k: torch.Tensor, levels: int = 1) -> torch.Tensor:
    """Linear form: Patch = Q' * alpha with alpha = sum_m K'[m]; O(N) time and memory."""
    N, hd = q.shape[-2], q.shape[-1]
    qc = q.sum(-1, dtype=_counts_dtype(q))  # (T, B, nh, N) (fp32 under autocast: note above)
    alpha = k.sum(dim=(-1, -2), dtype=_counts_dtype(k)).unsqueeze(-1)  # (T, B, nh, 1) = sum over tokens and width
    return qc * alpha / (N * (hd * levels) ** 2)


SALIENCE = {"sssa_v1": salience_v1, "sssa_v2": salience_v2}


@register("sssa_v1", "sssa_v2")
class SSSA(SpikingAttention):
    """Saccadic Spike Self-Attention. ``name``: ``sssa_v1`` (explicit N x N) or ``sssa_v2`` (linear).
    Its tap shows q, k, v, the salience (the saccadic neuron's input) and the token mask."""

    salience_map = True  # heatmaps can show it (detector.analysis.heatmap)

    def __init__(self, dim: int, heads: int, timesteps: int, neuron: dict, name: str = "sssa_v2",
                 saccade: dict | None = None):
        super().__init__(dim, heads, neuron)
        if name not in SALIENCE:
            raise ValueError(f"unknown SSSA version {name!r}; choose from {sorted(SALIENCE)}")
        self.version = name
        self.saccade = SaccadicNeuron(timesteps, heads, **(saccade or {}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B, C, H, W = x.shape
        q, k, v = self.qkv(x)
        t0 = len(self.saccade._history) if self.saccade.streaming else 0
        patch = SALIENCE[self.version](split_heads(q, self.heads), split_heads(k, self.heads), self.levels)  # (T, B, nh, N)
        mask = self.saccade(patch)  # (T, B, nh, N) binary: which tokens this timestep looks at
        self.tap(q=q, k=k, v=v, salience=patch, mask=mask, t0=t0)
        out = mask.to(v.dtype).unsqueeze(-1) * split_heads(v, self.heads)  # (T, B, nh, N, hd) spikes of the tokens looked at
        return self.proj(merge_heads(out, H, W))  # (T, B, C, H, W) real

    def op_counts(self, q, k, v, salience=None, mask=None, t0=0) -> dict[str, Op]:
        return sssa_ops(q, k, v, self.heads, self.version, t0)


def sssa_ops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, version: str, t0: int = 0) -> dict[str, Op]:
    """Operations of one SSSA call, from its Q, K, V spikes ``(T_in, B, C, H, W)``.

    ``t0``: index of the first timestep of this call (nonzero only in streaming mode), needed because
    the causal ``M_w`` row of timestep t has t + 1 terms. A spike event is one unit of a count: an
    integer spike of value c is c events (the binary events of the spike-driven form).
    """
    T_in, B, C, H, W = q.shape
    nh, hd, N = heads, C // heads, H * W
    steps = T_in * nh  # (timestep, head) pairs per image
    mix_terms = sum(t + 1 for t in range(t0, t0 + T_in))  # sum of causal M_w row lengths: T(T+1)/2 from t0=0
    ops = {
        # Q'[t,n] = sum_d Q[t,n,d]: each Q spike event increments its token's counter -> 1 add per event.
        "q_count": Op(AC, events_per_sample(q, 1), AC, nh * N * (hd - 1), "1 add per Q spike (token spike count Q')"),
        # K'[t,m] = sum_d K[t,m,d]: same for K.
        "k_count": Op(AC, events_per_sample(k, 1), AC, nh * N * (hd - 1), "1 add per K spike (token spike count K')"),
    }
    if version == "sssa_v2":
        # alpha[t] = sum_m K'[t,m]: N - 1 integer additions per (timestep, head).
        ops["alpha"] = Op(AC, per_image(steps * (N - 1), B), AC, nh * (N - 1), "N-1 adds per timestep and head")
        # Patch[t,n] = Q'[t,n] * alpha[t]: one multiplication per token and head, priced as a MAC.
        ops["salience"] = Op(MAC, per_image(steps * N, B), MAC, nh * N, "1 multiply per token and head")
    elif version == "sssa_v1":
        # CroAtt = Q' K'^T (N x N) and its row sums: N*N multiply-accumulates per (timestep, head).
        ops["cross_attention"] = Op(MAC, per_image(steps * N * N, B), MAC, nh * N * N,
                                    "N*N multiply-accumulates per timestep and head")
    else:
        raise ValueError(f"unknown SSSA version {version!r}")
    # Patch / (N (hd D)^2): one multiplication by a constant per token and head, priced as a MAC. (It could
    # be folded exactly into V_th, since M_w mixing is linear; counted because the code performs it.)
    ops["normalise"] = Op(MAC, per_image(steps * N, B), MAC, nh * N, "1 multiply per token and head (foldable into V_th)")
    # H[t] = sum_{s<=t} M_w[t,s] P[s]: t + 1 multiply-accumulates per token and head at timestep t,
    # T(T+1)/2 per token and head over a run from t = 0 (dense: zeros of M_w are not skipped).
    ops["mw_mix"] = Op(MAC, per_image(mix_terms * nh * N, B), MAC, nh * N, "t+1 MACs per token and head at timestep t")
    # S = Heaviside(H - V_th): one comparison (a subtraction) per token and head, priced as an AC.
    ops["threshold"] = Op(AC, per_image(steps * N, B), AC, nh * N, "1 compare per token and head")
    # S * V: each V spike event is passed or dropped by its token's mask bit; priced as one AC per event
    # (an upper bound for a 1-bit AND). In the ANN equivalent V is real: one multiply per element.
    ops["mask_v"] = Op(AC, events_per_sample(v, 1), MAC, nh * N * hd, "1 gate per V spike")
    return ops

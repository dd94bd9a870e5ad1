"""Spiking detect head: spiking conv branches whose last layer output is averaged over T, then decoded
by Ultralytics' anchor-free DFL ``Detect`` head.

``SpikingDetect`` subclasses Ultralytics' ``Detect`` and replaces only its box/class branches, so the
decoding, loss (``v8DetectionLoss``), NMS and metrics are Ultralytics' own.

Two readouts, chosen by the model config's ``readout`` (docs/design.md, "The head's readout"):

* ``spikes`` (SpikeYOLO's): conv -> BN -> neuron, twice, then a 1x1 conv of the last neuron's spikes.
  Those spikes are bounded (counts 0..D), so each branch's output has a ceiling, ``bias + D x (sum of the
  positive 1x1 weights)``: the clearest objects all reach it and score the same, and a level whose
  ceiling stays low cannot output a confident box at all.
* ``current``: conv -> BN -> neuron once, then the logits are read from the *input current* of the
  second layer (3x3 conv -> BN -> 1x1 conv, no neuron between). That chain is linear in the first
  layer's spikes, so at inference it folds exactly into one 3x3 synaptic conv on those spikes
  (``CurrentReadout``): no real-valued multiplication is added, every conv still sees spikes, and the
  ceiling is a sum over a 3x3 x C window, far above any logit a target asks for.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ultralytics.nn.modules.head import Detect

from .blocks import SpikeConv
from .synapse import SynapticConv2d

READOUTS = ("spikes", "current")


class TemporalMeanConv(nn.Module):
    """1x1 conv applied to the spikes of every timestep, then averaged over T:
    (T, B, C, H, W) spikes -> (B, C_out, H, W) real. Averaging after the conv keeps the conv's input
    spikes (accumulate-only); by linearity it equals the conv of the firing-rate map. The conv's bias
    is added once per timestep, also in the spike-driven form (``detector.nn.synapse``)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = SynapticConv2d(c_in, c_out, 1)

    @property
    def bias(self) -> torch.Tensor:  # Ultralytics' Detect.bias_init sets branch[-1].bias
        return self.conv.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = self.conv(x.flatten(0, 1))  # (T*B, C_out, H, W)
        return y.reshape(T, B, *y.shape[1:]).mean(0)  # (B, C_out, H, W)


class CurrentReadout(nn.Module):
    """A branch's last two layers without the neuron between them: (T, B, C, H, W) spikes ->
    3x3 synaptic conv -> BN -> 1x1 conv -> averaged over T -> (B, C_out, H, W).

    Training runs the chain (BN on batch statistics). In eval mode BN is an affine map, so the chain is
    one linear map of the input spikes and runs folded: ``W = P diag(g) K``, ``b = P beta' + p`` (K the
    3x3 kernel, g / beta' BN's scale / shift, P / p the 1x1 weight / bias) in the synaptic conv ``fused``,
    whose weight and bias are derived buffers (recomputed each call, never saved). The spike-driven
    form expands ``fused``'s input like any synaptic conv, and the energy meter counts it as one."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = SynapticConv2d(c_in, c_in, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_in)
        self.proj = nn.Conv2d(c_in, c_out, 1)
        self.fused = SynapticConv2d(c_in, c_out, 3, 1, 1)
        for name in ("weight", "bias"):  # derived from the three layers above: buffers, not saved
            t = getattr(self.fused, name).detach()
            delattr(self.fused, name)
            self.fused.register_buffer(name, t, persistent=False)

    @property
    def bias(self) -> torch.Tensor:  # Ultralytics' Detect.bias_init sets branch[-1].bias
        return self.proj.bias

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (C_out, C_in, 3, 3), bias (C_out,)) of the folded chain, BN on its running statistics."""
        bn = self.bn
        g = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C,)
        shift = bn.bias - bn.running_mean * g
        P = self.proj.weight[:, :, 0, 0]  # (C_out, C)
        w = torch.einsum("oc,cikl->oikl", P * g, self.conv.weight)
        return w, P @ shift + self.proj.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        s = x.flatten(0, 1)  # (T*B, C, H, W) spikes
        if self.training:
            y = self.proj(self.bn(self.conv(s)))
        else:
            self.fused.weight, self.fused.bias = self.folded()
            y = self.fused(s)
        return y.reshape(T, B, *y.shape[1:]).mean(0)  # (B, C_out, H, W)

    def max_logit(self, levels: int) -> torch.Tensor:
        """(C_out,) the largest output any input of counts in {0..levels} can produce (eval weights)."""
        w, b = self.folded()
        return b + levels * w.clamp_min(0).sum(dim=(1, 2, 3))


def _max_logit_1x1(m: TemporalMeanConv, levels: int) -> torch.Tensor:
    return m.conv.bias + levels * m.conv.weight.clamp_min(0).sum(dim=(1, 2, 3))


class SpikingDetect(Detect):
    """Anchor-free DFL detect head on spike maps ``(T, B, C, H, W)``."""

    def __init__(self, nc: int, ch: tuple[int, ...], neuron: dict, *, reg_max: int, readout: str):
        # reg_max and readout come from the model config (detector.models.config: their defaults live there)
        super().__init__(nc=nc, reg_max=reg_max, end2end=False, ch=ch)
        if readout not in READOUTS:
            raise ValueError(f"head readout must be one of {READOUTS}, got {readout!r}")
        self.readout = readout
        c2 = max(16, ch[0] // 4, self.reg_max * 4)  # box branch width (Ultralytics' rule)
        c3 = max(ch[0], min(self.nc, 100))  # class branch width

        def branch(c: int, width: int, c_out: int) -> nn.Sequential:
            if readout == "current":
                return nn.Sequential(SpikeConv(c, width, neuron), CurrentReadout(width, c_out))
            return nn.Sequential(SpikeConv(c, width, neuron), SpikeConv(width, width, neuron), TemporalMeanConv(width, c_out))

        self.cv2 = nn.ModuleList(branch(c, c2, 4 * self.reg_max) for c in ch)
        self.cv3 = nn.ModuleList(branch(c, c3, self.nc) for c in ch)

    @torch.no_grad()
    def max_scores(self, levels: int) -> list[torch.Tensor]:
        """Per level (stride 8, 16, 32), the (nc,) largest class confidence the weights can produce when
        the branch's input spikes are counts in {0..levels}: sigmoid of the last layer's bias plus
        ``levels`` x its positive weights (the ceiling of the module docstring). Eval weights."""
        out = []
        for b in self.cv3:
            last = b[-1]
            z = last.max_logit(levels) if isinstance(last, CurrentReadout) else _max_logit_1x1(last, levels)
            out.append(z.sigmoid())
        return out

    def bias_init(self, cls_prior: float | None = None) -> None:
        """Ultralytics' initial biases (box 2.0; class logit = log(5 / nc / (640 / stride)^2), a prior of
        about 5 objects per 640 px image), or, with ``cls_prior`` p, the class logit log(p / (1 - p)) at
        every stride (RetinaNet's prior).

        Why the option: this head's last conv sees spike counts bounded by D, so its logit can only
        exceed the bias by (sum of positive weights) x D, and an Adam-family optimiser moves the bias by
        about one learning rate per step. From Ultralytics' -7.2 (stride 8) to -4.4 (stride 32), a
        short run left the class logits capped below 0.3 (confidences below 0.57), the stride-16 and -32
        branches below zero. A prior of 0.01 (logit -4.6) starts every stride within reach."""
        super().bias_init()
        if cls_prior is not None:
            for b in self.cv3:
                b[-1].bias.data[: self.nc] = math.log(cls_prior / (1 - cls_prior))

    def forward_head(self, x, box_head=None, cls_head=None) -> dict[str, torch.Tensor]:
        if box_head is None or cls_head is None:
            return {}
        bs = x[0].shape[1]  # x[i]: (T, B, C, H, W)
        boxes = torch.cat([box_head[i](x[i]).view(bs, 4 * self.reg_max, -1) for i in range(self.nl)], dim=-1)
        scores = torch.cat([cls_head[i](x[i]).view(bs, self.nc, -1) for i in range(self.nl)], dim=-1)
        # Ultralytics builds anchors from 4-D (B, C, H, W) maps: hand it the firing-rate maps.
        feats = [xi.mean(0) for xi in x]
        return {"boxes": boxes, "scores": scores, "feats": feats}

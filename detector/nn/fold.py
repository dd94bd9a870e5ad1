"""Batch norm folded into the convolutions that feed it: the inference form of a trained model.

At inference a batch norm is a fixed affine map per channel, ``y = (x - mean) * g / sqrt(var + eps) + b``.
When ``x`` is the output of convolutions, the map folds into them: each feeding convolution's weights are
scaled by ``g / sqrt(var + eps)`` per output channel and one bias absorbs the shift. Two patterns are
folded, wherever they occur in a model:

* a convolution followed by a batch norm in an ``nn.Sequential`` (``conv_bn``'s body, the stem);
* a GL-SPS stage, whose branches are summed before its batch norm: every branch is scaled, and the
  first branch carries the bias (a sum of convolutions is linear, so the bias is added once).

The folded weights are computed in float64 and rounded once to the model's dtype. In exact arithmetic
the folded model computes the same membrane inputs, hence the same spikes (tests/test_infer_fold.py
checks it in float64); in float32 the last bits move, which can flip a spike that sat exactly on a
threshold. The batch norms become ``nn.Identity``, so the folded model is for inference only.

Every convolution keeps its input: the spikes each one sees, and what the energy meter counts from
them, are the unfolded model's.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import GLSPS


def _foldable(bn: nn.Module) -> bool:
    return isinstance(bn, nn.BatchNorm2d) and bn.running_mean is not None and bn.running_var is not None


@torch.no_grad()
def _fold(convs: list[nn.Conv2d], bn: nn.BatchNorm2d) -> None:
    """Scale ``convs`` (whose outputs are summed into ``bn``) by the batch norm and put its shift into
    the first convolution's bias."""
    scale = torch.rsqrt(bn.running_var.double() + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = -bn.running_mean.double() * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    for conv in convs:
        if conv.bias is not None:  # an existing bias passes through the batch norm too
            bias = bias + conv.bias.double() * scale
        conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
    for i, conv in enumerate(convs):
        new = bias.to(convs[0].weight.dtype) if i == 0 else None
        conv.bias = None if new is None else nn.Parameter(new, requires_grad=False)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold, in place, every batch norm of ``model`` that follows convolutions in one of the module
    docstring's patterns; the model is put in eval mode. Returns the number of batch norms folded."""
    model.eval()
    n = 0
    for m in list(model.modules()):
        if isinstance(m, GLSPS) and _foldable(m.bn):
            _fold(list(m.branches), m.bn)
            m.bn = nn.Identity()
            n += 1
        elif isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and _foldable(m[i + 1]) and m[i].out_channels == m[i + 1].num_features:
                    _fold([m[i]], m[i + 1])
                    m[i + 1] = nn.Identity()
                    n += 1
    return n


def unfolded_batchnorms(model: nn.Module) -> list[str]:
    """Names of the batch norms that ``fold_batchnorm`` left in ``model`` (with the head's current readout: the
    readouts' own, which the readout folds itself at eval)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]

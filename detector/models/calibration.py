"""Batch-norm recalibration for spiking networks.

Why: a spiking neuron turns a small shift of its input distribution into a large change of firing
rate, and the shift compounds through depth. Batch norm's running statistics are averages over
*augmented* training batches (mosaic, grey letterbox fill, colour jitter); on clean images the
normalised inputs come out smaller, and a trained detector can fall completely silent in eval mode
while it fires normally in train mode (measured on SSDD after 2 epochs: every LIF after the first
stage at 0.0 in eval, 2-8 % in train mode). Recomputing the statistics on clean, letterboxed
training images (AdaBN-style; no weight changes) restores the train-mode firing in eval mode.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every batch-norm layer's running statistics by the cumulative statistics over
    ``batches`` (image tensors as the model takes them). Returns the number of images used; with no
    images the model is left unchanged."""
    batches = list(batches)
    if not batches:
        return 0
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(b.momentum, b.running_mean.clone(), b.running_var.clone(), b.num_batches_tracked.clone()) for b in bns]
    was_training = model.training
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average over the calibration forwards
    model.train()
    try:
        n = 0
        for x in batches:
            model(x)
            n += x.shape[0]
    except BaseException:
        for b, (mom, mean, var, nbt) in zip(bns, saved):
            b.running_mean.copy_(mean), b.running_var.copy_(var), b.num_batches_tracked.copy_(nbt)
        raise
    finally:
        for b, (mom, *_rest) in zip(bns, saved):
            b.momentum = mom
        model.train(was_training)
    return n

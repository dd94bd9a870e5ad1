"""Helpers of the spiking-model tests: a seeded input image, a model made live (fresh batch-norm
statistics) and a recorder of every convolution's input. Not a test module: test modules import
from it."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from detector.models.calibration import recalibrate_bn


def image(B: int = 2, H: int = 64, W: int = 96, seed: int = 1) -> torch.Tensor:
    return torch.rand(B, 3, H, W, generator=torch.Generator().manual_seed(seed))


def live(model, x: torch.Tensor):
    recalibrate_bn(model, [x])  # fresh BN statistics leave an untrained network silent in eval mode
    return model.eval()


class ConvInputs(TorchDispatchMode):
    """Every convolution PyTorch executes, with its input (the aten op, below any module hook)."""

    def __init__(self):
        super().__init__()
        self.inputs: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.convolution.default:
            self.inputs.append(args[0].detach().clone())
        return func(*args, **(kwargs or {}))

"""The runtime interface: a ``Runtime`` is called on a letterboxed batch ``(B, 3, S, S)`` in [0, 1] on its
``device`` and returns the decoded predictions ``(B, 4 + nc, anchors)``; ``settings`` is the model's
``ModelSettings``. Every runtime class (``torch_runtimes``, ``onnx_runtime``) subclasses it and names its
row of the runtime table (``detector.infer.runtime.RUNTIMES``) by ``name``; this module never imports
the table. ``as_runtime`` wraps a PyTorch module someone already holds.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..models.settings import ModelSettings, settings_of


class Runtime:
    """A ready model (see the module docstring). ``module`` is the PyTorch model behind it, or None
    (ONNX)."""

    name: str = "eager"  # the row of detector.infer.runtime.RUNTIMES this class implements
    module: nn.Module | None = None

    def __init__(self, settings: ModelSettings, device: torch.device):
        self.settings = settings
        self.device = torch.device(device)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every runtime overrides it
        raise NotImplementedError

    def as_module(self) -> nn.Module:
        """The runtime behind an ``nn.Module`` interface for Ultralytics' validator."""
        return RuntimeModule(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings.source or 'model'} on {self.device})"


class RuntimeModule(nn.Module):
    """A runtime as the ``nn.Module`` Ultralytics' ``AutoBackend`` takes: forward runs the runtime;
    ``names``, ``stride`` and ``yaml`` are the model's. No ``fuse`` method, so AutoBackend leaves it
    as it is."""

    def __init__(self, runtime: Runtime):
        super().__init__()
        self.runtime = runtime
        src = runtime.module
        self.settings = runtime.settings
        self.names = dict(runtime.settings.names)
        self.stride = src.stride if src is not None and hasattr(src, "stride") else torch.tensor([8.0, 16.0, 32.0])
        self.yaml = dict(getattr(src, "yaml", {}) or {})

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.runtime(x)


class ModuleRuntime(Runtime):
    """A PyTorch module run as it is (not folded, not moved): a model someone already holds."""

    def __init__(self, module: nn.Module, settings: ModelSettings | None = None):
        device = next((p.device for p in module.parameters()), torch.device("cpu"))
        super().__init__(settings or settings_of(module), device)
        self.module = module

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = self.module(x)
        return y[0] if isinstance(y, (tuple, list)) else y


def as_runtime(model: Runtime | nn.Module) -> Runtime:
    """``model`` if it is a runtime, else the PyTorch module wrapped as one (eval mode, nothing folded)."""
    if isinstance(model, Runtime):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a Runtime or an nn.Module, got {type(model).__name__}")
    model.eval()
    return ModuleRuntime(model)

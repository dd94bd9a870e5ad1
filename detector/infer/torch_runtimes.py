"""The PyTorch runtimes: eager, compiled (``torch.compile``) and CUDA graphs, all on the checkpoint's
model with batch norm folded into its convolutions (``detector.nn.fold``).

* ``eager``: the model as it is, folded. On a CPU the neurons run on the fused C kernels.
* ``compiled``: ``torch.compile`` (inductor) with the neurons on their PyTorch path, which the compiler
  fuses with the element-wise work around them. The first call for an input shape compiles (the time is
  logged); inductor's caches live in the project's cache folder (``$XDG_CACHE_HOME/snnvit-yolo/inductor``
  unless ``TORCHINDUCTOR_CACHE_DIR`` is set): the generated and compiled kernels and the FX-graph cache,
  keyed by the graph, the input shapes, the torch version and the machine, so a later run with the
  same model and shapes skips code generation and the C++/Triton compilation (Dynamo still traces the
  model, a few seconds). Weights are inputs of the cached graph, not part of the key's code.
* ``cudagraph``: the forward captured into a CUDA graph once per input shape, then replayed: one launch
  instead of hundreds of small kernels (the spiking model is launch-bound on a GPU at small batches).
  Capture runs the same kernels as eager; if SpikingJelly's neuron kernels cannot be captured, the
  neurons' PyTorch path is captured instead (``neuron_path`` says which).

``amp``: CUDA autocast (fp16) around the forward; outputs are returned in float32.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from ultralytics.utils import LOGGER

from ..models.settings import settings_of
from ..nn import kernels
from ..nn.fold import fold_batchnorm
from ..settings import cache_dir
from .base import Runtime


@contextmanager
def torch_neurons() -> Iterator[None]:
    """Neurons on their PyTorch path inside the block (what the compiler and graph capture see)."""
    kernels.force_torch(True)
    try:
        yield
    finally:
        kernels.force_torch(False)


def inductor_cache() -> Path:
    """Where inductor keeps its caches (set for this process unless the user chose a folder)."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir("inductor")))
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


class EagerRuntime(Runtime):
    name = "eager"

    def __init__(self, module: nn.Module, device: torch.device, amp: bool = False):
        super().__init__(settings_of(module), device)
        self.module = module.to(self.device).eval()
        self.amp = bool(amp)

    @classmethod
    def load(cls, path: Path, device: torch.device, amp: bool = False) -> "EagerRuntime":
        from ..weights import load_model

        model = load_model(path, device=device)
        fold_batchnorm(model)
        return cls(model, device, amp)

    def autocast(self):
        # no cast cache: a CUDA graph must not capture casts cached outside it (each forward casts anew)
        return torch.autocast(self.device.type, dtype=torch.float16, cache_enabled=False) if self.amp else nullcontext()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            y = self.module(x)
        y = y[0] if isinstance(y, (tuple, list)) else y
        return y.float()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class CompiledRuntime(EagerRuntime):
    name = "compiled"

    def __init__(self, module: nn.Module, device: torch.device, amp: bool = False):
        super().__init__(module, device, amp)
        self.cache = inductor_cache()
        self.compiled = torch.compile(self.module)  # automatic dynamic: static first, dynamic if shapes change
        self.seen: set[tuple] = set()
        self.compile_s: dict[tuple, float] = {}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self.seen:
            # one eager call first: Ultralytics' head builds its anchors for a new input shape with a host
            # read (a graph break, and a second compile on the next call); eager, it is done before tracing
            self.forward(x)
        t0 = time.perf_counter()
        try:
            with torch_neurons(), self.autocast():
                y = self.compiled(x)
        except Exception as e:  # noqa: BLE001 - the compiler's failure (no C++ compiler, an unsupported op...)
            if key in self.seen:
                raise
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ValueError(f"torch.compile failed ({first}); use --runtime eager") from e
        if key not in self.seen:
            self.seen.add(key)
            self.compile_s[key] = time.perf_counter() - t0
            LOGGER.info(f"compiled for input {'x'.join(map(str, key[0]))} in {self.compile_s[key]:.1f} s "
                        f"(inductor cache: {self.cache})")
        y = y[0] if isinstance(y, (tuple, list)) else y
        return y.float()


class CudaGraphRuntime(EagerRuntime):
    name = "cudagraph"
    WARMUP = 3  # eager runs on a side stream before capture (cuDNN / allocator warm-up, as PyTorch advises)

    def __init__(self, module: nn.Module, device: torch.device, amp: bool = False):
        if torch.device(device).type != "cuda":
            raise ValueError("the cudagraph runtime needs a CUDA device (--device 0)")
        super().__init__(module, device, amp)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = {}
        self.neuron_path = "eager"

    def _capture(self, x: torch.Tensor, neurons) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_in = x.clone()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), neurons():
            for _ in range(self.WARMUP):
                self.forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with neurons(), torch.cuda.graph(graph):
            static_out = self.forward(static_in)
        return graph, static_in, static_out

    def capture(self, x: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        try:
            return self._capture(x, nullcontext)
        except Exception as first:  # noqa: BLE001 - SpikingJelly's kernels could not be captured: try the PyTorch path
            torch.cuda.synchronize(self.device)
            try:
                entry = self._capture(x, torch_neurons)
            except Exception as e:  # noqa: BLE001
                why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
                raise ValueError(f"CUDA graph capture failed ({why}; with SpikingJelly's kernels: "
                                 f"{str(first).strip().splitlines()[0][:120] if str(first).strip() else first!r}); "
                                 "use --runtime eager or compiled") from e
            self.neuron_path = "torch"
            return entry

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device)
        key = (tuple(x.shape), x.dtype)
        if key not in self.graphs:
            t0 = time.perf_counter()
            self.graphs[key] = self.capture(x)
            LOGGER.info(f"CUDA graph captured for input {'x'.join(map(str, key[0]))} in {time.perf_counter() - t0:.1f} s "
                        f"(neurons: {self.neuron_path} path)")
        graph, static_in, static_out = self.graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out.clone()

"""Neuron implementations side by side: why the fused C kernel is the default.

For one layer of neurons of a typical detector shape, time the forward (inference) and the forward +
backward (training) of: SpikingJelly 2.0's CPU implementation (the reference), the fused kernel in C,
the fused kernel's PyTorch path (the fallback without a compiler), and that PyTorch path compiled by
``torch.compile`` (with its compile time). Medians of ``repeats`` runs after a warm-up.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from ..nn import kernels
from ..nn.neurons import make_neuron
from .benchmark import median_seconds


def neuron_report(shape=(2, 8, 64, 80, 80), repeats: int = 10, compile: bool = True,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """``shape`` is time-first (T, B, C, H, W): by default T=2, batch 8, 64 channels at 80 x 80 (the P3
    stage of the n variant at 640 px)."""
    x = torch.randn(*shape) * 2
    rows = []
    for name, kw in (("lif", {}), ("ilif", {"max_spikes": 4})):
        impls: list[tuple[str, Callable[[torch.Tensor], torch.Tensor], float | None]] = [
            ("spikingjelly", make_neuron(name, backend="spikingjelly", **kw), None)]
        fused = make_neuron(name, backend="fused", **kw)
        impls.append(("fused-c" if kernels.backend_name() == "c" else "fused-torch(no compiler)", fused, None))

        impls.append(("fused-torch", fused, None))  # timed below with the C library switched off
        if compile:
            comp = torch.compile(lambda inp, n=fused: kernels._torch_forward(n.params, inp, None, False)[0], dynamic=False)
            t0 = time.perf_counter()
            with torch.no_grad():
                comp(x)
            impls.append(("fused-torch-compiled", comp, time.perf_counter() - t0))
        for label, fn, compile_s in impls:
            kernels.force_torch(label == "fused-torch")
            try:
                with torch.no_grad():
                    fwd = median_seconds(lambda: fn(x), 1, repeats)
                xg = x.clone().requires_grad_(True)
                bwd = None
                if label != "fused-torch-compiled":  # the compiled path is timed for inference only
                    def train():
                        y = fn(xg)
                        y.sum().backward()
                        xg.grad = None

                    bwd = median_seconds(train, 1, max(3, repeats // 2))
            finally:
                kernels.force_torch(False)
            row = {"neuron": name, "implementation": label, "forward_ms": fwd * 1e3,
                   "forward_backward_ms": None if bwd is None else bwd * 1e3, "compile_s": compile_s}
            rows.append(row)
            log(f"{name:>5s} {label:>24s}: forward {fwd * 1e3:8.2f} ms"
                + (f", forward+backward {bwd * 1e3:8.2f} ms" if bwd is not None else "")
                + (f" (compile {compile_s:.0f} s)" if compile_s else ""))
    return {"shape": list(shape), "threads": torch.get_num_threads(), "rows": rows}

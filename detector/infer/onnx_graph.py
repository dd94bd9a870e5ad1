"""Tracing the spiking detector into an ONNX graph: what the ONNX export (``detector.export``) and the
int8 runtime (``int8_runtime``, which quantises the graph) both build on. The graph is time unrolled,
its neurons run through their PyTorch path, the head returns decoded predictions; ``detector.export.onnx``
says what the graph holds and what it cannot express.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from ..nn import kernels
from ..nn.neurons import SJNeuron, StatefulMixin

OPSET = 17


def check_exportable(model: nn.Module) -> None:
    """Refuse (ValueError naming the module) what the ONNX graph cannot express."""
    for name, m in model.named_modules():
        if isinstance(m, SJNeuron):
            raise ValueError(f"cannot export {name}: a SpikingJelly reference-backend neuron (custom operator); "
                             "rebuild the model with the fused neuron backend (the default)")
        if isinstance(m, StatefulMixin) and getattr(m, "streaming", False):
            raise ValueError(f"cannot export {name}: it is in streaming mode (state kept between calls)")


@contextmanager
def traceable(model: nn.Module) -> Iterator[nn.Module]:
    """Run the fused neurons through their PyTorch path (the C library is invisible to the exporter)
    and make the detect head return decoded predictions only."""
    head = model.model[-1]
    saved_export = head.export
    kernels.force_torch(True)
    head.export = True
    try:
        yield model
    finally:
        kernels.force_torch(False)
        head.export = saved_export


def graph_metadata(settings, imgsz: int, source_sha256: str, dynamic_size: bool = False) -> dict[str, str]:
    """The metadata every graph of ours carries (the ``onnx`` runtime and the int8 runtime read it back):
    the format tag, ``ModelSettings.to_metadata()`` at the example size, the source checkpoint's sha256."""
    from dataclasses import replace

    from .onnx_runtime import ONNX_FORMAT

    return {"format": ONNX_FORMAT, **replace(settings, input_size=imgsz).to_metadata(), "source_sha256": source_sha256,
            "dynamic_size": str(int(dynamic_size))}


def trace_onnx(model: nn.Module, out: Path, x: torch.Tensor, meta: dict[str, str], dynamic_size: bool = False) -> None:
    """Trace ``model`` (float32, eval, CPU) on the example ``x`` into the ONNX file ``out`` with the string
    metadata ``meta``; the batch axis is dynamic, and with ``dynamic_size`` height and width too. Raises
    the exporter's own errors (the caller reports them)."""
    import onnx

    check_exportable(model)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    with traceable(model), torch.no_grad(), warnings.catch_warnings():
        # shape checks become constants in a fixed-size graph: exactly what the export intends
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: the one that unrolls T
        torch.onnx.export(model, (x,), str(out), input_names=["images"], output_names=["predictions"],
                          dynamic_axes={"images": axes, "predictions": {0: "batch", **({2: "anchors"} if dynamic_size else {})}},
                          opset_version=OPSET, dynamo=False, do_constant_folding=True)
    proto = onnx.load(str(out))
    for k, v in meta.items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    onnx.save(proto, str(out))

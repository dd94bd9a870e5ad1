"""ONNX export (the ``onnx`` row of ``detector.export.EXPORTS``): the spiking detector as a graph that
ONNX Runtime runs, without PyTorch.

The exported graph is the integer (fast CPU) form of the model at a fixed input size:

* time unrolled: the T timesteps are T copies of the per-step operations, and the neuron state is
  plain tensors flowing from one step to the next (charge, fire, reset as element-wise operations:
  ``Mul``, ``Add``, ``Div``, ``Clip``, ``Round``, ``Where``); the saccadic neuron's ``M_w`` mixing is
  unrolled the same way;
* output: Ultralytics' decoded predictions ``(B, 4 + nc, anchors)`` (boxes xywh in input pixels, class
  probabilities), which the project's NMS and letterbox inverse turn into detections exactly as for
  the PyTorch model (the ``onnx`` runtime, ``detector.infer.onnx_runtime``);
* metadata: class names, input size, T, D, the training images' size and the source checkpoint's sha256
  (the runtime checks the graph against them on load).

What it cannot express, refused with a message naming the module: neurons of the SpikingJelly
reference backend (a custom PyTorch operator; the fused backend's PyTorch path is exported instead),
streaming mode (state kept between calls), and any other operator the exporter fails on (its first
line is reported).

``onnx`` and ``onnxruntime`` are an optional extra: ``pip install -e ".[onnx]"``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from .. import checks
from ..infer.onnx_runtime import ONNX_FORMAT, require_onnx
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


def export_onnx(weights: str | Path | None, out: str | Path, imgsz: int | None = None, batch: int = 1,
                overwrite: bool = False, model: nn.Module | None = None, dynamic_size: bool = False) -> Path:
    """Export weights (a shipped model's name or a path; default: the default shipped model) or a loaded
    ``model`` to ``out`` (an ``.onnx`` file), at ``imgsz`` (default: the training size), with a dynamic
    batch axis (``batch`` is the example). Weights are exported with batch norm folded (the eager
    runtime's model); the graph is traced on the CPU (it does not depend on the device).
    ``dynamic_size``: height and width stay dynamic too (the int8 runtime's graph, fixed per input shape
    when it is compiled); the metadata's ``imgsz`` is then the example size and ``dynamic_size`` is 1."""
    from ..infer.runtime import load_torch_model
    from ..models.settings import settings_of
    from ..weights import resolve_weights, sha256

    require_onnx()
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"the output must be an .onnx file, got {out}")
    checks.output_file(out, "output")
    if out.exists() and not overwrite:
        raise ValueError(f"{out} exists; pass --overwrite to replace it")
    src = resolve_weights(weights) if model is None or weights is not None else None
    if src is not None and src.resolve() == out.resolve():
        raise ValueError("refusing to write the export over its source")
    checks.positive_int("batch", batch, 256)
    if imgsz is not None:
        checks.imgsz(imgsz)  # before the model loads
    src_sha = sha256(src) if src is not None else None
    model = model if model is not None else load_torch_model(src)
    model = model.float().eval().cpu()
    settings = settings_of(model)
    imgsz = settings.imgsz() if imgsz is None else imgsz  # a given size was checked above, before the model loaded
    check_exportable(model)
    x = torch.zeros(batch, 3, imgsz, imgsz)
    meta = {"format": ONNX_FORMAT, **replace(settings, input_size=imgsz).to_metadata(), "source_sha256": src_sha or "",
            "dynamic_size": str(int(dynamic_size))}
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        import warnings

        with traceable(model), torch.no_grad(), warnings.catch_warnings():
            # shape checks become constants in a fixed-size graph: exactly what the export intends
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter: the one that unrolls T
            torch.onnx.export(model, (x,), str(tmp), input_names=["images"], output_names=["predictions"],
                              dynamic_axes={"images": axes, "predictions": {0: "batch", **({2: "anchors"} if dynamic_size else {})}}, opset_version=OPSET,
                              dynamo=False, do_constant_folding=True)
        import onnx

        proto = onnx.load(str(tmp))
        for k, v in meta.items():
            p = proto.metadata_props.add()
            p.key, p.value = k, v
        onnx.save(proto, str(tmp))
        tmp.replace(out)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - the exporter's own failure, reported in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"ONNX export failed: {first[:300]}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return out


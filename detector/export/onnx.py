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

from pathlib import Path

import torch
from torch import nn

from .. import checks
from ..infer.onnx_graph import graph_metadata, trace_onnx
from ..infer.onnx_runtime import require_onnx


def export_onnx(weights: str | Path | None, out: str | Path, imgsz: int | None = None, batch: int = 1,
                overwrite: bool = False, model: nn.Module | None = None) -> Path:
    """Export weights (a shipped model's name or a path; default: the default shipped model) or a loaded
    ``model`` to ``out`` (an ``.onnx`` file), at ``imgsz`` (default: the training size), with a dynamic
    batch axis (``batch`` is the example). Weights are exported with batch norm folded (the eager
    runtime's model); the graph is traced on the CPU (it does not depend on the device)."""
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
    x = torch.zeros(batch, 3, imgsz, imgsz)
    meta = graph_metadata(settings, imgsz, src_sha or "")
    tmp = out.with_name(f".{out.name}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        trace_onnx(model, tmp, x, meta)  # refuses what the graph cannot express (check_exportable)
        tmp.replace(out)
    except ValueError:
        raise
    except Exception as e:  # noqa: BLE001 - the exporter's own failure, reported in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"ONNX export failed: {first[:300]}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return out


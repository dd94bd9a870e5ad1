"""An Ultralytics YOLOv8 (the baseline) quantised as an edge user would quantise it, for the comparison
with the int8 runtime of the spiking model (``int8_runtime``): its ONNX export (decoded predictions, batch
norm folded) through ONNX Runtime's static quantisation (QDQ; the convolutions' weights in int8 per output
channel, their inputs in uint8 with ranges calibrated on sample images), compiled by OpenVINO for each
input shape it meets, as the spiking model's int8 graph is. Unlike the spiking model, whose quantised
inputs are exact counts, every activation here is rounded to one of 256 levels of its calibrated range:
that is the accuracy an edge user gives up (measured on SSDD test: docs/design.md, section 10).

The benchmark (``detector.analysis.deploy_bench``) quantises a random-weight YOLOv8n on random batches
(its speed only); the baseline's evaluation (``detector.engine.baseline``) quantises trained weights on
images of the dataset's train split (``calibration_batches``). Both go through ``quantize_ann``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

CALIBRATION_IMAGES = 32  # train images the activations' ranges are calibrated on: "a few dozen", as an edge user would
CALIBRATION_BATCH = 8


def check_calibration_images(n) -> int:
    """``n`` if it is a positive number of calibration images, else ValueError (one line)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"int8 calibration needs a positive number of images (--calib-images), got {n!r}")
    return n


def export_ann(model: nn.Module, path: Path, imgsz: int, batch: int = 1, dynamic: bool = False) -> Path:
    """``model`` (an Ultralytics DetectionModel, left unchanged) to ONNX as the project exports its own
    model: input ``images``, output the decoded predictions ``(B, 4 + nc, anchors)``; batch norm folded.
    ``dynamic``: batch, height and width free (the anchors computed in the graph), else fixed."""
    m = copy.deepcopy(model).float().eval()
    m.fuse(verbose=False)
    head = m.model[-1]
    head.export, head.dynamic = True, dynamic
    axes = {"images": {0: "batch", 2: "height", 3: "width"}, "predictions": {0: "batch", 2: "anchors"}} if dynamic else None
    with torch.no_grad():
        torch.onnx.export(m, (torch.zeros(batch, 3, imgsz, imgsz),), str(path), input_names=["images"],
                          output_names=["predictions"], opset_version=17, dynamo=False, dynamic_axes=axes)
    return Path(path)


def quantize_ann(model: nn.Module, folder: Path, calibration: Iterable[torch.Tensor], imgsz: int, batch: int = 1,
                 dynamic: bool = False) -> Path:
    """The int8 ONNX graph of ``model`` in ``folder`` (``export_ann``, then ONNX Runtime's
    ``quantize_static``: QDQ, int8 per-channel weights, uint8 activations whose ranges are the min/max
    over the ``calibration`` batches ``(B, 3, H, W)`` in [0, 1]). Only convolutions are quantised (the
    decoding stays float32, as in the spiking model's int8 graph)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calibration)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"images": np.ascontiguousarray(x.numpy(), dtype=np.float32)}

    src, dst = Path(folder) / "ann-float.onnx", Path(folder) / "ann-int8.onnx"
    export_ann(model, src, imgsz, batch, dynamic)
    quantize_static(str(src), str(dst), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    return dst


def random_batches(imgsz: int, batch: int, n: int = 2, seed: int = 0) -> list[torch.Tensor]:
    """``n`` random batches: the calibration of a model whose weights are random too (speed only)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, imgsz, imgsz, generator=g) for _ in range(n)]


def calibration_batches(data: str | Path, imgsz: int, images: int = CALIBRATION_IMAGES,
                        batch: int = CALIBRATION_BATCH) -> list[torch.Tensor]:
    """``images`` images of the train split of dataset ``data``, spread evenly over its sorted list,
    letterboxed to ``imgsz`` as detection does, in batches of ``batch`` (an unreadable one is skipped
    with a warning). ValueError if none could be read."""
    from ..io.batches import dataset_images, image_batches

    paths = dataset_images(data, "train")
    picked = [paths[i * len(paths) // images] for i in range(min(images, len(paths)))]
    out = list(image_batches(picked, imgsz, batch))
    if not out:
        raise ValueError(f"{data}: none of the {len(picked)} train images picked for int8 calibration could be read")
    return out


class AnnInt8(nn.Module):
    """The int8 graph of a YOLOv8 (``quantize_ann``) run by OpenVINO, as the ``nn.Module`` Ultralytics'
    validator takes: ``forward`` returns the decoded predictions; ``names`` and ``stride`` are the float
    model's. No ``fuse`` method, so the validator leaves it as it is."""

    def __init__(self, graph: Path, model: nn.Module, threads: int | None = None):
        super().__init__()
        from .int8_runtime import OpenVinoGraph

        self.graph = OpenVinoGraph(graph, threads)
        self.names = dict(model.names)
        self.stride = model.stride
        self.yaml = dict(getattr(model, "yaml", {}) or {})

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return torch.from_numpy(self.graph(x))

"""The ONNX Runtime runtime: an ONNX export (``detector.export``) run on the CPU, or on a CUDA GPU with
ONNX Runtime's CUDA execution provider (the ``onnxruntime-gpu`` package).

On load the file's metadata (format tag, class names, input size, T, D) is read and checked against the
graph itself: the graph's input must be ``(batch, 3, imgsz, imgsz)`` and one trial run on a blank image
must give ``(1, 4 + classes, anchors)``. A foreign, corrupt or inconsistent file is a one-line error
naming the file. No custom operators are loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..models.settings import ModelSettings
from .base import Runtime

ONNX_FORMAT = "snnvit-yolo-onnx"
STRIDES = (8, 16, 32)


def require_onnx():
    """onnx and onnxruntime, or a one-line error saying how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ValueError(f"ONNX support needs the optional extra: pip install -e \".[onnx]\" ({e.name} is missing)") from e


def read_metadata(path: Path, meta: dict[str, str]) -> ModelSettings:
    """The settings an export's metadata states; ValueError naming the file when it is not ours or
    unreadable."""
    if meta.get("format") != ONNX_FORMAT:
        raise ValueError(f"{path} is not an SNN-ViT-YOLO ONNX export (format tag missing)")
    return ModelSettings.from_metadata(meta, str(path))


class OnnxRuntime(Runtime):
    name = "onnx"

    def __init__(self, path: str | Path, device: torch.device | str = "cpu", threads: int | None = None):
        require_onnx()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        device = torch.device(device)
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ValueError("this ONNX Runtime has no CUDA execution provider: install onnxruntime-gpu (same "
                                 "version) in place of onnxruntime, or use --device cpu")
            providers = [("CUDAExecutionProvider", {"device_id": device.index or 0})]
        else:
            providers = ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=providers)
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
            raise ValueError(f"cannot load ONNX model {path}: {str(e).splitlines()[0][:200]}") from e
        # inputs are handed over as numpy arrays: they are made on the CPU whatever the provider
        super().__init__(read_metadata(path, self.session.get_modelmeta().custom_metadata_map), torch.device("cpu"))
        self.path = path
        self.provider = providers[0] if isinstance(providers[0], str) else providers[0][0]
        self.check_graph()

    @classmethod
    def load(cls, path: Path, device: torch.device, amp: bool = False) -> "OnnxRuntime":
        return cls(path, device)

    def check_graph(self) -> None:
        """The graph against its metadata: input (batch, 3, imgsz, imgsz); a trial run gives
        (1, 4 + classes, anchors at strides 8, 16, 32)."""
        s, path = self.settings, self.path
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != "images":
            raise ValueError(f"{path}: the graph's inputs {[i.name for i in inputs]} are not one 'images' input")
        shape = list(inputs[0].shape)
        want = (None, 3, s.input_size, s.input_size)  # None: the dynamic batch axis
        if len(shape) != 4 or any(isinstance(d, int) and w is not None and d != w for d, w in zip(shape, want)):
            raise ValueError(f"{path}: the graph takes {shape}, its metadata says (batch, 3, {s.input_size}, "
                             f"{s.input_size})")
        try:
            y = self.session.run(None, {"images": np.zeros((1, 3, s.input_size, s.input_size), np.float32)})[0]
        except Exception as e:  # noqa: BLE001 - ONNX Runtime's own error
            raise ValueError(f"{path}: the graph does not run at its metadata's input size {s.input_size} "
                             f"({str(e).splitlines()[0][:160]})") from e
        anchors = sum((s.input_size // st) ** 2 for st in STRIDES)
        if tuple(y.shape) != (1, 4 + len(s.names), anchors):
            raise ValueError(f"{path}: the graph outputs {tuple(y.shape)}, its metadata ({len(s.names)} classes at "
                             f"{s.input_size} px) means (1, {4 + len(s.names)}, {anchors})")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.settings.check_imgsz(x.shape[-1])
        if x.shape[-2] != x.shape[-1]:
            raise ValueError(f"{self.path} takes square inputs, got {tuple(x.shape[-2:])}")
        y = self.session.run(None, {"images": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(y)

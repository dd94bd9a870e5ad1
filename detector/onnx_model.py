"""Running an exported model: ``OnnxDetector`` puts an ONNX file (``detector.export``) behind the
interface detection uses, run by ONNX Runtime on the CPU. The file's metadata (format tag, class
names, input size, T, D) is checked on load; a foreign or corrupt file is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

ONNX_FORMAT = "snnvit-yolo-onnx"


def require_onnx():
    """onnx and onnxruntime, or a one-line error saying how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ValueError(f"ONNX support needs the optional extra: pip install -e \".[onnx]\" ({e.name} is missing)") from e


class OnnxDetector(nn.Module):
    """An exported model behind the interface ``detect()`` / ``predict_image`` use: called on a letterboxed
    batch it returns decoded predictions as a torch tensor; ``names``, ``train_imgsz`` (the fixed input
    size) and ``timesteps`` come from the file's metadata."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        require_onnx()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads or torch.get_num_threads())
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - a corrupt or foreign file
            raise ValueError(f"cannot load ONNX model {path}: {str(e).splitlines()[0][:200]}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("format") != ONNX_FORMAT:
            raise ValueError(f"{path} is not an SNN-ViT-YOLO ONNX export (format tag missing)")
        try:
            self.names = {int(k): str(v) for k, v in json.loads(meta["names"]).items()}
            self.train_imgsz = int(meta["imgsz"])
            self.timesteps = int(meta["timesteps"])
            self.levels = int(meta.get("levels", 1))
            tis = meta.get("train_image_size") or ""
            self.train_image_size = int(tis) if tis.isdigit() else None
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path}: unreadable metadata ({e})") from e
        self.path = path
        self._device_anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # predict_image asks for a device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.train_imgsz, self.train_imgsz):
            raise ValueError(f"this ONNX model takes {self.train_imgsz} x {self.train_imgsz} inputs, got "
                             f"{tuple(x.shape[-2:])}; run with --imgsz {self.train_imgsz}")
        y = self.session.run(None, {"images": np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)})[0]
        return torch.from_numpy(y)

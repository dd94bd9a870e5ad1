"""Inference: runtimes (a table: PyTorch eager, compiled, CUDA graphs, ONNX Runtime), prediction on
images, sliced inference on large scenes, and the detection loop behind ``tools/detect.py``.

    from detector.infer import load_runtime, predict_image, detect
    rt = load_runtime("ssdd", device="cpu", runtime="auto")     # a shipped name or a path
    det = predict_image(rt, img_bgr)                             # (N, 6) x1 y1 x2 y2 score class

The process settings (``detector.settings.apply()``: offline, private, threads) are applied here, before
any module of this package puts Ultralytics to work."""

from .. import settings as _settings

_settings.apply()

from .options import DETECT, OVERLAP, VAL, Thresholds  # noqa: E402
from .pipeline import DetectSummary, detect, resolve_tile  # noqa: E402
from .predict import predict_batch, predict_image  # noqa: E402
from .runtime import RUNTIMES, Runtime, as_runtime, load_runtime, runtime_table  # noqa: E402
from .tiled import merge_tiles, predict_tiled  # noqa: E402

__all__ = ["DETECT", "VAL", "OVERLAP", "Thresholds", "DetectSummary", "detect", "resolve_tile", "predict_batch",
           "predict_image", "RUNTIMES", "Runtime", "as_runtime", "load_runtime", "runtime_table", "merge_tiles",
           "predict_tiled"]

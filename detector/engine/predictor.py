"""``SNNPredictor``: Ultralytics' ``DetectionPredictor`` that loads project checkpoints safely, for users
who drive the Ultralytics engine directly. The project's own detection (runtimes, sliced inference,
the detection loop behind ``tools/detect.py``) is ``detector.infer``."""

from __future__ import annotations

from pathlib import Path

from ultralytics.models.yolo.detect import DetectionPredictor


class SNNPredictor(DetectionPredictor):
    """Ultralytics detection predictor; a weights path (or a shipped model's name) is loaded with the
    project's safe loader, and the model keeps PyTorch's default memory layout unless ``channels_last``
    is set, so its detections equal ``detector.infer.predict_image``'s on the unfolded model (see
    ``SNNValidator`` for why the layout matters to a spiking network)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.channels_last is None:
            self.args.channels_last = False

    def setup_model(self, model, verbose: bool = True):
        from ..weights import load_model

        if model is None or isinstance(model, (str, Path)):
            model = load_model(model or self.args.model, device="cpu")
        super().setup_model(model, verbose=verbose)

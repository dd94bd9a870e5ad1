"""SNN-ViT-YOLO: a spiking vision transformer (GL-SPS + saccadic spike self-attention) object
detector for remote sensing, on the Ultralytics engine.

Importing ``detector`` sets the offline/private environment before anything imports Ultralytics;
the Ultralytics settings themselves are applied when the model or engine modules are imported
(see ``detector.engine.offline``).
"""

from .settings import set_environment as _set_environment

_set_environment()

__version__ = "0.1.0"

"""SNN-ViT-YOLO: a spiking vision transformer (GL-SPS + saccadic spike self-attention) object
detector for remote sensing, on the Ultralytics engine.

Importing ``detector`` first makes Ultralytics offline and private (see ``detector.engine.offline``).
"""

from .engine import offline as _offline

_offline.set_environment()  # before any Ultralytics import
_offline.apply()

__version__ = "0.1.0"

"""SNN-ViT-YOLO model assembly and variant configs."""

from .config import VARIANTS, load_config
from .model import SNNViTYOLO

__all__ = ["SNNViTYOLO", "load_config", "VARIANTS"]

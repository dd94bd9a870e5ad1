"""SNN-ViT-YOLO: the assembled detector and its Ultralytics model interface.

    image (B,3,H,W) -> SNNViT backbone -> [P3, P4, P5] spikes (T,B,C,h,w) -> SpikingPAN neck
      -> SpikingDetect head (last 1x1 conv averaged over T) -> Ultralytics DFL decode / loss / NMS

``SNNViTYOLO`` is a ``DetectionModel`` for the Ultralytics engine (trainer, validator, predictor,
``v8DetectionLoss``) but is assembled here instead of by Ultralytics' YAML parser. Neuron state is
reset inside every neuron call, so callers never reset anything.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import LOGGER
from ultralytics.utils.torch_utils import initialize_weights

from ..nn.backbone import SNNViT, SNNViTConfig
from ..nn.head import SpikingDetect
from ..nn.neck import SpikingPAN
from .config import load_config


class SNNViTYOLO(DetectionModel):
    """The spiking detector. ``cfg``: variant name (n/s/m), YAML path or config dict."""

    def __init__(self, cfg: str | Path | dict | None = "n", ch: int = 3, nc: int | None = None, verbose: bool = True,
                 timesteps: int | None = None):
        nn.Module.__init__(self)  # not DetectionModel.__init__: that parses Ultralytics layer YAMLs
        if ch != 3:
            raise ValueError("SNN-ViT-YOLO takes 3-channel images")
        self.yaml = load_config(cfg, nc=nc, timesteps=timesteps)
        y = self.yaml
        bb = SNNViTConfig.from_dict({**y["backbone"], "timesteps": y["timesteps"], "neuron": y["neuron"],
                                     "saccade": y["saccade"]})
        backbone = SNNViT(bb)
        neck = SpikingPAN(backbone.out_channels, y["neck"]["widths"], int(y["neck"]["depth"]), y["neuron"])
        head = SpikingDetect(int(y["nc"]), neck.out_channels, y["neuron"], reg_max=int(y["reg_max"]),
                             readout=y["readout"])
        self.model = nn.ModuleList([backbone, neck, head])  # model[-1] is the Detect head, as Ultralytics expects
        self.save = []
        self.inplace = True
        names = y["names"]
        self.names = {int(k): str(v) for k, v in names.items()} if names else {i: str(i) for i in range(y["nc"])}
        head.stride = torch.tensor([float(s) for s in backbone.strides])
        self.stride = head.stride
        initialize_weights(self)
        head.bias_init(y["cls_prior"])
        if verbose:
            self.info()
            LOGGER.info("")

    # -- the one model API -------------------------------------------------------------------
    @property
    def backbone(self) -> SNNViT:
        return self.model[0]

    @property
    def neck(self) -> SpikingPAN:
        return self.model[1]

    @property
    def head(self) -> SpikingDetect:
        return self.model[2]

    @property
    def timesteps(self) -> int:
        return int(self.yaml["timesteps"])

    def features(self, x: torch.Tensor, T: int | None = None) -> list[torch.Tensor]:
        """Neck outputs [P3, P4, P5] spikes (T, B, C, h, w) at strides 8, 16, 32."""
        return self.neck(self.backbone(x, T))

    def _predict_once(self, x, profile=False, embed=None, T: int | None = None):
        if embed:
            raise NotImplementedError("embeddings are not supported by SNN-ViT-YOLO")
        return self.head(self.features(x, T))

    def predict(self, x, profile=False, augment=False, embed=None, T: int | None = None):
        if augment:
            LOGGER.warning("SNN-ViT-YOLO does not support augment=True; using single-scale prediction")
        return self._predict_once(x, profile, embed, T)

    def _predict_augment(self, x):
        return self._predict_once(x)

    def set_names(self, names: dict[int, str] | list[str]) -> None:
        names = dict(enumerate(names)) if isinstance(names, (list, tuple)) else dict(names)
        self.names = {int(k): str(v) for k, v in names.items()}
        self.yaml["names"] = dict(self.names)

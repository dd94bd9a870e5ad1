"""Prediction on images: letterbox, run, NMS, boxes back to image pixels. One function for a batch of
images (whole images and the tiles of sliced inference alike); ``predict_image`` is its one-image form."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from ultralytics.utils.nms import non_max_suppression

from ..io.letterbox import Letterbox
from .options import DETECT
from .runtime import Runtime, as_runtime


@torch.no_grad()
def predict_batch(model: Runtime | nn.Module, images: Sequence[np.ndarray], imgsz: int, conf: float = DETECT.conf,
                  iou: float = DETECT.iou, max_det: int = DETECT.max_det, pad_to: int | None = None) -> list[torch.Tensor]:
    """Detections per image, each (N, 6) = x1, y1, x2, y2, score, class in that image's pixels (CPU).
    ``images``: BGR uint8 arrays of any sizes, each letterboxed to ``imgsz``. ``pad_to``: run a batch of
    this many inputs (blank ones added), for runtimes built for one batch size."""
    rt = as_runtime(model)
    boxes = [Letterbox.fit(im.shape[:2], imgsz) for im in images]
    x = torch.cat([lb.apply(im, rt.device) for lb, im in zip(boxes, images)])
    n = x.shape[0]
    if pad_to and pad_to > n:
        x = torch.cat([x, x.new_zeros(pad_to - n, *x.shape[1:])])
    preds = rt(x)[:n]
    dets = non_max_suppression(preds, conf, iou, max_det=max_det)
    out = []
    for lb, d in zip(boxes, dets):
        d[:, :4] = lb.boxes_to_image(d[:, :4])
        out.append(d.cpu())
    return out


def predict_image(model: Runtime | nn.Module, img_bgr: np.ndarray, imgsz: int | None = None, conf: float = DETECT.conf,
                  iou: float = DETECT.iou, max_det: int = DETECT.max_det) -> torch.Tensor:
    """Detections (N, 6) = x1, y1, x2, y2, score, class in original image pixels. ``imgsz``: the model's
    own size (``ModelSettings.imgsz``) when None; a runtime built for one input size refuses others
    when called (``OnnxRuntime``)."""
    rt = as_runtime(model)
    imgsz = rt.settings.imgsz() if imgsz is None else imgsz  # 0 is checked (letterbox), never the default
    return predict_batch(rt, [img_bgr], imgsz, conf, iou, max_det)[0]

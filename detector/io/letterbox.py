"""The one letterbox: how an image is fitted into the square model input, and back.

The model sees every image resized (aspect kept) to fit ``imgsz x imgsz`` and padded with grey to
the square, exactly as Ultralytics' ``LetterBox`` does in training and validation. ``Letterbox`` is
that geometry as an object: ``fit`` computes it, ``apply`` produces the model input, and
``boxes_to_image`` / ``to_input`` map coordinates between the input and the original image.
Detection, heatmaps, energy and the trainer's batch-norm calibration all use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..checks import imgsz as check_imgsz

_SQUARES: dict[int, Any] = {}  # imgsz -> Ultralytics' LetterBox for that square input, built and checked once


def square(imgsz: int) -> Any:
    """Ultralytics' ``LetterBox`` for a square input of side ``imgsz``. The size is checked when the first
    letterbox of that size is built, not again for every image after it; a refused size is never kept."""
    if type(imgsz) is not int or imgsz not in _SQUARES:  # an int only: 320.0 and True are checked (refused)
        from ultralytics.data.augment import LetterBox

        _SQUARES[check_imgsz(imgsz)] = LetterBox(new_shape=(imgsz, imgsz), auto=False, stride=32)
    return _SQUARES[imgsz]


@dataclass(frozen=True)
class Letterbox:
    """How an ``orig_shape`` image was letterboxed into ``input_shape``: resized to ``unpad_shape`` (all
    ``(height, width)``) and padded by ``top`` / ``left`` (the rest at bottom / right)."""

    orig_shape: tuple[int, int]
    input_shape: tuple[int, int]
    unpad_shape: tuple[int, int]
    top: int
    left: int

    @classmethod
    def fit(cls, orig_shape: tuple[int, int], imgsz: int) -> "Letterbox":
        """The geometry for an image of ``orig_shape`` (H, W) and a square input of side ``imgsz``,
        computed by Ultralytics' own ``LetterBox`` (the code that letterboxes training images)."""
        H0, W0 = int(orig_shape[0]), int(orig_shape[1])
        p = square(imgsz).get_params({"img": np.empty((H0, W0, 0), np.uint8)})
        uw, uh = p["new_unpad"]
        return cls((H0, W0), (int(p["new_shape"][0]), int(p["new_shape"][1])), (int(uh), int(uw)), int(p["top"]),
                   int(p["left"]))

    def apply(self, img_bgr: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """BGR uint8 (H, W, 3) -> RGB float (1, 3, H_in, W_in) in [0, 1]."""
        from ultralytics.data.augment import LetterBox

        if tuple(img_bgr.shape[:2]) != self.orig_shape:
            raise ValueError(f"image of shape {img_bgr.shape[:2]} does not match this letterbox ({self.orig_shape})")
        lb = LetterBox(new_shape=self.input_shape, auto=False, stride=32)(image=img_bgr)
        x = torch.from_numpy(np.ascontiguousarray(lb[..., ::-1].transpose(2, 0, 1))).to(device)
        return x.float().div_(255.0).unsqueeze(0)

    def boxes_to_image(self, boxes: torch.Tensor) -> torch.Tensor:
        """xyxy boxes (N, 4) on the model input -> on the original image (clipped to it), in place."""
        from ultralytics.utils import ops

        return ops.scale_boxes(self.input_shape, boxes, self.orig_shape)

    def to_input(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original-image coordinates (continuous, pixel edges at integers) -> model-input coordinates."""
        Hu, Wu = self.unpad_shape
        H0, W0 = self.orig_shape
        return self.left + np.asarray(x) * (Wu / W0), self.top + np.asarray(y) * (Hu / H0)

    def as_array(self) -> np.ndarray:
        """[H0, W0, Hin, Win, Hu, Wu, top, left] for storing in .npz files."""
        return np.array([*self.orig_shape, *self.input_shape, *self.unpad_shape, self.top, self.left], np.int64)


def letterbox_tensor(img_bgr: np.ndarray, imgsz: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> RGB float (1, 3, imgsz, imgsz) in [0, 1], letterboxed as in training."""
    return Letterbox.fit(img_bgr.shape[:2], imgsz).apply(img_bgr, device)

"""Prediction: the library behind ``tools/detect.py``, and an Ultralytics predictor class.

``detect()`` walks a source (folder, file, glob or video), reads each image robustly (a bad file is
skipped with a warning and listed in the summary), letterboxes it, runs the model, applies
Ultralytics' NMS, and writes rendered images, optional YOLO txt files and a COCO-results
``predictions.json``. ``SNNPredictor`` is Ultralytics' ``DetectionPredictor`` that loads project
checkpoints safely, for users who drive the Ultralytics engine directly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from . import offline as _offline

_offline.apply()  # before this module's first Ultralytics import

from ultralytics.data.augment import LetterBox
from ultralytics.engine.results import Results
from ultralytics.models.yolo.detect import DetectionPredictor
from ultralytics.utils import LOGGER, ops
from ultralytics.utils.nms import non_max_suppression

from .sources import ImageReadError, expand_source, iter_video, read_image


class SNNPredictor(DetectionPredictor):
    """Ultralytics detection predictor; a weights path is loaded with the project's safe loader, and the
    model keeps PyTorch's default memory layout unless ``channels_last`` is set, so its detections equal
    ``predict_image``'s (see ``SNNValidator`` for why the layout matters to a spiking network)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.args.channels_last is None:
            self.args.channels_last = False

    def setup_model(self, model, verbose: bool = True):
        from ..weights import load_model

        if model is None or isinstance(model, (str, Path)):
            model = load_model(model or self.args.model, device="cpu")
        super().setup_model(model, verbose=verbose)


def letterbox_tensor(img_bgr: np.ndarray, imgsz: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> RGB float (1, 3, imgsz, imgsz) in [0, 1], letterboxed as in training."""
    lb = LetterBox(new_shape=(imgsz, imgsz), auto=False, stride=32)(image=img_bgr)
    x = torch.from_numpy(np.ascontiguousarray(lb[..., ::-1].transpose(2, 0, 1))).to(device)
    return x.float().div_(255.0).unsqueeze(0)


@torch.no_grad()
def predict_image(model, img_bgr: np.ndarray, imgsz: int = 640, conf: float = 0.25, iou: float = 0.45,
                  max_det: int = 300) -> torch.Tensor:
    """Detections (N, 6) = x1, y1, x2, y2, score, class in original image pixels."""
    device = next(model.parameters()).device
    x = letterbox_tensor(img_bgr, imgsz, device)
    preds = model(x)
    det = non_max_suppression(preds, conf, iou, max_det=max_det)[0]
    det[:, :4] = ops.scale_boxes(x.shape[2:], det[:, :4], img_bgr.shape[:2])
    return det.cpu()


@dataclass
class DetectSummary:
    out_dir: Path
    images: int = 0
    detections: int = 0
    per_image: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)


def describe(det: torch.Tensor, names: dict[int, str]) -> str:
    if len(det) == 0:
        return "no detections"
    cls, counts = np.unique(det[:, 5].numpy().astype(int), return_counts=True)
    return ", ".join(f"{n} {names.get(int(c), str(int(c)))}{'s' if n > 1 else ''}" for c, n in zip(cls.tolist(), counts.tolist()))


def coco_records(det: torch.Tensor, file_name: str, names: dict[int, str], **extra: Any) -> list[dict[str, Any]]:
    """COCO results records (bbox x, y, w, h in pixels; category_id = class index + 1)."""
    recs = []
    for x1, y1, x2, y2, s, c in det.tolist():
        recs.append({"file_name": file_name, **extra, "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2),
                     round(y2 - y1, 2)], "score": round(s, 5), "category_id": int(c) + 1,
                     "category_name": names.get(int(c), str(int(c)))})
    return recs


def yolo_lines(det: torch.Tensor, shape: tuple[int, int]) -> list[str]:
    """YOLO txt lines: class cx cy w h score, normalised to the image size."""
    h, w = shape[:2]
    lines = []
    for x1, y1, x2, y2, s, c in det.tolist():
        lines.append(f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} "
                     f"{(y2 - y1) / h:.6f} {s:.5f}")
    return lines


def render(img_bgr: np.ndarray, det: torch.Tensor, names: dict[int, str], path: str = "") -> np.ndarray:
    """Draw boxes, class names and scores (Ultralytics' plotting, offline font)."""
    return Results(img_bgr, path=path, names=names, boxes=det).plot()


def output_name(path: Path, root: Path | None) -> str:
    """A flat, collision-free output name: sub/folder/img.tif -> sub_folder_img."""
    try:
        rel = path.relative_to(root) if root else Path(path.name)
    except ValueError:
        rel = Path(path.name)
    return "_".join(rel.with_suffix("").parts)


def detect(
    source: str | Path,
    weights: str | Path | None = None,
    out: str | Path = "runs/detect/exp",
    conf: float = 0.25,
    iou: float = 0.45,
    imgsz: int | None = None,
    save_txt: bool = False,
    save_json: bool = False,
    device: str = "cpu",
    max_det: int = 300,
    vid_stride: int = 1,
    model=None,
    verbose: bool = True,
) -> DetectSummary:
    """Detect objects in every image (and video) of ``source`` and write the results into ``out``.
    ``imgsz`` defaults to the size the weights were trained at (640 if the checkpoint does not say)."""
    from ..weights import default_imgsz, load_model

    if imgsz is not None and imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
    model = model if model is not None else load_model(weights, device=device)
    imgsz = imgsz or default_imgsz(model)
    if imgsz % 32:
        raise ValueError(f"imgsz must be a multiple of 32, got {imgsz}")
    model.eval()
    names = {int(k): v for k, v in model.names.items()}
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if save_txt:
        (out_dir / "labels").mkdir(exist_ok=True)
    src = expand_source(source)
    root = Path(source) if Path(source).is_dir() else None
    summary = DetectSummary(out_dir=out_dir, skipped=list(src.skipped))
    for f, why in src.skipped:
        LOGGER.warning(f"skipped {f}: {why}")
    n_total = len(src.images)
    for k, path in enumerate(src.images, 1):
        try:
            img = read_image(path)
        except ImageReadError as e:
            LOGGER.warning(f"skipped {e}")
            summary.skipped.append((str(path), str(e)))
            continue
        t0 = time.perf_counter()
        det = predict_image(model, img, imgsz, conf, iou, max_det)
        dt = (time.perf_counter() - t0) * 1000
        stem = output_name(path, root)
        cv2.imwrite(str(out_dir / f"{stem}.jpg"), render(img, det, names, str(path)))
        if save_txt:
            (out_dir / "labels" / f"{stem}.txt").write_text("".join(l + "\n" for l in yolo_lines(det, img.shape)))
        summary.predictions += coco_records(det, path.name, names)
        summary.images += 1
        summary.detections += len(det)
        summary.per_image.append({"file": str(path), "output": str(out_dir / f"{stem}.jpg"), "detections": len(det),
                                  "size": [int(img.shape[1]), int(img.shape[0])], "ms": round(dt, 1)})
        if verbose:
            print(f"image {k}/{n_total} {path} {img.shape[1]}x{img.shape[0]}: {describe(det, names)} ({dt:.1f} ms)")
    for vpath in src.videos:
        detect_video(model, vpath, out_dir, names, summary, imgsz, conf, iou, max_det, vid_stride, save_txt, verbose)
    if save_json:
        (out_dir / "predictions.json").write_text(json.dumps(summary.predictions, indent=1), encoding="utf-8")
    if verbose:
        print(f"{summary.images} image(s), {summary.detections} detection(s) -> {out_dir}"
              + (f"; skipped {len(summary.skipped)}: " + "; ".join(f"{f} ({w})" for f, w in summary.skipped)
                 if summary.skipped else ""))
    return summary


def detect_video(model, vpath: Path, out_dir: Path, names, summary: DetectSummary, imgsz, conf, iou, max_det,
                  stride: int, save_txt: bool, verbose: bool) -> None:
    """Detect in every ``stride``-th frame of a video; write an annotated MP4 next to the images."""
    writer = None
    n = 0
    try:
        for i, frame in iter_video(vpath, stride):
            det = predict_image(model, frame, imgsz, conf, iou, max_det)
            vis = render(frame, det, names, str(vpath))
            if writer is None:
                fps = 25.0 / max(stride, 1)
                writer = cv2.VideoWriter(str(out_dir / f"{vpath.stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (vis.shape[1], vis.shape[0]))
            writer.write(vis)
            if save_txt:
                (out_dir / "labels" / f"{vpath.stem}_{i}.txt").write_text("".join(l + "\n" for l in yolo_lines(det, frame.shape)))
            summary.predictions += coco_records(det, vpath.name, names, frame=i)
            summary.detections += len(det)
            n += 1
    except ImageReadError as e:
        LOGGER.warning(f"skipped {e}")
        summary.skipped.append((str(vpath), str(e)))
        return
    finally:
        if writer is not None:
            writer.release()
    if n == 0:
        summary.skipped.append((str(vpath), "video has no readable frames"))
        return
    summary.per_image.append({"file": str(vpath), "output": str(out_dir / f"{vpath.stem}.mp4"), "frames": n})
    if verbose:
        print(f"video {vpath}: {n} frame(s) processed -> {out_dir / (vpath.stem + '.mp4')}")

"""The same-budget ANN baseline: Ultralytics' YOLOv8n trained from scratch on the same data, epochs and
image size as an SNN-ViT-YOLO run, with Ultralytics' own trainer and validator unchanged.

Two things differ from ``yolo train``: the model is always built from ``yolov8n.yaml`` (random weights;
nothing is downloaded), and a resumed run may raise ``epochs``, as ``SNNTrainer`` allows, so a baseline
can follow an SNN schedule that was extended by resuming (e.g. 7 epochs, then resumed to 26).

The baseline's checkpoints are Ultralytics' own pickled format, which its trainer writes and reads;
this module loads only files its own runs wrote. The project's weights never use that format.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from . import offline as _offline

_offline.apply()

from ultralytics.models.yolo.detect import DetectionTrainer


class BaselineTrainer(DetectionTrainer):
    def check_resume(self, overrides):
        overrides = dict(overrides)
        epochs = overrides.pop("epochs", None)  # Ultralytics would ignore it, with a warning
        super().check_resume(overrides)
        if self.resume and epochs is not None:
            self.args.epochs = int(epochs)

    def final_eval(self):
        """Ultralytics strips the optimizer (and the epoch) out of ``last.pt`` at the end of a run, which
        makes a finished run impossible to extend; keep ``last.pt`` resumable."""
        keep = self.last.with_name(self.last.name + ".keep")
        if self.last.exists():
            shutil.copyfile(self.last, keep)
        try:
            super().final_eval()
        finally:
            if keep.exists():
                keep.replace(self.last)


def train_baseline(data: str | Path, epochs: int | None, imgsz: int, batch: int = 16, device: str = "cpu",
                   resume: str | None = None, project: str | Path = "runs/baseline", name: str = "yolov8n",
                   model: str = "yolov8n.yaml", **overrides: Any) -> BaselineTrainer:
    """Train ``model`` (an Ultralytics model YAML) from scratch, or resume ``resume`` (a ``last.pt`` this
    function wrote), raising ``epochs`` if given."""
    if resume:
        args = dict(model=str(resume), resume=str(resume), data=str(data) if data else "", device=device, **overrides)
        if epochs is not None:
            args["epochs"] = epochs
    else:
        args = dict(model=model, data=str(data), epochs=100 if epochs is None else epochs, imgsz=imgsz, batch=batch,
                    device=device, pretrained=False, amp=False, project=str(Path(project).resolve()), name=name,
                    **overrides)
    trainer = BaselineTrainer(overrides=args)
    trainer.train()
    return trainer


def evaluate_baseline(weights: str | Path, data: str | Path, split: str = "test", imgsz: int = 640, batch: int = 16,
                      device: str = "cpu", project: str | Path = "runs/baseline", name: str = "val") -> dict[str, Any]:
    """Ultralytics' validator on a baseline checkpoint this project's baseline run wrote: overall and
    per-class mAP@0.5 and mAP@0.5:0.95."""
    from ultralytics import YOLO

    m = YOLO(str(weights)).val(data=str(data), split=split, imgsz=imgsz, batch=batch, device=device, plots=False,
                               project=str(Path(project).resolve()), name=name, exist_ok=True)
    names = m.names
    per_class = {names[int(c)]: {"map50": float(m.box.class_result(i)[2]), "map50_95": float(m.box.class_result(i)[3])}
                 for i, c in enumerate(m.ap_class_index)}
    return {"weights": str(weights), "split": split, "imgsz": imgsz, "map50": float(m.box.map50),
            "map50_95": float(m.box.map), "precision": float(m.box.mp), "recall": float(m.box.mr),
            "per_class": per_class}

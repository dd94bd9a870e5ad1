"""The same-budget ANN baseline, and the distillation teacher: an Ultralytics YOLOv8 trained from
scratch on the same data, epochs and image size as an SNN-ViT-YOLO run, with Ultralytics' own
training loop, loss and validator.

What differs from ``yolo train``:

* the model is always built from one of Ultralytics' bundled YAMLs (``detector.weights.ANN_ARCHS``,
  random weights; nothing is downloaded);
* checkpoints are the project's plain-data ANN format (``detector.weights.save_ann_checkpoint``),
  never pickles: ``--resume``, ``--eval`` and ``--teacher`` read them with ``weights_only=True``, so a
  file from elsewhere cannot run code; datasets and resumed arguments are checked as for the SNN
  (``detector.engine.safe_trainer``);
* a resumed run may raise ``epochs`` (as ``SNNTrainer`` allows), so a baseline can follow an SNN
  schedule that was extended by resuming; ``best.pt`` of a finished run is the teacher file.
"""

from __future__ import annotations

from copy import copy
from pathlib import Path
from typing import Any

from ultralytics.utils import RANK

from ..infer.ann_int8 import CALIBRATION_IMAGES, check_calibration_images
from ..models.settings import DEFAULT_IMGSZ
from ..io.dataset_yaml import load_dataset
from ..weights import ANN_ARCHS, build_ann, load_ann_checkpoint, save_ann_checkpoint
from .safe_trainer import SafeTrainer


class BaselineTrainer(SafeTrainer):
    """Ultralytics' detection trainer for an allow-listed YOLOv8 architecture, plain checkpoints."""

    def read_checkpoint(self, path):
        return load_ann_checkpoint(path)

    def write_checkpoint(self, path, model, **extra):
        save_ann_checkpoint(path, model, self.arch, self.data["names"], **extra)

    def model_from_checkpoint(self, ckpt, use_ema=False):
        self.arch = ckpt["arch"]
        return build_ann(ckpt, use_ema=use_ema, source=self.args.model)

    def get_model(self, cfg=None, weights=None, verbose: bool = True):
        arch = Path(str(cfg or self.args.model)).name
        if arch not in ANN_ARCHS or str(cfg or self.args.model) != arch:
            raise ValueError(f"baseline model must be one of Ultralytics' bundled {list(ANN_ARCHS)}, got {cfg!r}")
        self.arch = arch
        return super().get_model(cfg=arch, weights=None, verbose=verbose and RANK == -1)

    def get_validator(self):
        from ultralytics.models.yolo.detect import DetectionValidator

        self.loss_names = "box_loss", "cls_loss", "dfl_loss"
        return DetectionValidator(self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks)


def train_baseline(data: str | Path, epochs: int | None, imgsz: int, batch: int = 16, device: str = "cpu",
                   resume: str | None = None, project: str | Path = "runs/baseline", name: str = "yolov8n",
                   model: str = "yolov8n.yaml", **overrides: Any) -> BaselineTrainer:
    """Train ``model`` (one of ``ANN_ARCHS``) from scratch, or resume ``resume`` (a ``last.pt`` a
    baseline run wrote), raising ``epochs`` if given. ``device``: ``detector.devices`` names (several GPUs:
    DDP); ``overrides``: Ultralytics' training arguments (``amp=False``: fp32; by default fp16 on CUDA and
    bf16 on a CPU with native bf16, ``detector.precision``)."""
    from ..devices import resolve_device

    device = resolve_device(device, multi=True).ultralytics
    if resume:
        args = dict(model=str(resume), resume=str(resume), data=str(data) if data else "", device=device, **overrides)
        if epochs is not None:
            args["epochs"] = epochs
    else:
        if model not in ANN_ARCHS:
            raise ValueError(f"baseline model must be one of {list(ANN_ARCHS)}, got {model!r}")
        args = dict(model=model, data=str(data), epochs=100 if epochs is None else epochs, imgsz=imgsz, batch=batch,
                    device=device, pretrained=False, project=str(Path(project).resolve()), name=name, **overrides)
    trainer = BaselineTrainer(overrides=args)
    trainer.train()
    return trainer


BASELINE_RUNTIMES = ("eager", "int8")  # how evaluate_baseline runs the weights


def evaluate_baseline(weights: str | Path, data: str | Path, split: str = "test", imgsz: int = DEFAULT_IMGSZ, batch: int = 16,
                      device: str = "cpu", project: str | Path = "runs/baseline", name: str = "val",
                      runtime: str = "eager", calibration_images: int = CALIBRATION_IMAGES) -> dict[str, Any]:
    """Ultralytics' validator on a baseline checkpoint (EMA weights): overall and per-class mAP@0.5 and
    mAP@0.5:0.95; with COCO ground truth also pycocotools' figures and the true positives' score
    distribution, as ``evaluate()`` reports them for a spiking model (the same validator, so the two
    are measured alike). ``runtime``: ``eager`` (PyTorch, float32) or ``int8`` (quantised as an edge user
    would, ``detector.infer.ann_int8``, its activations calibrated on ``calibration_images`` images of the
    dataset's train split at ``imgsz``; on the CPU)."""
    import tempfile

    from .validator import SNNValidator, coco_report

    from ..devices import resolve_device

    if runtime not in BASELINE_RUNTIMES:
        raise ValueError(f"baseline runtime must be one of {list(BASELINE_RUNTIMES)}, got {runtime!r}")
    if runtime == "int8":
        check_calibration_images(calibration_images)
    dev = resolve_device(device)
    if runtime == "int8" and dev.kind != "cpu":
        raise ValueError(f"the int8 baseline runs on the CPU (OpenVINO), not on {device!r}: use --device cpu")
    model = build_ann(load_ann_checkpoint(weights), use_ema=True, source=weights).eval()
    load_dataset(data, split)  # a local YAML with this split's images, before Ultralytics reads it
    args = dict(model=str(weights), data=str(data), split=split, imgsz=imgsz, batch=batch, device=dev.ultralytics,
                plots=False, project=str(Path(project).resolve()), name=name, exist_ok=True, mode="val", verbose=True)
    with tempfile.TemporaryDirectory() as folder:  # the int8 graph lives as long as the evaluation
        if runtime == "int8":
            from ..infer.ann_int8 import AnnInt8, calibration_batches, quantize_ann
            from ..infer.int8_runtime import require_int8

            require_int8()
            calib = calibration_batches(data, imgsz, calibration_images)
            model = AnnInt8(quantize_ann(model, Path(folder), calib, imgsz, dynamic=True), model)
        v = SNNValidator(args=args)
        v(model=model)
    m = v.metrics
    names = v.names
    per_class = {names[int(c)]: {"map50": float(m.box.class_result(i)[2]), "map50_95": float(m.box.class_result(i)[3])}
                 for i, c in enumerate(m.ap_class_index)}
    return {"weights": str(weights), "split": split, "imgsz": imgsz, "runtime": runtime,
            **({"calibration_images": calibration_images} if runtime == "int8" else {}),
            "map50": float(m.box.map50), "map50_95": float(m.box.map), "precision": float(m.box.mp),
            "recall": float(m.box.mr), "per_class": per_class, "levels": v.levels.report(),
            **coco_report(v, split, float(m.box.map50), float(m.box.map))}

"""Training SNN-ViT-YOLO on the Ultralytics engine, without forking it.

``SNNTrainer`` is the project's ``SafeTrainer`` (Ultralytics' ``DetectionTrainer`` with safe
checkpoints, datasets and resuming: ``detector.engine.safe_trainer``) plus what the spiking model
needs:

* the model is ``SNNViTYOLO`` built from a model config YAML (``args.model``), whose resolved config
  travels in every checkpoint;
* batch-norm recalibration on clean images before validation until the running statistics have
  settled (``detector.models.calibration`` says why a spiking network needs it);
* optional distillation from a frozen ANN teacher (``detector.engine.distill``).

``train()`` is the library entry point behind ``tools/train.py``.
"""

from __future__ import annotations

import hashlib
import math
from copy import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from ultralytics.utils import LOGGER, RANK, YAML
from ultralytics.utils.torch_utils import unwrap_model

from ..models import SNNViTYOLO, load_config
from ..weights import build_from_checkpoint, load_checkpoint, save_checkpoint
from ..settings import default_config_dir
from .distill import DistillWeights
from .safe_trainer import SafeTrainer
from .train_options import NEW_RUN, TrainOptions


def resolve_model_yaml(model: str | Path | dict, timesteps: int | None = None, neuron: dict | None = None,
                       **changes: Any) -> Path:
    """Write the resolved model config (variant + overrides, e.g. ``timesteps``, a ``neuron`` dict, or
    top-level ``changes`` such as ``readout="current"``; a change to ``"none"`` removes the key, e.g.
    ``cls_prior="none"``) to a content-addressed YAML that every process (DDP ranks included) can read,
    and return its path."""
    cfg = load_config(model, timesteps=timesteps, neuron=neuron)
    for k, v in changes.items():
        if v is None:
            continue
        if v == "none":
            cfg.pop(k, None)
        else:
            cfg[k] = v
    cfg = load_config(cfg)  # validated again with the changes
    text = yaml.safe_dump(cfg, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    out = default_config_dir().parent / "models" / f"{cfg.get('variant', 'snnvit-yolo')}-T{cfg['timesteps']}-{digest}.yaml"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    return out


class SNNTrainer(SafeTrainer):
    """Ultralytics detection trainer for SNN-ViT-YOLO. ``distill``: optional teacher settings
    (``teacher`` path, ``cls_weight``, ``box_weight``, ``temperature``; see ``detector.engine.distill``)."""

    def __init__(self, cfg=None, overrides=None, _callbacks=None, distill: dict | None = None):
        self.distill_args = dict(distill) if distill else None
        self.distiller = None
        super().__init__(cfg, overrides, _callbacks)

    # -- checkpoints (the project's plain format, detector.weights) ---------------------------------
    def read_checkpoint(self, path):
        return load_checkpoint(path)

    def write_checkpoint(self, path, model, **extra):
        save_checkpoint(path, model, **extra)

    def model_from_checkpoint(self, ckpt, use_ema=False):
        model = build_from_checkpoint(ckpt, use_ema=use_ema)
        if getattr(self, "data", None):
            model.set_names(self.data["names"])
        return model

    def checkpoint_fields(self):
        d = self.distiller
        adapters = None
        if d is not None and d.adapters is not None:  # feature-distillation adapters: training state, not weights
            adapters = {k: v.detach().cpu().clone() for k, v in d.adapters.state_dict().items()}
        return {"distill": d.describe() if d is not None else None, "distill_adapters": adapters,
                "train_image_size": self.train_image_size()}

    def train_image_size(self) -> int | None:
        """The median long side (pixels) of the training images: the scale the model learned, which
        sliced inference uses as its automatic tile size (``detector.infer.resolve_tile``)."""
        import numpy as np

        # every label record carries its image's (h, w); the dataset's ``shapes`` exists only for rect batches
        ds = getattr(self.train_loader, "dataset", None)
        shapes = [lb["shape"] for lb in getattr(ds, "labels", None) or [] if isinstance(lb, dict) and "shape" in lb]
        if not shapes:
            return None
        return int(np.median(np.asarray(shapes).max(1)))

    def on_resume(self, ckpt, path):
        """A run trained with a teacher resumes with the teacher the user names again (``--teacher``), which
        must be the same file (sha256). The path stored in the checkpoint is never opened: nothing a
        checkpoint names is trusted."""
        stored = ckpt.get("distill")
        if self.distill_args is None and isinstance(stored, dict) and stored.get("teacher"):
            raise ValueError(f"{path} was trained with distillation from teacher {str(stored['teacher'])[:200]!r}; a path "
                             "stored in a checkpoint is never opened: pass --teacher PATH to resume (the same file, "
                             "checked by sha256; the run's distillation weights are kept unless --kd-* names them)")
        if self.distill_args is not None and isinstance(stored, dict):
            self.distill_args.setdefault("teacher_sha256", stored.get("teacher_sha256"))
            for k in DistillWeights.names():  # the run's own, unless named again
                v = stored.get(k)
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self.distill_args.setdefault(k, float(v))
        adapters = ckpt.get("distill_adapters")
        if self.distill_args is not None and isinstance(adapters, dict):
            self.distill_args["adapters_state"] = adapters  # plain tensors, loaded into the adapters strictly

    # -- model -------------------------------------------------------------------------------------
    def get_model(self, cfg=None, weights=None, verbose: bool = True) -> SNNViTYOLO:
        model = SNNViTYOLO(cfg or self.args.model, nc=self.data["nc"], verbose=verbose and RANK == -1)
        model.set_names(self.data["names"])
        if weights is not None:
            state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
            model.load_state_dict(state, strict=True)
        return model

    def set_model_attributes(self):
        super().set_model_attributes()
        self.model.set_names(self.data["names"]) if hasattr(self.model, "set_names") else None
        if self.distill_args:
            self._attach_distiller()
        if RANK in {-1, 0}:  # the run's model.yaml: the config its checkpoints rebuild (dataset nc and names)
            YAML.save(self.save_dir / "model.yaml", unwrap_model(self.model).yaml)

    def get_validator(self):
        from .validator import SNNValidator

        kd = ()
        if self.distill_args:
            kd = ("kd_cls", "kd_box") + (("kd_feat",) if DistillWeights.of(self.distill_args).feat_weight > 0 else ())
        self.loss_names = ("box_loss", "cls_loss", "dfl_loss") + kd
        return SNNValidator(self.test_loader, save_dir=self.save_dir, args=copy(self.args), _callbacks=self.callbacks)

    # -- batch-norm recalibration before every validation ------------------------------------------
    bn_calib_images = 64  # clean training images; 0 turns recalibration off

    def calibration_batches(self, batch: int = 16):
        """Clean (un-augmented), letterboxed training images, the same ones every epoch: read once
        and kept (64 images at 640 px are ~300 MB of float32)."""
        cached = getattr(self, "_calib_batches", None)
        if cached is not None:
            return cached
        import random

        from ..io.images import ImageReadError, read_image
        from ..io.letterbox import letterbox_tensor

        files = list(getattr(self.train_loader.dataset, "im_files", []))
        random.Random(0).shuffle(files)
        device = next(self.ema.ema.parameters()).device
        imgs = []
        for f in files:
            if len(imgs) >= self.bn_calib_images:
                break
            try:
                imgs.append(letterbox_tensor(read_image(f), int(self.args.imgsz), device))
            except ImageReadError:
                continue  # already reported by the dataset scan
        self._calib_batches = [torch.cat(imgs[k:k + batch]) for k in range(0, len(imgs), batch)]
        return self._calib_batches

    bn_settle_batches = 100  # clean batches after which running statistics are trusted (BN momentum 0.03)

    def bn_stats_settled(self) -> bool:
        """Whether batch norm's running statistics, at the end of the current epoch, come from clean
        batches: at least ``bn_settle_batches`` training batches since mosaic closed (Ultralytics closes
        it at epoch ``epochs - close_mosaic``, 0-based; never, with ``close_mosaic`` 0). With momentum
        0.03, 100 batches leave 0.97^100 = 5 % of the earlier statistics."""
        first_clean = 0 if float(self.args.mosaic) <= 0 else self.epochs - int(self.args.close_mosaic)
        if self.epoch < first_clean:  # with close_mosaic 0, first_clean = epochs: always
            return False
        return (self.epoch + 1 - first_clean) * len(self.train_loader) >= self.bn_settle_batches

    def validate(self):
        """Unless the running statistics are settled on clean batches, recalibrate the EMA model's
        batch norm on clean training images before validating (see ``detector.models.calibration`` for
        why a spiking detector needs it): during mosaic epochs, and early in a run whatever the
        augmentation. Settled statistics serve validation better than the 64-image recalibration: at
        the end of the interim SSDD run (rect val batches, 320 px) val mAP@0.5 read 0.157 without it,
        0.135 with it."""
        if self.ema is not None and self.bn_calib_images > 0 and not self.bn_stats_settled() and RANK in {-1, 0}:
            from ..models.calibration import recalibrate_bn

            recalibrate_bn(self.ema.ema, self.calibration_batches())
        return super().validate()

    def _attach_distiller(self) -> None:
        from .distill import make_distiller

        a = self.distill_args
        student = unwrap_model(self.model)
        d = make_distiller(a["teacher"], DistillWeights.of(a), self.device, list(student.neck.out_channels))
        if d.adapters is not None and a.get("adapters_state") is not None:
            try:
                d.adapters.load_state_dict(a["adapters_state"], strict=True)
            except (RuntimeError, TypeError) as e:
                raise ValueError(f"the checkpoint's feature-distillation adapters do not fit this run: "
                                 f"{str(e).splitlines()[0]}") from e
        if a.get("teacher_sha256") and a["teacher_sha256"] != d.sha256:
            raise ValueError(f"teacher {a['teacher']} differs from the one this run was trained with (sha256 "
                             f"{a['teacher_sha256'][:12]}...); pass the same --teacher to resume")
        t_names = {int(k): str(v) for k, v in d.teacher.names.items()}
        s_names = {int(k): str(v) for k, v in self.data["names"].items()}
        if t_names != s_names:
            raise ValueError(f"teacher {a['teacher']} classes {t_names} differ from the dataset's {s_names}")
        self.distiller = d
        from ultralytics.utils.loss import v8DetectionLoss

        from .distill import DistillDetectionLoss

        model = unwrap_model(self.model)  # its EMA copy (made after this) shares the teacher: Distiller is never copied
        model.criterion = DistillDetectionLoss(v8DetectionLoss(model), d, int(model.yaml["reg_max"]))
        LOGGER.info(f"distillation: teacher {d.source} (class KD x{d.cls_weight}, box KD x{d.box_weight}, "
                    f"temperature {d.temperature}" + (f", neck features x{d.feat_weight}" if d.feat_weight else "") + ")")

    def build_optimizer(self, model, name="auto", lr=0.001, momentum=0.9, decay=1e-5, iterations=1e5):
        """Ultralytics' optimizer, plus a parameter group for the feature-distillation adapters (no weight
        decay), which train with the student but are not part of it."""
        opt = super().build_optimizer(model, name, lr, momentum, decay, iterations)
        if self.distiller is not None and self.distiller.adapters is not None:
            opt.add_param_group({"params": list(self.distiller.adapters.parameters()), "weight_decay": 0.0,
                                 "param_group": "kd_adapters"})
        return opt


def train(data: str | Path, model: str | Path | None = None, options: TrainOptions | None = None,
          **fields: Any) -> SNNTrainer:
    """Train SNN-ViT-YOLO on ``data``. ``options`` is a ``TrainOptions`` (``detector.engine.train_options``
    says what each field means), or its fields as keywords (``epochs=12, imgsz=416``...); other keywords
    are Ultralytics' training arguments (``workers=0, seed=1``...). ``model``: variant (n/s/m), model
    YAML, or a checkpoint ``.pt`` to start from. Returns the finished trainer (``trainer.save_dir``,
    ``trainer.best``, ``trainer.metrics``)."""
    if options is None:
        o = TrainOptions.of(**({} if model is None else {"model": model}), **fields)
    else:
        o = replace(options, model=model) if model is not None else options
        if fields:
            raise TypeError("give the options record or its fields, not both")
    distill, device = o.distill, o.device.ultralytics  # Ultralytics' spelling: "cpu", "0", "0,1" (DDP)
    if o.resume:
        resume = o.resume
        args = {"resume": str(resume) if not isinstance(resume, bool) else True, "data": str(data) if data else "",
                "device": device, **({} if o.amp else {"amp": False}), **o.overrides}
        args["model"] = str(resume) if not isinstance(resume, bool) else ""
        for key in ("epochs", "imgsz", "batch"):
            if getattr(o, key) is not None:
                args[key] = getattr(o, key)
    else:
        model_arg = str(o.model) if str(o.model).endswith(".pt") else str(
            resolve_model_yaml(o.model, o.timesteps, o.neuron, **o.model_changes))
        sizes = {k: NEW_RUN[k] if getattr(o, k) is None else getattr(o, k) for k in NEW_RUN}
        args = dict(model=model_arg, data=str(data), **sizes, device=device, amp=bool(o.amp),
                    project=str(Path(o.project).resolve()), name=o.name, **o.overrides)
    trainer = SNNTrainer(overrides=args, distill=distill)  # writes model.yaml into the run folder once the model is built
    try:
        trainer.train()
    except KeyboardInterrupt:
        last = Path(trainer.last)
        kept = (f"{last} holds the last finished epoch: --resume {last} continues the run" if last.is_file() else
                f"no epoch finished, no checkpoint in {trainer.save_dir}")
        raise KeyboardInterrupt(kept) from None
    return trainer

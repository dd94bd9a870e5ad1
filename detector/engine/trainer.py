"""Training on the Ultralytics engine, without forking it.

``SNNTrainer`` subclasses Ultralytics' ``DetectionTrainer`` (data pipeline, augmentation, loss, EMA,
scheduler, DDP, CSV and plots stay Ultralytics') and changes only what the spiking model needs:

* the model is ``SNNViTYOLO`` built from a model config YAML (``args.model``);
* checkpoints use the project's safe format (``detector.weights``): plain tensors and values, written
  atomically, loaded with ``weights_only=True``; resume reads the same format;
* a non-finite loss or gradient stops training with a clear error before any weight is corrupted.

``train()`` is the library entry point behind ``tools/train.py``.
"""

from __future__ import annotations

import hashlib
import math
import shutil
from copy import copy
from pathlib import Path
from typing import Any

import torch
import yaml

from . import offline as _offline

_offline.apply()  # before this module's first Ultralytics import

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER, RANK, YAML
from ultralytics.utils.checks import check_file
from ultralytics.utils.files import get_latest_run
from ultralytics.utils.torch_utils import ModelEMA, unwrap_model

from ..models import SNNViTYOLO, load_config
from ..weights import build_from_checkpoint, load_checkpoint, save_checkpoint
from .offline import default_config_dir

# Ultralytics' ``args`` that may change when resuming (the rest comes from the checkpoint).
RESUME_ALLOWED = {"epochs", "imgsz", "batch", "device", "workers", "cache", "patience", "time", "val", "plots", "save_period",
                  "close_mosaic", "save_dir"}


def resolve_model_yaml(model: str | Path | dict, timesteps: int | None = None) -> Path:
    """Write the resolved model config (variant + overrides) to a content-addressed YAML that every
    process (DDP ranks included) can read, and return its path."""
    cfg = load_config(model, timesteps=timesteps)
    text = yaml.safe_dump(cfg, sort_keys=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    out = default_config_dir().parent / "models" / f"{cfg.get('variant', 'snnvit-yolo')}-T{cfg['timesteps']}-{digest}.yaml"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    return out


class SNNTrainer(DetectionTrainer):
    """Ultralytics detection trainer for SNN-ViT-YOLO."""

    # -- model -------------------------------------------------------------------------------------
    def get_model(self, cfg=None, weights=None, verbose: bool = True) -> SNNViTYOLO:
        model = SNNViTYOLO(cfg or self.args.model, nc=self.data["nc"], verbose=verbose and RANK == -1)
        model.set_names(self.data["names"])
        if weights is not None:
            state = weights.state_dict() if isinstance(weights, torch.nn.Module) else weights
            model.load_state_dict(state, strict=True)
        return model

    def setup_model(self):
        if isinstance(self.model, torch.nn.Module):
            return None
        ckpt = None
        if str(self.model).endswith(".pt"):  # resuming, or starting from trained weights
            ckpt = load_checkpoint(self.model)
            model = build_from_checkpoint(ckpt, use_ema=False)
            if int(model.yaml["nc"]) != int(self.data["nc"]):
                raise ValueError(f"checkpoint {self.model} has nc={model.yaml['nc']}, dataset has {self.data['nc']}")
            model.set_names(self.data["names"])
            self.model = model
            if not self.resume:
                ckpt = None
        else:
            self.model = self.get_model(cfg=self.args.model, verbose=RANK in {-1, 0})
        return ckpt

    def set_model_attributes(self):
        super().set_model_attributes()
        self.model.set_names(self.data["names"]) if hasattr(self.model, "set_names") else None
        if RANK in {-1, 0}:  # the run's model.yaml: the config its checkpoints rebuild (dataset nc and names)
            YAML.save(self.save_dir / "model.yaml", unwrap_model(self.model).yaml)

    def get_validator(self):
        from .validator import SNNValidator

        self.loss_names = "box_loss", "cls_loss", "dfl_loss"
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

        from .predictor import letterbox_tensor
        from .sources import ImageReadError, read_image

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

    # -- safety ------------------------------------------------------------------------------------
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # With gradient accumulation most batches do not reach optimizer_step; check every batch's loss
        # too, so a non-finite loss in the last batches of the run cannot pass unnoticed.
        self.add_callback("on_train_batch_end", lambda trainer: trainer._refuse_non_finite_loss())

    def _refuse_non_finite_loss(self):
        if self.loss is not None and not torch.isfinite(self.loss).all():
            raise FloatingPointError(
                f"non-finite training loss ({float(self.loss.detach().sum())}) at epoch {self.epoch + 1}; training "
                f"stopped before updating weights. Last good checkpoint: {self.last if self.last.exists() else 'none'}. "
                "Try a lower learning rate (lr0) or check the labels."
            )

    def optimizer_step(self):
        """Refuse to step on a non-finite loss or gradient: stop with a clear error instead."""
        self._refuse_non_finite_loss()
        for name, p in unwrap_model(self.model).named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise FloatingPointError(
                    f"non-finite gradient in {name} at epoch {self.epoch + 1}; training stopped before updating "
                    f"weights. Last good checkpoint: {self.last if self.last.exists() else 'none'}."
                )
        super().optimizer_step()

    def _handle_nan_recovery(self, epoch):
        if self.fitness is not None and not math.isfinite(float(self.fitness)):
            raise FloatingPointError(f"non-finite validation fitness at epoch {epoch + 1}; training stopped")
        return False

    # -- checkpoints -------------------------------------------------------------------------------
    def save_model(self):
        ema = self.ema.ema
        model = unwrap_model(self.model)
        extra: dict[str, Any] = {
            "ema_state_dict": {k: v.detach().cpu().clone() for k, v in ema.state_dict().items()},
            "epoch": int(self.epoch),
            "best_fitness": None if self.best_fitness is None else float(self.best_fitness),
            "fitness": None if self.fitness is None else float(self.fitness),
            "stopper": {"best_fitness": self.stopper.best_fitness, "best_epoch": self.stopper.best_epoch},
            "updates": int(self.ema.updates),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "train_args": vars(self.args),
            "train_metrics": {**(self.metrics or {}), "fitness": self.fitness},
        }
        self.wdir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(self.last, model, **extra)
        if self.best_fitness == self.fitness:
            shutil.copyfile(self.last, self.best.with_suffix(".tmp"))
            self.best.with_suffix(".tmp").replace(self.best)  # atomic
        if self.save_period > 0 and self.epoch % self.save_period == 0:
            periodic = self.wdir / f"epoch{self.epoch}.pt"
            shutil.copyfile(self.last, periodic.with_suffix(".tmp"))
            periodic.with_suffix(".tmp").replace(periodic)  # atomic, like last.pt and best.pt
        return True

    def check_resume(self, overrides):
        resume = self.args.resume
        if resume:
            exists = isinstance(resume, (str, Path)) and Path(resume).exists()
            last = Path(check_file(resume) if exists else get_latest_run())
            if not str(last) or not last.is_file():
                raise FileNotFoundError("resume checkpoint not found; pass --resume path/to/last.pt")
            ckpt = load_checkpoint(last)
            ckpt_args = dict(ckpt["train_args"])
            if self.args.data:
                ckpt_args["data"] = self.args.data
            from ultralytics.cfg import get_cfg

            self.args = get_cfg(ckpt_args)
            self.args.model = self.args.resume = str(last)
            ignored = []
            for k, v in overrides.items():
                if k in RESUME_ALLOWED:
                    setattr(self.args, k, v)
                elif k not in {"model", "data", "mode", "resume"} and v != getattr(self.args, k, None):
                    ignored.append(k)
            if ignored:
                LOGGER.warning(f"resume keeps the checkpoint's {ignored}; start a new run to change them")
            resume = True
        self.resume = resume

    def resume_training(self, ckpt):
        super().resume_training(ckpt)
        if ckpt is not None and self.resume and RANK in {-1, 0}:
            self._drop_results_after(self.start_epoch)

    def _drop_results_after(self, epochs_done: int) -> None:
        """Keep only results.csv rows of epochs the checkpoint holds (1-based epoch <= ``epochs_done``).
        Ultralytics writes an epoch's row just before saving its checkpoint; a run killed between the two
        (or during the write) redoes that epoch on resume, which would otherwise appear twice."""
        if not self.csv.is_file():
            return
        lines = self.csv.read_text(encoding="utf-8").splitlines(keepends=True)
        keep = lines[:1]
        for line in lines[1:]:
            try:
                epoch = int(float(line.split(",", 1)[0]))
            except ValueError:
                continue
            if epoch <= epochs_done and line.endswith("\n"):  # no newline: cut off mid-write
                keep.append(line)
        if keep != lines:
            LOGGER.warning(f"{self.csv}: dropped {len(lines) - len(keep)} row(s) after epoch {epochs_done}, the last "
                           "epoch in the checkpoint; they are redone now")
            tmp = self.csv.with_name(self.csv.name + ".tmp")
            tmp.write_text("".join(keep), encoding="utf-8")
            tmp.replace(self.csv)

    def _load_checkpoint_state(self, ckpt):
        if ckpt.get("optimizer") is not None:
            for saved, group in zip(ckpt["optimizer"]["param_groups"], self.optimizer.param_groups):
                saved["fused"] = group.get("fused")
            self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema_state_dict"):
            self.ema = ModelEMA(self.model)
            self.ema.ema.load_state_dict(ckpt["ema_state_dict"])
            self.ema.updates = int(ckpt.get("updates", 0))
        self.best_fitness = ckpt.get("best_fitness")
        self.stopper.__dict__.update(ckpt.get("stopper") or {})

    def final_eval(self):
        if not self.best.exists() or RANK not in {-1, 0}:
            return
        from ..weights import load_model

        LOGGER.info(f"\nValidating {self.best}...")
        self.validator.args.plots = self.args.plots
        self.validator.args.compile = False
        self.metrics = self.validator(model=load_model(self.best, device=self.device))
        self.metrics.pop("fitness", None)
        self.epoch += 1
        self.run_callbacks("on_fit_epoch_end")
        self.epoch -= 1


def train(
    data: str | Path,
    model: str | Path = "n",
    epochs: int | None = None,
    imgsz: int = 640,
    batch: int = 16,
    device: str = "cpu",
    timesteps: int | None = None,
    resume: str | bool = False,
    project: str | Path = "runs/train",
    name: str = "exp",
    **overrides: Any,
) -> SNNTrainer:
    """Train SNN-ViT-YOLO. ``model``: variant (n/s/m), model YAML, or a checkpoint ``.pt`` to start
    from; ``resume``: True (latest run) or the path of a ``last.pt`` (``epochs`` may then raise the
    total, and the learning-rate schedule follows; default 100 for a new run). Returns the finished trainer
    (``trainer.save_dir``, ``trainer.best``, ``trainer.metrics``)."""
    if resume:
        args = {"resume": str(resume) if not isinstance(resume, bool) else True, "data": str(data) if data else "",
                "device": device, **overrides}
        args["model"] = str(resume) if not isinstance(resume, bool) else ""
        if epochs is not None:
            args["epochs"] = epochs
    else:
        model_arg = str(model) if str(model).endswith(".pt") else str(resolve_model_yaml(model, timesteps))
        args = dict(model=model_arg, data=str(data), epochs=100 if epochs is None else epochs, imgsz=imgsz, batch=batch, device=device,
                    project=str(Path(project).resolve()), name=name, **overrides)
    trainer = SNNTrainer(overrides=args)  # writes model.yaml into the run folder once the model is built
    trainer.train()
    return trainer

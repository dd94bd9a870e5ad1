"""The part of training both of the project's trainers share: safe checkpoints and safe resuming.

``SafeTrainer`` is Ultralytics' ``DetectionTrainer`` with its checkpoint handling replaced, for the
spiking detector (``detector.engine.trainer.SNNTrainer``) and the ANN baseline / teacher
(``detector.engine.baseline.BaselineTrainer``) alike:

* checkpoints are plain tensors and values (never pickled objects), written atomically and read with
  ``weights_only=True``; a subclass says how (``read_checkpoint``, ``write_checkpoint``,
  ``model_from_checkpoint``);
* the dataset YAML is checked before Ultralytics reads it: a local file, nothing downloaded or run
  (``detector.io.dataset_yaml``);
* ``--resume X`` trusts nothing the checkpoint names: validated arguments, X's own run folder, and
  only training checkpoints (``detector.engine.resume``); a resumed run may raise ``epochs``;
* a non-finite loss or gradient stops training with a clear error before any weight is corrupted; under
  AMP (CUDA), the steps GradScaler skips on fp16 overflow are counted per epoch (log and results.csv,
  ``train/amp_skipped``), and only a scaler that keeps skipping stops the run (``AMP_SKIP_LIMIT``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from ultralytics.models.yolo.detect import DetectionTrainer
from ultralytics.utils import LOGGER, RANK
from ultralytics.utils.files import get_latest_run
from ultralytics.utils.torch_utils import ModelEMA, unwrap_model

from ..files import atomic_copy
from ..io.dataset_yaml import check_dataset_yaml
from ..weights import remove_checkpoint_leftovers
from .resume import check_resume_memory, require_training_checkpoint, run_dir_of, sanitize_train_args

# Ultralytics' ``args`` that may change when resuming (the rest comes from the checkpoint).
RESUME_ALLOWED = {"epochs", "imgsz", "batch", "device", "workers", "cache", "patience", "time", "val", "plots", "save_period",
                  "close_mosaic", "amp"}


class SafeTrainer(DetectionTrainer):
    """Ultralytics' detection trainer with safe checkpoints, datasets and resuming (module docstring)."""

    def __init__(self, cfg=None, overrides=None, _callbacks=None):
        from ultralytics.utils import DEFAULT_CFG

        super().__init__(cfg or DEFAULT_CFG, overrides, _callbacks)
        # With gradient accumulation most batches do not reach optimizer_step; check every batch's loss
        # too, so a non-finite loss in the last batches of the run cannot pass unnoticed.
        self.add_callback("on_train_batch_end", lambda trainer: trainer._refuse_non_finite_loss())
        self.add_callback("on_train_epoch_start", lambda trainer: trainer._amp_epoch_start())

    # -- what a subclass provides -------------------------------------------------------------------
    def read_checkpoint(self, path: str | Path) -> dict:
        raise NotImplementedError

    def write_checkpoint(self, path: Path, model: torch.nn.Module, **extra: Any) -> None:
        raise NotImplementedError

    def model_from_checkpoint(self, ckpt: dict, use_ema: bool = False) -> torch.nn.Module:
        raise NotImplementedError

    def checkpoint_fields(self) -> dict[str, Any]:
        """Extra plain fields a subclass stores in every checkpoint."""
        return {}

    def on_resume(self, ckpt: dict, path: Path) -> None:
        """Called with a validated training checkpoint about to be resumed."""

    # -- dataset and model ----------------------------------------------------------------------------
    def get_dataset(self):
        check_dataset_yaml(self.args.data, ("train", "val"))  # before Ultralytics' reader, which may download
        return super().get_dataset()

    def setup_model(self):
        if isinstance(self.model, torch.nn.Module):
            return None
        ckpt = None
        if str(self.model).endswith(".pt"):  # resuming, or starting from trained weights
            ckpt = self.read_checkpoint(self.model)
            model = self.model_from_checkpoint(ckpt, use_ema=False)
            nc = int(getattr(model, "yaml", {}).get("nc", len(getattr(model, "names", {}))))
            if nc != int(self.data["nc"]):
                raise ValueError(f"checkpoint {self.model} has nc={nc}, the dataset has {self.data['nc']}")
            self.model = model
            if not self.resume:
                ckpt = None
        else:
            self.model = self.get_model(cfg=self.args.model, verbose=RANK in {-1, 0})
        return ckpt

    # -- safety ------------------------------------------------------------------------------------
    def _refuse_non_finite_loss(self):
        if self.loss is not None and not torch.isfinite(self.loss).all():
            raise FloatingPointError(
                f"non-finite training loss ({float(self.loss.detach().sum())}) at epoch {self.epoch + 1}; training "
                f"stopped before updating weights. Last good checkpoint: {self.last if self.last.exists() else 'none'}. "
                "Try a lower learning rate (lr0) or check the labels."
            )

    # AMP: GradScaler multiplies the loss by its scale (65,536 at the start), so fp16 gradients overflow in
    # the first steps by design; it then skips those steps and halves the scale. A run stops only when it
    # keeps skipping: AMP_SKIP_LIMIT consecutive skips mean the scale fell by 2^25 (from 65,536 to about
    # 0.002) and the gradients still overflow, which is no longer the scaler finding its range.
    AMP_SKIP_LIMIT = 25

    def optimizer_step(self):
        """One optimizer step (Ultralytics': unscale, clip, step, EMA), guarded: a non-finite loss stops the
        run; a non-finite gradient stops it too, except under AMP, where GradScaler skips the step (counted,
        ``amp_skipped``) unless it has skipped ``AMP_SKIP_LIMIT`` steps in a row."""
        self._refuse_non_finite_loss()
        amp = self.scaler.is_enabled()
        self.scaler.unscale_(self.optimizer)  # the gradients as they will be applied (a no-op without AMP)
        bad = next((name for name, p in unwrap_model(self.model).named_parameters()
                    if p.grad is not None and not torch.isfinite(p.grad).all()), None)
        if bad is not None and not amp:
            raise FloatingPointError(
                f"non-finite gradient in {bad} at epoch {self.epoch + 1}; training stopped before updating "
                f"weights. Last good checkpoint: {self.last if self.last.exists() else 'none'}."
            )
        if bad is not None:
            self.amp_skipped = getattr(self, "amp_skipped", 0) + 1
            self._amp_streak = getattr(self, "_amp_streak", 0) + 1
            if self._amp_streak >= self.AMP_SKIP_LIMIT:
                raise FloatingPointError(
                    f"AMP skipped {self._amp_streak} optimizer steps in a row at epoch {self.epoch + 1} (gradients "
                    f"still overflow at loss scale {self.scaler.get_scale():.3g}, e.g. in {bad}); training stopped. "
                    f"Last good checkpoint: {self.last if self.last.exists() else 'none'}. Try --no-amp or a lower lr0."
                )
        else:
            self._amp_streak = 0
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=10.0)
        self.scaler.step(self.optimizer)  # GradScaler skips the step when it found inf/NaN in unscale_
        self.scaler.update()  # ... and lowers its scale
        self.optimizer.zero_grad()
        if self.ema and bad is None:
            self.ema.update(self.model)

    def _amp_epoch_start(self) -> None:
        self.amp_skipped = 0

    def save_metrics(self, metrics):
        """Ultralytics' results.csv row, with the optimizer steps AMP skipped in the epoch (0 without AMP)."""
        skipped = int(getattr(self, "amp_skipped", 0))
        if skipped and RANK in {-1, 0}:
            LOGGER.info(f"epoch {self.epoch + 1}: AMP skipped {skipped} optimizer step(s) (fp16 overflow; "
                        f"loss scale now {self.scaler.get_scale():.3g})")
        if self.csv.is_file():  # a run resumed from before this column: keep its header's columns
            with open(self.csv, encoding="utf-8") as f:
                if "train/amp_skipped" not in f.readline():
                    return super().save_metrics(metrics)
        super().save_metrics({**metrics, "train/amp_skipped": skipped})

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
            **self.checkpoint_fields(),
        }
        self.wdir.mkdir(parents=True, exist_ok=True)
        remove_checkpoint_leftovers(self.wdir)  # temp files of saves a killed run left
        self.write_checkpoint(self.last, model, **extra)
        if self.best_fitness == self.fitness:  # written whole (temp file + rename), like last.pt
            atomic_copy(self.last, self.best, fsync=True)
        if self.save_period > 0 and self.epoch % self.save_period == 0:
            atomic_copy(self.last, self.wdir / f"epoch{self.epoch}.pt", fsync=True)
        return True

    def check_resume(self, overrides):
        """Resume from a training checkpoint: its validated arguments (``detector.engine.resume``) and
        its own run folder; ``epochs`` and a few others may change (``RESUME_ALLOWED``)."""
        resume = self.args.resume
        if resume:
            last = Path(resume) if isinstance(resume, (str, Path)) and str(resume) not in {"True", ""} else None
            if last is None:
                found = get_latest_run()
                if not found:
                    raise FileNotFoundError("no run to resume found; pass --resume path/to/last.pt")
                last = Path(found)
            ckpt = self.read_checkpoint(last)
            require_training_checkpoint(ckpt, last)
            ckpt_args = sanitize_train_args(ckpt["train_args"], last)
            if self.args.data:
                ckpt_args["data"] = self.args.data
            run = run_dir_of(last)
            ckpt_args.update(project=str(run.parent), name=run.name, save_dir=str(run), exist_ok=True)
            from ultralytics.cfg import get_cfg
            from ultralytics.utils import DEFAULT_CFG

            self.args = get_cfg(DEFAULT_CFG, ckpt_args)  # defaults for whatever the file does not state
            self.args.model = self.args.resume = str(last)
            ignored = []
            for k, v in overrides.items():
                if k in RESUME_ALLOWED:
                    setattr(self.args, k, v)
                elif k not in {"model", "data", "mode", "resume"} and v != getattr(self.args, k, None):
                    ignored.append(k)
            if ignored:
                LOGGER.warning(f"resume keeps the checkpoint's {ignored}; start a new run to change them")
            done, total = int(ckpt["epoch"]) + 1, int(self.args.epochs)
            if not 0 < done < total:  # Ultralytics would assert, after building everything: one line instead
                held = "no epoch to continue from" if done <= 0 else f"{done} of its {total} epochs"
                raise ValueError(f"{last}: nothing to resume: the run is finished (the checkpoint holds {held}); "
                                 f"--epochs N with N above {max(done, 0)} extends it, or start a new run without --resume")
            check_resume_memory(self.model_from_checkpoint(ckpt), self.args.batch, self.args.imgsz, self.args.device,
                                last, amp=bool(self.args.amp))  # before anything is allocated
            self.on_resume(ckpt, last)
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
        """Validate ``best.pt`` (read by the project's safe loader, EMA weights) at the end of the run."""
        if not self.best.exists() or RANK not in {-1, 0}:
            return
        LOGGER.info(f"\nValidating {self.best}...")
        self.validator.args.plots = self.args.plots
        self.validator.args.compile = False
        model = self.model_from_checkpoint(self.read_checkpoint(self.best), use_ema=True).to(self.device).eval()
        self.metrics = self.validator(model=model)
        self.metrics.pop("fitness", None)
        self.epoch += 1
        self.run_callbacks("on_fit_epoch_end")
        self.epoch -= 1

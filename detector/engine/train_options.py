"""Training's options record: what ``detector.engine.trainer.train`` takes, checked once at construction
(the device, the distillation settings and the teacher file before any work). Ultralytics' own training
arguments (``workers``, ``seed``, ``lr0``...) travel in ``overrides`` and are checked by Ultralytics'
``check_cfg`` (and, for a resumed run, by ``detector.engine.resume``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..infer.options import opt
from ..models.settings import DEFAULT_IMGSZ

# a new run's sizes when none are given (a resumed run keeps its checkpoint's)
NEW_RUN = {"epochs": 100, "imgsz": DEFAULT_IMGSZ, "batch": 16}


@dataclass(frozen=True)
class TrainOptions:
    """``model``: variant (n/s/m), model YAML, or a checkpoint ``.pt`` to start from; ``epochs`` /
    ``imgsz`` / ``batch``: None = ``NEW_RUN``'s for a new run, the checkpoint's when resuming (given,
    they override it; ``epochs`` may then raise the total); ``device``: ``detector.devices`` names
    (several GPUs: DDP); ``timesteps`` / ``neuron`` / ``model_changes``: changes to the model config
    (``resolve_model_yaml``); ``distill``: teacher settings (``detector.engine.distill``); ``amp``: mixed
    precision (fp16 on CUDA, bf16 on a CPU with native bf16: ``detector.precision``; False: fp32); ``resume``: True (latest run) or the path of a ``last.pt``."""

    model: str | Path = opt("n", "variant n, s, m, a model YAML, or a checkpoint to start from")
    epochs: int | None = opt(None, f"total epochs (default {NEW_RUN['epochs']}; with --resume: raise the total)", type=int)
    imgsz: int | None = opt(None, f"training size (default {NEW_RUN['imgsz']}; with --resume: override the "
                                  "checkpoint's)", type=int)
    batch: int | None = opt(None, f"batch size (default {NEW_RUN['batch']}; with --resume: override the checkpoint's)",
                            type=int)
    device: Any = opt("cpu", "cpu, mps, cuda, cuda:N, N, or N,M,... (several GPUs: DDP)")
    timesteps: int | None = opt(None, "T (default: the model config's)", type=int)
    resume: str | bool = opt(False, cli=False)
    project: str | Path = opt("runs/train", "folder of the run folders")
    name: str = opt("exp", "run folder name")
    neuron: dict | None = opt(None, cli=False)
    distill: dict | None = opt(None, cli=False)
    amp: bool = opt(True, cli=False)
    model_changes: dict | None = opt(None, cli=False)
    overrides: dict = field(default_factory=dict, metadata={"cli": False})

    def __post_init__(self) -> None:
        from .. import checks
        from ..devices import resolve_device

        if self.imgsz is not None:
            checks.imgsz(self.imgsz)  # Ultralytics would round --imgsz 100 up to 128 and train on
        if self.distill and "," in str(self.device):
            raise ValueError("distillation runs on one device; multi-GPU (DDP) training with --teacher is not supported")
        object.__setattr__(self, "device", resolve_device(self.device, multi=True))
        if self.distill:
            from ..weights import load_ann_checkpoint
            from .distill import DistillWeights

            DistillWeights.of(self.distill)  # the weights and the teacher file, checked before any work
            load_ann_checkpoint(self.distill["teacher"])
        changes = {k: v for k, v in (self.model_changes or {}).items() if v is not None}
        if not self.resume and str(self.model).endswith(".pt") and (self.timesteps is not None or self.neuron or changes):
            raise ValueError("--timesteps / --neuron / --readout / --cls-prior change the architecture; they cannot "
                             "apply to a checkpoint")
        object.__setattr__(self, "model_changes", changes)

    @classmethod
    def of(cls, **kw: Any) -> "TrainOptions":
        """The record from keywords; those that are not its fields are Ultralytics' (``overrides``)."""
        own = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in kw.items() if k in own},
                   overrides={**kw.get("overrides", {}), **{k: v for k, v in kw.items() if k not in own}})

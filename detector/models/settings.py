"""The one record of a model's settings that inference needs, whatever runs the model.

A checkpoint (``detector.weights``), an export's metadata and a model built in memory all describe
themselves with a ``ModelSettings``; detection, validation, heatmaps, energy and export read it
instead of attributes set here and there on the model. ``to_metadata`` / ``from_metadata`` are the one
spelling of the record as an export's string metadata (every export format writes it, every runtime
of an export reads it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from torch import nn

DEFAULT_IMGSZ = 640  # the input size of a model that records no training size (every tool's fallback)


@dataclass(frozen=True)
class ModelSettings:
    """What a model is, for inference.

    ``names``: class index -> name. ``timesteps`` (T) and ``levels`` (D, the largest spike count per
    timestep; 1 = binary). ``train_imgsz``: the input size the weights were trained at (the default
    inference size: objects at the scale the model learned). ``train_image_size``: the training
    images' median long side (the automatic tile size of sliced inference). ``input_size``: set when a
    runtime takes one square input size only (an ONNX graph). ``source``: where it came from."""

    names: dict[int, str] = field(default_factory=dict)
    timesteps: int = 1
    levels: int = 1
    train_imgsz: int | None = None
    train_image_size: int | None = None
    input_size: int | None = None
    source: str = ""

    def imgsz(self, fallback: int = DEFAULT_IMGSZ) -> int:
        """The inference size to use when none is given."""
        return int(self.input_size or self.train_imgsz or fallback)

    def check_imgsz(self, imgsz: int) -> int:
        """``imgsz`` if this model can run at it; a one-line ValueError otherwise."""
        if self.input_size and int(imgsz) != self.input_size:
            raise ValueError(f"{self.source or 'this model'} takes {self.input_size} x {self.input_size} inputs only "
                             f"(a fixed-size graph); run with --imgsz {self.input_size}")
        return int(imgsz)

    def to_metadata(self) -> dict[str, str]:
        """The record as string metadata of a model exported at one input size (``imgsz()``)."""
        return {"names": json.dumps({int(k): v for k, v in self.names.items()}), "imgsz": str(self.imgsz()),
                "timesteps": str(int(self.timesteps)), "levels": str(int(self.levels)),
                "train_image_size": str(self.train_image_size or "")}

    @classmethod
    def from_metadata(cls, meta: dict[str, str], source: str) -> "ModelSettings":
        """The record ``to_metadata`` wrote (the model takes ``imgsz`` inputs only); a ValueError naming
        ``source`` when it is unreadable or out of bounds."""
        try:
            names = {int(k): str(v) for k, v in json.loads(meta["names"]).items()}
            imgsz = int(meta["imgsz"])
            tis = meta.get("train_image_size") or ""
            settings = cls(names=names, timesteps=int(meta["timesteps"]), levels=int(meta.get("levels", 1)),
                           train_imgsz=imgsz, train_image_size=int(tis) if tis.isdigit() else None, input_size=imgsz,
                           source=str(source))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{source}: unreadable metadata ({type(e).__name__}: {e})") from e
        if sorted(names) != list(range(len(names))) or not names or not 32 <= imgsz <= 8192 or imgsz % 32:
            raise ValueError(f"{source}: metadata out of bounds (classes {sorted(names)[:5]}..., imgsz {imgsz})")
        return settings


def settings_of(model: nn.Module) -> ModelSettings:
    """The settings a PyTorch model carries (``model.settings``, set by the checkpoint loader), else
    those it shows (T, D, class names) with no recorded sizes. Class names are always read from the
    model itself, which Ultralytics' engine may rename."""
    from ..nn.synapse import model_levels

    s = model.__dict__.get("settings")
    names = {int(k): str(v) for k, v in dict(getattr(model, "names", None) or {}).items()}
    if isinstance(s, ModelSettings):
        return replace(s, names=names or s.names)
    T = getattr(model, "timesteps", 1)
    return ModelSettings(names=names, timesteps=int(T) if isinstance(T, int) else 1, levels=model_levels(model))

"""Resuming a run safely: what a checkpoint may and may not decide.

A training checkpoint stores the run's arguments so that ``--resume`` continues the same run. A
checkpoint can come from anywhere, so nothing in it is trusted as such:

* every stored argument must be one of Ultralytics' training arguments, of the default's type and
  within bounds; values that would name a script, a tracker or teacher file, a config file to load,
  an export format or a task other than detection must be the defaults (``sanitize_train_args``);
* the dataset must be a local YAML (checked again by ``detector.data.check_dataset_yaml``);
* the run folder is always the checkpoint's own folder (``run_dir_of``), never a folder named inside
  the file: resuming a copied run writes into the copy, not into the original;
* only a training checkpoint (optimizer state, epoch, arguments) can be resumed, not an inference
  export (``require_training_checkpoint``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

# Arguments a checkpoint never decides: the run folder follows the checkpoint's location.
REPLACED = {"model", "resume", "project", "name", "save_dir", "exist_ok"}
OPTIMIZERS = {"auto", "SGD", "Adam", "Adamax", "AdamW", "NAdam", "RAdam", "RMSProp", "MuSGD"}
DEVICE = re.compile(r"^(cpu|mps|cuda(:\d{1,2})?|\d{1,2}(,\d{1,2})*|-1)$")
BOUNDS = {"epochs": (1, 100_000), "imgsz": (32, 8192), "batch": (-1, 4096), "workers": (0, 256),
          "close_mosaic": (0, 100_000), "patience": (0, 1_000_000), "save_period": (-1, 100_000),
          "seed": (0, 2**32 - 1), "max_det": (1, 100_000), "nbs": (1, 100_000)}
CHOICES = {"task": {"detect"}, "mode": {"train"}, "optimizer": OPTIMIZERS, "split": {"train", "val", "test"},
           "copy_paste_mode": {"flip", "mixup"}, "auto_augment": {"randaugment", "autoaugment", "augmix", None}}


def _bad(source: Any, key: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{source}: stored training argument {key}={value!r} refused ({why})")


def _check_number(key: str, v: Any, default: Any, source: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _bad(source, key, v, f"must be a number like the default {default!r}")
    if isinstance(default, int) and not isinstance(default, bool) and not isinstance(v, int):
        if float(v) != int(v):
            raise _bad(source, key, v, "must be an integer")
        v = int(v)
    if not math.isfinite(float(v)):
        raise _bad(source, key, v, "must be finite")
    lo, hi = BOUNDS.get(key, (-1e9, 1e9))
    if not lo <= v <= hi:
        raise _bad(source, key, v, f"must be in {lo}..{hi}")
    return v


def sanitize_train_args(stored: Any, source: Any = "checkpoint") -> dict[str, Any]:
    """The stored arguments that a resumed run may use, validated against Ultralytics' defaults
    (keys, types, bounds, allowed values); raises ValueError naming the first refused field."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    if not isinstance(stored, dict):
        raise ValueError(f"{source}: training arguments missing or not a mapping")
    out: dict[str, Any] = {}
    for k, v in stored.items():
        if k in REPLACED:
            continue
        if not isinstance(k, str) or k not in DEFAULT_CFG_DICT:
            raise _bad(source, k, v, "not a training argument")
        default = DEFAULT_CFG_DICT[k]
        if k in CHOICES:
            if v not in CHOICES[k]:
                raise _bad(source, k, v, f"allowed: {sorted(map(str, CHOICES[k]))}")
        elif k == "data":
            if not isinstance(v, str) or "://" in v or not v:
                raise _bad(source, k, v, "must be a local dataset YAML path")
        elif k == "device":
            if v is not None and not (isinstance(v, str) and DEVICE.match(v)):
                raise _bad(source, k, v, "not a device name")
        elif k in {"freeze", "classes", "embed"}:
            items = v if isinstance(v, list) else [v]
            if not all(x is None or (isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 100_000) for x in items):
                raise _bad(source, k, v, "must be None or non-negative integers")
        elif isinstance(default, bool) or k in {"channels_last", "nms"}:
            if not isinstance(v, bool) and not (v is None and default is None):
                raise _bad(source, k, v, "must be true or false")
        elif isinstance(default, (int, float)) or (default is None and k in {"time", "conf", "quantize", "line_width",
                                                                            "opset", "workspace"}):
            if not (v is None and default is None):
                v = _check_number(k, v, default, source)
        elif v != default:  # other strings and objects (cfg, tracker, source, format, distill_model, ...)
            raise _bad(source, k, v, f"must be the default {default!r}")
        out[k] = v
    if "data" not in out:
        raise ValueError(f"{source}: stored training arguments name no dataset")
    return out


def run_dir_of(checkpoint: str | Path) -> Path:
    """The run folder a checkpoint belongs to: ``RUN/weights/last.pt`` -> ``RUN``; a checkpoint
    elsewhere -> its own folder."""
    p = Path(checkpoint).resolve()
    return p.parent.parent if p.parent.name == "weights" else p.parent


def require_training_checkpoint(ckpt: dict, path: str | Path) -> None:
    """Refuse an inference export (no optimizer state, epoch or arguments) as a resume source."""
    missing = [k for k in ("optimizer", "epoch", "train_args") if ckpt.get(k) is None]
    if missing:
        raise ValueError(f"{path} cannot be resumed: it holds no {', '.join(missing)} (an inference-only weights "
                         f"file?); start a new run from it with --model {path}")
    if isinstance(ckpt["epoch"], bool) or not isinstance(ckpt["epoch"], int) or ckpt["epoch"] < -1:
        raise ValueError(f"{path}: stored epoch {ckpt['epoch']!r} is not a valid epoch")

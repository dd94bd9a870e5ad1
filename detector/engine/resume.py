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
  export (``require_training_checkpoint``);
* values within bounds can still be absurd together (batch 4096 at imgsz 8192): what the resumed run
  would hold in memory is measured before it starts and refused in one line when this machine does
  not have it (``check_resume_memory``); ``--batch`` / ``--imgsz`` on resume override the stored values.
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
    if not math.isfinite(float(v)):  # before any int(): int(nan) would fail without naming the field
        raise _bad(source, key, v, "must be finite")
    if isinstance(default, int) and not isinstance(default, bool) and not isinstance(v, int):
        if float(v) != int(v):
            raise _bad(source, key, v, "must be an integer")
        v = int(v)
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
    for key in ("updates", "best_fitness", "fitness"):  # read as numbers when the run resumes
        v = ckpt.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or (key == "updates" and (not isinstance(v, int) or v < 0))):
            what = "a non-negative integer" if key == "updates" else "a finite number"
            raise ValueError(f"{path}: stored {key} {v!r} is not {what}")


PROBE_SIZE = 128  # px: the measured forward (stride 32: a 4x4 grid at P5, enough for batch norm in train mode)


def activation_bytes(model, size: int = PROBE_SIZE) -> int:
    """Bytes autograd keeps for the backward pass of one training forward of one ``size`` px image:
    every tensor saved for backward, each storage counted once, the parameters left out (they do not
    grow with the batch or the image)."""
    import torch

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in params:
            seen[st.data_ptr()] = st.nbytes()
        return t

    model.train()
    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.rand(1, 3, size, size))
    return sum(seen.values())


def check_resume_memory(model, batch: Any, imgsz: Any, device: Any, source: Any, amp: bool = False) -> int | None:
    """Refuse (ValueError, one line naming ``batch``, ``imgsz`` and the options that override them) a
    resumed run whose activations alone would not fit in the memory available: the CPU's available RAM,
    or each GPU's free memory (the batch split over the GPUs of a DDP run). The estimate is measured on
    ``model`` (``activation_bytes`` at ``PROBE_SIZE``, scaled by the pixels and the batch; halved under
    mixed precision: fp16 on CUDA, bf16 on a CPU that has it, ``detector.precision``), so it is a lower bound of what the run needs. Returns the estimate in bytes (None for
    Ultralytics' automatic batch, ``batch`` -1, which sizes itself)."""
    import psutil

    from ..devices import resolve_device
    from ..files import size_text

    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        return None
    per_image = activation_bytes(model) * (int(imgsz) / PROBE_SIZE) ** 2
    try:
        dev = resolve_device(device if device not in (None, "", "-1") else "cpu", multi=True)
    except ValueError:
        dev = resolve_device("cpu")
    from ..precision import train_amp

    if amp and train_amp(True, dev.kind):
        per_image /= 2
    if dev.is_cuda:
        import torch

        n = len(dev.indices)
        free = min(torch.cuda.mem_get_info(i)[0] for i in dev.indices)
        where, per_device = f"GPU {','.join(map(str, dev.indices))} (free)", -(-batch // n)
    else:
        free, where, per_device = psutil.virtual_memory().available, f"{dev.kind} (available RAM)", batch
    need = per_image * per_device
    if need > free:
        fits = int(free // per_image)
        hint = f"--batch {fits * (len(dev.indices) if dev.is_cuda else 1)} or smaller" if fits else "a smaller --imgsz"
        raise ValueError(f"{source}: resuming with batch {batch} at imgsz {imgsz} would need about {size_text(need)} "
                         f"for activations alone ({size_text(per_image)} per image, measured), more than the "
                         f"{size_text(free)} of the {where}; resume with {hint} (--batch and --imgsz override the "
                         "stored values)")
    return int(need)

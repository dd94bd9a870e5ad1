"""Training precision: what ``amp`` (on by default, ``--no-amp`` off) means on each device.

* CUDA: fp16 autocast with GradScaler, after the local AMP check (``detector.settings``);
* CPU: bf16 autocast where the CPU computes bf16 natively (AVX512-BF16 or AMX on x86, the BF16
  extension on Arm), detected at run time; elsewhere fp32, because an emulated bf16 matmul is slower
  than fp32. bf16 keeps fp32's exponent range, so it needs no GradScaler: a non-finite gradient is a
  real one and stops the run as in fp32 (``SafeTrainer.optimizer_step``);
* other devices (mps): fp32.

Weights, optimizer state, EMA and checkpoints stay fp32 whatever the precision: autocast only changes
the dtype of the activations of the operations it lists (convolutions, matmuls).

``train_amp`` maps the request to Ultralytics' ``amp`` argument (``True`` / ``"bf16"`` / ``False``);
``autocast`` replaces Ultralytics' own, which refuses bf16 off CUDA (``settings.apply`` installs it).
"""

from __future__ import annotations

import functools
from typing import Any

# /proc/cpuinfo flags of a native bf16 dot product: x86 AVX512-BF16 or AMX-BF16, Arm's BF16 extension.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags (Linux ``/proc/cpuinfo``; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            line = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    except OSError:
        return frozenset()
    return frozenset(line.partition(":")[2].split())


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (where bf16 training beats fp32). Without /proc/cpuinfo
    (macOS, Windows) the answer is no: fp32, the safe choice."""
    return bool(cpu_flags() & BF16_CPU_FLAGS)


def train_amp(requested: Any, device_type: str) -> bool | str:
    """Ultralytics' ``amp`` for a run on ``device_type`` (``cpu``, ``cuda``, ``mps``) whose user asked for
    ``requested`` (True / False, or Ultralytics' ``"fp16"`` / ``"bf16"`` / ``"fp32"``): ``"bf16"``, True
    (fp16 with GradScaler, CUDA) or False (fp32)."""
    if requested is False or str(requested).lower() in {"false", "fp32"}:
        return False
    if device_type == "cpu":
        return "bf16" if cpu_has_bf16() else False
    if device_type == "cuda":
        return "bf16" if str(requested).lower() == "bf16" else True
    return False


def describe(amp: bool | str, requested: bool, device_type: str) -> str:
    """One phrase for the log: the precision ``train_amp`` chose, and why when it is not the request."""
    if amp == "bf16":
        return "bf16 autocast"
    if amp:
        return "fp16 AMP with GradScaler (if the AMP check passes)"
    if not requested:
        return "fp32 (amp off)"
    return "fp32 (this CPU has no native bf16)" if device_type == "cpu" else f"fp32 (no mixed precision on {device_type})"


def autocast(enabled: Any, device: str = "cuda"):
    """Ultralytics' ``autocast(enabled, device)`` (``enabled``: a bool, or the dtype to autocast to),
    with bf16 allowed on the CPU."""
    import torch

    if device != "cpu":
        from ultralytics.utils.torch_utils import autocast as ul_autocast  # the original (settings patches the trainer's)

        return ul_autocast(enabled, device)
    # on the CPU only an explicit bf16 autocasts: a plain True is what Ultralytics passes for fp16 AMP,
    # which train_amp never selects here
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled is torch.bfloat16)

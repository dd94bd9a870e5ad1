"""Fused multi-step neuron kernels: the whole time loop of a layer of neurons in one call.

Why: SpikingJelly's CPU neuron runs a dozen full-size element-wise PyTorch operations per timestep
(charge, compare, reset, stacking), and on a 2-core CPU those memory-bound passes were about half of
an inference pass of the detector. ``neuron.c`` does the same arithmetic per element with the state
in a small block buffer: one read of the input, one write of the spikes (and, when training, of the
charged membrane the backward pass needs).

Exactness: the C code performs SpikingJelly 2.0's CPU operations in the same order, each rounded to
float32 and without fused multiply-adds, so spikes and gradients are bit-identical to the reference
(``tests/test_neuron_kernels.py``). Supported: LIF / IF with the ATan surrogate (hard or soft reset)
and I-LIF, all with a detached reset (the project's setting); other settings use SpikingJelly's own
node (``detector.nn.neurons``).

Backends, in order:

1. the C library, compiled from ``neuron.c`` with the system C compiler on first use and cached
   (``$XDG_CACHE_HOME/snnvit-yolo/kernels``, keyed by the source, the flags and the CPU's instruction
   set; about a second, once);
2. PyTorch operations in the same order (float64 inputs, no compiler, or ``SNNVIT_NEURON_KERNEL=torch``);

bf16 inputs (CPU autocast: training with ``amp`` on a bf16 CPU) are an fp32 island: the C kernel widens
each block to fp32, charges and carries the membrane in fp32 (a bf16 membrane, 8 bits of mantissa,
would move spikes that sit near a threshold) and writes the spikes, small integers, exactly in bf16, so
the next synaptic conv reads them without a cast; the backward pass rounds the input gradient to bf16.
Results equal the fp32 kernel's on the widened input, rounded (tests). Without the C library (and for
fp16) ``run`` does the same with explicit casts around the PyTorch path.
3. on CUDA tensors, SpikingJelly's own device kernels.
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("neuron.c")
CFLAGS = ["-O3", "-shared", "-fPIC", "-pthread", "-ffp-contract=off", "-fno-fast-math", "-std=c99"]
# The machine's own vector units (AVX2 here: twice SSE's width). -ffp-contract=off above keeps fused
# multiply-adds out, so the arithmetic (and the bit-identity with the reference) does not change.
NATIVE = ["-march=native"]


@dataclass(frozen=True)
class LIFParams:
    """LIF (``kind='lif'``, leak ``tau``) or IF (``kind='if'``) with the ATan surrogate."""

    kind: str
    tau: float | None
    v_threshold: float
    v_reset: float | None  # None: soft reset
    alpha: float
    detach_reset: bool

    @property
    def levels(self) -> int:
        return 1


@dataclass(frozen=True)
class ILIFParams:
    """Integer-spike LIF: decay ``1 - 1/tau``, counts in ``{0..levels}``, soft reset, straight-through
    gradient where ``H / V_th`` lies in ``[0, levels]``."""

    tau: float
    v_threshold: float
    levels: int
    detach_reset: bool
    kind: str = "ilif"


def lif_params(tau: float | None, v_threshold: float, v_reset: float | None, surrogate, detach_reset: bool,
               decay: bool) -> LIFParams | None:
    """Kernel settings for a LIF (``decay``) or IF neuron, or None when the kernel does not cover them
    (a surrogate other than ATan, tau <= 1)."""
    from spikingjelly.activation_based import surrogate as sj_surrogate

    if type(surrogate) is not sj_surrogate.ATan or not getattr(surrogate, "spiking", True) or not detach_reset:
        return None
    if decay and (tau is None or not math.isfinite(float(tau)) or float(tau) <= 1):
        return None
    if not math.isfinite(float(v_threshold)) or (v_reset is not None and not math.isfinite(float(v_reset))):
        return None
    return LIFParams("lif" if decay else "if", float(tau) if decay else None, float(v_threshold),
                     None if v_reset is None else float(v_reset), float(surrogate.alpha), bool(detach_reset))


def ilif_params(tau: float, v_threshold: float, levels: int, detach_reset: bool) -> ILIFParams | None:
    """Kernel settings for an I-LIF neuron (None with ``detach_reset=False``, which the kernel does not
    cover); raises ValueError on settings no implementation accepts."""
    if not (math.isfinite(float(tau)) and float(tau) > 1):
        raise ValueError(f"I-LIF tau must be a finite number > 1, got {tau!r}")
    if not (math.isfinite(float(v_threshold)) and float(v_threshold) > 0):
        raise ValueError(f"I-LIF v_threshold must be a finite number > 0, got {v_threshold!r}")
    if not detach_reset:
        return None
    return ILIFParams(float(tau), float(v_threshold), int(levels), True)


# --------------------------------------------------------------------------------------------
# The C library
# --------------------------------------------------------------------------------------------


class _CParams(ctypes.Structure):
    _fields_ = [("kind", ctypes.c_int), ("hard", ctypes.c_int)] + [
        (n, ctypes.c_float) for n in ("tau", "th", "reset", "decay", "levels", "alpha_a", "alpha_b", "lower", "upper", "dh")
    ]


def _c_params(p: LIFParams | ILIFParams) -> _CParams:
    # Python floats become C floats by the same rounding torch applies to a scalar operand.
    if isinstance(p, ILIFParams):
        return _CParams(kind=2, hard=0, tau=p.tau, th=p.v_threshold, reset=0.0,
                        decay=1 - 1 / p.tau, levels=float(p.levels), alpha_a=0.0, alpha_b=0.0, lower=0.0,
                        upper=float(p.levels), dh=1 - 1 / p.tau)
    return _CParams(kind=0 if p.kind == "lif" else 1, hard=int(p.v_reset is not None), tau=p.tau or 1.0, th=p.v_threshold, reset=p.v_reset or 0.0, decay=0.0, levels=1.0,
                    alpha_a=math.pi / 2 * p.alpha, alpha_b=p.alpha / 2, lower=0.0, upper=0.0, dh=0.0)


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_error: str | None = None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "snnvit-yolo" / "kernels"


def _compile(out: Path) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler found (cc, gcc or clang)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".neuron.", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        for flags in (CFLAGS + NATIVE, CFLAGS):  # without -march=native where the compiler lacks it
            r = subprocess.run([cc, *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120)
            if r.returncode == 0:
                break
        else:
            raise RuntimeError(f"{cc} failed: {(r.stderr or r.stdout).strip()[:300]}")
        os.replace(tmp, out)  # atomic: a concurrent process sees the old file or the whole new one
    finally:
        Path(tmp).unlink(missing_ok=True)


def _machine_tag() -> str:
    """What a -march=native build depends on: the CPU's instruction-set flags (a cache shared by
    machines with different CPUs must not hand one machine the other's library)."""
    import platform

    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            flags = next((ln for ln in f if ln.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return platform.machine() + flags


def library() -> ctypes.CDLL | None:
    """The compiled kernel library, building it on first use; None (with one warning) when it cannot
    be built, or when ``SNNVIT_NEURON_KERNEL=torch`` asks for the PyTorch path."""
    global _lib, _lib_error
    if _lib is not None or _lib_error is not None:
        return _lib
    with _lock:
        if _lib is not None or _lib_error is not None:
            return _lib
        if os.environ.get("SNNVIT_NEURON_KERNEL", "").lower() == "torch":
            _lib_error = "disabled by SNNVIT_NEURON_KERNEL=torch"
            return None
        src = SOURCE.read_bytes()
        digest = hashlib.sha256(src + " ".join(CFLAGS + NATIVE).encode() + _machine_tag().encode()).hexdigest()[:16]
        path = cache_dir() / f"neuron-{digest}.so"
        try:
            if not path.is_file():
                _compile(path)
            lib = ctypes.CDLL(str(path))
            if lib.snn_neuron_abi() != 2:
                raise RuntimeError("kernel library has an unexpected ABI version")
            f64 = ctypes.c_int64
            ptr = ctypes.c_void_p
            i32 = ctypes.c_int
            lib.snn_neuron_forward.argtypes = [ctypes.POINTER(_CParams), ptr, f64, ptr, ptr, ptr, ptr, f64, f64, i32, i32]
            lib.snn_neuron_backward.argtypes = [ctypes.POINTER(_CParams), ptr, ptr, ptr, f64, f64, i32, i32]
            _lib = lib
        except (OSError, RuntimeError, subprocess.SubprocessError) as e:
            _lib_error = str(e)
            warnings.warn(f"fused neuron kernel unavailable ({e}); using the PyTorch implementation", stacklevel=2)
        return _lib


def backend_name() -> str:
    """``c`` or ``torch``: which implementation float32 CPU tensors use in this process."""
    return "c" if library() is not None else "torch"


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _as_steps(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(T, ...) -> a (T or 1, N) view (float32 or bf16) the kernel can read, and the stride along t (0 when one
    step is repeated over T, as the encoding layer's output is)."""
    T = x.shape[0]
    if T > 1 and x.stride(0) == 0 and x[0].is_contiguous():
        return x[:1].reshape(1, -1), 0
    x2 = x.reshape(T, -1).contiguous()
    return x2, x2.shape[1]


def _c_forward(p, x: torch.Tensor, v0: torch.Tensor | None, keep_h: bool, keep_state: bool = True):
    lib = library()
    T = x.shape[0]
    xs, stride = _as_steps(x)
    N = xs.shape[1]
    s = torch.empty((T, N), dtype=x.dtype)  # bf16 spikes from bf16 input: counts, exact
    h = torch.empty((T, N), dtype=torch.float32) if keep_h else None  # the membrane stays fp32
    vT = torch.empty(N, dtype=torch.float32) if keep_state else None  # only streaming needs the final membrane
    v0c = None if v0 is None else v0.reshape(-1).to(torch.float32).contiguous()
    cp = _c_params(p)
    lib.snn_neuron_forward(ctypes.byref(cp), _ptr(xs), stride, _ptr(v0c), _ptr(s), _ptr(h), _ptr(vT), T, N,
                           torch.get_num_threads(), int(x.dtype == torch.bfloat16))
    return s.view(x.shape), h, (None if vT is None else vT.view(x.shape[1:]))


def _c_backward(p, h: torch.Tensor, gs: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The input's gradient in ``dtype`` (that of the forward's input: float32 or bf16) from fp32 ``h``."""
    lib = library()
    T, N = h.shape
    gs = gs.reshape(T, N).to(dtype).contiguous()
    gx = torch.empty((T, N), dtype=dtype)
    cp = _c_params(p)
    lib.snn_neuron_backward(ctypes.byref(cp), _ptr(h), _ptr(gs), _ptr(gx), T, N, torch.get_num_threads(),
                            int(dtype == torch.bfloat16))
    return gx


# --------------------------------------------------------------------------------------------
# The PyTorch path: SpikingJelly 2.0's CPU formulas, operation for operation
# --------------------------------------------------------------------------------------------


def _torch_forward(p, x: torch.Tensor, v0: torch.Tensor | None, keep_h: bool):
    T = x.shape[0]
    v = torch.zeros_like(x[0]) if v0 is None else v0.to(x.dtype)
    spikes, charged = [], []  # stacked at the end: plain operations an exporter can trace
    for t in range(T):
        xt = x[t]
        if isinstance(p, ILIFParams):
            h = (1 - 1 / p.tau) * v + xt
            spike = (h / p.v_threshold).clamp(0, p.levels).round()
            v = h - spike * p.v_threshold
        else:
            reset = 0.0 if p.v_reset is None else p.v_reset
            h = v + (xt - (v - reset)) / p.tau if p.kind == "lif" else v + xt
            spike = (h >= p.v_threshold).to(x.dtype)
            v = h - spike * p.v_threshold if p.v_reset is None else spike * p.v_reset + (1 - spike) * h
        spikes.append(spike)
        if keep_h:
            charged.append(h)
    return torch.stack(spikes), (torch.stack(charged).reshape(T, -1) if keep_h else None), v


def _torch_backward(p, h: torch.Tensor, gs: torch.Tensor) -> torch.Tensor:
    T = h.shape[0]
    gs = gs.reshape(T, -1)
    gx = torch.empty_like(h)
    carry = torch.zeros_like(h[0])
    for t in range(T - 1, -1, -1):
        if isinstance(p, ILIFParams):
            scaled = h[t] / p.v_threshold
            window = ((scaled >= 0.0) & (scaled <= float(p.levels))).to(h.dtype)
            gh = (gs[t] * window) / p.v_threshold + carry
            gx[t] = gh
            carry = gh * (1 - 1 / p.tau)
            continue
        z = (h[t] - p.v_threshold) * (math.pi / 2 * p.alpha)
        sg = (p.alpha / 2) / (1 + z * z)
        rg = 1 if p.v_reset is None else 1 - (h[t] >= p.v_threshold).to(h.dtype)  # the reset is detached
        gh = gs[t] * sg + carry * rg
        if p.kind == "lif":
            gx[t] = gh / p.tau
            carry = gh - gh / p.tau
        else:
            gx[t] = gh
            carry = gh
    return gx


# --------------------------------------------------------------------------------------------
# Dispatch and autograd
# --------------------------------------------------------------------------------------------


_FORCE_TORCH = False


def force_torch(on: bool) -> None:
    """Use the PyTorch path even where the C library (CPU) or SpikingJelly's kernels (CUDA) would run,
    e.g. while tracing for ONNX export, to which a C call is invisible, or for ``torch.compile`` and
    CUDA-graph capture. Same formulas: both follow the reference operation for operation."""
    global _FORCE_TORCH
    _FORCE_TORCH = bool(on)


def _use_c(x: torch.Tensor) -> bool:
    return (not _FORCE_TORCH and x.dtype in (torch.float32, torch.bfloat16) and x.device.type == "cpu"
            and library() is not None)


def _forward(p, x, v0, keep_h, keep_state=True):
    return _c_forward(p, x, v0, keep_h, keep_state) if _use_c(x) else _torch_forward(p, x, v0, keep_h)


class _FusedNeuron(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, v0, p):
        s, h, _ = _forward(p, x, v0, keep_h=True, keep_state=False)  # training runs whole sequences
        ctx.p = p
        ctx.shape = x.shape
        ctx.dtype = x.dtype
        ctx.save_for_backward(h)
        return s

    @staticmethod
    def backward(ctx, gs):
        (h,) = ctx.saved_tensors
        if gs is None:
            gs = torch.zeros(ctx.shape, dtype=ctx.dtype)
        if _use_c(h):
            gx = _c_backward(ctx.p, h, gs, ctx.dtype)
        else:
            gx = _torch_backward(ctx.p, h, gs.to(h.dtype)).to(ctx.dtype)
        return gx.view(ctx.shape), None, None


def _spikingjelly(p, x: torch.Tensor, v0: torch.Tensor | None):
    """Device tensors (CUDA): SpikingJelly's own multi-step kernels, the reference formulas."""
    from spikingjelly.activation_based import functional as F
    from spikingjelly.activation_based import surrogate as S

    v = torch.zeros_like(x[0], dtype=torch.float32) if v0 is None else v0.to(torch.float32)
    if isinstance(p, ILIFParams):
        s, vT, _ = F.ilif_multi_step(x, v, p.tau, p.v_threshold, S.MultiLevelSpikeCount(p.levels), p.detach_reset)
    elif p.kind == "lif":
        s, vT, _ = F.lif_multi_step(x, v, p.tau, True, p.v_threshold, p.v_reset, S.ATan(alpha=p.alpha), p.detach_reset)
    else:
        s, vT, _ = F.if_multi_step(x, v, p.v_threshold, p.v_reset, S.ATan(alpha=p.alpha), p.detach_reset)
    return s, vT


def run(p: LIFParams | ILIFParams, x: torch.Tensor, v0: torch.Tensor | None = None,
        keep_state: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run a neuron over time-first ``x`` (T, ...) from membrane ``v0`` (zeros when None). Returns
    (spikes shaped like ``x``, the final membrane shaped like ``x[0]`` when ``keep_state``, else None)."""
    if x.ndim < 2:
        raise ValueError(f"neuron input must be time-first (T, ...), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"neuron input must be a floating-point tensor, got {x.dtype}")
    if x.device.type != "cpu" and not _FORCE_TORCH:
        return _spikingjelly(p, x, v0)
    if x.dtype in (torch.bfloat16, torch.float16) and not _use_c(x):
        # fp32 island under CPU autocast (bf16 training) where the C kernel cannot read the input (no
        # compiler, fp16, force_torch): run the fp32 path on an exact fp32 copy and return the spikes
        # (counts, exact) in the input's dtype; autograd casts the gradient back. The C kernel does the
        # same without the copies (neuron.c, "bf16").
        s, vT = run(p, x.float(), v0, keep_state)
        return s.to(x.dtype), vT
    if torch.is_grad_enabled() and x.requires_grad:
        if keep_state:
            raise ValueError("state across calls (streaming) is for inference: run it under torch.no_grad()")
        return _FusedNeuron.apply(x, v0, p), None
    s, _, vT = _forward(p, x, v0, keep_h=False, keep_state=keep_state)
    return s, vT

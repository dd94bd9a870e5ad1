"""Runtimes: a model ready to run, whatever runs it, chosen from one table.

A ``Runtime`` is called on a letterboxed batch ``(B, 3, S, S)`` in [0, 1] on its ``device`` and returns
the decoded predictions ``(B, 4 + nc, anchors)`` (boxes xywh in input pixels, class scores), which
Ultralytics' NMS turns into detections; ``settings`` is the model's ``ModelSettings`` (class names,
T, D, sizes). ``RUNTIMES`` is the table, one row per runtime: which weights files it runs (suffix), on
which devices, and where its implementation lives. Adding a runtime (TorchScript, TensorRT,
OpenVINO...) is one row here and one module in this package; the table imports the runtime classes
(when one is chosen), the classes (``detector.infer.base.Runtime`` subclasses) never see the table.

``load_runtime`` turns ``--weights`` (a shipped model's name or a path), ``--device`` and
``--runtime`` into a ready runtime; every tool loads through it. ``--runtime auto`` is two tables below
the runtimes': ``AUTO``, the reference (eager for a checkpoint), which evaluation and analysis run, and
``AUTO_DETECTION``, the faster runtime detection runs where it can (int8 on a CPU), falling back to the
reference with one warning if it fails to load. ``as_runtime`` wraps a PyTorch
module someone already holds (a model being trained, a test's stand-in) as it is, unfolded.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from .base import ModuleRuntime, Runtime, RuntimeModule, as_runtime  # noqa: F401  (the runtimes' API, here for callers)


@dataclass(frozen=True)
class RuntimeSpec:
    """One row of the runtime table. ``static``: the runtime builds for one input shape at a time
    (compiled or captured graphs, ONNX graphs), so sliced inference pads its last batch of tiles to the
    full batch; ``validates``: it can run evaluation, whose batches change shape (rect batches)."""

    name: str
    suffixes: tuple[str, ...]
    devices: tuple[str, ...]
    static: bool
    validates: bool
    impl: str  # "module:Class" in this package; imported when the runtime is chosen
    summary: str
    extra: str = ""  # the optional extra of setup.cfg it needs (pip install -e ".[extra]"), if any
    packages: tuple[str, ...] = ()  # the modules of that extra, looked for (not imported) by ``installed``

    def load(self) -> type:
        module, cls = self.impl.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), cls)

    def installed(self) -> bool:
        """Whether its optional packages are installed (found, not imported: ``auto`` asks on every load)."""
        return all(importlib.util.find_spec(m) is not None for m in self.packages)


RUNTIMES: dict[str, RuntimeSpec] = {s.name: s for s in (
    RuntimeSpec("eager", (".pt",), ("cpu", "cuda", "mps"), False, True, "torch_runtimes:EagerRuntime",
                "PyTorch, batch norm folded into the convolutions (the reference; auto for .pt, but for detection "
                "on a CPU where int8 is installed)"),
    RuntimeSpec("compiled", (".pt",), ("cpu", "cuda"), True, True, "torch_runtimes:CompiledRuntime",
                "torch.compile (inductor): compiled once per input shape (time printed), cached on disk"),
    RuntimeSpec("cudagraph", (".pt",), ("cuda",), True, False, "torch_runtimes:CudaGraphRuntime",
                "CUDA graphs: the forward captured once per input shape and replayed without kernel launches"),
    RuntimeSpec("onnx", (".onnx",), ("cpu", "cuda"), True, False, "onnx_runtime:OnnxRuntime",
                "ONNX Runtime, CPU or CUDA execution provider (auto for .onnx)", "onnx", ("onnxruntime",)),
    RuntimeSpec("int8", (".pt",), ("cpu",), True, True, "int8_runtime:Int8Runtime",
                "OpenVINO, spike-fed convolutions in int8 (exact uint8 spike counts, int8 per-channel weights, "
                "int32 sums); graph built once per checkpoint and cached (auto for .pt in detection on a CPU)",
                "int8", ("onnx", "onnxruntime", "openvino")),
)}
# --runtime auto. The reference, by the weights' suffix: what evaluation and the analysis tools (val, heatmap,
# energy, benchmark) run, the numbers they report being eager's
AUTO = {".pt": "eager", ".onnx": "onnx"}
# Detection (detect, survey) by (device kind, suffix): a faster runtime, where its extra is installed (else the
# reference, with one info line); if it fails to load, the reference runs instead, with one warning
AUTO_DETECTION = {("cpu", ".pt"): "int8"}


def is_auto(runtime: str | None) -> bool:
    return runtime in (None, "", "auto")


def auto_runtime(suffix: str, device_kind: str, detection: bool = False) -> str | None:
    """``--runtime auto``'s choice for weights of this suffix on this kind of device (``AUTO``; in
    ``detection``, ``AUTO_DETECTION`` first where its extra is installed); None for an unknown suffix."""
    fast = RUNTIMES.get(AUTO_DETECTION.get((device_kind, suffix), "")) if detection else None
    return fast.name if fast is not None and fast.installed() else AUTO.get(suffix)


def choose_runtime(runtime: str | None, path: Path, device_kind: str, detection: bool = False) -> RuntimeSpec:
    """The table row for ``--runtime`` (``auto``: ``auto_runtime``), checked against the file and the
    device; a mismatch is a one-line ValueError saying what would work."""
    suffix = path.suffix.lower()
    name = auto_runtime(suffix, device_kind, detection) if is_auto(runtime) else str(runtime)
    if name is None:
        raise ValueError(f"{path}: weights must be a .pt checkpoint or an .onnx export, got {suffix or 'no suffix'!r}")
    spec = RUNTIMES.get(name)
    if spec is None:
        raise ValueError(f"unknown runtime {runtime!r}; choose auto or one of {', '.join(RUNTIMES)}")
    if suffix not in spec.suffixes:
        fits = [s.name for s in RUNTIMES.values() if suffix in s.suffixes]
        raise ValueError(f"runtime {name} runs {'/'.join(spec.suffixes)} files, not {path.name}; for it use "
                         f"--runtime {' or '.join(fits)}")
    if device_kind not in spec.devices:
        raise ValueError(f"runtime {name} runs on {', '.join(spec.devices)}, not {device_kind}")
    return spec


def load_runtime(weights: str | Path | None = None, device: Any = "cpu", runtime: str | None = "auto",
                 amp: bool = False, detection: bool = False) -> Runtime:
    """The model ``weights`` names (a shipped model's name, a path, or None for the default shipped
    model), loaded safely and made ready by ``runtime`` on ``device`` (``detector.devices`` names).
    ``amp``: mixed precision (CUDA, PyTorch runtimes). ``detection``: ``auto`` chooses as for
    detection (``AUTO_DETECTION``), and a faster runtime that fails to load gives way to the reference
    with one warning; a runtime named explicitly fails as it fails."""
    from ultralytics.utils import LOGGER

    from ..devices import resolve_device
    from ..weights import resolve_weights

    dev = resolve_device(device)
    path = resolve_weights(weights)
    spec = choose_runtime(runtime, path, dev.kind, detection)
    if amp and (dev.kind != "cuda" or spec.name in ("onnx", "int8")):
        raise ValueError("mixed precision (AMP) is for the PyTorch runtimes on CUDA")
    auto, suffix = detection and is_auto(runtime), path.suffix.lower()
    reference = RUNTIMES[AUTO[suffix]]
    if not auto or spec is reference:
        faster = RUNTIMES.get(AUTO_DETECTION.get((dev.kind, suffix), "")) if auto else None
        if faster is not None:  # auto passed it over, its extra not installed: a hint, not a warning
            LOGGER.info(f"runtime {spec.name}; the {faster.name} runtime, faster here, needs "
                        f"pip install -e \".[{faster.extra}]\"")
        return spec.load().load(path, dev.torch, amp=amp)
    try:
        return spec.load().load(path, dev.torch, amp=amp)
    except Exception as e:  # noqa: BLE001 - whatever failed in the faster runtime, the reference runs (below)
        why = (" ".join(str(e).split()) or type(e).__name__)[:300]
    rt = reference.load().load(path, dev.torch, amp=amp)  # bad weights fail here, in their own words
    LOGGER.warning(f"runtime {reference.name} for {path.name}: the {spec.name} runtime failed ({why}); "
                   f"--runtime {reference.name} skips trying it")
    return rt


def load_torch_model(weights: str | Path | None = None, device: Any = "cpu") -> nn.Module:
    """The PyTorch model of a checkpoint, batch norm folded (the eager runtime's module), for the tools
    that look inside it through hooks (heatmaps, energy); an ONNX file is refused in one line."""
    from ..weights import resolve_weights

    path = resolve_weights(weights)
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{path} is an ONNX graph: heatmaps and energy look inside a PyTorch checkpoint (.pt)")
    return load_runtime(path, device, "eager").module


def runtime_table() -> str:
    """The runtime table as text (``--runtime`` help)."""
    return "; ".join(f"{s.name} ({'/'.join(s.suffixes)}, {'/'.join(s.devices)}): {s.summary}" for s in RUNTIMES.values())

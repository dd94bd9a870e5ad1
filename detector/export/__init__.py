"""Exports, chosen from one table: ``EXPORTS`` has a row per format (``tools/export.py --format``), with
the output file's suffix, the options the format takes, the runtime that runs the result
(``detector.infer.RUNTIMES``), the optional extra it needs (imported by the module only when it
exports), and the module that implements it. A new export format is one
module in this package and one row here; what it writes about the model is
``ModelSettings.to_metadata()`` (``detector.models.settings``), which the runtime reads back with
``from_metadata``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..infer.options import WEIGHTS_HELP, build, opt
from .onnx import export_onnx  # the onnx row's function, under the name callers use


@dataclass(frozen=True)
class ExportFormat:
    """One row of the export table. ``options``: the keywords of ``export`` the format takes besides
    the weights, the output and ``overwrite``."""

    name: str
    suffix: str
    options: tuple[str, ...]
    runtime: str
    extra: str  # the optional dependency group (setup.cfg), "" when none
    impl: str  # "module:function" in this package
    summary: str

    def load(self):
        module, fn = self.impl.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), fn)


EXPORTS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("onnx", ".onnx", ("imgsz", "batch", "model"), "onnx", "onnx", "onnx:export_onnx",
                 "ONNX graph at one input size, time unrolled, batch norm folded; run by ONNX Runtime"),
    ExportFormat("pt", ".pt", (), "eager", "", "pt:export_pt",
                 "inference-only checkpoint: EMA weights in fp16, no optimizer state"),
)}


def export_formats() -> str:
    """The export table as text (``--format`` help)."""
    return "; ".join(f"{f.name} ({f.suffix}, run by the {f.runtime} runtime"
                     + (f", needs the {f.extra} extra" if f.extra else "") + f"): {f.summary}" for f in EXPORTS.values())


@dataclass(frozen=True)
class ExportOptions:
    """An export's options: the format (a row of ``EXPORTS``), the weights, whether an existing output
    may be replaced, and the format's own options (None: the format's default; the format's exporter
    checks their values, as it does when called directly)."""

    format: str | None = opt(None, export_formats(), choices=tuple(EXPORTS))  # required: no default format
    weights: str | Path | None = opt(None, WEIGHTS_HELP)
    imgsz: int | None = opt(None, "ONNX input size (default: the weights' training size)", type=int)
    batch: int | None = opt(None, "ONNX: example batch for tracing (the batch axis stays dynamic)", type=int)
    overwrite: bool = opt(False, "replace OUT if it exists (never the source)", action="store_true")

    def __post_init__(self) -> None:
        spec = EXPORTS.get(self.format or "")
        if spec is None:
            raise ValueError(f"unknown export format {self.format!r}; choose one of {', '.join(EXPORTS)}")
        extra = [k for k in ("imgsz", "batch") if getattr(self, k) is not None and k not in spec.options]
        if extra:
            raise ValueError(f"export format {self.format} takes no {', '.join(extra)} option")


def export(out: str | Path, options: ExportOptions | None = None, *, model: nn.Module | None = None,
           **fields: Any) -> Path:
    """Export the weights (a shipped model's name or a path; default: the default shipped model), or a
    loaded ``model`` where the format takes one, to ``out``; ``options`` is an ``ExportOptions`` (or its
    fields as keywords: ``format="onnx", imgsz=320``...)."""
    o = build(ExportOptions, options, **fields)
    spec = EXPORTS[o.format]
    given = {k: v for k, v in (("imgsz", o.imgsz), ("batch", o.batch), ("model", model)) if v is not None}
    if "model" in given and "model" not in spec.options:
        raise ValueError(f"export format {o.format} exports a weights file, not a loaded model")
    return spec.load()(o.weights, out, overwrite=o.overwrite, **given)

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


def export(fmt: str, weights: str | Path | None, out: str | Path, *, overwrite: bool = False, **options: Any) -> Path:
    """Export ``weights`` (a shipped model's name or a path; default: the default shipped model) as
    ``fmt`` to ``out``; ``options`` are the format's own (its row's ``options``; None: the default)."""
    spec = EXPORTS.get(fmt)
    if spec is None:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORTS)}")
    given = {k: v for k, v in options.items() if v is not None}
    if set(given) - set(spec.options):
        raise ValueError(f"export format {fmt} takes no {', '.join(sorted(set(given) - set(spec.options)))} option")
    return spec.load()(weights, out, overwrite=overwrite, **given)


__all__ = ["EXPORTS", "ExportFormat", "export", "export_formats", "export_onnx"]

"""The ``pt`` row of ``detector.export.EXPORTS``: an inference-only checkpoint (``detector.weights.export_weights``)."""

from __future__ import annotations

from pathlib import Path


def export_pt(weights: str | Path | None, out: str | Path, *, overwrite: bool = False) -> Path:
    """The EMA weights of ``weights`` (a shipped model's name or a path) in fp16, without optimizer state."""
    from ..weights import export_weights, resolve_weights

    return export_weights(resolve_weights(weights), out, overwrite=overwrite)

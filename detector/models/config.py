"""Model configs: the n / s / m variants live in ``cfg/*.yaml``; a config is a plain dict so it is
serialisable and travels inside every checkpoint (``model.yaml``).

Top-level keys:
    nc         number of classes (the dataset's count overrides it when training)
    timesteps  T, simulated timesteps (direct encoding: the image is encoded once and repeated)
    reg_max    DFL bins of the detect head
    backbone   SNN-ViT: widths (5), depths (3), heads (2), mlp_ratio, attn, dilations
    neck       spiking PAN: widths (3), depth
    neuron     neuron factory arguments (detector.nn.neurons.make_neuron)
    saccade    saccadic neuron arguments (mw_init, vth_init, alpha, surrogate)
    names      optional {index: class name}
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CFG_DIR = Path(__file__).resolve().parent / "cfg"
VARIANTS = ("n", "s", "m")
TOP_KEYS = {"nc", "timesteps", "reg_max", "backbone", "neck", "neuron", "saccade", "names", "channels"}
BACKBONE_KEYS = {"widths", "depths", "heads", "mlp_ratio", "attn", "dilations"}
NECK_KEYS = {"widths", "depth"}


def variant_path(name: str) -> Path:
    return CFG_DIR / f"snnvit-yolo-{name}.yaml"


def load_config(cfg: str | Path | dict | None = "n", **overrides: Any) -> dict:
    """Resolve a config from a variant name (``n``/``s``/``m``), a YAML path or a dict, apply
    top-level ``overrides`` (e.g. ``nc=1, timesteps=2``) and validate it. Returns a new dict."""
    if cfg is None:
        cfg = "n"
    if isinstance(cfg, dict):
        d = copy.deepcopy(cfg)
    else:
        s = str(cfg)
        path = variant_path(s) if s in VARIANTS else Path(s)
        if not path.is_file():
            alt = variant_path(s.removeprefix("snnvit-yolo-").removesuffix(".yaml"))
            if not alt.is_file():
                raise FileNotFoundError(f"model config not found: {s} (variants: {', '.join(VARIANTS)})")
            path = alt
        with open(path, encoding="utf-8") as f:
            d = yaml.safe_load(f)
        if not isinstance(d, dict):
            raise ValueError(f"model config {path} is not a mapping")
        d.setdefault("variant", path.stem)
    for k, v in overrides.items():
        if v is not None:
            d[k] = v
    variant = d.pop("variant", None)
    unknown = set(d) - TOP_KEYS
    if unknown:
        raise ValueError(f"unknown model config keys: {sorted(unknown)}")
    for section, keys in (("backbone", BACKBONE_KEYS), ("neck", NECK_KEYS)):
        bad = set(d.get(section, {})) - keys
        if bad:
            raise ValueError(f"unknown {section} config keys: {sorted(bad)}")
    d.setdefault("nc", 80)
    d.setdefault("timesteps", 4)
    d.setdefault("reg_max", 16)
    d.setdefault("channels", 3)
    if int(d["timesteps"]) < 1 or int(d["nc"]) < 1:
        raise ValueError("timesteps and nc must be >= 1")
    if variant:
        d["variant"] = variant
    return d

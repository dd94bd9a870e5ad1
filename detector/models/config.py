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
    cls_prior  optional initial class probability of the head (RetinaNet prior, e.g. 0.01); absent:
               Ultralytics' rule (detector.nn.head.SpikingDetect.bias_init says why it matters)
    readout    how the head's branches end: ``spikes`` (default; a 1x1 conv of the last neuron's spikes,
               bounded) or ``current`` (the last layer's input current, folded into one synaptic conv at
               inference; detector.nn.head says why)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


CFG_DIR = Path(__file__).resolve().parent / "cfg"
VARIANTS = ("n", "s", "m")
TOP_KEYS = {"nc", "timesteps", "reg_max", "backbone", "neck", "neuron", "saccade", "names", "channels", "cls_prior",
            "readout"}
BACKBONE_KEYS = {"widths", "depths", "heads", "mlp_ratio", "attn", "dilations"}
NECK_KEYS = {"widths", "depth"}


def variant_path(name: str) -> Path:
    return CFG_DIR / f"snnvit-yolo-{name}.yaml"


def load_config(cfg: str | Path | dict | None = "n", **overrides: Any) -> dict:
    """Resolve a config from a variant name (``n``/``s``/``m``), a YAML path or a dict, apply
    top-level ``overrides`` (e.g. ``nc=1, timesteps=2``) and validate it (``validate_config``).
    Returns a new dict."""
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
        from ..files import read_yaml

        d = read_yaml(path, "model config")
        if not isinstance(d, dict):
            raise ValueError(f"model config {path} is not a mapping")
        d.setdefault("variant", path.stem)
    for k, v in overrides.items():
        if v is not None:
            d[k] = v
    variant = d.pop("variant", None)
    d.setdefault("nc", 80)
    d.setdefault("timesteps", 4)
    d.setdefault("reg_max", 16)
    d.setdefault("channels", 3)
    validate_config(d)
    if variant:
        if not isinstance(variant, str) or len(variant) > 100:
            raise ValueError("model config: 'variant' must be a short string")
        d["variant"] = variant
    return d


# Bounds: generous for real models, small enough that a crafted config fails here, before anything
# is allocated (a checkpoint's config is validated before its model is built).
LIMITS = {"nc": (1, 10_000), "timesteps": (1, 64), "reg_max": (1, 64), "channels": (3, 3), "width": (1, 4096),
          "depth": (0, 64), "heads": (1, 64), "dilation": (1, 16), "branches": (1, 8)}


def _int(name: str, v: Any, lo_hi: tuple[int, int]) -> int:
    lo, hi = lo_hi
    if isinstance(v, bool) or not isinstance(v, (int, float)) or float(v) != int(v) or not lo <= int(v) <= hi:
        raise ValueError(f"model config: {name} must be an integer in {lo}..{hi}, got {v!r}")
    return int(v)


def _ints(name: str, v: Any, n: int | None, lo_hi: tuple[int, int]) -> list[int]:
    if not isinstance(v, (list, tuple)) or (n is not None and len(v) != n) or not v:
        raise ValueError(f"model config: {name} must be a list of {n or 'some'} integers, got {v!r}")
    return [_int(f"{name}[{i}]", x, lo_hi) for i, x in enumerate(v)]


def validate_config(d: dict) -> None:
    """Check every key and value of a model config with bounds; raise ValueError naming the field.
    Runs before any module is built, so a bad config costs nothing."""
    from ..nn.attention import ATTENTIONS
    from ..nn.neurons import make_neuron

    unknown = set(d) - TOP_KEYS - {"variant"}
    if unknown:
        raise ValueError(f"unknown model config keys: {sorted(unknown)}")
    for section in ("backbone", "neck", "neuron", "saccade"):
        if not isinstance(d.get(section), dict):
            raise ValueError(f"model config: '{section}' is missing or not a mapping")
    for section, keys in (("backbone", BACKBONE_KEYS), ("neck", NECK_KEYS)):
        bad = set(d[section]) - keys
        if bad:
            raise ValueError(f"unknown {section} config keys: {sorted(bad)}")
    nc = _int("nc", d["nc"], LIMITS["nc"])
    _int("timesteps", d["timesteps"], LIMITS["timesteps"])
    _int("reg_max", d["reg_max"], LIMITS["reg_max"])
    _int("channels", d.get("channels", 3), LIMITS["channels"])
    bb = d["backbone"]
    widths = _ints("backbone.widths", bb.get("widths", [16, 32, 64, 128, 256]), 5, LIMITS["width"])
    _ints("backbone.depths", bb.get("depths", [1, 2, 1]), 3, LIMITS["depth"])
    heads = _ints("backbone.heads", bb.get("heads", [2, 4]), 2, LIMITS["heads"])
    for dim, nh in zip(widths[3:], heads):
        if dim % nh:
            raise ValueError(f"model config: backbone width {dim} is not divisible by {nh} heads")
    _ints("backbone.dilations", bb.get("dilations", [1, 2]), None, LIMITS["dilation"])
    if len(bb.get("dilations", [1, 2])) > LIMITS["branches"][1]:
        raise ValueError(f"model config: at most {LIMITS['branches'][1]} GL-SPS dilations")
    ratio = bb.get("mlp_ratio", 4.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < float(ratio) <= 16:
        raise ValueError(f"model config: backbone.mlp_ratio must be a number in (0, 16], got {ratio!r}")
    if bb.get("attn", "sssa_v2") not in ATTENTIONS:
        raise ValueError(f"model config: backbone.attn must be one of {sorted(ATTENTIONS)}, got {bb.get('attn')!r}")
    nk = d["neck"]
    _ints("neck.widths", nk.get("widths", widths[2:]), 3, LIMITS["width"])
    _int("neck.depth", nk.get("depth", 1), LIMITS["depth"])
    nu = d["neuron"]
    if not isinstance(nu.get("name", "lif"), str):
        raise ValueError("model config: neuron.name must be a string")
    try:
        make_neuron(**nu)  # the registry checks names, options and values; a neuron holds no tensors
    except (TypeError, ValueError) as e:
        raise ValueError(f"model config: bad neuron {nu!r}: {e}") from e
    sac = d["saccade"]
    bad = set(sac) - {"mw_init", "vth_init", "alpha", "surrogate"}
    if bad:
        raise ValueError(f"unknown saccade config keys: {sorted(bad)}")
    for key in ("vth_init", "alpha"):
        v = sac.get(key, 1.0)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (abs(float(v)) < 1e6 and v == v):
            raise ValueError(f"model config: saccade.{key} must be a finite number, got {v!r}")
    if d.get("readout", "spikes") not in ("spikes", "current"):
        raise ValueError(f"model config: readout must be spikes or current, got {d.get('readout')!r}")
    prior = d.get("cls_prior")
    if prior is not None and (isinstance(prior, bool) or not isinstance(prior, (int, float)) or not 0 < prior < 0.5):
        raise ValueError(f"model config: cls_prior must be a probability in (0, 0.5), got {prior!r}")
    names = d.get("names")
    if names is not None:
        if isinstance(names, (list, tuple)):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or sorted(int(k) if isinstance(k, (int, str)) and str(k).isdigit() else -1
                                                 for k in names) != list(range(nc)):
            raise ValueError(f"model config: names must give a name to each class 0..{nc - 1}")
        if not all(isinstance(v, str) and len(v) <= 200 for v in names.values()):
            raise ValueError("model config: class names must be strings")

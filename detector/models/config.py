"""Model configs: the n / s / m variants live in ``cfg/*.yaml``; a config is a plain dict so it is
serialisable and travels inside every checkpoint (``model.yaml``). The defaults live in dataclass
fields only: ``DetectorConfig`` (top level), ``SNNViTConfig`` (the backbone section,
``detector.nn.backbone``) and ``NeckConfig`` (the neck section); ``load_config`` fills a config's
missing keys from them, so YAMLs and checkpoints carry values only and the code reads every key
directly. The sections themselves (backbone, neck, neuron, saccade) are required; the neuron's and the
saccadic neuron's options default in their constructors (``detector.nn.neurons``).

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
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any


from ..nn.backbone import SNNViTConfig

CFG_DIR = Path(__file__).resolve().parent / "cfg"
VARIANTS = ("n", "s", "m")
SECTIONS = ("backbone", "neck", "neuron", "saccade")


@dataclass(frozen=True)
class DetectorConfig:
    """The top-level keys of a model config and their defaults (the module docstring says what each is)."""

    nc: int = 80
    timesteps: int = SNNViTConfig.timesteps
    reg_max: int = 16
    channels: int = 3
    readout: str = "spikes"
    cls_prior: float | None = None
    names: dict | None = None


@dataclass(frozen=True)
class NeckConfig:
    """The spiking PAN neck: output channels at P3, P4, P5 (None: the backbone's P3-P5 widths) and
    spiking res blocks per stage."""

    widths: tuple[int, ...] | None = None
    depth: int = 1


TOP_KEYS = {f.name for f in fields(DetectorConfig)} | set(SECTIONS)
# the backbone section: SNNViTConfig's own fields; T, neuron and saccade come from the top level
BACKBONE_KEYS = {f.name for f in fields(SNNViTConfig)} - {"timesteps", "neuron", "saccade"}
NECK_KEYS = {f.name for f in fields(NeckConfig)}


def _defaults(cls: type, keys: set[str]) -> dict:
    """The field defaults of the dataclass ``cls`` for ``keys``, as plain values (tuples as lists)."""
    out = {}
    for f in fields(cls):
        if f.name in keys:
            v = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def with_defaults(d: dict) -> dict:
    """``d`` (its sections already mappings) with every missing key filled from the dataclass defaults."""
    out = {**_defaults(DetectorConfig, TOP_KEYS), **d}
    out["backbone"] = {**_defaults(SNNViTConfig, BACKBONE_KEYS), **d["backbone"]}
    neck = {**_defaults(NeckConfig, NECK_KEYS), **d["neck"]}
    if neck["widths"] is None:
        neck["widths"] = list(out["backbone"]["widths"][2:])
    out["neck"] = neck
    return out


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
    _check_sections(d)
    d = with_defaults(d)
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


def _check_sections(d: dict) -> None:
    """Known top-level keys, the four sections present as mappings with known keys."""
    unknown = set(d) - TOP_KEYS - {"variant"}
    if unknown:
        raise ValueError(f"unknown model config keys: {sorted(unknown)}")
    for section in SECTIONS:
        if not isinstance(d.get(section), dict):
            raise ValueError(f"model config: '{section}' is missing or not a mapping")
    for section, keys in (("backbone", BACKBONE_KEYS), ("neck", NECK_KEYS)):
        bad = set(d[section]) - keys
        if bad:
            raise ValueError(f"unknown {section} config keys: {sorted(bad)}")


def validate_config(d: dict) -> None:
    """Check every key and value of a resolved model config (``with_defaults``) with bounds; raise
    ValueError naming the field. Runs before any module is built, so a bad config costs nothing."""
    from ..nn.attention import ATTENTIONS
    from ..nn.neurons import make_neuron

    _check_sections(d)
    nc = _int("nc", d["nc"], LIMITS["nc"])
    _int("timesteps", d["timesteps"], LIMITS["timesteps"])
    _int("reg_max", d["reg_max"], LIMITS["reg_max"])
    _int("channels", d["channels"], LIMITS["channels"])
    bb = d["backbone"]
    widths = _ints("backbone.widths", bb["widths"], 5, LIMITS["width"])
    _ints("backbone.depths", bb["depths"], 3, LIMITS["depth"])
    heads = _ints("backbone.heads", bb["heads"], 2, LIMITS["heads"])
    for dim, nh in zip(widths[3:], heads):
        if dim % nh:
            raise ValueError(f"model config: backbone width {dim} is not divisible by {nh} heads")
    _ints("backbone.dilations", bb["dilations"], None, LIMITS["dilation"])
    if len(bb["dilations"]) > LIMITS["branches"][1]:
        raise ValueError(f"model config: at most {LIMITS['branches'][1]} GL-SPS dilations")
    ratio = bb["mlp_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < float(ratio) <= 16:
        raise ValueError(f"model config: backbone.mlp_ratio must be a number in (0, 16], got {ratio!r}")
    if bb["attn"] not in ATTENTIONS:
        raise ValueError(f"model config: backbone.attn must be one of {sorted(ATTENTIONS)}, got {bb['attn']!r}")
    nk = d["neck"]
    _ints("neck.widths", nk["widths"], 3, LIMITS["width"])
    _int("neck.depth", nk["depth"], LIMITS["depth"])
    nu = d["neuron"]
    if "name" in nu and not isinstance(nu["name"], str):
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
        if key not in sac:
            continue  # the saccadic neuron's own default
        v = sac[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (abs(float(v)) < 1e6 and v == v):
            raise ValueError(f"model config: saccade.{key} must be a finite number, got {v!r}")
    if d["readout"] not in ("spikes", "current"):
        raise ValueError(f"model config: readout must be spikes or current, got {d['readout']!r}")
    prior = d["cls_prior"]
    if prior is not None and (isinstance(prior, bool) or not isinstance(prior, (int, float)) or not 0 < prior < 0.5):
        raise ValueError(f"model config: cls_prior must be a probability in (0, 0.5), got {prior!r}")
    names = d["names"]
    if names is not None:
        if isinstance(names, (list, tuple)):
            names = dict(enumerate(names))
        if not isinstance(names, dict) or sorted(int(k) if isinstance(k, (int, str)) and str(k).isdigit() else -1
                                                 for k in names) != list(range(nc)):
            raise ValueError(f"model config: names must give a name to each class 0..{nc - 1}")
        if not all(isinstance(v, str) and len(v) <= 200 for v in names.values()):
            raise ValueError("model config: class names must be strings")

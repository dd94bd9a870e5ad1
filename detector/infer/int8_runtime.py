"""The int8 runtime: the spiking detector as integer arithmetic on the CPU, through OpenVINO.

Every spiking layer's input is a count in {0..D}: an integer that uint8 holds exactly with scale 1 and
zero point 0. So the convolutions fed by spikes need no calibration: their inputs are quantised without
error, their weights per output channel to int8 (symmetric, scale = max |w| / 127), and the product is
accumulated in int32 and scaled back to float32, because the result is a membrane's input current (a
real number), not the input of another quantised layer. The only error is the weights' rounding, but
the network amplifies it: a flipped spike changes the next layer's input, and every layer after it
multiplies the differences. So each weight is a sum of int8 terms (each quantises the rounding error
of those before it, 254 times finer: int8 convolutions of the same input, summed), three in the
backbone, where a flip has the most layers ahead of it, and two in the neck and head (``TERMS``): 0.2 to
0.5 % of the counts then differ from eager's (eager's own float32 reassociation, batch norm unfolded
against folded, moves 0.06 to 0.4 %), against 4 % with two terms everywhere. Measured accuracy, speed
and the alternatives: docs/design.md, section 10; ``tests/test_int8.py`` counts the spikes that differ
on real images.

What stays float32: the encoding convolution (real pixels), the neurons (charge, fire, reset), the
attention's salience and the head's decoding (DFL). A convolution is quantised when its input is, by
the graph's own structure, a count (``count_bounds``): a neuron's output or a mask, passed on by
operations that only move or repeat values (reshape, concatenation, nearest-neighbour upsampling...)
or multiplied by another count (the attention's masked V), and its weights are constant.

How the graph is made (``build_graph``): the checkpoint is exported to ONNX (``detector.export``, height
and width dynamic), ONNX Runtime folds the constants (the head's folded readout weights are computed in
the graph), and each quantised convolution gets QuantizeLinear/DequantizeLinear on its input (scale 1,
uint8) and DequantizeLinear on its int8 weights, with no quantisation after it. OpenVINO's CPU plugin
reads the pairs as FakeQuantize and runs those convolutions as int8 x int8 -> int32 kernels (VNNI)
with the dequantisation fused into their output; ONNX Runtime does not (without a quantised output it
dequantises the weights and runs the float kernel, slower than float32 itself), hence OpenVINO
(measured: docs/design.md, section 10).

The graph depends on the weights and the term schedule only, so it is built once and cached in the
project's cache folder, named by the checkpoint's sha256, the schedule and this module's format version
(the first two also in its metadata, checked on load): other weights or another schedule never find
it, and a corrupt or missing cache file is rebuilt. OpenVINO compiles it for each input shape it meets
(about a second; the last few compilations are kept) in float32 precision for the unquantised parts
(left to itself it would choose bfloat16 on CPUs that have it).

``onnx``, ``onnxruntime`` (building the graph) and ``openvino`` (running it) are the optional extra
``int8``: ``pip install -e ".[int8]"``; they are imported only when this runtime is chosen.
"""

from __future__ import annotations

import sys
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..models.settings import ModelSettings
from .base import Runtime

FORMAT = 2  # the graph builder's version, part of the cache name: raise it when build_graph changes
# int8 terms per weight (``weight_terms``) by where a convolution lies: the first (prefix of its ONNX node name,
# terms) that matches. A flipped spike is amplified by every layer after it, so the backbone (``model.0``, the
# detector's first module) gets three terms and the neck and the head two (docs/design.md, section 10)
TERMS: tuple[tuple[str, int], ...] = (("/model.0/", 3), ("", 2))
COMPILED_SHAPES = 8  # compiled models kept (input shapes); evaluation's rect batches bring a handful
# operations that pass values on unchanged (moved, repeated or gathered): what they pass of a count is a count
COUNT_PRESERVING = {"Reshape", "Unsqueeze", "Squeeze", "Transpose", "Resize", "Slice", "Flatten", "Identity", "MaxPool",
                    "Split", "Gather", "Expand", "Tile"}
COMPARISONS = {"Greater", "GreaterOrEqual", "Less", "LessOrEqual", "Equal", "Not", "And", "Or", "Xor"}
UINT8_MAX = 255


def import_openvino():
    """``openvino`` without its usage telemetry. Importing the package imports its model converter,
    which through ``openvino_telemetry`` writes a usage counter and a client id under ``~/intel`` on
    every import (outside any folder the user named). The converter falls back to a stub that does
    nothing when that package cannot be imported, so it is hidden for this process before the first
    import; the runtime itself (``Core``, ``read_model``, ``compile_model``) never uses it."""
    sys.modules.setdefault("openvino_telemetry", None)
    import openvino

    return openvino


def require_int8():
    """onnx, onnxruntime and openvino, or a one-line error saying how to install them."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        import_openvino()
    except ImportError as e:
        raise ValueError(f"the int8 runtime needs the optional extra: pip install -e \".[int8]\" ({e.name} is missing)") from e


def _attr(node, name: str, default):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def count_bounds(graph) -> dict[str, int | None]:
    """For each tensor of an ONNX graph that feeds a convolution: the largest value it can hold if it
    is, by the graph's structure, a count (a non-negative integer), else None. Counts are made by a
    neuron (``Round(Clip(x, lo, hi))`` with constant ``0 <= lo``: at most ``hi``) or a comparison cast
    to a number (a mask: at most 1), and stay counts through count-preserving operations (max of a
    concatenation's inputs, product of a multiplication's)."""
    from onnx import numpy_helper

    producer = {o: n for n in graph.node for o in n.output}
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer if i.name}
    memo: dict[str, int | None] = {}

    def const(name: str) -> float | None:
        v = consts.get(name)
        return float(v) if v is not None and v.size == 1 else None

    def bound(t: str) -> int | None:
        if t in memo:
            return memo[t]
        memo[t] = None  # a valid graph has no cycle; this only ends the recursion
        n = producer.get(t)
        b = None
        if n is None:
            pass
        elif n.op_type == "Round":
            clip = producer.get(n.input[0])
            if clip is not None and clip.op_type == "Clip" and len(clip.input) == 3:
                lo, hi = const(clip.input[1]), const(clip.input[2])
                if lo is not None and hi is not None and 0 <= lo <= hi:
                    b = int(np.floor(hi + 0.5))  # Round of a value <= hi
        elif n.op_type == "Cast":
            src = producer.get(n.input[0])
            b = 1 if src is not None and src.op_type in COMPARISONS else None
        elif n.op_type in COUNT_PRESERVING and not (n.op_type == "Resize" and _attr(n, "mode", b"nearest") != b"nearest"):
            b = bound(n.input[0])
        elif n.op_type in ("Concat", "Mul"):
            parts = [bound(i) for i in n.input]
            if parts and all(p is not None for p in parts):
                b = max(parts) if n.op_type == "Concat" else int(np.prod(parts))
        memo[t] = b
        return b

    return {n.input[0]: bound(n.input[0]) for n in graph.node if n.op_type == "Conv"}


def quantize_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 per output channel (axis 0): ``(q, scale)`` with ``w ~ q * scale``; a channel of
    zeros gets scale 1."""
    w = w.astype(np.float64)
    peak = np.abs(w.reshape(w.shape[0], -1)).max(1)
    scale = np.where(peak > 0, peak / 127.0, 1.0)
    q = np.clip(np.round(w / scale.reshape(-1, *([1] * (w.ndim - 1)))), -127, 127).astype(np.int8)
    return q, scale.astype(np.float32)


def weight_terms(w: np.ndarray, terms: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``w`` as a sum of ``terms`` int8 tensors with per-channel scales: each term quantises what the
    ones before it left (the second term's scale is about 1/254 of the first's)."""
    out, rest = [], w.astype(np.float64)
    for _ in range(terms):
        q, scale = quantize_weights(rest)
        out.append((q, scale))
        rest = rest - q.astype(np.float64) * scale.astype(np.float64).reshape(-1, *([1] * (w.ndim - 1)))
    return out


def fold_constants(src: Path) -> "onnx.ModelProto":  # noqa: F821 - onnx is imported lazily
    """The ONNX graph ``src`` with its constant subgraphs computed (ONNX Runtime's basic level:
    standard ONNX operators only), so every convolution's weights are an initializer."""
    import onnx
    import onnxruntime as ort

    folded = src.with_name(f".{src.name}.folded")
    try:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        opts.log_severity_level = 3  # its notes on the initializers the folding left unused are no news
        ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
        return onnx.load(str(folded))
    finally:
        folded.unlink(missing_ok=True)


def quantize_model(model: "onnx.ModelProto", terms: Callable[[str], int]) -> dict[str, list[str]]:  # noqa: F821
    """Quantise the constant-folded ONNX ``model`` in place: every convolution fed by counts of at most
    255 (``count_bounds``) gets a uint8 input (scale 1, exact) and its weights as ``terms(name)`` int8
    convolutions summed in float32 (``weight_terms``; ``name`` is the convolution's node name; 0 terms
    keeps it float32). Returns the names of the convolutions quantised (``int8``) and kept float32
    (``float32``)."""
    from onnx import helper, numpy_helper

    g = model.graph
    weights = {i.name: i for i in g.initializer}
    bounds = count_bounds(g)
    g.initializer.extend([numpy_helper.from_array(np.array(1.0, np.float32), "int8/one"),
                          numpy_helper.from_array(np.array(0, np.uint8), "int8/zero_u8")])
    nodes, quantized_inputs, report = [], {}, {"int8": [], "float32": []}
    for n in g.node:
        x = n.input[0] if n.input else ""
        if (n.op_type != "Conv" or n.input[1] not in weights or (bounds.get(x) or UINT8_MAX + 1) > UINT8_MAX
                or terms(n.name) == 0):
            report["float32"] += [n.name] if n.op_type == "Conv" else []
            nodes.append(n)
            continue
        if x not in quantized_inputs:  # one Q/DQ pair per tensor, however many convolutions read it
            nodes.append(helper.make_node("QuantizeLinear", [x, "int8/one", "int8/zero_u8"], [f"{x}/u8"]))
            nodes.append(helper.make_node("DequantizeLinear", [f"{x}/u8", "int8/one", "int8/zero_u8"], [f"{x}/dq"]))
            quantized_inputs[x] = f"{x}/dq"
        w, out, k = n.input[1], n.output[0], terms(n.name)
        parts = []
        for i, (q, scale) in enumerate(weight_terms(numpy_helper.to_array(weights[w]), k)):
            g.initializer.extend([numpy_helper.from_array(q, f"{w}/i8.{i}"), numpy_helper.from_array(scale, f"{w}/scale.{i}"),
                                  numpy_helper.from_array(np.zeros(len(scale), np.int8), f"{w}/zero.{i}")])
            nodes.append(helper.make_node("DequantizeLinear", [f"{w}/i8.{i}", f"{w}/scale.{i}", f"{w}/zero.{i}"],
                                          [f"{w}/dq.{i}"], axis=0))
            inputs = [quantized_inputs[x], f"{w}/dq.{i}"] + (list(n.input[2:]) if i == 0 else [])  # the bias once
            conv = helper.make_node("Conv", inputs, [f"{out}/term.{i}" if k > 1 else out], name=f"{n.name}/term.{i}")
            conv.attribute.extend(n.attribute)
            nodes.append(conv)
            parts.append(conv.output[0])
        if k > 1:
            nodes.append(helper.make_node("Sum", parts, [out], name=f"{n.name}/sum"))
        report["int8"].append(n.name)
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]  # without the float weights the int8 ones replace
    del g.initializer[:]
    g.initializer.extend(kept)
    return report


def quantize_graph(src: Path, dst: Path, terms: Callable[[str], int]) -> dict[str, list[str]]:
    """Write ``dst``: the float ONNX graph ``src`` with constants folded (``fold_constants``) and
    quantised (``quantize_model``); returns ``quantize_model``'s report."""
    import onnx

    model = fold_constants(src)
    report = quantize_model(model, terms)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return report


def terms_text(schedule: tuple[tuple[str, int], ...]) -> str:
    """A term schedule (``TERMS``) as the text the graph's metadata carries: ``/model.0/=3;=2``."""
    return ";".join(f"{prefix}={k}" for prefix, k in schedule)


def terms_for(name: str, schedule: tuple[tuple[str, int], ...]) -> int:
    """The int8 terms of the convolution named ``name`` under ``schedule``: its first matching prefix's
    (0, float32, where none matches)."""
    return next((k for prefix, k in schedule if name.startswith(prefix)), 0)


def cache_path(sha: str, schedule: tuple[tuple[str, int], ...]) -> Path:
    """Where the graph of the weights with this sha256, quantised under ``schedule``, is cached: both
    are in the name (the schedule hashed), so other weights or another schedule never find it."""
    import hashlib

    from ..settings import cache_dir

    tag = hashlib.sha256(terms_text(schedule).encode()).hexdigest()[:12]
    return cache_dir("int8") / f"{sha}-t{tag}-v{FORMAT}-torch{torch.__version__.split('+')[0]}.onnx"


def build_graph(weights: Path, out: Path, schedule: tuple[tuple[str, int], ...]) -> dict[str, list[str]]:
    """The int8 graph of checkpoint ``weights``, its weights in int8 terms by ``schedule`` (``TERMS``),
    written to ``out`` (whole or not at all); returns the report of ``quantize_graph``. ValueError if a
    prefix of the schedule names no quantised convolution (the graph's names are not what it expects)."""
    import os

    from ultralytics.utils import LOGGER

    from ..models.settings import settings_of
    from ..weights import sha256
    from .onnx_graph import graph_metadata, trace_onnx
    from .torch_runtimes import EagerRuntime

    model = EagerRuntime.load(Path(weights), torch.device("cpu")).module.float().eval()  # batch norm folded
    # the wait (seconds) is long enough to say why; said once the weights have loaded (bad ones fail first)
    LOGGER.info(f"int8 runtime: building the integer graph of {Path(weights).name}, once for these weights "
                f"(cached in {out.parent}) ...")
    imgsz = settings_of(model).imgsz()  # the example size; height and width stay dynamic
    meta = {**graph_metadata(settings_of(model), imgsz, sha256(weights), dynamic_size=True),
            "int8_terms": terms_text(schedule)}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.float.onnx")  # the pid: two processes may build at once
    part = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        trace_onnx(model, tmp, torch.zeros(1, 3, imgsz, imgsz), meta, dynamic_size=True)
        report = quantize_graph(tmp, part, lambda name: terms_for(name, schedule))
        unmatched = [p for p, _ in schedule if p and not any(n.startswith(p) for n in report["int8"])]
        if unmatched:
            raise ValueError(f"int8 graph of {weights}: no quantised convolution is named {unmatched[0]}..., "
                             f"which the term schedule {terms_text(schedule)} expects")
        part.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    return report


def graph_settings(path: Path, sha: str, schedule: tuple[tuple[str, int], ...]) -> ModelSettings:
    """The settings in the int8 graph's metadata (any input size); ValueError if the graph is not of
    dynamic size or was made from other weights than those with this sha256 or under another term
    schedule."""
    import onnx

    from .onnx_runtime import read_metadata

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    if meta.get("dynamic_size") != "1" or meta.get("source_sha256") != sha or meta.get("int8_terms") != terms_text(schedule):
        raise ValueError(f"{path}: not the int8 graph of the weights with sha256 {sha} under the terms {terms_text(schedule)}")
    s = read_metadata(path, meta)
    return replace(s, train_imgsz=s.input_size, input_size=None)


class OpenVinoGraph:
    """An ONNX graph run by OpenVINO on the CPU, compiled for each input shape it meets (about a second;
    the last ``COMPILED_SHAPES`` kept) in float32 precision for what is not quantised (left to itself it
    would choose bfloat16 on CPUs that have it). Shared by the int8 runtime and the int8 YOLOv8
    (``ann_int8``), so both are run alike."""

    def __init__(self, graph: str | Path, threads: int | None = None):
        self.graph = Path(graph)
        self.core = import_openvino().Core()
        self.threads = int(threads or torch.get_num_threads())
        self.compiled: OrderedDict[tuple[int, ...], object] = OrderedDict()

    def compiled_for(self, shape: tuple[int, ...]):
        """The infer request compiled for one input shape (kept for the next calls; the oldest dropped)."""
        if shape in self.compiled:
            self.compiled.move_to_end(shape)
            return self.compiled[shape]
        model = self.core.read_model(str(self.graph))
        model.reshape({model.inputs[0].get_any_name(): list(shape)})
        c = self.core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": self.threads,
                                                   "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"})
        self.compiled[shape] = c.create_infer_request()
        if len(self.compiled) > COMPILED_SHAPES:
            self.compiled.popitem(last=False)
        return self.compiled[shape]

    def __call__(self, x: torch.Tensor | np.ndarray) -> np.ndarray:
        """The graph's first output for input ``x``."""
        x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x
        y = self.compiled_for(tuple(x.shape)).infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(y[0])

    def __deepcopy__(self, memo: dict) -> "OpenVinoGraph":
        # Ultralytics' validator deep-copies the model it is given; OpenVINO's objects cannot be copied, and
        # the compiled graphs are never changed by a call, so the copy is this graph
        return self


class Int8Runtime(Runtime):
    name = "int8"
    terms = TERMS  # the int8 terms of each convolution's weights

    def __init__(self, graph: str | Path, settings: ModelSettings, threads: int | None = None):
        require_int8()
        super().__init__(settings, torch.device("cpu"))
        self.graph = Path(graph)
        self.shapes = OpenVinoGraph(self.graph, threads)

    @classmethod
    def load(cls, path: Path, device: torch.device, amp: bool = False) -> "Int8Runtime":
        """The runtime for checkpoint ``path``: its cached graph, built first if missing, unreadable or
        not made from these weights."""
        from ..weights import sha256

        require_int8()  # the device (CPU) and AMP (none) were checked by load_runtime against the table
        sha = sha256(path)
        graph = cache_path(sha, cls.terms)
        try:
            settings = graph_settings(graph, sha, cls.terms) if graph.is_file() else None
        except Exception:  # noqa: BLE001 - a cache file cut short, damaged or foreign: rebuilt below
            settings = None
        if settings is None:
            import time

            from ultralytics.utils import LOGGER

            t0 = time.perf_counter()
            try:
                report = build_graph(path, graph, cls.terms)
            except OSError as e:  # the cache folder: read-only, full, not a folder
                raise ValueError(f"the int8 graph cannot be written to the cache folder {graph.parent} "
                                 f"({e.strerror or e}): set XDG_CACHE_HOME to a writable folder, or use "
                                 f"--runtime eager") from e
            by_terms = Counter(terms_for(n, cls.terms) for n in report["int8"])
            LOGGER.info(f"int8 graph of {path.name} built in {time.perf_counter() - t0:.0f} s: {len(report['int8'])} "
                        "convolutions int8 ("
                        + ", ".join(f"{c} in {k} terms" for k, c in sorted(by_terms.items(), reverse=True))
                        + f"), {len(report['float32'])} float32; cached as {graph}")
            settings = graph_settings(graph, sha, cls.terms)
        return cls(graph, replace(settings, source=str(path)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"the int8 runtime takes (batch, 3, H, W) with H and W multiples of 32, got {tuple(x.shape)}")
        return torch.from_numpy(self.shapes(x))

    def __deepcopy__(self, memo: dict) -> "Int8Runtime":
        # Ultralytics' validator deep-copies the model it is given; OpenVINO's objects cannot be copied, and
        # the compiled graphs are never changed by a call, so the copy is this runtime
        return self

    def __repr__(self) -> str:
        return f"Int8Runtime({self.settings.source} via {self.graph.name})"

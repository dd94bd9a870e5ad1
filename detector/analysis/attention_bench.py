"""Attention scaling benchmark: forward+backward time and peak memory of SSSA V1, SSSA V2 and the
Spikformer baseline (``ssa``) against the number of tokens N, on CPU, with fitted scaling exponents.

What one measured *step* is
    The attention module exactly as the backbone builds it (``detector.nn.make_attention``: input LIF,
    Q/K/V 1x1 conv + BN + LIF, salience / attention, saccadic neuron or attention LIF, output
    projection) in train mode, forward on a real-valued membrane map ``(T, B, C, H, W)`` with
    ``N = H*W`` tokens, then backward of a fixed random output gradient (weight and input gradients).
    So the numbers include the O(N) projections every variant shares; at small N those dominate and
    flatten the fitted exponents, which is why exponents are also fitted on the upper range of N.

Time
    Wall clock (``time.perf_counter``) of one step; at least ``repeats`` steps after one warm-up step,
    and more (up to 50) until ``min_time`` seconds of steps have run, so cheap configurations get many
    samples; PyTorch's intra-op threads as set (``threads``; recorded in the result). The table and
    the exponent fit use the fastest step (``time_s``): on a shared machine the slower repeats measure
    other processes (the rationale of Python's ``timeit``). The median is kept too (``time_median_s``).
    On a machine shared with other jobs, ``threads=1`` gives steadier numbers: with 2 OpenMP threads on
    2 busy cores every parallel region waits for the thread that is descheduled.

Peak memory
    The peak, during one step, of bytes allocated minus bytes freed through PyTorch's CPU allocator:
    the allocation/free events that ``torch.profiler.profile(profile_memory=True)`` records are
    replayed in time order and the running sum's maximum is taken. It counts every tensor storage
    created during the step (activations saved for backward, temporaries inside ops such as the N x N
    relevance matrix, gradients, the output). It does not count what was live before the step (weights,
    the input), memory that bypasses PyTorch's allocator (oneDNN scratch buffers, Python objects) or
    allocator fragmentation, so it is the step's tensor working set, not process RSS. It is measured in
    a separate, profiled step because the profiler slows ops down.

Skips
    Before a configuration runs, its peak is estimated (``estimate_peak_bytes``, a formula whose
    constants were fitted to measured peaks and rounded up); above ``max_mem_gb`` it is skipped with
    the reason. It is also skipped when the time predicted from the smaller sizes already measured
    (a power law fitted to them) exceeds ``max_seconds`` for the whole configuration. Exponents are fitted on the
    measured points only.
"""

from __future__ import annotations

import gc
import math
import platform
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterable, Sequence

import torch

from ..infer.options import opt

ATTENTIONS = ("ssa", "sssa_v1", "sssa_v2")
LABELS = {"ssa": "Spikformer SSA", "sssa_v1": "SSSA-V1", "sssa_v2": "SSSA-V2"}
DEFAULT_SIZES = (16, 24, 32, 48, 64, 96, 128)  # square token grids: N = 256 ... 16,384
DEFAULT_NEURON = {"name": "lif", "tau": 2.0, "v_threshold": 1.0, "surrogate": "atan"}

# Peak-memory model, in float32 elements: LINEAR[a] * T*B*C*N + QUADRATIC[a] * T*B*nh*N*N.
# Fitted to peaks measured with ``measure_peak_bytes`` (dim 64, 2 heads, T 4, N 256..4096: 18.75 maps
# of size T*B*C*N for every variant, plus 2.0 / 1.0 N x N maps per head for SSA / V1) and rounded up,
# so the estimate is an upper bound there (tests/test_attention_bench.py checks it at small N).
# At the peak SSA holds two N x N maps per (t, b, head): Q K^T and its scaled copy (saved for the
# backward of attn @ V), later their gradients; SSSA-V1 holds one: CroAtt in forward (not saved, the
# row sum's backward needs only its shape), the materialised gradient of CroAtt in backward.
# A fixed FIXED_BYTES covers what does not scale with N (weight gradients of the four 1x1 convs,
# many small per-timestep tensors); it only matters at toy sizes.
LINEAR = {"ssa": 20.0, "sssa_v1": 20.0, "sssa_v2": 20.0}
QUADRATIC = {"ssa": 2.0, "sssa_v1": 1.0, "sssa_v2": 0.0}
FIXED_BYTES = 64 * 1024


@dataclass
class BenchPoint:
    """One (attention, token grid) configuration: measured, or skipped with a reason."""

    attention: str
    grid: tuple[int, int]
    tokens: int
    est_peak_bytes: int
    status: str  # "ok" | "skipped"
    reason: str = ""
    time_s: float | None = None  # fastest forward+backward step, seconds (used for table and fit)
    time_median_s: float | None = None
    peak_bytes: int | None = None  # measured peak allocated during one step


def parse_grid(size: str | int | Sequence[int]) -> tuple[int, int]:
    """``32`` or ``"32"`` -> (32, 32); ``"24x40"`` -> (24, 40); ``(24, 40)`` -> (24, 40)."""
    if isinstance(size, str):
        parts = size.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
            raise ValueError(f"grid size must be 'S' or 'HxW', got {size!r}")
        dims = [int(p) for p in parts]
    elif isinstance(size, int):
        dims = [size]
    else:
        dims = [int(v) for v in size]
    H, W = (dims[0], dims[0]) if len(dims) == 1 else (dims[0], dims[1])
    if H < 1 or W < 1:
        raise ValueError(f"grid sides must be positive, got {H}x{W}")
    return H, W


def estimate_peak_bytes(attention: str, tokens: int, dim: int, heads: int, timesteps: int, batch: int) -> int:
    """Estimated peak bytes of one forward+backward step (see LINEAR / QUADRATIC)."""
    if attention not in LINEAR:
        raise ValueError(f"unknown attention {attention!r}; choose from {list(LINEAR)}")
    linear = LINEAR[attention] * timesteps * batch * dim * tokens
    quadratic = QUADRATIC[attention] * timesteps * batch * heads * tokens * tokens
    weight_grads = 4 * dim * dim + 8 * dim  # Q, K, V, output 1x1 convs and their BNs
    return int(4 * (linear + quadratic + weight_grads) + FIXED_BYTES)


def fit_exponent(ns: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(value) against log(N): the exponent k of value ~ c * N^k.

    Returns NaN with fewer than two distinct N. Values must be positive."""
    if len(ns) != len(values):
        raise ValueError("ns and values differ in length")
    if any(v <= 0 for v in values) or any(n <= 0 for n in ns):
        raise ValueError("fit_exponent needs positive N and values")
    if len(set(ns)) < 2:
        return math.nan
    xs, ys = [math.log(n) for n in ns], [math.log(v) for v in values]
    xm, ym = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - xm) * (y - ym) for x, y in zip(xs, ys)) / sum((x - xm) ** 2 for x in xs)


def _build(attention: str, dim: int, heads: int, timesteps: int, seed: int) -> torch.nn.Module:
    from detector.nn import make_attention  # deferred: keep importing this module cheap

    torch.manual_seed(seed)
    return make_attention(attention, dim, heads, timesteps, DEFAULT_NEURON).train()


def _step(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> None:
    """One forward+backward; gradients are dropped before so every step allocates them anew."""
    module.zero_grad(set_to_none=True)
    x.grad = None
    module(x).backward(grad)


def measure_peak_bytes(fn: Callable[[], None]) -> int:
    """Peak of (allocated - freed) bytes through PyTorch's CPU allocator while ``fn()`` runs.

    Replays the ``[memory]`` events of ``torch.profiler.profile(profile_memory=True)`` in time order."""
    from torch.profiler import ProfilerActivity, profile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Profiler clears events at the end of each cycle"
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events = [e for e in events if str(e.device_type()).endswith("CPU")]
    events.sort(key=lambda e: e.start_ns())
    live = peak = 0
    for e in events:
        live += e.nbytes()  # positive: allocation, negative: free
        peak = max(peak, live)
    return peak


def measure(attention: str, grid: tuple[int, int], dim: int = 64, heads: int = 2, timesteps: int = 4,
            batch: int = 1, repeats: int = 3, seed: int = 0, min_time: float = 0.0,
            max_steps: int = 50) -> tuple[list[float], int]:
    """Time at least ``repeats`` steps (after one warm-up), more until ``min_time`` seconds of steps
    have run (at most ``max_steps``), then profile one more step for peak memory.

    Returns (step times in seconds, peak bytes)."""
    H, W = grid
    module = _build(attention, dim, heads, timesteps, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(timesteps, batch, dim, H, W, generator=g).mul_(2.0).requires_grad_(True)
    grad = torch.randn(timesteps, batch, dim, H, W, generator=g)
    _step(module, x, grad)  # warm-up: first-call allocations, kernel selection
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_steps):
        t0 = time.perf_counter()
        _step(module, x, grad)
        times.append(time.perf_counter() - t0)
    module.zero_grad(set_to_none=True)
    x.grad = None
    peak = measure_peak_bytes(lambda: _step(module, x, grad))
    del module, x, grad
    if H * W >= 4096:
        gc.collect()  # return large buffers before the next configuration; cheap to skip at toy sizes
    return times, peak


def _predict_time(points: list[BenchPoint], tokens: int) -> float | None:
    """Step time predicted for ``tokens`` from this attention's measured points: a power law through
    the largest point with the exponent fitted on all of them (clipped to [1, 3]; 2 when only one
    point is known). Fitting on all points keeps one disturbed measurement from dominating."""
    done = [p for p in points if p.status == "ok"]
    if not done:
        return None
    last = max(done, key=lambda p: p.tokens)
    k = fit_exponent([p.tokens for p in done], [p.time_s for p in done]) if len(done) >= 2 else 2.0
    k = 2.0 if math.isnan(k) else min(3.0, max(1.0, k))
    return last.time_s * (tokens / last.tokens) ** k


@dataclass(frozen=True)
class BenchConfig:
    """The attention benchmark's settings, checked once at construction: layer width ``dim`` with
    ``heads`` heads, T, batch, timed ``repeats`` (each configuration runs at least ``min_time`` s),
    the skip rules (an estimated peak above ``max_mem_gb``, a predicted time above ``max_seconds``),
    the smallest N of the upper exponent fit, and the input seed."""

    dim: int = opt(64, "channels C", type=int)
    heads: int = opt(2, "attention heads", type=int)
    timesteps: int = opt(4, "T", type=int)
    batch: int = opt(1, "batch", type=int)
    repeats: int = opt(5, "least timed steps per configuration, after one warm-up", type=int)
    min_time: float = opt(1.0, "keep timing a configuration (up to 50 steps) until this many seconds of steps ran",
                          type=float)
    max_mem_gb: float = opt(4.0, "skip configurations estimated to need more", type=float)
    max_seconds: float = opt(120.0, "skip configurations predicted (from smaller sizes) to take longer", type=float)
    fit_min_tokens: int = opt(1024, "lower end of the upper-range exponent fit", type=int)
    seed: int = opt(0, "input seed", type=int)

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.repeats < 1:
            raise ValueError("repeats must be >= 1")


def run_benchmark(sizes: Iterable[str | int | Sequence[int]] = DEFAULT_SIZES, config: BenchConfig | None = None, *,
                  threads: int | None = None, attentions: Sequence[str] = ATTENTIONS,
                  log: Callable[[str], None] | None = print, **fields: Any) -> dict:
    """Run every (attention, grid) configuration, smallest grids first; return a JSON-able dict with
    ``config``, ``env``, ``points`` (one per configuration) and ``exponents`` (per attention).
    ``config`` is a ``BenchConfig`` (or its fields as keywords).

    ``threads``: torch intra-op threads for the run (restored afterwards); None keeps the current."""
    c = config if config is not None else BenchConfig(**fields)
    unknown = [a for a in attentions if a not in ATTENTIONS]
    if unknown or not attentions:
        raise ValueError(f"unknown attention(s) {unknown}; choose from {list(ATTENTIONS)}")
    grids = sorted({parse_grid(s) for s in sizes}, key=lambda g: (g[0] * g[1], g))
    log = log or (lambda _msg: None)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    env = dict(torch=torch.__version__, threads=torch.get_num_threads(), machine=platform.machine(),
               processor=platform.processor() or platform.machine(), python=platform.python_version())
    points: dict[str, list[BenchPoint]] = {a: [] for a in attentions}
    try:
        for grid in grids:
            for a in attentions:
                p = _run_one(a, grid, points[a], c)
                points[a].append(p)
                where = f"{LABELS[a]:>15} N={p.tokens:>6} ({grid[0]}x{grid[1]})"
                if p.status == "ok":
                    log(f"{where}: {p.time_s * 1e3:9.1f} ms  peak {p.peak_bytes / 2**20:9.1f} MiB "
                        f"(est. {p.est_peak_bytes / 2**20:.1f})")
                else:
                    log(f"{where}: skipped: {p.reason}")
    finally:
        torch.set_num_threads(old_threads)
    config_out = dict(asdict(c), grids=[list(g) for g in grids], attentions=list(attentions))
    return {
        "config": config_out,
        "env": env,
        "points": [{**asdict(p), "grid": list(p.grid)} for a in attentions for p in points[a]],
        "exponents": {a: fit_all(points[a], c.fit_min_tokens) for a in attentions},
    }


def _run_one(attention: str, grid: tuple[int, int], earlier: list[BenchPoint], c: BenchConfig) -> BenchPoint:
    """Measure one configuration, or skip it (memory estimate, or time predicted from ``earlier``)."""
    N = grid[0] * grid[1]
    est = estimate_peak_bytes(attention, N, c.dim, c.heads, c.timesteps, c.batch)
    p = BenchPoint(attention, grid, N, est, "skipped")
    predicted = _predict_time(earlier, N)
    budget = None if predicted is None else predicted * (c.repeats + 3) + c.min_time  # + warm-up, profiled step
    if est > c.max_mem_gb * 2**30:
        p.reason = f"estimated peak {est / 2**30:.1f} GiB > max-mem-gb {c.max_mem_gb:g}"
    elif budget is not None and budget > c.max_seconds:
        p.reason = f"predicted {budget:.0f} s for this configuration > max-seconds {c.max_seconds:g}"
    else:
        times, peak = measure(attention, grid, c.dim, c.heads, c.timesteps, c.batch, c.repeats, c.seed, c.min_time)
        p.status, p.time_s, p.time_median_s, p.peak_bytes = "ok", min(times), statistics.median(times), peak
    return p


def fit_all(points: Sequence[BenchPoint], fit_min_tokens: int) -> dict:
    """Time and memory exponents of one attention, on all measured points and on N >= fit_min_tokens."""
    ok = [p for p in points if p.status == "ok"]
    upper = [p for p in ok if p.tokens >= fit_min_tokens]

    def fit(ps, key):  # None (JSON null) when fewer than two points were measured
        k = fit_exponent([p.tokens for p in ps], [getattr(p, key) for p in ps]) if len(ps) >= 2 else math.nan
        return None if math.isnan(k) else k

    return {
        "time": fit(ok, "time_s"), "memory": fit(ok, "peak_bytes"),
        "time_upper": fit(upper, "time_s"), "memory_upper": fit(upper, "peak_bytes"),
        "tokens_all": [p.tokens for p in ok], "tokens_upper": [p.tokens for p in upper],
    }


def format_markdown(result: dict) -> str:
    """Two README-ready markdown tables: per-size time/peak memory, then the fitted exponents."""
    cfg = result["config"]
    atts = cfg["attentions"]
    by = {(p["attention"], tuple(p["grid"])): p for p in result["points"]}
    head = "| tokens N (grid) | " + " | ".join(f"{LABELS[a]} time (ms) | {LABELS[a]} peak (MiB)" for a in atts)
    lines = [
        f"Forward+backward of one attention module, CPU ({result['env']['threads']} threads, torch "
        f"{result['env']['torch']}), dim {cfg['dim']}, {cfg['heads']} heads, T={cfg['timesteps']}, batch "
        f"{cfg['batch']}; time: fastest of >= {cfg['repeats']} steps (more while under {cfg['min_time']:g} s); "
        "peak: tensor bytes allocated during one step.",
        "",
        head + " |",
        "|" + "---|" * (1 + 2 * len(atts)),
    ]
    for grid in (tuple(g) for g in cfg["grids"]):
        cells = []
        for a in atts:
            p = by[(a, grid)]
            if p["status"] == "ok":
                cells += [f"{p['time_s'] * 1e3:.1f}", f"{p['peak_bytes'] / 2**20:.1f}"]
            else:
                cells += ["skipped", f"(est. {p['est_peak_bytes'] / 2**30:.1f} GiB)"]
        lines.append(f"| {grid[0] * grid[1]:,} ({grid[0]}x{grid[1]}) | " + " | ".join(cells) + " |")

    def fmt(v):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

    def rng(ns):
        return f"{min(ns):,}-{max(ns):,}" if ns else "-"

    upper = f"N >= {cfg['fit_min_tokens']:,}"
    lines += [
        "",
        "| attention | time exponent (all N) | memory exponent (all N) | N range "
        f"| time exponent ({upper}) | memory exponent ({upper}) | N range |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in atts:
        e = result["exponents"][a]
        lines.append(f"| {LABELS[a]} | {fmt(e['time'])} | {fmt(e['memory'])} | {rng(e['tokens_all'])} | "
                     f"{fmt(e['time_upper'])} | {fmt(e['memory_upper'])} | {rng(e['tokens_upper'])} |")
    skipped = [p for p in result["points"] if p["status"] != "ok"]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{LABELS[p['attention']]} at N={p['tokens']:,} "
                                             f"({p['reason']})" for p in skipped) + "."]
    return "\n".join(lines)

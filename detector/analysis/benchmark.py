"""Speed benchmark: CPU latency and throughput of SNN-ViT-YOLO variants beside YOLOv8n, in one run.

Measured per (model, image size, batch): median wall time of a no-grad forward over ``repeats`` runs
after ``warmup`` runs; latency per image = time / batch; throughput = batch / time; peak memory = the
peak of bytes held through PyTorch's CPU allocator during one more, profiled forward (activations and
temporaries; the weights are counted separately as ``weights_mb``), replayed from the profiler's
allocation events as in the attention benchmark. (Sampling the process RSS, which this module did
first, read ~0 MB for any configuration after a larger one, because the allocator keeps freed pages.)
Achieved FLOP/s = dense model FLOPs
(Ultralytics' counter, every timestep counted) / time, as a fraction of this machine's measured fp32
matmul peak (``matmul_peak_gflops``), which says how well the hardware is used, not how much work a
spiking chip would do.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from .. import checks
from ..infer.options import ModelOptions, opt
from .attention_bench import measure_peak_bytes


@dataclass(frozen=True)
class BenchmarkOptions(ModelOptions):
    """``tools/benchmark.py``'s options, checked once at construction. The mode follows from them: a CUDA
    ``device`` runs the GPU table (``gpu_bench``), ``neurons`` the neuron implementations
    (``neuron_bench``), ``precision`` a bf16 against fp32 training step (``precision_bench``),
    ``size_plot`` the times by image size (``deploy_bench.speed_by_size``), ``variants`` the sweep of
    untrained variants (``run``), else the deployment table of the weights (``deploy_bench``). None: the mode's own default (its function's signature)."""

    threads: int | None = opt(None, "CPU threads (default: SNNVIT_THREADS, else every core)", type=int)
    data: str | None = opt(None, "GPU mode: dataset YAML for the training-epoch throughput")
    batch: int | None = opt(None, "deployment mode: inference batch", type=int)
    train_batch: int | None = opt(None, "deployment and GPU modes: training-step batch", type=int)
    compile: bool = opt(False, "deployment mode: also time torch.compile (slow to compile)", action="store_true")
    onnx: bool = opt(True, "deployment mode: skip ONNX Runtime", flag="--no-onnx", action="store_false")
    int8: bool = opt(True, "deployment mode: skip the int8 runtime (OpenVINO)", flag="--no-int8", action="store_false")
    train: bool = opt(True, "deployment mode: skip the training step", flag="--no-train", action="store_false")
    size_plot: str | None = opt(None, "ms per image against image size (eager, int8, YOLOv8n) plotted to PNG, at "
                                      "--batch and --sizes (default 320 416 512 640)", metavar="PNG")
    precision: str | None = opt(None, "time a training step in bf16 against fp32 (CPU autocast), the spiking model "
                                      "(CONFIG, default n-ilif) and YOLOv8n interleaved, at --imgsz (default 416) and "
                                      "--train-batch", nargs="?", const="n-ilif", metavar="CONFIG")
    variants: tuple[str, ...] | None = opt(None, "sweep mode: untrained variants (n s m)", nargs="+")
    sizes: tuple[int, ...] | None = opt(None, "sweep and --size-plot modes: image sizes", type=int, nargs="+")
    batches: tuple[int, ...] | None = opt(None, "sweep mode: batches", type=int, nargs="+")
    timesteps: int | None = opt(None, "sweep mode: T (default: each config's)", type=int)
    warmup: int | None = opt(None, "untimed runs first", type=int)
    repeats: int | None = opt(None, "timed runs", type=int)
    baseline: bool = opt(True, "sweep mode: skip YOLOv8n", flag="--no-baseline", action="store_false")
    neurons: bool = opt(False, "time the neuron implementations (SpikingJelly, fused C, PyTorch path, compiled) on "
                               "one layer", action="store_true")
    json: str | None = opt(None, "also write the report as JSON")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threads is not None:
            checks.positive_int("--threads", self.threads, 1024)
        checks.output_file(self.json, "--json")
        checks.output_file(self.size_plot, "--size-plot")

    def given(self, *names: str) -> dict[str, Any]:
        """The named options that were set (not None), for a mode function whose defaults apply otherwise."""
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best observed fp32 GEMM rate (GFLOP/s) on this machine with the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


@dataclass
class BenchResult:
    model: str
    imgsz: int
    batch: int
    timesteps: int | None
    params_m: float
    gflops_per_image: float
    ms_per_batch: float
    ms_per_image: float
    images_per_s: float
    peak_mem_mb: float  # activations and temporaries of one forward (allocator peak)
    weights_mb: float
    achieved_gflops: float
    fraction_of_peak: float


def run_times(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Wall times (s) of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def median_seconds(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    return statistics.median(run_times(fn, warmup, repeats))


def time_forward(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    with torch.no_grad():
        return run_times(fn, warmup, repeats)


def bench_model(name: str, model: torch.nn.Module, imgsz: int, batch: int, peak_gflops: float, warmup: int = 1,
                repeats: int = 3, timesteps: int | None = None) -> BenchResult:
    from ultralytics.utils.torch_utils import get_flops

    model = model.eval()
    gflops = float(get_flops(model, imgsz))  # per image at imgsz x imgsz
    x = torch.rand(batch, 3, imgsz, imgsz)
    times = time_forward(lambda: model(x), warmup, repeats)
    with torch.no_grad():
        peak = measure_peak_bytes(lambda: model(x))
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    t = statistics.median(times)
    achieved = gflops * batch / t
    return BenchResult(name, imgsz, batch, timesteps, sum(p.numel() for p in model.parameters()) / 1e6, gflops,
                       t * 1e3, t * 1e3 / batch, batch / t, peak / 2**20, weights / 2**20, achieved,
                       achieved / peak_gflops)


def build_models(variants: list[str], timesteps: int | None, baseline: bool = True) -> list[tuple[str, Any, int | None]]:
    """(name, model, T) for each SNN-ViT-YOLO variant and YOLOv8n (built from its YAML, no download)."""
    from ultralytics.nn.tasks import DetectionModel

    from ..models import SNNViTYOLO

    models = []
    for v in variants:
        m = SNNViTYOLO(v, nc=80, verbose=False, timesteps=timesteps)
        models.append((f"snnvit-yolo-{v}", m, m.timesteps))
    if baseline:
        models.append(("yolov8n", DetectionModel("yolov8n.yaml", nc=80, verbose=False), None))
    return models


def run(variants=("n", "s", "m"), sizes=(512, 640), batches=(1, 8), timesteps: int | None = None, warmup: int = 1,
        repeats: int = 3, baseline: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    from .. import checks

    sizes = [checks.imgsz(s) for s in sizes]
    peak = matmul_peak_gflops()
    log(f"fp32 matmul peak: {peak:.1f} GFLOP/s on {torch.get_num_threads()} threads")
    results = []
    for name, model, T in build_models(list(variants), timesteps, baseline):
        for s in sizes:
            for b in batches:
                r = bench_model(name, model, s, b, peak, warmup, repeats, T)
                results.append(r)
                log(f"{r.model:>14s} T={r.timesteps or '-'} {s}px b{b}: {r.ms_per_image:8.1f} ms/img "
                    f"{r.images_per_s:6.2f} img/s  peak {r.peak_mem_mb:7.1f} MB  {r.fraction_of_peak:5.1%} of peak")
    return {"matmul_peak_gflops": peak, "threads": torch.get_num_threads(), "results": [asdict(r) for r in results]}


def markdown(report: dict[str, Any]) -> str:
    lines = [f"fp32 matmul peak {report['matmul_peak_gflops']:.0f} GFLOP/s, {report['threads']} threads.", "",
             "| model | T | params | imgsz | batch | ms / image | images / s | peak activation mem (MB) | weights (MB) | GFLOPs / image | % of peak |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        lines.append(f"| {r['model']} | {r['timesteps'] or '-'} | {r['params_m']:.2f} M | {r['imgsz']} | {r['batch']} | "
                     f"{r['ms_per_image']:.1f} | {r['images_per_s']:.2f} | {r['peak_mem_mb']:.0f} | {r['weights_mb']:.1f} | "
                     f"{r['gflops_per_image']:.1f} | {100 * r['fraction_of_peak']:.1f} |")
    return "\n".join(lines)

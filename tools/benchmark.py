#!/usr/bin/env python
"""Speed benchmarks, each beside YOLOv8n in the same run (CPU, or a CUDA GPU with --device).

    python tools/benchmark.py --json deploy.json                 # the shipped model: PyTorch, ONNX Runtime, int8; training step
    python tools/benchmark.py --compile --json deploy.json       # ... and torch.compile (slow to compile, reported)
    taskset -c 0 python tools/benchmark.py --threads 1 --no-onnx # on one core (others busy), one thread
    python tools/benchmark.py --device 0 --data data/ssdd/data.yaml --json gpu.json   # the GPU table (+ a training epoch)
    python tools/benchmark.py --variants n s m --sizes 512 640 --batches 1 8 --json sweep.json   # untrained variants
    python tools/benchmark.py --neurons --compile --json neurons.json   # neuron implementations on one layer
    python tools/benchmark.py --precision --threads 2 --imgsz 416 --train-batch 8   # training step, bf16 vs fp32
    python tools/benchmark.py --threads 2 --size-plot docs/results/speed_by_size.png --json size.json   # eager, int8, YOLOv8n

The first form prints the ratios to YOLOv8n that the project targets (PyTorch eager inference <= 1.5x,
a training step <= 2.5x) and the fraction of the machine's measured matmul peak. With --device (a CUDA
GPU): inference at batch 1 and 32, 320 and 640 px, fp32 and AMP, eager and as a CUDA graph, a training
step, and with --data the images per second of a real training epoch.
"""

import argparse
import json

import _bootstrap  # noqa: F401

import detector  # noqa: F401
from detector.analysis.benchmark import BenchmarkOptions


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _bootstrap.add_options(ap, BenchmarkOptions)  # --weights, --imgsz, --device, ... each mode's own flags
    a = ap.parse_args(argv)
    if getattr(a, "weights", None) == "list":
        return _bootstrap.list_weights()
    o = _bootstrap.options(BenchmarkOptions, a)
    import torch

    if o.threads is not None:
        torch.set_num_threads(o.threads)
    if o.device.is_cuda:
        from detector.analysis.gpu_bench import gpu_markdown, gpu_report

        rep = gpu_report(o.weights, o.device, data=o.data, **o.given("train_batch", "warmup", "repeats"))
        print(gpu_markdown(rep))
    elif o.precision:
        from detector.analysis.precision_bench import precision_markdown, precision_report

        rep = precision_report(o.precision, **({"batch": o.train_batch} if o.train_batch is not None else {}),
                               **o.given("imgsz", "warmup", "repeats"))
        print(precision_markdown(rep))
    elif o.neurons:
        from detector.analysis.neuron_bench import neuron_report

        rep = neuron_report(compile=o.compile, **o.given("repeats"))
    elif o.size_plot:
        from detector.analysis.deploy_bench import plot_speed_by_size, speed_by_size

        rep = speed_by_size(o.weights, **o.given("sizes", "batch", "warmup", "repeats"))
        print(f"plot: {plot_speed_by_size(rep, o.size_plot)}")
    elif o.variants:
        from detector.analysis.benchmark import markdown, run

        rep = run(o.variants, timesteps=o.timesteps, baseline=o.baseline,
                  **o.given("sizes", "batches", "warmup", "repeats"))
        print(markdown(rep))
    else:
        from detector.analysis.deploy_bench import deployment_markdown, deployment_report

        if o.onnx:
            from detector.infer.onnx_runtime import require_onnx

            require_onnx()
        if o.int8:
            from detector.infer.int8_runtime import require_int8

            require_int8()
        runtimes = tuple(n for n, on in (("compiled", o.compile), ("onnx", o.onnx), ("int8", o.int8)) if on)
        rep = deployment_report(o.weights, o.imgsz, runtimes=runtimes, train=o.train,
                                **o.given("batch", "train_batch", "warmup", "repeats"))
        print(deployment_markdown(rep))
    if o.json:
        from detector.files import atomic_write_text

        atomic_write_text(o.json, json.dumps(rep, indent=2))  # written whole or not at all
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

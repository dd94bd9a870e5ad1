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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None, help="deployment mode: " + _bootstrap.WEIGHTS_HELP)
    ap.add_argument("--device", default="cpu", help="cpu (default), or a CUDA GPU (0, cuda:N): the GPU table")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: SNNVIT_THREADS, else every core)")
    ap.add_argument("--data", default=None, help="GPU mode: dataset YAML for the training-epoch throughput")
    ap.add_argument("--imgsz", type=int, default=None, help="deployment mode: image size (default: the weights')")
    ap.add_argument("--batch", type=int, default=1, help="deployment mode: inference batch")
    ap.add_argument("--train-batch", type=int, default=8, help="deployment mode: training-step batch")
    ap.add_argument("--compile", action="store_true", help="deployment mode: also time torch.compile (slow to compile)")
    ap.add_argument("--no-onnx", action="store_true", help="deployment mode: skip ONNX Runtime")
    ap.add_argument("--no-int8", action="store_true", help="deployment mode: skip the int8 runtime (OpenVINO)")
    ap.add_argument("--no-train", action="store_true", help="deployment mode: skip the training step")
    ap.add_argument("--variants", nargs="+", default=None, help="sweep mode: untrained variants (n s m)")
    ap.add_argument("--sizes", nargs="+", type=int, default=None,
                    help="sweep mode: image sizes (default 512 640); --size-plot: (default 320 416 512 640)")
    ap.add_argument("--size-plot", default=None, metavar="PNG", help="ms per image against image size (eager, int8, "
                    "YOLOv8n) plotted to PNG, at --batch")
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 8], help="sweep mode: batches")
    ap.add_argument("--timesteps", type=int, default=None, help="sweep mode: T (default: each config's)")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-baseline", action="store_true", help="sweep mode: skip YOLOv8n")
    ap.add_argument("--neurons", action="store_true", help="time the neuron implementations (SpikingJelly, fused C, "
                    "PyTorch path, compiled) on one layer")
    ap.add_argument("--precision", nargs="?", const="n-ilif", default=None, metavar="CONFIG",
                    help="time a training step in bf16 against fp32 (CPU autocast), the spiking model (CONFIG, default "
                         "n-ilif) and YOLOv8n interleaved, at --imgsz (default 416) and --train-batch")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    if a.weights == "list":
        return _bootstrap.list_weights()
    import torch

    from detector import checks
    from detector.devices import resolve_device

    checks.output_file(a.json, "--json")
    if a.threads is not None:
        torch.set_num_threads(checks.positive_int("--threads", a.threads, 1024))
    if resolve_device(a.device).is_cuda:
        from detector.analysis.gpu_bench import gpu_markdown, gpu_report

        rep = gpu_report(a.weights, a.device, data=a.data, warmup=10 if a.warmup is None else a.warmup,
                         repeats=50 if a.repeats is None else a.repeats)
        print(gpu_markdown(rep))
    elif a.precision:
        from detector.analysis.precision_bench import precision_markdown, precision_report

        rep = precision_report(a.precision, 416 if a.imgsz is None else checks.positive_int("--imgsz", a.imgsz, 8192),
                               checks.positive_int("--train-batch", a.train_batch, 1024), 1,
                               2 if a.warmup is None else a.warmup, 10 if a.repeats is None else a.repeats)
        print(precision_markdown(rep))
    elif a.neurons:
        from detector.analysis.neuron_bench import neuron_report

        rep = neuron_report(repeats=10 if a.repeats is None else a.repeats, compile=a.compile)
    elif a.size_plot:
        from detector.analysis.deploy_bench import SIZE_PLOT_SIZES, plot_speed_by_size, speed_by_size

        checks.output_file(a.size_plot, "--size-plot")
        rep = speed_by_size(a.weights, a.sizes or SIZE_PLOT_SIZES, a.batch, 2 if a.warmup is None else a.warmup,
                            10 if a.repeats is None else a.repeats)
        print(f"plot: {plot_speed_by_size(rep, a.size_plot)}")
    elif a.variants:
        from detector.analysis.benchmark import markdown, run

        rep = run(a.variants, a.sizes or [512, 640], a.batches, a.timesteps, 1 if a.warmup is None else a.warmup,
                  3 if a.repeats is None else a.repeats, not a.no_baseline)
        print(markdown(rep))
    else:
        from detector.analysis.deploy_bench import deployment_markdown, deployment_report

        if not a.no_onnx:
            from detector.infer.onnx_runtime import require_onnx

            require_onnx()
        if not a.no_int8:
            from detector.infer.int8_runtime import require_int8

            require_int8()
        rep = deployment_report(a.weights, a.imgsz, a.batch, a.train_batch, a.compile, not a.no_onnx,
                                2 if a.warmup is None else a.warmup, 10 if a.repeats is None else a.repeats,
                                int8=not a.no_int8, train=not a.no_train)
        print(deployment_markdown(rep))
    if a.json:
        from detector.files import atomic_write_text

        atomic_write_text(a.json, json.dumps(rep, indent=2))  # written whole or not at all
    return 0


if __name__ == "__main__":
    raise SystemExit(_bootstrap.cli(main))

"""GPU benchmark (``tools/benchmark.py --device 0``): the shipped model beside YOLOv8n on one CUDA GPU, in
one run.

* inference at each image size and batch (default 320 / 640 px, batch 1 / 32), fp32 and AMP (fp16
  autocast): the spiking model in eager PyTorch (batch norm folded) and as a CUDA graph (the
  ``cudagraph`` runtime: captured once per shape, replayed without kernel launches), YOLOv8n in eager
  PyTorch with batch norm folded (as Ultralytics runs it); ms per batch, ms per image, images per second;
* the CUDA graph's exactness: its largest difference from eager on the same input, per row;
* one training step (forward, loss, backward, optimizer step, AMP with a gradient scaler as the trainer
  runs it) of each model;
* with ``data``: images per second over a real training epoch of each (Ultralytics' trainer, the second
  of two epochs, no validation), the training set's size over the epoch's wall time.

Times are medians of ``repeats`` synchronised calls after ``warmup`` calls, the models compared taking
turns within each round. Targets (issue 22): batch-1 latency at 320 px <= 1.5x YOLOv8n's, and at 640 px
and batch 32 at least YOLOv8n's images per second.
"""

from __future__ import annotations

import csv
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

TARGETS = {"latency_b1_320": 1.5, "throughput_b32_640": 1.0}


def cuda_seconds(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, float]:
    """Median synchronised wall time of each function, taking turns within each round."""
    from .deploy_bench import interleaved_seconds

    def synced(fn):
        def run():
            torch.cuda.synchronize()
            fn()
            torch.cuda.synchronize()
        return run

    return interleaved_seconds({k: synced(fn) for k, fn in fns.items()}, warmup, repeats)


def yolo_runner(model: torch.nn.Module, amp: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(x):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            return model(x)
    return run


def train_step_seconds_cuda(model: torch.nn.Module, imgsz: int, batch: int, nc: int, device: torch.device, warmup: int,
                            repeats: int) -> float:
    """One AMP training step (autocast forward and loss, scaled backward, optimizer step), synchronised."""
    from ultralytics.cfg import get_cfg

    from .deploy_bench import synthetic_batch

    model.args = get_cfg()
    model.criterion = None
    model.to(device).train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda")
    data = {k: v.to(device) for k, v in synthetic_batch(batch, imgsz, nc).items()}

    def step():
        with torch.autocast("cuda", dtype=torch.float16):
            loss, _ = model.loss(data)
        scaler.scale(loss.sum()).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    t = cuda_seconds({"step": step}, warmup, repeats)["step"]
    model.eval()
    return t


def epoch_images_per_s(data: str | Path, device: str, imgsz: int, batch: int, workers: int = 8) -> dict[str, float]:
    """Images per second of the second of two training epochs (no validation, no plots) of the shipped
    model's config and of YOLOv8n on ``data``: the training set's size over the epoch's wall time, from
    Ultralytics' results.csv (its ``time`` column is the time since the start, after each epoch)."""
    from ..engine.baseline import train_baseline
    from ..engine.trainer import train

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        common = dict(epochs=2, imgsz=imgsz, batch=batch, device=device, val=False, plots=False, workers=workers,
                      project=d, exist_ok=True)
        runs = {"snnvit-yolo": lambda: train(data, model="n-ilif", name="snn", **common),
                "yolov8n": lambda: train_baseline(data, name="yolo", **common)}
        for name, run in runs.items():
            trainer = run()
            rows = list(csv.DictReader(open(Path(trainer.save_dir) / "results.csv", encoding="utf-8")))
            times = [float(r["time"]) for r in rows]
            out[name] = len(trainer.train_loader.dataset) / (times[1] - times[0])
    return out


def gpu_report(weights: str | Path | None = None, device: str = "0", sizes=(320, 640), batches=(1, 32),
               train_batch: int = 16, data: str | Path | None = None, warmup: int = 10, repeats: int = 50,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    from ultralytics.nn.tasks import DetectionModel

    from ..devices import resolve_device
    from ..infer import load_runtime
    from ..infer.torch_runtimes import CudaGraphRuntime, EagerRuntime
    from ..weights import load_model

    dev = resolve_device(device)
    if not dev.is_cuda:
        raise ValueError("the GPU benchmark needs a CUDA device (--device 0)")
    base = load_runtime(weights, dev)  # eager, folded
    nc = len(base.settings.names)
    yolo = DetectionModel("yolov8n.yaml", nc=nc, verbose=False).eval()
    yolo.fuse(verbose=False)
    yolo.to(dev.torch)
    log(f"{torch.cuda.get_device_name(dev.torch)}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    rows: list[dict[str, Any]] = []
    for size in sizes:
        for batch in batches:
            x = torch.rand(batch, 3, size, size, device=dev.torch)
            for amp in (False, True):
                eager = EagerRuntime(base.module, dev.torch, amp)
                graph = CudaGraphRuntime(base.module, dev.torch, amp)
                y = yolo_runner(yolo, amp)
                diff = float((graph(x) - eager(x)).abs().max())
                t = cuda_seconds({"eager": lambda: eager(x), "graph": lambda: graph(x), "yolo": lambda: y(x)},
                                 warmup, repeats)
                for model, runtime, key in (("snnvit-yolo", "eager", "eager"), ("snnvit-yolo", "cudagraph", "graph"),
                                            ("yolov8n", "eager", "yolo")):
                    r = {"model": model, "runtime": runtime, "imgsz": size, "batch": batch,
                         "precision": "amp" if amp else "fp32", "ms_per_batch": t[key] * 1e3,
                         "ms_per_image": t[key] * 1e3 / batch, "images_per_s": batch / t[key]}
                    if runtime == "cudagraph":
                        r["max_abs_diff_to_eager"] = diff
                        r["neuron_path"] = graph.neuron_path
                    rows.append(r)
                    log(f"{model:>12s} {runtime:>9s} {size:4d} px b{batch:<3d} {r['precision']:>4s}: "
                        f"{r['ms_per_batch']:8.2f} ms/batch {r['images_per_s']:9.1f} img/s")
    t_snn = train_step_seconds_cuda(load_model(weights), 320, train_batch, nc, dev.torch, 3, 10)
    t_yolo = train_step_seconds_cuda(DetectionModel("yolov8n.yaml", nc=nc, verbose=False), 320, train_batch, nc,
                                     dev.torch, 3, 10)
    log(f"training step (batch {train_batch}, 320 px, AMP): snnvit-yolo {t_snn * 1e3:.1f} ms, yolov8n {t_yolo * 1e3:.1f} ms")

    def pick(model, runtime, size, batch, precision="fp32"):
        return next(r for r in rows if (r["model"], r["runtime"], r["imgsz"], r["batch"], r["precision"])
                    == (model, runtime, size, batch, precision))

    ratios = {}
    if 320 in sizes and 1 in batches:
        ratios["latency_b1_320"] = (pick("snnvit-yolo", "cudagraph", 320, 1)["ms_per_image"]
                                    / pick("yolov8n", "eager", 320, 1)["ms_per_image"])
    if 640 in sizes and 32 in batches:
        ratios["throughput_b32_640"] = (max(pick("snnvit-yolo", rt, 640, 32, p)["images_per_s"]
                                            for rt in ("eager", "cudagraph") for p in ("fp32", "amp"))
                                        / max(pick("yolov8n", "eager", 640, 32, p)["images_per_s"] for p in ("fp32", "amp")))
    for k, v in ratios.items():
        log(f"{k}: {v:.2f} (target {'<=' if k.startswith('latency') else '>='} {TARGETS[k]})")
    rep = {"device": torch.cuda.get_device_name(dev.torch), "torch": torch.__version__, "rows": rows,
           "train_step_ms": {"snnvit-yolo": t_snn * 1e3, "yolov8n": t_yolo * 1e3, "batch": train_batch},
           "ratios": ratios, "targets": TARGETS}
    if data:
        rep["epoch_images_per_s"] = epoch_images_per_s(data, dev.ultralytics, 320, train_batch)
        log(f"training epoch (320 px, batch {train_batch}): " + ", ".join(
            f"{k} {v:.0f} img/s" for k, v in rep["epoch_images_per_s"].items()))
    return rep


def gpu_markdown(rep: dict[str, Any]) -> str:
    lines = [f"{rep['device']}, torch {rep['torch']}.", "",
             "| model | runtime | px | batch | precision | ms / batch | ms / image | images / s | CUDA graph vs eager (max abs) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        d = f"{r['max_abs_diff_to_eager']:.2g} ({r['neuron_path']} neurons)" if "max_abs_diff_to_eager" in r else ""
        lines.append(f"| {r['model']} | {r['runtime']} | {r['imgsz']} | {r['batch']} | {r['precision']} | "
                     f"{r['ms_per_batch']:.2f} | {r['ms_per_image']:.3f} | {r['images_per_s']:.0f} | {d} |")
    t = rep["train_step_ms"]
    lines += ["", f"Training step (batch {t['batch']}, 320 px, AMP): snnvit-yolo {t['snnvit-yolo']:.1f} ms, "
              f"YOLOv8n {t['yolov8n']:.1f} ms."]
    if "epoch_images_per_s" in rep:
        lines.append("Training epoch: " + ", ".join(f"{k} {v:.0f} images/s" for k, v in rep["epoch_images_per_s"].items()) + ".")
    lines += ["Ratios: " + ", ".join(f"{k} {v:.2f} (target {TARGETS[k]})" for k, v in rep["ratios"].items())]
    return "\n".join(lines)

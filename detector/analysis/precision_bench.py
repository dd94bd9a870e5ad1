"""Training-step speed in bf16 against fp32 on this CPU: the spiking model and YOLOv8n in one run.

What ``amp`` buys on the CPU (``detector.precision``): one training step (forward, Ultralytics' detection
loss, backward, SGD step; ``deploy_bench.train_step``) of an untrained spiking model (a config, by default
``n-ilif``, the shipped SSDD model's) and of YOLOv8n, each in fp32 and under bf16 autocast, the four taking
turns within every round (``interleaved_seconds``) so that a load that comes and goes weighs on all alike.
Reported: median ms per step, images per second, and the speed-up of bf16 over fp32 per model, with the
machine's load average before and after (other work on the machine moves the numbers; the ratios less).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from ..precision import cpu_has_bf16
from .deploy_bench import interleaved_seconds, train_step

TARGET = 1.5  # bf16 training throughput over fp32 for the spiking model (issue 29)


def precision_report(model: str = "n-ilif", imgsz: int = 416, batch: int = 8, nc: int = 1, warmup: int = 2,
                     repeats: int = 10, log: Callable[[str], None] = print) -> dict[str, Any]:
    from ultralytics.nn.tasks import DetectionModel

    from ..models import SNNViTYOLO
    from ..nn import kernels

    if not cpu_has_bf16():
        log("note: this CPU has no native bf16 (training would run fp32 here); bf16 is emulated and slow")
    torch.manual_seed(0)
    models = {"snnvit-yolo": SNNViTYOLO(model, nc=nc, verbose=False),
              "yolov8n": DetectionModel("yolov8n.yaml", nc=nc, verbose=False)}
    log(f"training step: {model} and YOLOv8n, {imgsz} px, batch {batch}, {torch.get_num_threads()} threads, "
        f"neuron kernel {kernels.backend_name()}; fp32 and bf16 interleaved, median of {repeats}")
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    steps = {f"{name} {p}": train_step(m, imgsz, batch, nc, torch.bfloat16 if p == "bf16" else None)
             for name, m in models.items() for p in ("fp32", "bf16")}
    sec = interleaved_seconds(steps, warmup, repeats)
    rows = []
    for name in models:
        fp32, bf16 = sec[f"{name} fp32"], sec[f"{name} bf16"]
        rows.append({"model": name, "fp32_ms": fp32 * 1e3, "bf16_ms": bf16 * 1e3, "fp32_img_s": batch / fp32,
                     "bf16_img_s": batch / bf16, "speedup": fp32 / bf16})
    for m in models.values():
        m.eval()
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"config": model, "imgsz": imgsz, "batch": batch, "threads": torch.get_num_threads(),
            "load_average": [load_before, load_after],
            "cpu_bf16": cpu_has_bf16(), "repeats": repeats, "rows": rows, "target_speedup": TARGET,
            "meets_target": rows[0]["speedup"] >= TARGET}


def precision_markdown(rep: dict[str, Any]) -> str:
    lines = [f"Training step, {rep['imgsz']} px, batch {rep['batch']}, {rep['threads']} threads "
             f"(CPU with native bf16: {'yes' if rep['cpu_bf16'] else 'no'}; load average before / after: "
             f"{' / '.join('-' if v is None else f'{v:.1f}' for v in rep['load_average'])}):", "",
             "| model | fp32 ms | bf16 ms | fp32 img/s | bf16 img/s | bf16 / fp32 throughput |", "|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['model']} | {r['fp32_ms']:.0f} | {r['bf16_ms']:.0f} | {r['fp32_img_s']:.1f} | "
                     f"{r['bf16_img_s']:.1f} | {r['speedup']:.2f}x |")
    lines += ["", f"spiking model bf16 speed-up {rep['rows'][0]['speedup']:.2f}x (target >= {rep['target_speedup']}x): "
              f"{'met' if rep['meets_target'] else 'missed'}"]
    return "\n".join(lines)

"""Deployment benchmark: the shipped model beside YOLOv8n, in one run, on this CPU.

Rows (same image size and batch for every row):

* the shipped spiking model as the runtimes run it (``detector.infer``): PyTorch eager with batch norm
  folded into the synaptic convolutions (fused neuron kernels), the same without folding (the model as
  trained: the folding's own gain), PyTorch compiled (the ``compiled`` runtime; opt-in, its compile
  time is reported, and a rerun finds the compilation in the cache), ONNX Runtime (``detector.export``);
* YOLOv8n with random weights and the shipped model's classes: PyTorch eager with batch norm folded into
  its convolutions (how Ultralytics runs it for inference), and ONNX Runtime;
* one training step (forward, Ultralytics' detection loss, backward, optimizer step) of each model at
  ``train_batch``.

Inference times are medians over ``repeats`` rounds after ``warmup`` rounds, the models compared
taking turns within each round (``interleaved_seconds``), so a load that comes and goes on the
machine weighs on both sides of a ratio. Ratios are to YOLOv8n in the same run and the same runtime
(PyTorch to PyTorch, ONNX Runtime to ONNX Runtime); the project's targets are PyTorch eager inference
<= 1.5x and a training step <= 2.5x. "% of peak" = dense GFLOPs (every timestep counted) per second over
the machine's measured fp32 matmul peak.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from .benchmark import matmul_peak_gflops, median_seconds

TARGETS = {"inference": 1.5, "train_step": 2.5}  # PyTorch eager inference (issue 22); a training step


def synthetic_batch(batch: int, imgsz: int, nc: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random images with two boxes each, in the layout Ultralytics' loss takes."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * batch
    xy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=g) * 0.2 + 0.05
    return {"img": torch.rand(batch, 3, imgsz, imgsz, generator=g), "batch_idx": torch.arange(batch).repeat_interleave(2).float(),
            "cls": torch.randint(0, nc, (n, 1), generator=g).float(), "bboxes": torch.cat((xy, wh), 1)}


def train_step_seconds(model: torch.nn.Module, imgsz: int, batch: int, nc: int, warmup: int, repeats: int) -> float:
    from ultralytics.cfg import get_cfg

    model.args = get_cfg()
    model.criterion = None
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    data = synthetic_batch(batch, imgsz, nc)

    def step():
        loss, _ = model.loss(data)
        loss.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    t = median_seconds(step, warmup, repeats)
    model.eval()
    return t


def onnx_yolo(model: torch.nn.Module, imgsz: int, batch: int, path: Path):
    """YOLOv8n exported the way the project exports its own model (decoded predictions)."""
    import onnxruntime as ort

    head = model.model[-1]
    head.export = True
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(batch, 3, imgsz, imgsz),), str(path), input_names=["images"],
                          output_names=["predictions"], opset_version=17, dynamo=False)
    head.export = False
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def interleaved_seconds(fns: dict[str, Callable[[], Any]], warmup: int, repeats: int) -> dict[str, float]:
    """Median wall time of each function, timed in rounds (one call of each per round) so that a load
    that comes and goes on the machine falls on all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def deployment_report(weights: str | Path | None = None, imgsz: int | None = None, batch: int = 1, train_batch: int = 8,
                      compile: bool = False, onnx: bool = True, warmup: int = 2, repeats: int = 10,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import get_flops

    from ..infer import load_runtime
    from ..infer.torch_runtimes import CompiledRuntime
    from ..nn import kernels
    from ..weights import load_model

    rt = load_runtime(weights)  # eager: batch norm folded, as every tool runs it
    model = rt.module
    unfolded = load_model(weights)  # the model as trained, for the folding's own gain
    imgsz = rt.settings.imgsz() if imgsz is None else imgsz  # checked by BenchmarkOptions, at the door
    nc = len(rt.settings.names)
    peak = matmul_peak_gflops()
    log(f"fp32 matmul peak {peak:.0f} GFLOP/s on {torch.get_num_threads()} thread(s); imgsz {imgsz}, batch {batch}, "
        f"training batch {train_batch}; neuron kernel: {kernels.backend_name()}")
    x = torch.rand(batch, 3, imgsz, imgsz)
    yolo = DetectionModel("yolov8n.yaml", nc=nc, verbose=False).eval()
    snn_gflops = float(get_flops(unfolded, imgsz))  # dense work of the graph (folding removes only batch norms)
    yolo_gflops = float(get_flops(yolo, imgsz))
    rows: list[dict[str, Any]] = []

    def add(name: str, runtime: str, seconds: float, gflops: float, extra: dict | None = None) -> None:
        r = {"model": name, "runtime": runtime, "ms_per_image": seconds * 1e3 / batch, "gflops_per_image": gflops,
             "fraction_of_peak": gflops * batch / seconds / peak, **(extra or {})}
        rows.append(r)
        log(f"{name:>16s} {runtime:>24s}: {r['ms_per_image']:8.1f} ms/image  {r['fraction_of_peak']:6.1%} of peak"
            + (f"  (compile {extra['compile_s']:.0f} s)" if extra and "compile_s" in extra else ""))

    yolo_fused = DetectionModel("yolov8n.yaml", nc=nc, verbose=False).eval()
    yolo_fused.load_state_dict(yolo.state_dict())
    yolo_fused.fuse(verbose=False)
    with torch.no_grad():
        t = interleaved_seconds({"snn": lambda: rt(x), "unfolded": lambda: unfolded(x), "yolo": lambda: yolo_fused(x)},
                                warmup, repeats)
    add("snnvit-yolo", "pytorch", t["snn"], snn_gflops)
    add("snnvit-yolo", "pytorch (BN not folded)", t["unfolded"], snn_gflops)
    add("yolov8n", "pytorch", t["yolo"], yolo_gflops)
    if compile:
        comp = CompiledRuntime(model, rt.device)
        comp(x)  # compiles (or loads the cached compilation)
        with torch.no_grad():
            t = interleaved_seconds({"comp": lambda: comp(x), "yolo": lambda: yolo_fused(x)}, warmup, repeats)
        add("snnvit-yolo", "pytorch-compiled", t["comp"], snn_gflops, {"compile_s": comp.compile_s[(tuple(x.shape), x.dtype)],
                                                                       "yolov8n_same_rounds_ms": t["yolo"] * 1e3 / batch})
    if onnx:
        from ..export import export_onnx
        from ..infer.onnx_runtime import OnnxRuntime

        with tempfile.TemporaryDirectory() as d:
            ox = OnnxRuntime(export_onnx(None, Path(d) / "snn.onnx", imgsz, batch, model=model))
            sess = onnx_yolo(yolo, imgsz, batch, Path(d) / "yolo.onnx")
            xn = x.numpy()
            t = interleaved_seconds({"snn": lambda: ox(x), "yolo": lambda: sess.run(None, {"images": xn})}, warmup,
                                    repeats)
            add("snnvit-yolo", "onnxruntime", t["snn"], snn_gflops)
            add("yolov8n", "onnxruntime", t["yolo"], yolo_gflops)
    t_snn = train_step_seconds(unfolded, imgsz, train_batch, nc, 1, max(3, repeats // 3))
    t_yolo = train_step_seconds(yolo, imgsz, train_batch, nc, 1, max(3, repeats // 3))
    log(f"training step (batch {train_batch}): snnvit-yolo {t_snn * 1e3:.0f} ms, yolov8n {t_yolo * 1e3:.0f} ms")
    ratios = {}
    for runtime in ("pytorch", "onnxruntime"):
        s = [r for r in rows if r["model"] == "snnvit-yolo" and r["runtime"] == runtime]
        y = [r for r in rows if r["model"] == "yolov8n" and r["runtime"] == runtime]
        if s and y:
            ratios[f"inference_{runtime}"] = s[0]["ms_per_image"] / y[0]["ms_per_image"]
    ratios["train_step"] = t_snn / t_yolo
    checks = {"inference_pytorch": ratios["inference_pytorch"] <= TARGETS["inference"],
              "train_step": ratios["train_step"] <= TARGETS["train_step"]}
    for k, v in ratios.items():
        target = {"train_step": TARGETS["train_step"], "inference_pytorch": TARGETS["inference"]}.get(k)
        log(f"ratio to YOLOv8n, {k}: {v:.2f}x" + (f" (target <= {target}x)" if target else ""))
    return {"matmul_peak_gflops": peak, "threads": torch.get_num_threads(), "imgsz": imgsz, "batch": batch,
            "train_batch": train_batch, "weights": str(weights or "shipped"), "timesteps": rt.settings.timesteps,
            "rows": rows, "train_step_ms": {"snnvit-yolo": t_snn * 1e3, "yolov8n": t_yolo * 1e3},
            "ratios": ratios, "targets": TARGETS, "targets_met": checks}


def deployment_markdown(rep: dict[str, Any]) -> str:
    lines = [f"fp32 matmul peak {rep['matmul_peak_gflops']:.0f} GFLOP/s, {rep['threads']} thread(s), "
             f"{rep['imgsz']} px, batch {rep['batch']}.", "",
             "| model | runtime | ms / image | GFLOPs / image | % of peak | ratio to YOLOv8n (same runtime) |",
             "|---|---|---|---|---|---|"]
    yolo = {r["runtime"]: r["ms_per_image"] for r in rep["rows"] if r["model"] == "yolov8n"}
    for r in rep["rows"]:
        base = r.get("yolov8n_same_rounds_ms") or yolo.get(r["runtime"]) or yolo.get("pytorch")
        ratio = "1.00" if r["model"] == "yolov8n" else f"{r['ms_per_image'] / base:.2f}"
        extra = f" (compile {r['compile_s']:.0f} s)" if "compile_s" in r else ""
        lines.append(f"| {r['model']} | {r['runtime']}{extra} | {r['ms_per_image']:.1f} | {r['gflops_per_image']:.2f} | "
                     f"{100 * r['fraction_of_peak']:.1f} | {ratio} |")
    t = rep["train_step_ms"]
    lines += ["", f"Training step (batch {rep['train_batch']}): snnvit-yolo {t['snnvit-yolo']:.0f} ms, YOLOv8n "
              f"{t['yolov8n']:.0f} ms, ratio {rep['ratios']['train_step']:.2f} (target <= {rep['targets']['train_step']})."]
    return "\n".join(lines)

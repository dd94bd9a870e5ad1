"""Deployment benchmark: the shipped model beside YOLOv8n, in one run, on this CPU.

Rows (same image size and batch for every row):

* the shipped spiking model as the runtimes run it (``detector.infer``): PyTorch eager with batch norm
  folded into the synaptic convolutions (fused neuron kernels), the same without folding (the model as
  trained: the folding's own gain), PyTorch compiled (the ``compiled`` runtime; opt-in, its compile
  time is reported, and a rerun finds the compilation in the cache), ONNX Runtime (``detector.export``),
  and the int8 runtime (``detector.infer.int8_runtime``: OpenVINO, spike-fed convolutions in int8);
* YOLOv8n with random weights and the shipped model's classes: PyTorch eager with batch norm folded into
  its convolutions (how Ultralytics runs it for inference), ONNX Runtime, and int8 through OpenVINO
  (``yolo_int8``: static quantisation of its convolutions, activations calibrated on random images, so
  its speed only: an edge user's int8 YOLOv8n; its mAP loss with trained weights is measured by
  ``tools/train_baseline.py --eval ... --int8``, the same quantisation);
* one training step (forward, Ultralytics' detection loss, backward, optimizer step) of each model at
  ``train_batch``.

Inference times are medians over ``repeats`` rounds after ``warmup`` rounds, the models compared
taking turns within each round (``interleaved_seconds``), so a load that comes and goes on the
machine weighs on both sides of a ratio. Ratios are to YOLOv8n in the same run and the same runtime
(PyTorch to PyTorch, ONNX Runtime to ONNX Runtime; int8 to YOLOv8n's PyTorch eager, timed in the same
rounds); the project's targets are PyTorch eager inference <= 1.5x, int8 inference <= 1.0x and a
training step <= 2.5x. "% of peak" = dense GFLOPs (every timestep counted) per second over
the machine's measured fp32 matmul peak.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch

from .benchmark import matmul_peak_gflops, median_seconds

TARGETS = {"inference": 1.5, "inference_int8": 1.0, "train_step": 2.5}  # eager (issue 22); int8 (issue 30); a step


def synthetic_batch(batch: int, imgsz: int, nc: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random images with two boxes each, in the layout Ultralytics' loss takes."""
    g = torch.Generator().manual_seed(seed)
    n = 2 * batch
    xy = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    wh = torch.rand(n, 2, generator=g) * 0.2 + 0.05
    return {"img": torch.rand(batch, 3, imgsz, imgsz, generator=g), "batch_idx": torch.arange(batch).repeat_interleave(2).float(),
            "cls": torch.randint(0, nc, (n, 1), generator=g).float(), "bboxes": torch.cat((xy, wh), 1)}


def train_step(model: torch.nn.Module, imgsz: int, batch: int, nc: int,
               autocast: torch.dtype | None = None) -> Callable[[], float]:
    """One training step of ``model`` on a fixed synthetic batch (forward, Ultralytics' detection loss,
    backward, an SGD step), as a function returning the loss; ``autocast``: the CPU autocast dtype of the
    forward and loss (e.g. ``torch.bfloat16``, as training with amp on a bf16 CPU), None for fp32. Leaves
    ``model`` in training mode."""
    from ultralytics.cfg import get_cfg

    model.args = get_cfg()
    model.criterion = None
    model.train()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    data = synthetic_batch(batch, imgsz, nc)

    def step() -> float:
        with torch.autocast("cpu", dtype=autocast) if autocast is not None else nullcontext():
            loss, _ = model.loss(data)
        loss.sum().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach().sum())

    return step


def train_step_seconds(model: torch.nn.Module, imgsz: int, batch: int, nc: int, warmup: int, repeats: int) -> float:
    t = median_seconds(train_step(model, imgsz, batch, nc), warmup, repeats)
    model.eval()
    return t


def onnx_yolo(model: torch.nn.Module, imgsz: int, batch: int, path: Path):
    """YOLOv8n exported the way the project exports its own model (decoded predictions), in ONNX Runtime."""
    import onnxruntime as ort

    from ..infer.ann_int8 import export_ann

    export_ann(model, path, imgsz, batch)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def yolo_int8(model: torch.nn.Module, imgsz: int, batch: int, folder: Path, threads: int):
    """YOLOv8n quantised as an edge user would (``detector.infer.ann_int8``: static int8 through ONNX Runtime,
    run by OpenVINO), calibrated on two random batches: random weights, so its speed only (its mAP loss,
    calibrated on real images: ``tools/train_baseline.py --eval ... --int8``)."""
    from ..infer.ann_int8 import quantize_ann, random_batches
    from ..infer.int8_runtime import OpenVinoGraph

    return OpenVinoGraph(quantize_ann(model, folder, random_batches(imgsz, batch), imgsz, batch), threads)


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
                      runtimes: tuple[str, ...] = ("onnx", "int8"), warmup: int = 2, repeats: int = 10,
                      train: bool = True, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The shipped model (or ``weights``) beside YOLOv8n: PyTorch eager always, then each of ``runtimes``
    (``compiled``, ``onnx``, ``int8``) in rounds of its own, and with ``train`` a training step."""
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
    if "compiled" in runtimes:
        comp = CompiledRuntime(model, rt.device)
        comp(x)  # compiles (or loads the cached compilation)
        with torch.no_grad():
            t = interleaved_seconds({"comp": lambda: comp(x), "yolo": lambda: yolo_fused(x)}, warmup, repeats)
        add("snnvit-yolo", "pytorch-compiled", t["comp"], snn_gflops, {"compile_s": comp.compile_s[(tuple(x.shape), x.dtype)],
                                                                       "yolov8n_same_rounds_ms": t["yolo"] * 1e3 / batch})
    if "onnx" in runtimes:
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
    if "int8" in runtimes:
        with tempfile.TemporaryDirectory() as d:
            q = load_runtime(weights, runtime="int8")
            yq = yolo_int8(yolo, imgsz, batch, Path(d), torch.get_num_threads())
            xn = x.numpy()
            with torch.no_grad():
                t = interleaved_seconds({"snn": lambda: q(x), "yolo": lambda: yolo_fused(x),
                                         "yolo_int8": lambda: yq(xn)}, warmup, repeats)
        add("snnvit-yolo", "int8 (openvino)", t["snn"], snn_gflops, {"yolov8n_same_rounds_ms": t["yolo"] * 1e3 / batch})
        add("yolov8n", "int8 (openvino)", t["yolo_int8"], yolo_gflops, {"yolov8n_same_rounds_ms": t["yolo"] * 1e3 / batch})
    if train:
        t_snn = train_step_seconds(unfolded, imgsz, train_batch, nc, 1, max(3, repeats // 3))
        t_yolo = train_step_seconds(yolo, imgsz, train_batch, nc, 1, max(3, repeats // 3))
        log(f"training step (batch {train_batch}): snnvit-yolo {t_snn * 1e3:.0f} ms, yolov8n {t_yolo * 1e3:.0f} ms")
    ratios = {}
    for runtime in ("pytorch", "onnxruntime"):
        s = [r for r in rows if r["model"] == "snnvit-yolo" and r["runtime"] == runtime]
        y = [r for r in rows if r["model"] == "yolov8n" and r["runtime"] == runtime]
        if s and y:
            ratios[f"inference_{runtime}"] = s[0]["ms_per_image"] / y[0]["ms_per_image"]
    for r in rows:
        if r["runtime"] == "int8 (openvino)":  # to YOLOv8n's PyTorch eager of the same rounds
            ratios[f"inference_int8{'_yolov8n' if r['model'] == 'yolov8n' else ''}"] = \
                r["ms_per_image"] / r["yolov8n_same_rounds_ms"]
    checks = {"inference_pytorch": ratios["inference_pytorch"] <= TARGETS["inference"]}
    if train:
        ratios["train_step"] = t_snn / t_yolo
        checks["train_step"] = ratios["train_step"] <= TARGETS["train_step"]
    if "inference_int8" in ratios:
        checks["inference_int8"] = ratios["inference_int8"] <= TARGETS["inference_int8"]
    for k, v in ratios.items():
        target = {"train_step": TARGETS["train_step"], "inference_pytorch": TARGETS["inference"],
                  "inference_int8": TARGETS["inference_int8"]}.get(k)
        log(f"ratio to YOLOv8n, {k}: {v:.2f}x" + (f" (target <= {target}x)" if target else ""))
    return {"matmul_peak_gflops": peak, "threads": torch.get_num_threads(), "imgsz": imgsz, "batch": batch,
            "train_batch": train_batch, "weights": str(weights or "shipped"), "timesteps": rt.settings.timesteps,
            "rows": rows, "train_step_ms": {"snnvit-yolo": t_snn * 1e3, "yolov8n": t_yolo * 1e3} if train else None,
            "ratios": ratios, "targets": TARGETS, "targets_met": checks}


def deployment_markdown(rep: dict[str, Any]) -> str:
    lines = [f"fp32 matmul peak {rep['matmul_peak_gflops']:.0f} GFLOP/s, {rep['threads']} thread(s), "
             f"{rep['imgsz']} px, batch {rep['batch']}.", "",
             "| model | runtime | ms / image | GFLOPs / image | % of peak | ratio to YOLOv8n (same runtime; int8: to eager) |",
             "|---|---|---|---|---|---|"]
    yolo = {r["runtime"]: r["ms_per_image"] for r in rep["rows"] if r["model"] == "yolov8n"}
    for r in rep["rows"]:
        base = r.get("yolov8n_same_rounds_ms") or yolo.get(r["runtime"]) or yolo.get("pytorch")
        own = r["model"] == "yolov8n" and "yolov8n_same_rounds_ms" not in r  # YOLOv8n against itself
        ratio = "1.00" if own else f"{r['ms_per_image'] / base:.2f}"
        extra = f" (compile {r['compile_s']:.0f} s)" if "compile_s" in r else ""
        lines.append(f"| {r['model']} | {r['runtime']}{extra} | {r['ms_per_image']:.1f} | {r['gflops_per_image']:.2f} | "
                     f"{100 * r['fraction_of_peak']:.1f} | {ratio} |")
    t = rep["train_step_ms"]
    if "train_step" not in rep["ratios"]:
        return "\n".join(lines)
    lines += ["", f"Training step (batch {rep['train_batch']}): snnvit-yolo {t['snnvit-yolo']:.0f} ms, YOLOv8n "
              f"{t['yolov8n']:.0f} ms, ratio {rep['ratios']['train_step']:.2f} (target <= {rep['targets']['train_step']})."]
    return "\n".join(lines)


SIZE_PLOT_SIZES = (320, 416, 512, 640)  # the README's plot: the shipped models' sizes and around them


def speed_by_size(weights: str | Path | None = None, sizes=SIZE_PLOT_SIZES, batch: int = 1, warmup: int = 2,
                  repeats: int = 10, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Milliseconds per image of the shipped model, eager and int8, and of YOLOv8n (PyTorch eager, batch
    norm folded) at each image size, the three taking turns in every round (``interleaved_seconds``)."""
    from ultralytics.nn.tasks import DetectionModel

    from ..infer import load_runtime

    eager, q = load_runtime(weights), load_runtime(weights, runtime="int8")
    yolo = DetectionModel("yolov8n.yaml", nc=len(eager.settings.names), verbose=False).eval()
    yolo.fuse(verbose=False)
    rows = []
    for size in sizes:
        x = torch.rand(batch, 3, size, size)
        with torch.no_grad():
            t = interleaved_seconds({"eager": lambda: eager(x), "int8": lambda: q(x), "yolov8n": lambda: yolo(x)},
                                    warmup, repeats)
        rows.append({"imgsz": size, **{k: v * 1e3 / batch for k, v in t.items()}})
        log(f"{size:5d} px: " + ", ".join(f"{k} {v * 1e3 / batch:.1f} ms" for k, v in t.items()))
    return {"threads": torch.get_num_threads(), "batch": batch, "weights": str(weights or "shipped"),
            "repeats": repeats, "rows": rows}


def plot_speed_by_size(rep: dict[str, Any], path: str | Path) -> Path:
    """``speed_by_size``'s result as a PNG: ms per image against image size, one line per model."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    sizes = [r["imgsz"] for r in rep["rows"]]
    labels = {"eager": "SNN-ViT-YOLO, PyTorch eager", "int8": "SNN-ViT-YOLO, int8 (OpenVINO)",
              "yolov8n": "YOLOv8n, PyTorch eager (BN fused)"}
    for key, label in labels.items():
        ax.plot(sizes, [r[key] for r in rep["rows"]], marker="o", label=label)
    ax.set_xlabel("image size (px, square)")
    ax.set_ylabel("ms per image")
    ax.set_xticks(sizes)
    ax.set_title(f"CPU, {rep['threads']} thread(s), batch {rep['batch']} (medians of {rep['repeats']} rounds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)

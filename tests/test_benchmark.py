"""tools/benchmark.py's measurements: the peak-memory column is the allocator peak of one forward
(activations), so it must grow with the batch and not read ~0 after a larger configuration ran first
(the RSS-based measure it replaced did)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from detector.analysis.benchmark import bench_model, markdown
from detector.models import SNNViTYOLO

ROOT = Path(__file__).resolve().parents[1]


def test_peak_memory_scales_with_batch_and_ignores_earlier_runs():
    torch.manual_seed(0)
    model = SNNViTYOLO("n", nc=1, verbose=False, timesteps=1)
    big = bench_model("n", model, 96, 4, peak_gflops=100.0, warmup=0, repeats=1, timesteps=1)
    small = bench_model("n", model, 96, 1, peak_gflops=100.0, warmup=0, repeats=1, timesteps=1)
    # the first stage's output alone at 96 px: 1 x C x 48 x 48 float32, far above 0.1 MB
    assert small.peak_mem_mb > 0.1
    assert 3.0 < big.peak_mem_mb / small.peak_mem_mb < 5.0, (big.peak_mem_mb, small.peak_mem_mb)
    weights = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]) / 2**20
    assert abs(small.weights_mb - weights) < 1e-6
    assert small.ms_per_image > 0 and abs(small.images_per_s * small.ms_per_batch - 1e3) < 1e-6
    assert abs(big.ms_per_image * 4 - big.ms_per_batch) < 1e-6


@pytest.mark.slow
def test_tool_writes_json_and_table(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, str(ROOT / "tools/benchmark.py"), "--variants", "n", "--sizes", "64",
                        "--batches", "1", "--timesteps", "1", "--warmup", "0", "--repeats", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    assert rep["matmul_peak_gflops"] > 0
    assert [x["model"] for x in rep["results"]] == ["snnvit-yolo-n", "yolov8n"]
    for x in rep["results"]:
        assert x["imgsz"] == 64 and x["batch"] == 1 and x["peak_mem_mb"] > 0 and x["gflops_per_image"] > 0
    assert markdown(rep).count("\n| ") == 3  # header + two rows


@pytest.mark.slow
def test_deployment_report_rows_ratios_and_targets():
    """The deployment mode's bookkeeping (tiny sizes; the numbers themselves are the README's, measured).
    Run in a fresh process, as the tool runs: with every runtime (ONNX Runtime, two OpenVINO graphs, a
    training step) loaded into the test process, a SIGINT raised by a later test crashed it."""
    from detector.analysis.deploy_bench import TARGETS, deployment_markdown

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from detector.analysis.deploy_bench import "
            "deployment_report; print(json.dumps(deployment_report(imgsz=64, batch=1, train_batch=2, runtimes=("
            "'onnx', 'int8'), warmup=0, repeats=1, log=lambda s: None)))")
    r = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    rep = json.loads(r.stdout.strip().splitlines()[-1])
    assert [(r["model"], r["runtime"]) for r in rep["rows"]] == [
        ("snnvit-yolo", "pytorch"), ("snnvit-yolo", "pytorch (BN not folded)"), ("yolov8n", "pytorch"),
        ("snnvit-yolo", "onnxruntime"), ("yolov8n", "onnxruntime"), ("snnvit-yolo", "int8 (openvino)"),
        ("yolov8n", "int8 (openvino)")]
    for r in rep["rows"]:
        assert r["ms_per_image"] > 0 and 0 < r["fraction_of_peak"] and r["gflops_per_image"] > 0
    assert set(rep["ratios"]) == {"inference_pytorch", "inference_onnxruntime", "inference_int8",
                                  "inference_int8_yolov8n", "train_step"}
    assert rep["targets"] == TARGETS and set(rep["targets_met"]) == {"inference_pytorch", "inference_int8", "train_step"}
    snn = {r["runtime"]: r["ms_per_image"] for r in rep["rows"] if r["model"] == "snnvit-yolo"}
    yolo = {r["runtime"]: r["ms_per_image"] for r in rep["rows"] if r["model"] == "yolov8n"}
    assert abs(rep["ratios"]["inference_pytorch"] - snn["pytorch"] / yolo["pytorch"]) < 1e-9
    md = deployment_markdown(rep)
    int8 = [r for r in rep["rows"] if r["runtime"] == "int8 (openvino)"]
    assert abs(rep["ratios"]["inference_int8"] - int8[0]["ms_per_image"] / int8[0]["yolov8n_same_rounds_ms"]) < 1e-9
    assert md.count("\n| ") == 8 and "Training step" in md


def test_precision_report_rows_and_speedups():
    """The bf16-against-fp32 training-step mode's bookkeeping (tiny sizes; the README's numbers are measured)."""
    from detector.analysis.precision_bench import TARGET, precision_markdown, precision_report

    rep = precision_report("n-ilif", imgsz=64, batch=2, warmup=0, repeats=1, log=lambda s: None)
    assert [r["model"] for r in rep["rows"]] == ["snnvit-yolo", "yolov8n"]
    for r in rep["rows"]:
        assert r["fp32_ms"] > 0 and r["bf16_ms"] > 0
        assert abs(r["speedup"] - r["fp32_ms"] / r["bf16_ms"]) < 1e-9
        assert abs(r["bf16_img_s"] - 2 / (r["bf16_ms"] / 1e3)) < 1e-6
    assert rep["meets_target"] == (rep["rows"][0]["speedup"] >= TARGET)
    md = precision_markdown(rep)
    assert md.count("\n| ") == 3 and "bf16 / fp32" in md


def test_speed_by_size_times_three_models_and_plots(tmp_path):
    from detector.analysis.deploy_bench import plot_speed_by_size, speed_by_size

    rep = speed_by_size(sizes=(64, 96), warmup=0, repeats=1, log=lambda s: None)
    assert [r["imgsz"] for r in rep["rows"]] == [64, 96]
    assert all(r[k] > 0 for r in rep["rows"] for k in ("eager", "int8", "yolov8n"))
    png = plot_speed_by_size(rep, tmp_path / "speed.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

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
    """The deployment mode's bookkeeping (tiny sizes; the numbers themselves are the README's, measured)."""
    from detector.analysis.deploy_bench import TARGETS, deployment_markdown, deployment_report

    rep = deployment_report(imgsz=64, batch=1, train_batch=2, compile=False, onnx=True, warmup=0, repeats=1,
                            log=lambda s: None)
    assert [(r["model"], r["runtime"]) for r in rep["rows"]] == [
        ("snnvit-yolo", "pytorch"), ("snnvit-yolo", "pytorch (BN not folded)"), ("yolov8n", "pytorch"),
        ("snnvit-yolo", "onnxruntime"), ("yolov8n", "onnxruntime")]
    for r in rep["rows"]:
        assert r["ms_per_image"] > 0 and 0 < r["fraction_of_peak"] and r["gflops_per_image"] > 0
    assert set(rep["ratios"]) == {"inference_pytorch", "inference_onnxruntime", "train_step"}
    assert rep["targets"] == TARGETS and set(rep["targets_met"]) == {"inference_pytorch", "train_step"}
    snn = {r["runtime"]: r["ms_per_image"] for r in rep["rows"] if r["model"] == "snnvit-yolo"}
    yolo = {r["runtime"]: r["ms_per_image"] for r in rep["rows"] if r["model"] == "yolov8n"}
    assert abs(rep["ratios"]["inference_pytorch"] - snn["pytorch"] / yolo["pytorch"]) < 1e-9
    md = deployment_markdown(rep)
    assert md.count("\n| ") == 6 and "Training step" in md

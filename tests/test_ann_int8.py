"""The int8 YOLOv8n (``detector.infer.ann_int8``), quantised as an edge user would for the comparison with
the spiking model's int8 runtime: every convolution becomes int8 (QDQ), its predictions stay close to the
float model's on an input shape it was not calibrated at, and ``tools/train_baseline.py --eval ... --int8``
runs the project's validator on it (calibrated on train images; an unreadable one skipped, careless
options one line)."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch

import detector  # noqa: F401
from _tools import TOOLS, make_dataset, one_line_error, run_tool
from detector.infer.ann_int8 import AnnInt8, quantize_ann, random_batches


def lively_yolov8n() -> torch.nn.Module:
    """A random-weight YOLOv8n (one class) whose batch norms are randomised too: at Ultralytics'
    initialisation the activations fade layer by layer and the boxes come out nearly constant, which
    would hide what quantisation changes."""
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    m = DetectionModel("yolov8n.yaml", nc=1, verbose=False).eval()
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.weight.data.uniform_(0.5, 2.0)
            mod.bias.data.normal_(0, 0.5)
    m.names = {0: "ship"}
    return m


def test_int8_yolov8n_is_quantised_and_close_to_float(tmp_path: Path):
    import onnx

    m = lively_yolov8n()
    graph = quantize_ann(m, tmp_path, random_batches(64, 2), 64, dynamic=True)
    g = onnx.load(str(graph)).graph
    producer = {o: n.op_type for n in g.node for o in n.output}
    convs = [n for n in g.node if n.op_type == "Conv"]
    assert len(convs) == 64  # YOLOv8n's convolutions, batch norm folded
    # every convolution reads a dequantised uint8 input and dequantised int8 weights
    assert all(producer.get(n.input[0]) == "DequantizeLinear" and producer.get(n.input[1]) == "DequantizeLinear"
               for n in convs)
    assert Counter(i.data_type for i in g.initializer)[onnx.TensorProto.INT8] >= 64
    q = AnnInt8(graph, m)
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))  # not the calibration shape
    with torch.no_grad():
        y = m.fuse(verbose=False)(x)[0]
    yq = q(x)
    assert yq.shape == y.shape == (2, 5, 126)
    box, box_q = y[:, :4], yq[:, :4]
    assert not torch.equal(box, box_q)  # rounded activations move the boxes...
    assert (box - box_q).abs().max() < 0.03 * box.std()  # ...by a little (measured: 0.01 of the spread)
    assert (y[:, 4:] - yq[:, 4:]).abs().max() < 1e-3


def ann_checkpoint(folder: Path) -> Path:
    from detector.weights import save_ann_checkpoint

    return save_ann_checkpoint(folder / "yolo.pt", lively_yolov8n(), "yolov8n.yaml", {0: "ship"})


def test_int8_eval_runs_the_validator_and_skips_an_unreadable_calibration_image(tmp_path: Path):
    from detector.engine.baseline import evaluate_baseline

    data = make_dataset(tmp_path / "ds", n=4)
    (tmp_path / "ds" / "images" / "train" / "0.png").write_bytes(b"not a png")
    w = ann_checkpoint(tmp_path)
    common = dict(split="val", imgsz=64, batch=2, project=tmp_path / "runs")
    fp = evaluate_baseline(w, data, **common)
    with pytest.warns(UserWarning, match="0.png"):
        q = evaluate_baseline(w, data, runtime="int8", calibration_images=4, **common)
    assert q["runtime"] == "int8" and q["calibration_images"] == 4 and fp["runtime"] == "eager"
    for k in ("map50", "map50_95", "precision", "recall"):
        assert math.isfinite(q[k]) and abs(q[k] - fp[k]) <= 0.05, (k, q[k], fp[k])


@pytest.mark.parametrize("kw, match", [(dict(runtime="fp16"), "runtime must be one of"),
                                       (dict(runtime="int8", calibration_images=0), "positive number of images"),
                                       (dict(runtime="int8", calibration_images=True), "positive number of images")])
def test_careless_baseline_runtime_options_are_refused_before_any_work(kw, match, tmp_path):
    from detector.engine.baseline import evaluate_baseline

    with pytest.raises(ValueError, match=match):
        evaluate_baseline(tmp_path / "missing.pt", tmp_path / "missing.yaml", **kw)


@pytest.mark.slow
def test_tool_refuses_bad_calibration_in_one_line(tmp_path: Path):
    data = make_dataset(tmp_path / "ds", n=2)
    for p in (tmp_path / "ds" / "images" / "train").iterdir():
        p.write_bytes(b"garbage")
    w = ann_checkpoint(tmp_path)
    base = [TOOLS / "train_baseline.py", "--eval", w, "--data", data, "--imgsz", "64", "--split", "val", "--int8",
            "--project", tmp_path / "runs"]
    assert "positive number of images (--calib-images), got 0" in one_line_error(run_tool(*base, "--calib-images", "0"))
    line = one_line_error(run_tool(*base))
    assert "none of the 2 train images" in line and "calibration" in line

"""ONNX export (``detector.export``, ``tools/export.py``): the exported shipped weights give the same
detections as PyTorch on the demo images (same count, boxes within a pixel) through ``tools/detect.py
--weights model.onnx``; what the graph cannot express is refused with one line; a foreign file is
refused on load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

import detector  # noqa: F401
from detector.engine.predictor import detect, predict_image
from detector.export import OnnxDetector, export_onnx
from detector.models import SNNViTYOLO, load_config
from detector.weights import DEFAULT_WEIGHTS, load_model
from _tiny import TINY

REPO = Path(__file__).resolve().parents[1]
IMAGES = sorted((REPO / "images").glob("*.png"))


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory) -> Path:
    return export_onnx(None, tmp_path_factory.mktemp("onnx") / "shipped.onnx")


def test_onnx_detections_equal_pytorch_on_the_demo_images(shipped_onnx):
    pt, ox = load_model(), load_model(shipped_onnx)
    assert isinstance(ox, OnnxDetector) and ox.names == pt.names and ox.train_imgsz == pt.train_imgsz
    total = 0
    for path in IMAGES:
        img = cv2.imread(str(path))
        a = predict_image(pt, img, pt.train_imgsz, 0.25)
        b = predict_image(ox, img, ox.train_imgsz, 0.25)
        assert len(a) == len(b), path.name
        if len(a):
            assert (a[:, :4] - b[:, :4]).abs().max() <= 1.0 and (a[:, 5] == b[:, 5]).all()
            assert (a[:, 4] - b[:, 4]).abs().max() < 1e-3
        total += len(a)
    assert total >= len(IMAGES)  # the comparison covers real detections


def test_detect_tool_runs_the_onnx_file(shipped_onnx, tmp_path):
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "tools/detect.py", "--source", "images/", "--weights", str(shipped_onnx),
                        "--out", str(out), "--save-json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    preds = json.loads((out / "predictions.json").read_text())
    ref = detect(REPO / "images", out=tmp_path / "ref", outputs=("json",), verbose=False).predictions
    assert len(preds) == len(ref) and {p["file_name"] for p in preds} == {p["file_name"] for p in ref}
    assert len(list(out.glob("*.jpg"))) == len(IMAGES)


def test_export_refuses_what_it_cannot_express(tmp_path):
    cfg = load_config(TINY)
    cfg["neuron"] = {**cfg["neuron"], "backend": "spikingjelly"}
    with pytest.raises(ValueError, match="reference-backend"):
        export_onnx(None, tmp_path / "a.onnx", imgsz=64, model=SNNViTYOLO(cfg, verbose=False))
    m = SNNViTYOLO(load_config(TINY), verbose=False).eval()
    from detector.nn import streaming

    with streaming(m), pytest.raises(ValueError, match="streaming"):
        export_onnx(None, tmp_path / "b.onnx", imgsz=64, model=m)
    with pytest.raises(ValueError, match=".onnx"):
        export_onnx(None, tmp_path / "c.pt", imgsz=64, model=m)
    assert not any(tmp_path.iterdir())  # nothing written


def test_integer_spike_model_exports_exactly(tmp_path):
    torch.manual_seed(0)
    cfg = load_config(TINY, timesteps=2, neuron={"name": "ilif", "max_spikes": 2})
    m = SNNViTYOLO(cfg, verbose=False)
    from detector.models.calibration import recalibrate_bn

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    recalibrate_bn(m, [x])
    m.eval()
    ox = OnnxDetector(export_onnx(None, tmp_path / "i.onnx", imgsz=64, model=m))
    assert ox.levels == 2 and ox.timesteps == 2
    with torch.no_grad():
        torch.testing.assert_close(ox(x), m(x)[0], rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="takes 64 x 64"):
        ox(torch.rand(1, 3, 96, 96))


def test_foreign_onnx_file_is_refused(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="cannot load"):
        OnnxDetector(bad)
    assert DEFAULT_WEIGHTS.is_file()

"""ONNX export (``detector.export``, ``tools/export.py``): the exported shipped weights give the same
detections as PyTorch on the demo images (same count, boxes within a pixel) through ``tools/detect.py
--weights model.onnx``; what the graph cannot express is refused with one line; a foreign file is
refused on load, and so is a graph that disagrees with its own metadata (classes, input size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch

import detector  # noqa: F401
from detector.export import export_onnx
from detector.infer import detect, load_runtime, predict_image
from detector.infer.onnx_runtime import OnnxRuntime
from detector.models import SNNViTYOLO, load_config
from detector.weights import default_weights
from _tiny import TINY, tiny_config

REPO = Path(__file__).resolve().parents[1]
IMAGES = sorted((REPO / "images").glob("*.png"))


@pytest.fixture(scope="module")
def shipped_onnx(tmp_path_factory) -> Path:
    return export_onnx(None, tmp_path_factory.mktemp("onnx") / "shipped.onnx")


def test_onnx_detections_equal_pytorch_on_the_demo_images(shipped_onnx):
    """The same boxes and classes; the same scores but where a spike flipped. ONNX Runtime's and PyTorch's
    convolutions round differently in the last bits, and a membrane within rounding of its threshold then
    fires in one and not the other: seen once in a fresh-clone CI run (2 threads), one detection of 28 scored
    0.449 against 0.373; with the 512 px weights one scene's three detections move by 0.009-0.021 (a flip
    early in the network reaches every box of its image). So the scores of at most one image in six may
    differ, by at most 0.1; every other score within 1e-3."""
    pt, ox = load_runtime(), load_runtime(shipped_onnx)  # eager (batch norm folded) and ONNX Runtime
    assert isinstance(ox, OnnxRuntime) and ox.settings.names == pt.settings.names
    assert ox.settings.input_size == pt.settings.train_imgsz == ox.settings.imgsz()
    diffs = []
    for path in IMAGES:
        img = cv2.imread(str(path))
        a = predict_image(pt, img, conf=0.25)
        b = predict_image(ox, img, conf=0.25)
        assert len(a) == len(b), path.name
        if len(a):
            # pair each box with its nearest (two near-equal scores may come out in either order)
            b = b[(a[:, None, :4] - b[None, :, :4]).abs().amax(-1).argmin(1)]
            assert (a[:, :4] - b[:, :4]).abs().max() <= 1.0 and (a[:, 5] == b[:, 5]).all()
            diffs.append((a[:, 4] - b[:, 4]).abs().tolist())
    assert sum(map(len, diffs)) >= len(IMAGES)  # the comparison covers real detections
    assert max(map(max, filter(None, diffs))) < 0.1 and sum(max(d, default=0) >= 1e-3 for d in diffs) <= 1, diffs


def test_detect_tool_runs_the_onnx_file(shipped_onnx, tmp_path):
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "tools/detect.py", "--source", "images/", "--weights", str(shipped_onnx),
                        "--out", str(out), "--save-json"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    preds = json.loads((out / "predictions.json").read_text())
    ref = detect(REPO / "images", out=tmp_path / "ref", runtime="eager", outputs=("json",), verbose=False).predictions
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
    ox = OnnxRuntime(export_onnx(None, tmp_path / "i.onnx", imgsz=64, model=m))
    assert ox.settings.levels == 2 and ox.settings.timesteps == 2
    with torch.no_grad():
        torch.testing.assert_close(ox(x), m(x)[0], rtol=1e-4, atol=1e-3)
    with pytest.raises(ValueError, match="takes 64 x 64"):
        ox(torch.rand(1, 3, 96, 96))


def test_foreign_onnx_file_is_refused(tmp_path):
    bad = tmp_path / "x.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ValueError, match="cannot load"):
        OnnxRuntime(bad)
    assert default_weights().is_file()


@pytest.mark.slow
def test_graph_that_disagrees_with_its_metadata_is_refused(tmp_path):
    """Issue 24 item 7: more classes in the graph than in its names, or a metadata input size that is not
    the graph's: one line naming the file, on load (not a KeyError or an ONNX Runtime traceback later)."""
    import onnx

    torch.manual_seed(0)
    m = SNNViTYOLO(tiny_config(2), verbose=False).eval()
    good = export_onnx(None, tmp_path / "two.onnx", imgsz=64, model=m)
    assert OnnxRuntime(good).settings.names == {0: "0", 1: "1"}

    def edited(name: str, **meta: str) -> Path:
        proto = onnx.load(str(good))
        for p in proto.metadata_props:
            if p.key in meta:
                p.value = meta[p.key]
        onnx.save(proto, str(tmp_path / name))
        return tmp_path / name

    with pytest.raises(ValueError, match=r"one\.onnx: the graph outputs \(1, 6, 84\).*1 classes"):
        OnnxRuntime(edited("one.onnx", names=json.dumps({0: "ship"})))
    with pytest.raises(ValueError, match=r"size\.onnx: the graph takes .*64, 64\].*metadata says .*96"):
        OnnxRuntime(edited("size.onnx", imgsz="96"))

"""The inference layer (``detector.infer``): batch norm folded into the synaptic convolutions (float64:
the same spikes at every neuron and the same detections; the energy meter counts the same operations),
the runtime table (chosen by suffix and name, refused in one line where it cannot run), the model's
settings record, and the shipped models by name (``--weights NAME`` / ``list``, and the installed
layout that a non-editable ``pip install .`` produces)."""

from __future__ import annotations

import configparser
import copy
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from torch import nn

import detector  # noqa: F401
import detector.weights as W
from detector.infer import RUNTIMES, load_runtime
from detector.infer.runtime import choose_runtime
from detector.models import SNNViTYOLO, load_config
from detector.models.calibration import recalibrate_bn
from detector.models.settings import ModelSettings, settings_of
from detector.nn.fold import fold_batchnorm, unfolded_batchnorms
from detector.nn.neurons import SaccadicNeuron, SpikingNeuron
from _tiny import TINY

REPO = Path(__file__).resolve().parents[1]
IMAGES = sorted((REPO / "images").glob("*.png"))


def spikes_of(model: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(every neuron's output, in call order; the model's decoded predictions) for one forward."""
    out: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
             for m in model.modules() if isinstance(m, (SpikingNeuron, SaccadicNeuron))]
    try:
        with torch.no_grad():
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, (y[0] if isinstance(y, (tuple, list)) else y)


def calibrated_tiny(readout: str = "spikes", **cfg) -> SNNViTYOLO:
    """A tiny model whose batch norms hold non-trivial statistics (calibrated on random images), so that
    folding them changes every weight."""
    torch.manual_seed(0)
    m = SNNViTYOLO(load_config({**TINY, "readout": readout}, **cfg), verbose=False)
    recalibrate_bn(m, [torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))])
    for bn in (b for b in m.modules() if isinstance(b, nn.BatchNorm2d)):  # learnt affine parameters, not 1 / 0
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return m.eval()


def assert_same_spikes(a: nn.Module, b: nn.Module, x: torch.Tensor) -> torch.Tensor:
    sa, ya = spikes_of(a, x)
    sb, yb = spikes_of(b, x)
    assert len(sa) == len(sb) and len(sa) > 10
    fired = 0.0
    for s, t in zip(sa, sb):
        assert torch.equal(s, t)
        fired += float(s.sum())
    assert fired > 0  # the comparison sees real spikes
    torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-9)
    return ya


def assert_only_readout_batchnorms_left(module: nn.Module) -> None:
    """Every batch norm folded but the current readouts' own (one per branch: box and class at three levels),
    which each readout folds itself at eval."""
    left = unfolded_batchnorms(module)
    assert len(left) == 6 and all(name.endswith(".1.bn") and ".cv" in name for name in left), left


@pytest.mark.parametrize("case", ["binary-lif", "ilif-current-readout"])
def test_folding_keeps_every_spike_float64(case):
    """Tiny models (binary LIF, T=2; I-LIF D=2 with the head's current readout): folded in float64, every
    neuron emits the same spikes and the predictions agree to 1e-9."""
    m = calibrated_tiny() if case == "binary-lif" else calibrated_tiny(
        "current", timesteps=1, neuron={"name": "ilif", "max_spikes": 2})
    m = m.double()
    f = copy.deepcopy(m)
    n = fold_batchnorm(f)
    left = unfolded_batchnorms(f)
    assert n > 20 and all(name.endswith("bn") and ".cv" in name for name in left)  # only the readouts' own
    assert (left == []) == (case == "binary-lif")
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert_same_spikes(m, f, x)


def test_folded_shipped_model_same_spikes_and_detections_float64():
    """The shipped weights on two demo scenes, float64: the folded model (what every tool runs) emits the
    same spikes at every neuron and gives the same detections as the model as trained."""
    model = W.load_model().double()
    folded = copy.deepcopy(model)
    assert fold_batchnorm(folded) > 40
    assert_only_readout_batchnorms_left(folded)
    from ultralytics.utils.nms import non_max_suppression

    from detector.io.letterbox import letterbox_tensor

    s = settings_of(model)
    for path in IMAGES[:2]:
        x = letterbox_tensor(cv2.imread(str(path)), s.imgsz()).double()
        ya = assert_same_spikes(model, folded, x)
        _, yb = spikes_of(folded, x)
        a, b = (non_max_suppression(y, 0.25, 0.45)[0] for y in (ya, yb))
        assert len(a) >= 2 and torch.equal(a[:, 5], b[:, 5])
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_energy_counts_the_folded_model_alike():
    """The energy meter on the folded model: the same layers, the same synaptic operations per layer
    (float64: the same spikes)."""
    from detector.analysis.energy import measure_energy

    m = calibrated_tiny().double()
    f = copy.deepcopy(m)
    fold_batchnorm(f)
    x = [torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3), dtype=torch.float64)]
    a, b = measure_energy(m, x), measure_energy(f, x)
    assert [row.name for row in a.layers] == [row.name for row in b.layers]
    assert [row.sops for row in a.layers] == [row.sops for row in b.layers] and a.energy_mj == b.energy_mj > 0


# ------------------------------------------------------------------------------------------------ runtimes


def test_runtime_table_chosen_by_suffix_and_name():
    pt, ox = Path("m.pt"), Path("m.onnx")
    assert choose_runtime("auto", pt, "cpu").name == "eager" and choose_runtime(None, ox, "cpu").name == "onnx"
    assert choose_runtime("compiled", pt, "cpu") is RUNTIMES["compiled"]
    with pytest.raises(ValueError, match="runs .pt files, not m.onnx; for it use --runtime onnx"):
        choose_runtime("eager", ox, "cpu")
    with pytest.raises(ValueError, match="runtime cudagraph runs on cuda, not cpu"):
        choose_runtime("cudagraph", pt, "cpu")
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        choose_runtime("tensorrt", pt, "cpu")
    with pytest.raises(ValueError, match="must be a .pt checkpoint or an .onnx export"):
        choose_runtime("auto", Path("m.engine"), "cpu")
    for spec in RUNTIMES.values():  # every row's implementation exists
        assert callable(spec.load().load)


def test_eager_runtime_is_the_folded_checkpoint_with_its_settings():
    rt = load_runtime("ssdd")
    assert rt.name == "eager"
    assert_only_readout_batchnorms_left(rt.module)
    s = rt.settings
    assert s.names == {0: "ship"} and (s.timesteps, s.levels, s.train_imgsz, s.imgsz()) == (1, 4, 512, 512)
    assert Path(s.source) == W.default_weights()
    with pytest.raises(ValueError, match="AMP"):
        load_runtime("ssdd", amp=True)


def test_settings_record_checks_a_fixed_input_size():
    s = ModelSettings(names={0: "a"}, input_size=320, source="m.onnx")
    assert s.imgsz(640) == 320 and s.check_imgsz(320) == 320
    with pytest.raises(ValueError, match="m.onnx takes 320 x 320 inputs only.*--imgsz 320"):
        s.check_imgsz(640)
    assert ModelSettings(train_imgsz=512).imgsz() == 512 and ModelSettings().imgsz(640) == 640


@pytest.mark.slow
def test_compiled_runtime_matches_eager_on_a_tiny_model(tmp_path, monkeypatch):
    """``--runtime compiled`` (torch.compile, neurons on their PyTorch path) against eager on a tiny
    model: the same output up to float32 rounding (the compiler reorders element-wise arithmetic;
    tolerance 1e-4, and no spike of this model sits that close to a threshold)."""
    from detector.infer.torch_runtimes import CompiledRuntime, EagerRuntime

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    m = calibrated_tiny()
    fold_batchnorm(m)
    eager, comp = EagerRuntime(m, torch.device("cpu")), CompiledRuntime(copy.deepcopy(m), torch.device("cpu"))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(comp(x), eager(x), rtol=1e-4, atol=1e-4)
    assert list(comp.compile_s) == [((2, 3, 64, 64), torch.float32)] and any((tmp_path / "inductor").iterdir())


# ------------------------------------------------------------------------------------------- by name


@pytest.mark.slow
def test_weights_by_name_and_list():
    assert W.resolve_weights("ssdd") == W.resolve_weights(None) == W.default_weights()
    default, models = W.shipped_models()
    assert default == "ssdd" and models["ssdd"]["summary"].startswith("SNN-ViT-YOLO-n")
    with pytest.raises(ValueError, match="no shipped model named 'nepx'; shipped: ssdd"):
        W.resolve_weights("nepx")
    with pytest.raises(FileNotFoundError, match="weights file not found: nothing.pt"):
        W.resolve_weights("nothing.pt")
    r = subprocess.run([sys.executable, "tools/val.py", "--weights", "list"], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "ssdd" in r.stdout and models["ssdd"]["summary"] in r.stdout


def test_a_new_shipped_model_is_one_registry_entry(tmp_path, monkeypatch):
    """The installed layout (``detector/shipped``: models.yaml + the .pt files): a second entry resolves
    by name, the listing shows its summary, a missing file is marked, a broken registry is one line."""
    from _tiny import TINY as cfg

    torch.manual_seed(0)
    W.save_checkpoint(tmp_path / "tiny.pt", SNNViTYOLO(cfg, verbose=False))
    (tmp_path / "models.yaml").write_text(
        "default: tiny\nmodels:\n  tiny:\n    file: tiny.pt\n    summary: a tiny test model\n"
        "  gone:\n    file: gone.pt\n    summary: not there\n", encoding="utf-8")
    monkeypatch.setattr(W, "shipped_dir", lambda: tmp_path)
    assert W.resolve_weights("tiny") == tmp_path / "tiny.pt"
    assert load_runtime("tiny").settings.names == {0: "ship", 1: "plane", 2: "tank"}
    listing = W.shipped_listing()
    assert "a tiny test model" in listing and "gone.pt [missing]" in listing and "tiny.pt (default)" in listing
    with pytest.raises(FileNotFoundError, match="shipped model 'gone'"):
        W.resolve_weights("gone")
    (tmp_path / "models.yaml").write_text("models: [1, 2", encoding="utf-8")
    with pytest.raises(ValueError, match="registry .*models.yaml"):
        W.resolve_weights("tiny")


def test_install_carries_the_shipped_weights():
    """setup.py / setup.cfg install the top-level weights/ folder as the package ``detector.shipped``
    (checked by hand with ``pip install --no-deps --target DIR .``: DIR/detector/shipped holds the .pt
    and models.yaml, and ``resolve_weights('ssdd')`` finds it there)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert cfg["options"]["package_dir"].split() == ["detector.shipped", "=", "weights"]
    data = cfg["options.package_data"]["detector.shipped"]
    assert "*.pt" in data and "models.yaml" in data
    assert '["detector.shipped"]' in (REPO / "setup.py").read_text()
    _, models = W.shipped_models()
    assert all((REPO / "weights" / m["file"]).is_file() for m in models.values())


@pytest.mark.slow
def test_val_through_a_runtime_module_equals_val_of_the_weights(ssdd_subset, tmp_path):  # noqa: F811
    """The interface non-eager runtimes give Ultralytics' validator (``Runtime.as_module``), here around
    the eager runtime: the same metrics as validating the weights directly."""
    from detector.engine.validator import evaluate

    common = dict(split="val", imgsz=320, batch=8, plots=False, project=tmp_path)
    direct = evaluate(ssdd_subset, "ssdd", name="direct", **common)
    wrapped = evaluate(ssdd_subset, model=load_runtime("ssdd").as_module(), name="wrapped", **common)
    assert direct["map50"] > 0.5 and (direct["map50"], direct["map"]) == (wrapped["map50"], wrapped["map"])
    (tmp_path / "m.onnx").write_bytes(b"")  # refused by its runtime's row, before it is read
    with pytest.raises(ValueError, match="runtime onnx runs one input shape"):
        evaluate(ssdd_subset, tmp_path / "m.onnx", **common)

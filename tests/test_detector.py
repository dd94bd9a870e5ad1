"""Tests of the assembled detector (``SNNViTYOLO``), safe checkpoints and the offline settings.

* model: the n / s / m variants build and run; output layouts in train and eval mode for several image
  sizes and T; ``model.loss`` is finite and every parameter but the frozen DFL conv gets a gradient;
  no neuron state survives a call or flows between the samples of a batch;
* checkpoints: save -> load gives bit-identical outputs and detections, the stored config rebuilds the
  same architecture, a malicious pickle is refused without running, foreign or truncated files fail
  with a clear error;
* offline: importing the package makes Ultralytics offline and private, and detection works with the
  network blocked.

Most tests use ``TINY``, a 0.2 M-parameter config, so the file runs in well under a minute on 2 cores.
Equivalence checks are bit for bit (``torch.equal``).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

import detector  # noqa: F401  (offline environment first)
from detector.models.calibration import recalibrate_bn
from detector import settings as offline
from detector.infer import detect, predict_image
from detector.models import SNNViTYOLO, load_config
from detector.weights import FORMAT, UnsafeCheckpointError, load_checkpoint, load_model, save_checkpoint
from _tiny import TINY

REPO = Path(__file__).resolve().parents[1]



def tiny(seed: int = 0, **overrides) -> SNNViTYOLO:
    torch.manual_seed(seed)
    return SNNViTYOLO(load_config(TINY, **overrides), verbose=False)


def image(B: int = 2, H: int = 64, W: int = 96, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, 3, H, W, generator=g)


def n_anchors(H: int, W: int) -> int:
    return sum((H // s) * (W // s) for s in (8, 16, 32))


def calibrate(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """BN running statistics from ``x`` (the library's recalibration), then eval. With fresh statistics
    (mean 0, var 1) an untrained network is silent in eval mode, and the equivalence tests would
    pass on all-zero spikes."""
    recalibrate_bn(model, [x])
    return model.eval()


def loss_args():
    """Ultralytics' default hyper-parameters: ``model.loss`` reads the box / cls / dfl gains here."""
    from ultralytics.cfg import get_cfg

    return get_cfg()


@pytest.fixture(scope="module")
def live_tiny() -> tuple[SNNViTYOLO, torch.Tensor]:
    """A calibrated TINY model in eval mode whose neck spikes are live, and its input."""
    x = image(B=3)
    model = calibrate(tiny(), x)
    with torch.no_grad():
        rates = [float(f.mean()) for f in model.features(x)]
    assert all(0.01 < r < 0.9 for r in rates), f"neck firing rates {rates}: checks below would be vacuous"
    return model, x


# ------------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------------


def test_variants_build_and_run():
    models = {v: SNNViTYOLO(v, nc=2, verbose=False) for v in ("n", "s", "m")}
    params = {v: sum(p.numel() for p in m.parameters()) for v, m in models.items()}
    assert params["n"] < params["s"] < params["m"], params
    for v, m in models.items():
        assert m.yaml["variant"] == f"snnvit-yolo-{v}"
        assert m.yaml["nc"] == 2 and m.timesteps == 4 and m.head.nc == 2 and m.names == {0: "0", 1: "1"}
        assert m.stride.tolist() == [8.0, 16.0, 32.0]
        assert m.model[-1] is m.head  # Ultralytics expects the Detect head last
        m.eval()
        with torch.no_grad():
            y, raw = m(image(B=1, H=64, W=64), T=1)
        assert y.shape == (1, 4 + 2, n_anchors(64, 64)) and torch.isfinite(y).all()


@pytest.mark.parametrize("T", [1, 2])
@pytest.mark.parametrize("hw", [(64, 96), (128, 64)])
def test_forward_shapes_train_and_eval(T, hw):
    H, W = hw
    model = tiny(timesteps=T)
    x = image(B=2, H=H, W=W)
    A = n_anchors(H, W)
    model.train()
    out = model(x)
    assert isinstance(out, dict) and set(out) >= {"boxes", "scores", "feats"}
    assert out["boxes"].shape == (2, 4 * 16, A)
    assert out["scores"].shape == (2, 3, A)
    assert [tuple(f.shape) for f in out["feats"]] == [(2, 16, H // 8, W // 8), (2, 32, H // 16, W // 16),
                                                      (2, 32, H // 32, W // 32)]
    model.eval()
    with torch.no_grad():
        y, raw = model(x)
        spikes = model.features(x)
    assert y.shape == (2, 4 + 3, A)
    assert raw["boxes"].shape == (2, 4 * 16, A) and raw["scores"].shape == (2, 3, A)
    assert [tuple(s.shape) for s in spikes] == [(T, 2, 16, H // 8, W // 8), (T, 2, 32, H // 16, W // 16),
                                                (T, 2, 32, H // 32, W // 32)]
    assert all(bool(((s == 0) | (s == 1)).all()) for s in spikes)  # the neck hands the head spikes
    assert ((y[:, 4:] >= 0) & (y[:, 4:] <= 1)).all()  # class scores are sigmoid probabilities
    assert torch.isfinite(y).all()


def test_shorter_T_at_inference_and_longer_raises():
    model = tiny(timesteps=2).eval()
    x = image(B=1)
    with torch.no_grad():
        y1, _ = model(x, T=1)
        assert y1.shape == (1, 7, n_anchors(64, 96))
        with pytest.raises(ValueError, match="T=2"):
            model(x, T=3)


def test_loss_is_finite_and_every_parameter_gets_a_gradient():
    """512 px with a small, a medium and a near-full-image box: at initialisation every predicted box
    is ~15 strides wide, so Ultralytics' assigner gives a box to P5 anchors only when it is about as
    large as the image. Smaller inputs leave the P5 box branch with exactly zero gradient, legitimately."""
    model = tiny()
    model.args = loss_args()
    model.train()
    batch = {
        "img": image(B=1, H=512, W=512),
        "batch_idx": torch.zeros(3),
        "cls": torch.tensor([[0.0], [2.0], [1.0]]),
        "bboxes": torch.tensor([[0.2, 0.3, 0.06, 0.1], [0.7, 0.6, 0.35, 0.4], [0.5, 0.5, 0.98, 0.98]]),  # xywh, 0-1
    }
    loss, items = model.loss(batch)
    assert loss.shape == (3,) and torch.isfinite(loss).all() and (loss > 0).all()
    assert set(items) == {"box_loss", "cls_loss", "dfl_loss"}
    loss.sum().backward()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["model.2.dfl.conv.weight"]  # Ultralytics' fixed DFL projection (0..reg_max-1)
    assert model.head.dfl.conv.weight.grad is None
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        if name.endswith("saccade.weight"):  # M_w: only its lower triangle enters the forward
            upper = ~torch.tril(torch.ones_like(p, dtype=torch.bool))
            assert (p.grad[upper] == 0).all() and (p.grad[~upper] != 0).any(), name
        else:
            assert (p.grad != 0).any(), f"{name} got an all-zero gradient"


def test_loss_of_variant_n():
    """The shipped n config (not only TINY) trains: finite loss and a finite gradient everywhere."""
    model = SNNViTYOLO("n", nc=1, timesteps=1, verbose=False)
    model.args = loss_args()
    model.train()
    batch = {"img": image(B=2, H=128, W=128), "batch_idx": torch.tensor([0.0, 1.0]),
             "cls": torch.zeros(2, 1), "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.3], [0.3, 0.6, 0.2, 0.2]])}
    loss, _ = model.loss(batch)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_identical_calls_give_identical_outputs(live_tiny):
    model, x = live_tiny
    with torch.no_grad():
        first = model(x)[0]
        model(image(B=5, seed=7))  # a different batch size and content in between
        second = model(x)[0]
        third = model(x)[0]
    assert torch.equal(first, second) and torch.equal(first, third)


def test_batch_elements_are_independent(live_tiny):
    """A sample alone gives what it gives inside a batch. A mismatch in the spikes means neuron state
    or statistics flow between samples (for example ``(T*B)`` folded into a multi-step neuron).

    What is guaranteed, and so asserted: the spikes are equal (compared in float64, where the
    real-valued layers' batch-size-dependent rounding, ~1e-16 relative, cannot move a membrane across
    its threshold in practice), and the outputs agree within a tolerance (the CPU convolution kernels do
    not promise bitwise batch invariance: oneDNN picks a kernel per batch size, ~1e-7 relative in
    float32). A leak would flip spikes and change outputs by O(1)."""
    model, x = live_tiny
    m64, x64 = copy.deepcopy(model).double(), x.double()
    with torch.no_grad():
        spikes = m64.features(x64)
        spikes_alone = [m64.features(x64[i : i + 1]) for i in range(x.shape[0])]
        for lvl in range(3):
            assert torch.equal(torch.cat([s[lvl] for s in spikes_alone], dim=1), spikes[lvl])  # (T, B, C, h, w)
        batch = model(x)[0]
        alone = torch.cat([model(x[i : i + 1])[0] for i in range(x.shape[0])])
        torch.testing.assert_close(alone, batch, rtol=1e-5, atol=1e-4)
        batch64 = m64(x64)[0]
        alone64 = torch.cat([m64(x64[i : i + 1])[0] for i in range(x.shape[0])])
        pair64 = m64(x64[1:3])[0]
    torch.testing.assert_close(alone64, batch64, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(pair64, batch64[1:3], rtol=1e-10, atol=1e-9)
    assert not torch.equal(batch64[0], batch64[1])  # different images, different outputs: the check is live


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saved(tmp_path_factory, live_tiny) -> tuple[SNNViTYOLO, Path]:
    model, _ = live_tiny
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model, epoch=3, note=Path("/some/where"))
    return model, path


def sar_like_image(seed: int = 0, h: int = 150, w: int = 220) -> np.ndarray:
    """A speckled dark 'sea' with a few bright blobs, as BGR uint8."""
    rng = np.random.default_rng(seed)
    img = (rng.gamma(2.0, 20.0, (h, w))).clip(0, 255).astype(np.uint8)
    for cx, cy in ((40, 50), (150, 100), (180, 30)):
        cv2.ellipse(img, (cx, cy), (14, 5), 30, 0, 360, 255, -1)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


def test_round_trip_gives_identical_predictions(saved):
    model, path = saved
    loaded = load_model(path)
    assert not loaded.training and loaded is not model
    x = image(B=2, seed=5)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    assert torch.equal(a[0], b[0])
    assert all(torch.equal(a[1][k], b[1][k]) for k in ("boxes", "scores"))
    img = sar_like_image()
    da = predict_image(model, img, imgsz=128, conf=0.001)
    db = predict_image(loaded, img, imgsz=128, conf=0.001)
    assert len(da) > 0, "no detections at conf 0.001: the comparison would be vacuous"
    assert torch.equal(da, db)


def test_stored_config_rebuilds_exactly(saved):
    model, path = saved
    ckpt = load_checkpoint(path)
    assert ckpt["format"] == FORMAT and ckpt["epoch"] == 3 and ckpt["note"] == "/some/where"
    assert ckpt["config"] == model.yaml  # the whole resolved config dict travels with the weights
    assert ckpt["names"] == {0: "ship", 1: "plane", 2: "tank"}
    rebuilt = SNNViTYOLO(ckpt["config"], verbose=False)
    ref, new = model.state_dict(), rebuilt.state_dict()
    assert list(ref) == list(new)
    assert all(ref[k].shape == new[k].shape and ref[k].dtype == new[k].dtype for k in ref)
    assert rebuilt.yaml == model.yaml and rebuilt.names == model.names
    # Every stored value is plain data (what weights_only loading accepts).
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state_dict"].values())


def test_export_keeps_ema_weights_in_fp16_and_drops_training_state(tmp_path, live_tiny):
    from detector.weights import default_imgsz, export_weights

    model, _ = live_tiny
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.01)  # the EMA differs from the raw weights, so the test can tell which was kept
    src = tmp_path / "best.pt"
    save_checkpoint(src, model, ema_state_dict=ema.state_dict(), optimizer={"state": {}, "param_groups": []},
                    epoch=4, train_args={"imgsz": 320, "epochs": 5, "data": "/home/alice/ssdd/data.yaml",
                                         "project": "C:\\Users\\alice\\runs", "name": "exp"},
                    distill={"teacher": "/home/alice/runs/teacher.pt", "cls_weight": 1.0})
    dst = export_weights(src, tmp_path / "small.pt", note="test")
    ckpt = load_checkpoint(dst)
    assert "optimizer" not in ckpt and "ema_state_dict" not in ckpt and ckpt["note"] == "test"
    # the shared file names no folder of the training machine: absolute paths keep their last part only
    assert {k: ckpt["train_args"][k] for k in ("data", "project", "name")} == {"data": "data.yaml", "project": "runs",
                                                                              "name": "exp"}
    assert ckpt["distill"] == {"teacher": "teacher.pt", "cls_weight": 1.0}
    assert ckpt["epoch"] == 4
    floats = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    loaded = load_model(dst)
    assert default_imgsz(loaded) == 320 and default_imgsz(model) == 640
    ref = ema.state_dict()
    for k, v in loaded.state_dict().items():
        assert v.dtype == ref[k].dtype
        if v.is_floating_point():  # the EMA's values, rounded to fp16
            assert torch.allclose(v, ref[k], rtol=1e-3, atol=1e-4), k
        else:
            assert torch.equal(v, ref[k]), k
    assert dst.stat().st_size < src.stat().st_size / 2


def test_export_cuts_a_yolov8_teacher_checkpoint_too(tmp_path):
    """A baseline/teacher checkpoint of train_baseline.py: the same cut (EMA in fp16, no optimizer, no
    folder of the training machine), still an ANN checkpoint that rebuilds the same network."""
    from ultralytics.nn.tasks import DetectionModel

    from detector.weights import build_ann, export_weights, load_ann_checkpoint, save_ann_checkpoint

    model = DetectionModel("yolov8n.yaml", nc=1, verbose=False)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.add_(0.01)
    src = save_ann_checkpoint(tmp_path / "best.pt", model, "yolov8n.yaml", {0: "ship"}, ema_state_dict=ema.state_dict(),
                              optimizer={"state": {}, "param_groups": []}, epoch=56,
                              train_args={"imgsz": 320, "data": "/home/alice/ssdd/data.yaml"})
    ckpt = load_ann_checkpoint(export_weights(src, tmp_path / "teacher.pt"))
    assert "optimizer" not in ckpt and "ema_state_dict" not in ckpt and ckpt["epoch"] == 56
    assert ckpt["train_args"] == {"imgsz": 320, "data": "data.yaml"}
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    rebuilt, ref = build_ann(ckpt).state_dict(), ema.state_dict()
    assert all(torch.allclose(v, ref[k], rtol=1e-3, atol=1e-4) for k, v in rebuilt.items() if v.is_floating_point())


class _Payload:
    """Pickles as a call: unpickling it runs ``func(*args)``."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("how", ["os.system", "open"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, saved, how):
    model, _ = saved
    marker = tmp_path / "pwned"
    payload = (_Payload(os.system, (f"touch {marker}",)) if how == "os.system"
               else _Payload(open, (str(marker), "w")))
    evil = tmp_path / "evil.pt"
    # A real checkpoint with the format tag and a payload hidden in an ordinary-looking field.
    torch.save({"format": FORMAT, "format_version": 1, "config": model.yaml, "names": {0: "a"},
                "state_dict": model.state_dict(), "train_args": payload}, evil)
    with pytest.raises(UnsafeCheckpointError, match="refused") as err:
        load_checkpoint(evil)
    assert str(evil) in str(err.value)
    with pytest.raises(UnsafeCheckpointError):
        load_model(evil)
    assert not marker.exists(), "unpickling ran the payload"
    # The payload is live: an unsafe load would have run it (so the check above can fail).
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_foreign_torch_file_is_rejected(tmp_path, saved):
    model, _ = saved
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, plain)  # no format tag
    with pytest.raises(ValueError, match="not an SNN-ViT-YOLO checkpoint"):
        load_checkpoint(plain)
    bare = tmp_path / "bare.pt"
    torch.save(model.state_dict(), bare)  # a bare state dict (an OrderedDict) is not a checkpoint either
    with pytest.raises(ValueError, match="not an SNN-ViT-YOLO checkpoint"):
        load_model(bare)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("keep", [0.0, 0.5, 0.99])
def test_truncated_file_gives_a_clear_error(tmp_path, saved, keep):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ValueError, match="corrupt") as err:
        load_checkpoint(cut)
    assert str(cut) in str(err.value)


def test_newer_format_version_is_rejected(tmp_path, saved):
    _, path = saved
    ckpt = load_checkpoint(path)
    ckpt["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(ckpt, newer)
    with pytest.raises(ValueError, match="newer"):
        load_checkpoint(newer)


# ------------------------------------------------------------------------------------------------
# Offline and private
# ------------------------------------------------------------------------------------------------

_PROBE = textwrap.dedent(
    """
    import json, os, socket, sys
    attempts = []
    def refuse(*a, **k):
        attempts.append(repr(a[:2]))
        raise OSError("network blocked by test")
    socket.getaddrinfo = refuse
    socket.create_connection = refuse
    socket.socket.connect = lambda self, *a, **k: refuse(*a)
    sys.path.insert(0, sys.argv[1])
    import detector
    env = {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_AUTOINSTALL", "YOLO_CONFIG_DIR")}
    after_package = "ultralytics" in sys.modules
    import detector.engine.trainer
    import ultralytics.utils as u
    import ultralytics.engine.trainer as ut
    from detector import settings as offline
    out = dict(env=env, ultralytics_imported_by_package=after_package, online=u.ONLINE, is_online=u.is_online(),
               autoinstall=u.AUTOINSTALL, user_config_dir=str(u.USER_CONFIG_DIR),
               settings={k: u.SETTINGS.get(k) for k in ("sync", "wandb", "tensorboard", "mlflow", "comet")},
               check_amp_is_local=ut.check_amp is offline.local_check_amp,
               fonts={f: os.path.getsize(u.USER_CONFIG_DIR / f)
                      for f in ("Arial.ttf", "Arial.Unicode.ttf") if (u.USER_CONFIG_DIR / f).exists()},
               attempts=attempts)
    print("PROBE" + json.dumps(out))
    """
)


def test_import_makes_ultralytics_offline_and_private(tmp_path):
    """In a fresh interpreter with a clean environment and an empty cache folder (so the fonts must be
    installed by the package, not found from an earlier run) and with the network blocked."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "SNNVIT_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", _PROBE, str(REPO)], env=env, cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.split("PROBE", 1)[1])
    assert out["env"]["YOLO_OFFLINE"] == "1" and out["env"]["YOLO_AUTOINSTALL"] == "0"
    assert out["ultralytics_imported_by_package"] is False  # `import detector` alone stays light
    private = tmp_path / "cache" / "snnvit-yolo" / "ultralytics"
    assert Path(out["env"]["YOLO_CONFIG_DIR"]) == private  # the package's own folder, not the user's settings
    assert Path(out["user_config_dir"]) == private / "Ultralytics"
    assert out["online"] is False and out["is_online"] is False and out["autoinstall"] is False
    assert out["settings"]["sync"] is False and not any(out["settings"].values())
    assert out["check_amp_is_local"] is True
    assert set(out["fonts"]) == {"Arial.ttf", "Arial.Unicode.ttf"} and min(out["fonts"].values()) > 10_000
    assert out["attempts"] == [], f"something tried the network: {out['attempts']}"


def test_in_process_settings():
    """The same facts in this test process (the package was imported at the top of this file)."""
    import ultralytics.engine.trainer as ut
    from ultralytics import utils as u

    assert u.SETTINGS["sync"] is False
    assert ut.check_amp is offline.local_check_amp
    assert all((Path(u.USER_CONFIG_DIR) / f).is_file() for f in ("Arial.ttf", "Arial.Unicode.ttf"))
    assert offline.local_check_amp(tiny()) is False  # CPU: no AMP, and no reference-model download


def test_detect_works_with_network_blocked(tmp_path, saved, no_network):
    _, weights = saved
    attempts = no_network
    src = tmp_path / "in"
    src.mkdir()
    for i in range(2):
        cv2.imwrite(str(src / f"scene{i}.png"), sar_like_image(seed=i))
    out = tmp_path / "out"
    summary = detect(src, weights, out, runtime="eager", conf=0.001, imgsz=128, outputs=("image", "txt", "json"),
                     verbose=False)
    assert summary.images == 2 and summary.detections > 0 and not summary.skipped
    assert sorted(p.name for p in out.glob("*.jpg")) == ["scene0.jpg", "scene1.jpg"]
    assert cv2.imread(str(out / "scene0.jpg")).shape == (150, 220, 3)  # rendered at the original size
    assert len(json.loads((out / "predictions.json").read_text())) == summary.detections
    assert attempts == [], f"detect tried the network: {attempts}"


@pytest.mark.parametrize("mosaic, close, epoch, nb, recalibrate", [
    (1.0, 4, 0, 53, True), (1.0, 4, 21, 53, True),  # mosaic epochs (26 epochs, 0-based)
    (1.0, 4, 22, 53, True), (1.0, 4, 23, 53, False), (1.0, 4, 25, 53, False),  # 53, 106, 212 clean batches
    (1.0, 4, 22, 200, False),  # one long clean epoch is enough
    (1.0, 0, 25, 53, True),  # mosaic never closes
    (0.0, 4, 0, 4, True), (0.0, 4, 24, 4, False), (0.0, 0, 3, 4, True)])  # no mosaic: 4, 100, 16 batches
def test_bn_recalibration_until_running_stats_settle_on_clean_batches(mosaic, close, epoch, nb, recalibrate):
    from types import SimpleNamespace

    from detector.engine.trainer import SNNTrainer

    t = SimpleNamespace(args=SimpleNamespace(mosaic=mosaic, close_mosaic=close), epoch=epoch, epochs=26,
                        train_loader=[None] * nb, bn_settle_batches=SNNTrainer.bn_settle_batches)
    assert SNNTrainer.bn_stats_settled(t) is (not recalibrate)


def test_class_prior_option_sets_the_head_bias():
    """Without cls_prior the head starts from Ultralytics' rule (-7.2 / -5.8 / -4.4 at nc=1), whatever the
    readout (the shipped integer-spike config: current readout, no prior); with cls_prior p every stride
    starts at log(p / (1 - p))."""
    import math

    expected = [round(math.log(5 / (640 / s) ** 2), 2) for s in (8, 16, 32)]
    rule = [b[-1].bias[0].item() for b in SNNViTYOLO("n", nc=1, verbose=False).head.cv3]
    assert [round(v, 2) for v in rule] == expected
    m = SNNViTYOLO("n-ilif", nc=1, verbose=False)
    assert [round(b[-1].bias[0].item(), 2) for b in m.head.cv3] == expected and m.yaml["readout"] == "current"
    assert m.timesteps == 1 and m.yaml["neuron"]["name"] == "ilif" and m.yaml["neuron"]["max_spikes"] == 4
    p = SNNViTYOLO(load_config("n-ilif", nc=1, cls_prior=0.01), verbose=False)
    assert all(b[-1].bias[0].item() == pytest.approx(math.log(0.01 / 0.99)) for b in p.head.cv3)
    for bad in (0.0, 0.7, "x", True):
        with pytest.raises(ValueError, match="cls_prior"):
            load_config("n", cls_prior=bad)

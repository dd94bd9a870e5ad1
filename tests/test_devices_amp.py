"""Device names (``detector.devices``) and AMP-safe optimizer steps (``SafeTrainer.optimizer_step``), on the CPU.

The AMP situation is reproduced with a real ``torch.amp.GradScaler`` on the CPU: the first steps' scaled
loss overflows (as fp16 gradients do at GradScaler's initial scale), the scaler skips those steps, lowers its
scale and training goes on; a genuinely non-finite loss still stops the run, and so does a scaler that keeps
skipping.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from detector.devices import Device, resolve_device
from detector.engine.safe_trainer import SafeTrainer


# -- device names ------------------------------------------------------------------------------------
def test_cpu_names():
    d = resolve_device("cpu")
    assert d == Device("cpu") and d.torch == torch.device("cpu") and d.ultralytics == "cpu"
    assert resolve_device(" CPU ").kind == "cpu"
    assert resolve_device(torch.device("cpu")).kind == "cpu"
    assert resolve_device(None).kind == "cpu"


@pytest.mark.parametrize("spec, indices, ul", [("0", (0,), "0"), ("cuda", (0,), "0"), ("cuda:1", (1,), "1"),
                                               ("0,1", (0, 1), "0,1")])
def test_cuda_names_map_once(monkeypatch, spec, indices, ul):
    """Every CUDA spelling maps to the same record (GPUs faked: this test runs on CPU machines)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    d = resolve_device(spec, multi=True)
    assert d.kind == "cuda" and d.indices == indices and d.ultralytics == ul
    assert d.torch == torch.device(f"cuda:{indices[0]}")


def test_several_gpus_only_for_training(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="runs on one device"):
        resolve_device("0,1")
    with pytest.raises(ValueError, match="twice"):
        resolve_device("1,1", multi=True)


@pytest.mark.parametrize("spec", ["tpu", "gpu", "cuda:x", "-3", "0;1", "", "0,", "cuda:0,1"])
def test_bad_names_are_one_line(spec):
    with pytest.raises(ValueError) as e:
        resolve_device(spec)
    assert "\n" not in str(e.value) and "device" in str(e.value)


def test_absent_gpu_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("0", "cuda", "cuda:3", "0,1"):
        with pytest.raises(ValueError, match="not there: this machine has no CUDA GPU"):
            resolve_device(spec, multi=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("tool, args", [("val.py", ["--data", "x.yaml", "--device", "0"]),
                                        ("detect.py", ["--source", "images", "--device", "cuda:0"]),
                                        ("train.py", ["--data", "x.yaml", "--device", "0,1"])])
@pytest.mark.slow
def test_tools_refuse_absent_device(tmp_path, tool, args):
    """An absent GPU is one line naming the device, before any work (it was a ``.to('0')`` traceback)."""
    from _tools import TOOLS, one_line_error, run_tool

    line = one_line_error(run_tool(TOOLS / tool, *args, "--out" if tool == "detect.py" else "--project", tmp_path / "o"))
    assert "not there" in line and "no CUDA GPU" in line
    assert not (tmp_path / "o").exists()


# -- AMP-safe optimizer step ---------------------------------------------------------------------------
class _Stub(SafeTrainer):
    """A SafeTrainer with only what ``optimizer_step`` uses (no dataset, no Ultralytics setup)."""

    def __init__(self, model: nn.Module, scaler: torch.amp.GradScaler):
        self.model = model
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        self.scaler = scaler
        self.ema = None
        self.epoch = 0
        self.loss = None
        self.last = Path("does-not-exist.pt")


def _step(t: _Stub, x: torch.Tensor, poison: float | None = None) -> None:
    """Forward, scaled backward and the guarded step; ``poison`` multiplies the scaled loss (inf = the
    overflow fp16 gradients hit at a large loss scale)."""
    t.loss = t.model(x).pow(2).mean()
    scaled = t.scaler.scale(t.loss)
    if poison is not None:
        scaled = scaled * poison
    scaled.backward()
    t.optimizer_step()


def test_amp_overflow_is_skipped_and_training_goes_on():
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    t = _Stub(model, torch.amp.GradScaler("cpu", init_scale=2.0 ** 16))
    t._amp_epoch_start()
    x = torch.randn(8, 4)
    w0 = model.weight.detach().clone()
    for _ in range(3):  # three overflowing steps: skipped, weights untouched, scale halved each time
        _step(t, x, poison=math.inf)
    assert torch.equal(model.weight, w0)
    assert t.amp_skipped == 3 and t.scaler.get_scale() == 2.0 ** 13
    for _ in range(5):  # then normal steps: the loss falls
        loss_before = float(model(x).pow(2).mean().detach())
        _step(t, x)
    assert not torch.equal(model.weight, w0)
    assert float(model(x).pow(2).mean().detach()) < loss_before
    assert t.amp_skipped == 3 and t._amp_streak == 0


def test_amp_that_keeps_skipping_stops():
    model = nn.Linear(4, 2)
    t = _Stub(model, torch.amp.GradScaler("cpu", init_scale=2.0 ** 16))
    x = torch.randn(8, 4)
    for _ in range(SafeTrainer.AMP_SKIP_LIMIT - 1):
        _step(t, x, poison=math.inf)
    with pytest.raises(FloatingPointError, match=f"AMP skipped {SafeTrainer.AMP_SKIP_LIMIT} optimizer steps in a row"):
        _step(t, x, poison=math.inf)


def test_non_finite_loss_still_stops_under_amp():
    model = nn.Linear(4, 2)
    t = _Stub(model, torch.amp.GradScaler("cpu"))
    t.loss = torch.tensor(float("nan"))
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        t.optimizer_step()


def test_without_amp_a_non_finite_gradient_stops_as_before():
    model = nn.Linear(4, 2)
    t = _Stub(model, torch.amp.GradScaler("cpu", enabled=False))
    w0 = model.weight.detach().clone()
    with pytest.raises(FloatingPointError, match="non-finite gradient in weight"):
        _step(t, torch.randn(8, 4), poison=math.inf)
    assert torch.equal(model.weight, w0)


def test_without_amp_steps_are_plain():
    """No AMP: one guarded step equals clip + SGD step by hand."""
    torch.manual_seed(0)
    a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    b.load_state_dict(a.state_dict())
    t = _Stub(a, torch.amp.GradScaler("cpu", enabled=False))
    x = torch.randn(8, 4)
    _step(t, x)
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    b(x).pow(2).mean().backward()
    torch.nn.utils.clip_grad_norm_(b.parameters(), 10.0)
    opt.step()
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)


def test_amp_column_in_results_csv(tmp_path):
    """save_metrics adds ``train/amp_skipped``, and keeps an older run's header as it is."""
    t = _Stub(nn.Linear(1, 1), torch.amp.GradScaler("cpu", enabled=False))
    t.csv = tmp_path / "results.csv"
    t.train_time_start = 0.0
    t.amp_skipped = 2
    t.save_metrics({"a": 1.0})
    head, row = t.csv.read_text().splitlines()
    assert head.split(",")[-1] == "train/amp_skipped" and float(row.split(",")[-1]) == 2
    old = tmp_path / "old.csv"
    old.write_text("epoch,time,a\n1,0,1\n")
    t.csv = old
    t.save_metrics({"a": 2.0})
    assert old.read_text().splitlines()[-1].count(",") == 2

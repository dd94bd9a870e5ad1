"""Mixed precision on the CPU (``detector.precision``): bf16 autocast where the CPU computes bf16 natively.

Checked: what ``amp`` resolves to per device and CPU (the CPU's flags faked both ways); a bf16 step of a
tiny model gives finite loss and gradients close to fp32's, with the convolutions really in bf16 and the
neurons and SSSA's salience in fp32 (the stated islands); the neuron's fp32 island gives the fp32
kernel's spikes; and through the real trainer: amp on gives a bf16 forward, ``--no-amp`` (amp=False) an
fp32 one, a CPU without bf16 falls back to fp32 without error, and the checkpoints hold fp32 weights that
load as before.
"""

from __future__ import annotations

import pytest
import torch
import yaml
from _tiny import TINY_T1 as TINY_CFG
from _yolo_data import TRAIN_KW, make_yolo_dataset

import detector  # noqa: F401
from detector import precision
from detector.models import SNNViTYOLO
from detector.nn import kernels

needs_bf16 = pytest.mark.skipif(not precision.cpu_has_bf16(), reason="this CPU has no native bf16")


@pytest.fixture
def fake_cpu(monkeypatch):
    """Set the CPU's instruction-set flags the detector sees."""
    def set_flags(*flags: str) -> None:
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(flags))
    return set_flags


# -- what amp means where -------------------------------------------------------------------------
@pytest.mark.parametrize("flags, expected", [(("avx512f", "avx512_bf16"), "bf16"), (("amx_bf16", "amx_tile"), "bf16"),
                                             (("fp", "asimd", "bf16"), "bf16"), (("avx2", "avx512f", "avx512_vnni"), False),
                                             ((), False)])
def test_cpu_precision_follows_the_flags(fake_cpu, flags, expected):
    fake_cpu(*flags)
    assert precision.train_amp(True, "cpu") == expected
    assert precision.train_amp(False, "cpu") is False  # --no-amp
    assert precision.train_amp("fp32", "cpu") is False


def test_amp_on_other_devices(fake_cpu):
    fake_cpu("avx512_bf16")
    assert precision.train_amp(True, "cuda") is True  # fp16 with GradScaler, after the AMP check
    assert precision.train_amp("bf16", "cuda") == "bf16"
    assert precision.train_amp(False, "cuda") is False
    assert precision.train_amp(True, "mps") is False


def test_cpu_flags_read_this_machine():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset)
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        text = f.read()
    assert precision.cpu_has_bf16() == any(f" {flag}" in text for flag in ("avx512_bf16", "amx_bf16", " bf16"))


def test_cpu_autocast_only_for_bf16():
    import ultralytics.engine.trainer as ul_trainer

    import detector.engine  # noqa: F401  (installs the project's settings)

    assert ul_trainer.autocast is precision.autocast  # the training loop's autocast allows bf16 on the CPU
    with precision.autocast(torch.bfloat16, device="cpu"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with precision.autocast(False, device="cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with precision.autocast(True, device="cpu"):  # Ultralytics' fp16 flag: never autocasts the CPU
        assert not torch.is_autocast_enabled("cpu")


# -- one step of a tiny model ---------------------------------------------------------------------
def _tiny(seed: int = 0) -> SNNViTYOLO:
    from ultralytics.cfg import get_cfg

    torch.manual_seed(seed)
    m = SNNViTYOLO(dict(TINY_CFG, neuron={"name": "ilif", "max_spikes": 4}), verbose=False)
    m.set_names(["box"])
    m.args = get_cfg()
    return m.train()


def _batch(n: int = 2, size: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"img": torch.rand(n, 3, size, size, generator=g), "batch_idx": torch.arange(n).float(),
            "cls": torch.zeros(n, 1), "bboxes": torch.tensor([[0.5, 0.5, 0.3, 0.4]]).repeat(n, 1)}


def _loss_and_grads(model: SNNViTYOLO, bf16: bool) -> tuple[torch.Tensor, torch.Tensor, dict[str, set]]:
    """Loss, flattened gradient, and the dtypes seen at the inputs of convs, neurons and the saccadic neuron."""
    from detector.nn.neurons import SaccadicNeuron

    seen: dict[str, set] = {"conv_out": set(), "saccade_in": set()}
    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, i, o: seen["conv_out"].add(o.dtype)))
        elif isinstance(m, SaccadicNeuron):
            hooks.append(m.register_forward_hook(lambda mod, i, o: seen["saccade_in"].add(i[0].dtype)))
    model.zero_grad(set_to_none=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = model.loss(_batch())
        loss.sum().backward()
    finally:
        for h in hooks:
            h.remove()
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters() if p.grad is not None])
    return loss.detach().sum(), grads, seen


@needs_bf16
def test_bf16_step_of_a_tiny_model_is_finite():
    """The whole model: convolutions in bf16, salience in fp32, weights and gradients fp32 and finite, the
    same parameters trained, a loss of fp32's size. Not closer: a spiking network at initialisation is
    chaotic (an fp32 input perturbed by 2^-8 flips about 40 % of the head's spikes, as bf16 does), so
    closeness is checked per layer below and by training (README, the bf16 ablation row)."""
    model = _tiny()
    l32, g32, seen32 = _loss_and_grads(model, bf16=False)
    l16, g16, seen16 = _loss_and_grads(model, bf16=True)
    assert seen32["conv_out"] == {torch.float32} and torch.bfloat16 in seen16["conv_out"]
    assert seen16["saccade_in"] == {torch.float32}  # SSSA's salience: the fp32 island
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert torch.isfinite(l16) and torch.isfinite(g16).all()
    assert g16.dtype == torch.float32 and g16.numel() == g32.numel()
    assert 0.5 < float(l16 / l32) < 2


@needs_bf16
def test_bf16_spiking_layer_is_close_to_fp32():
    """One conv -> BN -> I-LIF layer: bf16 moves only the spikes whose membrane sits within bf16's rounding
    of a threshold, and the weight gradient keeps its direction."""
    from detector.nn.blocks import SpikeConv

    torch.manual_seed(0)
    layer = SpikeConv(16, 32, {"name": "ilif", "max_spikes": 4}).train()
    x = torch.randn(1, 4, 16, 32, 32)  # (T, B, C, H, W)
    g = torch.randn(1, 4, 32, 32, 32)
    out = {}
    for bf16 in (False, True):
        layer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            s = layer(x)
        (s.float() * g).sum().backward()
        out[bf16] = s.float(), next(layer.conv.parameters()).grad.clone()
    (s32, w32), (s16, w16) = out[False], out[True]
    assert (s16 != s32).float().mean() < 0.01
    assert torch.nn.functional.cosine_similarity(w16.reshape(-1), w32.reshape(-1), dim=0) > 0.99
    assert 0.95 < float(w16.norm() / w32.norm()) < 1.05


def _atan():
    from spikingjelly.activation_based import surrogate

    return surrogate.ATan()


@pytest.mark.parametrize("kind", ["ilif", "lif-hard", "if-soft"])
@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("c_kernel", [True, False])
def test_neuron_fp32_island_matches_the_fp32_kernel(monkeypatch, kind, T, c_kernel):
    """A bf16 input is an fp32 island: the C kernel's bf16 entry points (or, without them, casts around the
    PyTorch path) give the fp32 kernel's spikes on the widened input, in bf16, and its input gradient
    rounded to bf16; the membrane stays fp32 (streaming state)."""
    if not c_kernel:
        monkeypatch.setattr(kernels, "_FORCE_TORCH", False)
        monkeypatch.setattr(kernels, "library", lambda: None)
    elif kernels.library() is None:
        pytest.skip("no C compiler here")
    p = {"ilif": kernels.ilif_params(4 / 3, 1.0, 4, True),
         "lif-hard": kernels.lif_params(2.0, 1.0, 0.0, _atan(), True, decay=True),
         "if-soft": kernels.lif_params(None, 1.0, None, _atan(), True, decay=False)}[kind]
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(T, 3, 8, 8, generator=g) * 3).to(torch.bfloat16).requires_grad_()
    x32 = x.detach().float().requires_grad_()
    s16, _ = kernels.run(p, x)
    s32, _ = kernels.run(p, x32)
    assert s16.dtype == torch.bfloat16 and torch.equal(s16.float(), s32)
    gs = torch.randn(s32.shape, generator=g).to(torch.bfloat16)
    s16.backward(gs)
    s32.backward(gs.float())
    assert x.grad.dtype == torch.bfloat16 and torch.equal(x.grad, x32.grad.to(torch.bfloat16))
    with torch.no_grad():  # inference and streaming: spikes in bf16, the final membrane in fp32
        s, v = kernels.run(p, x.detach(), keep_state=True)
        s_ref, v_ref = kernels.run(p, x32.detach(), keep_state=True)
    assert s.dtype == torch.bfloat16 and torch.equal(s.float(), s_ref)
    assert v.dtype == torch.float32 and torch.equal(v, v_ref)


def test_sssa_counts_are_exact_in_fp32_under_bf16():
    """K' summed over every token exceeds 256, where bf16 stops holding integers: the salience sums in fp32."""
    from detector.nn.attention.sssa import salience_v1, salience_v2

    g = torch.Generator().manual_seed(0)
    q = torch.randint(0, 5, (1, 1, 2, 300, 16), generator=g).float()
    k = torch.randint(0, 5, (1, 1, 2, 300, 16), generator=g).float()
    want = salience_v2(q.double(), k.double(), 4).float()
    for fn in (salience_v1, salience_v2):
        got = fn(q.to(torch.bfloat16), k.to(torch.bfloat16), 4)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-6, atol=0)


# -- through the trainer ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_yaml_ilif(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(yaml.safe_dump(dict(TINY_CFG, neuron={"name": "ilif", "max_spikes": 4}), sort_keys=False))
    return p


def _train(data, model_yaml, tmp_path, name, monkeypatch, **kw):
    """One epoch on generated images; returns the trainer and the dtypes the first conv's output had."""
    from detector.engine.trainer import train

    seen: set = set()
    real_forward = torch.nn.Conv2d.forward

    def record(self, x):
        out = real_forward(self, x)
        if torch.is_grad_enabled():  # training batches, not validation
            seen.add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv2d, "forward", record)
    det = torch.are_deterministic_algorithms_enabled()
    try:
        t = train(data, model_yaml, epochs=1, seed=0, project=tmp_path / "runs", name=name, val=False,
                  **TRAIN_KW, **kw)
    finally:
        torch.use_deterministic_algorithms(det)
    return t, seen


@pytest.mark.slow
@pytest.mark.parametrize("case", ["bf16", "no-amp", "cpu-without-bf16"])
def test_trainer_precision(tmp_path, tiny_yaml_ilif, monkeypatch, fake_cpu, case):
    from detector.weights import load_checkpoint, load_model

    if case == "bf16" and not precision.cpu_has_bf16():
        pytest.skip("this CPU has no native bf16")
    if case == "cpu-without-bf16":
        fake_cpu("avx2", "avx512f")
    data = make_yolo_dataset(tmp_path / "ds", n_train=4, n_val=2, bad=False)
    t, seen = _train(data, tiny_yaml_ilif, tmp_path, case, monkeypatch, **({"amp": False} if case == "no-amp" else {}))
    want = torch.bfloat16 if case == "bf16" else torch.float32
    assert seen == {want}
    assert t.args.amp == ("bf16" if case == "bf16" else False)
    assert not t.scaler.is_enabled()  # bf16 needs no GradScaler; fp32 has none
    ckpt = load_checkpoint(t.last)
    assert ckpt["train_args"]["amp"] is (case != "no-amp")  # the request, as before: resumable anywhere
    floats = [v for v in {**ckpt["state_dict"], **ckpt["ema_state_dict"]}.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float32 for v in floats)
    model = load_model(t.last)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with torch.no_grad():
        assert torch.isfinite(model(torch.rand(1, 3, 64, 64))[0]).all()


@pytest.mark.slow
@needs_bf16
def test_teacher_runs_under_the_same_autocast(tmp_path, tiny_yaml_ilif, monkeypatch):
    """Distillation: the teacher's forward runs inside the student's bf16 autocast (the loss is computed
    there), and the distillation losses stay finite."""
    from ultralytics.nn.tasks import DetectionModel

    from detector.engine import distill
    from detector.weights import save_ann_checkpoint

    torch.manual_seed(0)
    teacher = tmp_path / "teacher.pt"
    save_ann_checkpoint(teacher, DetectionModel("yolov8n.yaml", nc=1, verbose=False), "yolov8n.yaml", {0: "box"})
    seen = []
    real = distill.head_outputs

    def record(model, img):
        out = real(model, img)
        seen.append((torch.is_autocast_enabled("cpu"), out["scores"].dtype))
        return out

    monkeypatch.setattr(distill, "head_outputs", record)
    data = make_yolo_dataset(tmp_path / "ds", n_train=4, n_val=2, bad=False)
    t, _ = _train(data, tiny_yaml_ilif, tmp_path, "kd", monkeypatch, distill={"teacher": str(teacher)})
    assert seen and set(seen) == {(True, torch.bfloat16)}
    assert torch.isfinite(t.tloss["kd_cls"]) and torch.isfinite(t.tloss["kd_box"])


def test_resume_memory_estimate_follows_the_precision(fake_cpu):
    """Resuming checks that the activations fit: bf16 halves them on a CPU that will train in bf16, not elsewhere."""
    from detector.engine.resume import check_resume_memory

    model = _tiny()
    fake_cpu("avx512_bf16")
    fp32 = check_resume_memory(model, batch=2, imgsz=64, device="cpu", source="last.pt", amp=False)
    assert check_resume_memory(model, batch=2, imgsz=64, device="cpu", source="last.pt", amp=True) == pytest.approx(fp32 / 2, abs=1)
    fake_cpu("avx2")
    assert check_resume_memory(model, batch=2, imgsz=64, device="cpu", source="last.pt", amp=True) == fp32

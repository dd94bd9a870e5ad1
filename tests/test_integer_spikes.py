"""Integer spikes (I-LIF) in the detector: counts in {0..D} everywhere a binary neuron would fire,
SSSA salience normalised so the threshold is scale-free, the spike-driven inference form (each count
expanded into D binary events) equal to the integer form, with only 0/1 reaching every convolution
after the stem, and exact streaming.

A tiny config (``_tiny.TINY``) with ``neuron: {name: ilif, max_spikes: D}``; equivalence checks are
bit for bit in float64 (``torch.equal``).
"""

from __future__ import annotations

import copy

import pytest
import torch

import detector  # noqa: F401
from detector.models import SNNViTYOLO, load_config
from detector.nn import SaccadicNeuron, SpikingNeuron, SynapticConv2d, salience_v1, salience_v2, spike_driven, stream
from detector.nn.synapse import counts_to_binary, model_levels
from _tiny import TINY
from _spikes import ConvInputs, image, live


def ilif_model(T: int = 2, D: int = 2, seed: int = 0, attn: str = "sssa_v2", readout: str = "spikes") -> SNNViTYOLO:
    cfg = load_config(TINY, timesteps=T, neuron={"name": "ilif", "max_spikes": D}, readout=readout)
    cfg["backbone"] = {**cfg["backbone"], "attn": attn}
    torch.manual_seed(seed)
    return SNNViTYOLO(cfg, verbose=False)


@pytest.mark.parametrize("T,D", [(1, 4), (2, 2), (4, 1)])
def test_neurons_emit_counts_in_0_to_D(T, D):
    model = live(ilif_model(T, D), image())
    assert model_levels(model) == D
    outs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: outs.append(o.detach()))
             for m in model.modules() if isinstance(m, SpikingNeuron)]
    with torch.no_grad():
        model(image())
    for h in hooks:
        h.remove()
    allv = torch.cat([o.flatten() for o in outs])
    assert torch.equal(allv, allv.round()) and allv.min() >= 0 and allv.max() <= D
    if D > 1:
        assert (allv > 1).any()  # the integer levels are really used


def test_salience_is_normalised_by_levels():
    """All-D counts give salience exactly 1 whatever D, N and head width; half the levels give 1/4."""
    for D in (1, 2, 4):
        q = torch.full((2, 1, 2, 5, 3), float(D))  # (T, B, nh, N, hd)
        for f in (salience_v1, salience_v2):
            assert torch.equal(f(q, q, D), torch.ones(2, 1, 2, 5))
        if D % 2 == 0:
            assert torch.allclose(salience_v2(q / 2, q / 2, D), torch.full((2, 1, 2, 5), 0.25))


def test_counts_to_binary_is_a_thermometer_code():
    c = torch.tensor([0.0, 1.0, 3.0, 4.0])
    b = counts_to_binary(c, 4)
    assert b.shape == (4, 4) and set(b.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(b.sum(0), c)
    assert b[:, 2].tolist() == [1, 1, 1, 0]


@pytest.mark.parametrize("T,D", [(1, 4), (2, 2)])
def test_spike_driven_form_equals_integer_form_and_feeds_convs_only_binary(T, D):
    from ultralytics.utils.nms import non_max_suppression

    x = image(B=2).double()
    model = live(ilif_model(T, D).double(), x)
    with torch.no_grad():
        y_int = model(x)[0]
        rec = ConvInputs()
        with spike_driven(model), rec:
            y_bin = model(x)[0]
    assert torch.equal(y_int, y_bin)  # exact in float64
    det_int = non_max_suppression(y_int.float(), 0.001, 0.7)
    det_bin = non_max_suppression(y_bin.float(), 0.001, 0.7)
    assert all(torch.equal(a, b) for a, b in zip(det_int, det_bin)) and sum(len(d) for d in det_int) > 0
    n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert len(rec.inputs) >= n_convs - 1  # every conv ran (the head's DFL conv runs too)
    stem, rest = rec.inputs[0], rec.inputs[1:]
    assert not torch.equal(stem, stem.round())  # the stem sees the real image
    spike_fed = [t for t in rest if t.shape[1] != 16]  # all but the DFL conv (16 bins, real logits)
    assert spike_fed and all(bool(((t == 0) | (t == 1)).all()) for t in spike_fed)
    assert all(c.expand == 0 for c in model.modules() if isinstance(c, SynapticConv2d))  # restored on exit


def test_integer_form_convs_see_counts_above_one():
    """Without the expansion the same convolutions see integer counts: the expansion is not a no-op."""
    x = image(B=2)
    model = live(ilif_model(1, 4), x)
    rec = ConvInputs()
    with torch.no_grad(), rec:
        model(x)
    assert any(bool((t > 1).any()) and bool((t == t.round()).all()) for t in rec.inputs[1:])


def test_streaming_equals_parallel_with_integer_spikes():
    x = image(B=2).double()
    model = live(ilif_model(2, 2).double(), x)
    with torch.no_grad():
        par = model(x)[0]
        steps = stream(model, x, 2, call=lambda m, inp: m.features(inp, T=1))
        seq = model.head([torch.cat([s[i] for s in steps]) for i in range(3)])[0]
    assert torch.equal(par, seq)


@pytest.mark.parametrize("readout", ["spikes", "current"])
def test_every_parameter_gets_a_gradient_with_integer_spikes(readout):
    """As test_detector's gradient test (512 px, a small, a medium and a near-full-image box, so that
    every stride gets an assigned box), with integer spikes and either head readout: the straight-through
    window passes enough gradient that no parameter but Ultralytics' fixed DFL projection is left without one."""
    from ultralytics.cfg import get_cfg

    model = ilif_model(2, 2, readout=readout)
    model.args = get_cfg()
    model.train()
    batch = {"img": image(B=1, H=512, W=512), "batch_idx": torch.zeros(3), "cls": torch.tensor([[0.0], [2.0], [1.0]]),
             "bboxes": torch.tensor([[0.2, 0.3, 0.06, 0.1], [0.7, 0.6, 0.35, 0.4], [0.5, 0.5, 0.98, 0.98]])}
    loss, _ = model.loss(batch)
    loss.sum().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert missing == []
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_saccadic_neuron_still_mixes_over_timesteps():
    """With T = 2 the saccadic neuron's M_w is 2 x 2 and its second step sees the first step's salience."""
    model = ilif_model(2, 2)
    sacc = [m for m in model.modules() if isinstance(m, SaccadicNeuron)]
    assert sacc and all(m.T == 2 and m.weight.shape == (2, 2) for m in sacc)
    m = copy.deepcopy(sacc[0])
    with torch.no_grad():
        m.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        m.v_threshold.fill_(0.15)
        p = torch.tensor([[[[0.1]]], [[[0.1]]]])  # (T=2, B=1, nh=1... ) -> broadcast to its heads below
        p = p.expand(2, 1, m.v_threshold.numel(), 1).contiguous()
        out = m(p)
    assert out[0].sum() == 0 and out[1].all()  # 0.1 < 0.15 at t=0; 0.1 + 0.1 > 0.15 at t=1


@pytest.mark.slow
def test_heatmaps_work_with_integer_spikes(tmp_path):
    import numpy as np

    from detector.analysis.heatmap import heatmap_image, render_panel

    x = image(B=2, H=128, W=128)
    model = live(ilif_model(2, 2), x)
    img = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)
    res = heatmap_image(model, img, imgsz=128, conf=0.0)
    assert len(res.blocks) == 2  # every SSSA block of the tiny config: one at P4, one at P5
    for b in res.blocks:
        assert b.timesteps == 2 and 0 <= b.salience_tokens.min() and b.salience_tokens.max() <= 1
        assert set(np.unique(b.mask_tokens)) <= {0.0, 1.0}
    assert any(b.salience_tokens.max() > 0 for b in res.blocks)  # counts reach the salience
    assert render_panel(res, tmp_path / "p.png").is_file()

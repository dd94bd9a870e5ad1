"""The head's readouts (``detector.nn.head``): the ceiling of the spike readout, computed from the weights and
checked against the network; the current readout folded exactly, spike-driven and counted by the energy meter
(its gradients: ``test_integer_spikes``); the per-level detection tally of the validator.

Equivalence checks run in float64 on the tiny config with integer spikes (``test_integer_spikes``' helpers).
"""

from __future__ import annotations

import pytest
import torch

from detector.analysis.energy import measure_energy
from detector.engine.validator import LevelTally
from detector.models import SNNViTYOLO, load_config
from detector.nn import SynapticConv2d, spike_driven
from detector.nn.head import CurrentReadout, TemporalMeanConv
from _tiny import TINY
from _spikes import ConvInputs, image, live


def model_with(readout: str, T: int = 1, D: int = 4, seed: int = 0) -> SNNViTYOLO:
    cfg = load_config(TINY, timesteps=T, neuron={"name": "ilif", "max_spikes": D}, readout=readout)
    torch.manual_seed(seed)
    return SNNViTYOLO(cfg, verbose=False)


def branch_output(last: torch.nn.Module, counts: torch.Tensor) -> torch.Tensor:
    """The last layer of a class branch on (T, B, C, H, W) counts -> (B, nc, H, W) logits."""
    return last(counts)


@pytest.mark.parametrize("readout", ["spikes", "current"])
def test_attainable_max_score_is_the_ceiling(readout):
    """``max_scores`` is an upper bound no input reaches past, and an input built from the weights attains it:
    counts D where the (folded) weight is positive, 0 elsewhere."""
    D = 4
    model = live(model_with(readout, D=D).double(), image(B=2).double())
    bounds = model.head.max_scores(D)
    gen = torch.Generator().manual_seed(3)
    for level, b in enumerate(model.head.cv3):
        last = b[-1]
        C = last.conv.in_channels
        with torch.no_grad():
            rand = torch.randint(0, D + 1, (1, 64, C, 7, 7), generator=gen).double()  # (T, B, C, H, W)
            top = branch_output(last, rand).sigmoid().amax(dim=(0, 2, 3))  # (nc,)
            assert bool((top <= bounds[level] + 1e-12).all())
            w = last.folded()[0] if isinstance(last, CurrentReadout) else last.conv.weight
            for c in range(w.shape[0]):
                k = w.shape[-1]
                best = (w[c] > 0).double() * D  # (C, k, k): the input window that maximises class c
                x = torch.zeros(1, 1, C, k, k, dtype=torch.float64)
                x[0, 0] = best
                y = branch_output(last, x)[0, c, k // 2, k // 2].sigmoid()  # the window's centre sees it all
                assert float(y) == pytest.approx(float(bounds[level][c]), abs=1e-12)


def test_current_readout_folds_exactly_and_is_not_saved():
    model = live(model_with("current").double(), image(B=2).double())
    ro = model.head.cv3[0][-1]
    assert isinstance(ro, CurrentReadout)
    s = torch.randint(0, 5, (1, 2, ro.conv.in_channels, 9, 11)).double()  # (T, B, C, H, W) counts
    with torch.no_grad():
        chain = ro.proj(ro.bn(ro.conv(s.flatten(0, 1))))  # the training-time computation, BN in eval
        folded = ro(s)
    assert torch.allclose(chain, folded, rtol=0, atol=1e-12)
    sd = model.state_dict()
    assert not [k for k in sd if ".fused." in k]  # derived, never saved
    assert not [n for n, _ in model.named_parameters() if ".fused." in n]  # never optimised
    fresh = model_with("current").double()
    fresh.load_state_dict(sd, strict=True)


@pytest.mark.parametrize("T,D", [(1, 4), (2, 2)])
def test_current_readout_spike_driven_form_is_exact_and_binary(T, D):
    """The spike-driven form gives the same outputs (up to float64 summation order: the folded 3x3 conv sums
    D planes) and the same detections, and the folded readout sees only 0/1."""
    from ultralytics.utils.nms import non_max_suppression

    x = image(B=2).double()
    model = live(model_with("current", T, D).double(), x)
    with torch.no_grad():
        y_int = model(x)[0]
        rec = ConvInputs()
        with spike_driven(model), rec:
            y_bin = model(x)[0]
    assert torch.allclose(y_int, y_bin, rtol=1e-12, atol=1e-12)
    det_int = non_max_suppression(y_int.float(), 0.001, 0.7)
    det_bin = non_max_suppression(y_bin.float(), 0.001, 0.7)
    assert all(torch.equal(a, b) for a, b in zip(det_int, det_bin)) and sum(len(d) for d in det_int) > 0
    spike_fed = [t for t in rec.inputs[1:] if t.shape[1] != 16]  # all but the stem and the DFL conv
    assert spike_fed and all(bool(((t == 0) | (t == 1)).all()) for t in spike_fed)


def test_energy_counts_the_folded_readout_as_synaptic():
    """The meter sees the folded readout convs as spike-fed (AC-priced) layers; the unfolded chain is idle in
    eval mode and adds nothing; no real-valued (MAC) layer is added to the head."""
    x = image(B=2)
    model = live(model_with("current"), x)
    rep = measure_energy(model, [x])
    head = [r for r in rep.layers if r.name.startswith("model.2.")]
    fused = [r for r in head if r.name.endswith(".fused")]
    assert len(fused) == 6 and all(r.input_spikes and r.mac_ops == 0 and r.sops > 0 for r in fused)
    assert all(r.mac_ops == 0 for r in head if "dfl" not in r.name)
    idle = set(rep.idle_modules)
    assert {f"model.2.cv3.{i}.1.{n}" for i in range(3) for n in ("conv", "proj")} <= idle


def test_spike_readout_is_unchanged():
    """The default readout builds the earlier head (its state-dict keys), so earlier checkpoints load."""
    model = model_with("spikes")
    assert isinstance(model.head.cv3[0][-1], TemporalMeanConv)
    assert "model.2.cv3.0.2.conv.weight" in model.state_dict()
    assert sum(isinstance(m, SynapticConv2d) for m in model.head.cv3[0].modules()) == 3


def test_level_tally_by_hand():
    """A 64 x 96 input: 96 anchors at stride 8, 24 at 16, 6 at 32 (126 in all)."""
    A = 64 * 96 // 64 + 64 * 96 // 256 + 64 * 96 // 1024
    assert A == 126
    idx = torch.tensor([0, 95, 96, 119, 120, 125])
    assert LevelTally.level_of(idx, A).tolist() == [0, 0, 1, 1, 2, 2]
    t = LevelTally(conf=0.25)
    det = torch.tensor([[0, 0, 1, 1, 0.9, 0], [0, 0, 1, 1, 0.2, 0], [0, 0, 1, 1, 0.3, 0], [0, 0, 1, 1, 0.5, 0]])
    t.add([det], [torch.tensor([3, 100, 101, 121])], A)
    assert t.detections == [1, 1, 1] and t.max_score == pytest.approx([0.9, 0.3, 0.5])
    with pytest.raises(ValueError, match="anchors"):
        LevelTally.level_of(idx, 100)


@pytest.mark.parametrize("readout", ["spikes", "current"])
def test_val_reports_each_levels_attainable_maximum(readout):
    """``attainable_max_scores`` (the ``attainable_max`` of val's level report) is the head's per-level bound
    at the model's own D, taken over classes, from the eval weights; it leaves the model's mode as it was;
    a model without the spiking head gets None; the printed report shows it."""
    from detector.engine.validator import attainable_max_scores, format_metrics

    model = live(model_with(readout, D=3), image(B=2))
    model.train()
    tops = attainable_max_scores(model)
    assert model.training
    model.eval()
    want = [round(float(s.max()), 4) for s in model.head.max_scores(3)]
    assert tops == want and len(tops) == 3 and all(0 < t <= 1 for t in tops)
    assert attainable_max_scores(torch.nn.Conv2d(1, 1, 1)) is None
    levels = [{"stride": s, "detections": 0, "max_score": 0.0, "conf": 0.25, "attainable_max": t}
              for s, t in zip((8, 16, 32), tops)]
    text = format_metrics({"precision": 0.0, "recall": 0.0, "map50": 0.0, "map": 0.0, "per_class": [],
                           "levels": levels})
    assert f"attainable {tops[2]:.3f}" in text

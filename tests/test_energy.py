"""Energy accounting: exact counts checked by hand, SSSA op counts against the formula, binary
detection, T scaling, coverage of every conv, and agreement with SpikingJelly 2.0's own counter.

SpikingJelly comparisons run the model in a SEPARATE forward pass from our meter: SpikingJelly's
``DispatchCounterMode`` counts every aten op executed inside it, including the helper convolution
our hooks run to compute fan-out. The model is deterministic in eval mode, so both passes see the
same spikes.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from detector.analysis.constants import PRESETS, get_constants
from detector.analysis.energy import EnergyMeter, conv_fanout, is_spike_map, measure_energy, time_passes
from detector.io.batches import dataset_images, image_batches, load_letterboxed
from detector.nn.attention import sssa_ops
from detector.nn import SNNViT, SNNViTConfig
from detector.nn.attention import SSSA, SpikingSelfAttention
from detector.nn.streaming import streaming
from detector.nn.time import SeqModule

NEURON = {"name": "lif", "tau": 2.0, "v_threshold": 1.0, "surrogate": "atan"}


def measure(model, x, T=None, calls=None, images=None):
    """Run ``model(x)`` (or ``calls(model)``) on one batch under a meter; the batch holds ``images``
    images (default ``x.shape[0]``; time-first inputs pass ``x.shape[1]``)."""
    meter = EnergyMeter(model, T)
    with torch.no_grad(), meter:
        with meter.batch(images or x.shape[0]):
            calls(model) if calls else model(x)
    return meter.report()


def row(report, name):
    (r,) = [l for l in report.layers if l.name == name]
    return r


def brute_fanout(spikes, c_out, k, stride, pad, dil, groups):
    """Reference by brute force: for every output position and tap, count the spikes it reads."""
    N, C, H, W = spikes.shape
    Ho = (H + 2 * pad - dil * (k - 1) - 1) // stride + 1
    Wo = (W + 2 * pad - dil * (k - 1) - 1) // stride + 1
    cg = C // groups
    total = 0
    for n in range(N):
        for g in range(groups):
            for oy in range(Ho):
                for ox in range(Wo):
                    for ky in range(k):
                        for kx in range(k):
                            y, x = oy * stride - pad + ky * dil, ox * stride - pad + kx * dil
                            if 0 <= y < H and 0 <= x < W:
                                total += int(spikes[n, g * cg:(g + 1) * cg, y, x].sum())
    return total * (c_out // groups)


# ------------------------------------------------------------------------------------------------
# constants
# ------------------------------------------------------------------------------------------------


def test_constants_default_and_overrides():
    c = get_constants()
    assert (c.e_mac_pj, c.e_ac_pj, c.name) == (4.6, 0.9, "45nm-fp32")
    assert "Horowitz" in c.source and "ISSCC 2014" in c.source
    for p in PRESETS.values():
        assert p.source and p.e_mac_pj > p.e_ac_pj > 0
    o = get_constants("45nm-fp32", e_ac_pj=0.5)
    assert (o.e_mac_pj, o.e_ac_pj) == (4.6, 0.5) and o.name.startswith("custom")
    with pytest.raises(ValueError):
        get_constants("7nm-made-up")


# ------------------------------------------------------------------------------------------------
# exact counts by hand
# ------------------------------------------------------------------------------------------------


def spike_map(coords, C=1, H=4, W=4):
    x = torch.zeros(1, C, H, W)
    for c, y, xx in coords:
        x[0, c, y, xx] = 1.0
    return x


def test_conv3x3_pad1_fanout_by_hand():
    # 4x4 map, 3x3 kernel, padding 1: a spike reaches every output whose window covers it.
    #   corner (0,0): outputs rows {0,1} x cols {0,1}     = 4
    #   inner  (1,1): rows {0,1,2} x cols {0,1,2}          = 9
    #   edge   (0,2): rows {0,1} x cols {1,2,3}            = 6
    #   corner (3,3): rows {2,3} x cols {2,3}              = 4   -> 23 per output channel, x2 channels
    x = spike_map([(0, 0, 0), (0, 1, 1), (0, 0, 2), (0, 3, 3)])
    conv = nn.Conv2d(1, 2, 3, 1, 1, bias=False)
    r = row(measure(conv, x, T=1), "Conv2d")
    assert r.input_spikes and r.firing_rate == 4 / 16
    assert r.sops == 46
    assert r.macs == 16 * 9 * 2  # dense: 16 outputs x 9 taps x 2 channels
    assert r.sops_rate == pytest.approx(0.25 * 288)  # convention: 72, overcounts the zero padding
    assert r.energy_pj == pytest.approx(46 * 0.9)
    assert r.ann_energy_pj == pytest.approx(288 * 4.6)


def test_conv_stride_dilation_groups_by_hand():
    # stride 2, k3, p1 on 4x4: input row r is read by output rows {0}, {0,1}, {1}, {1} for r = 0..3
    x = spike_map([(0, 1, 1), (0, 0, 0), (0, 3, 2), (0, 1, 3)])
    s2 = nn.Conv2d(1, 1, 3, 2, 1, bias=False)
    assert conv_fanout(s2, x).item() == 2 * 2 + 1 * 1 + 1 * 1 + 2 * 1
    # dilation 2, padding 2 on 4x4: every input is read by exactly 2 output rows x 2 output cols
    d2 = nn.Conv2d(1, 1, 3, 1, 2, dilation=2, bias=False)
    assert conv_fanout(d2, x).item() == 4 * 4
    # groups: a spike reaches only the output channels of its own group (4 outputs / 2 groups = 2)
    xg = spike_map([(0, 1, 1), (1, 0, 0)], C=2)
    g2 = nn.Conv2d(2, 4, 3, 1, 1, groups=2, bias=False)
    assert conv_fanout(g2, xg).item() == 9 * 2 + 4 * 2


@pytest.mark.parametrize("cfg", [(3, 1, 1, 1, 1), (3, 2, 1, 1, 1), (3, 2, 2, 2, 1), (1, 2, 0, 1, 1), (3, 1, 1, 1, 2),
                                 (5, 3, 2, 1, 4)])
def test_conv_fanout_matches_brute_force(cfg):
    k, stride, pad, dil, groups = cfg
    g = torch.Generator().manual_seed(sum(cfg))
    x = (torch.rand(2, 4, 7, 6, generator=g) < 0.3).float()
    conv = nn.Conv2d(4, 8, k, stride, pad, dilation=dil, groups=groups, bias=False)
    assert conv_fanout(conv, x).sum().item() == brute_fanout(x, 8, k, stride, pad, dil, groups)


def test_linear_by_hand():
    x = spike_map([(0, 0, 0), (0, 1, 1), (0, 2, 3), (0, 3, 0)]).flatten(1)  # (1, 16), 4 spikes
    lin = nn.Linear(16, 5)
    r = row(measure(lin, x, T=1), "Linear")
    assert r.sops == 4 * 5 and r.macs == 16 * 5 and r.firing_rate == 0.25
    assert r.sops_rate == pytest.approx(r.sops)  # for a linear layer the two definitions agree exactly


class TinySNN(nn.Module):
    """Real-valued encoder conv (once) -> spikes repeated over T -> time-folded conv -> Linear on
    time-first tokens. Spikes come from a stateless threshold, so every timestep sees the same spikes."""

    timesteps = 4

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.stem = nn.Conv2d(1, 2, 3, 1, 1, bias=False)
        self.conv = SeqModule(nn.Conv2d(2, 3, 3, 1, 1, bias=False))
        self.fc = nn.Linear(3 * 16, 5)

    def forward(self, img, T=None):
        T = T or self.timesteps
        x = self.stem(img)  # (B, 2, 4, 4) real, computed once
        s = (x > 0).float().unsqueeze(0).expand(T, *x.shape)  # (T, B, 2, 4, 4) binary
        y = (self.conv(s) > 0).float()  # (T, B, 3, 4, 4) binary
        return self.fc(y.flatten(2))  # (T, B, 5)


def test_stem_macs_once_and_T_scaling():
    img = torch.rand(3, 1, 4, 4)
    net = TinySNN()
    reps = {T: measure(net, img, T, calls=lambda m, T=T: m(img, T=T)) for T in (1, 2, 4)}
    for T, r in reps.items():
        stem, conv, fc = row(r, "stem"), row(r, "conv.body"), row(r, "fc")
        assert not stem.input_spikes and stem.firing_rate is None
        assert stem.timesteps == 1 and stem.macs == 16 * 9 * 2  # runs once: 16 outputs x 9 taps x 2 ch
        assert stem.mac_ops == 288 and stem.energy_pj == pytest.approx(288 * 4.6)  # not T x 288
        assert conv.timesteps == T and fc.timesteps == T and conv.input_spikes and fc.input_spikes
        assert r.ann_energy_mj == pytest.approx(reps[1].ann_energy_mj)  # the ANN runs once, whatever T
    for name in ("conv.body", "fc"):
        assert row(reps[4], name).sops == pytest.approx(4 * row(reps[1], name).sops)
        assert row(reps[2], name).sops == pytest.approx(2 * row(reps[1], name).sops)
    # SOPs of the conv, by hand from the spikes themselves
    with torch.no_grad():
        s = (net.stem(img) > 0).float()
    assert row(reps[1], "conv.body").sops == brute_fanout(s, 3, 3, 1, 1, 1, 1) / 3


def test_time_layout():
    assert time_passes((8, 3, 4, 4), T=4, B=2) == 4  # (T*B, ...)
    assert time_passes((2, 3, 4, 4), T=4, B=2) == 1  # (B, ...): encoder, once
    assert time_passes((4, 2, 10, 7), T=4, B=2) == 4  # (T, B, ...)
    with pytest.raises(ValueError):
        time_passes((5, 3), T=4, B=2)


def test_timesteps_above_trained_T_rejected():
    with pytest.raises(ValueError, match="trained T"):
        EnergyMeter(TinySNN(), timesteps=5)


# ------------------------------------------------------------------------------------------------
# binary detection
# ------------------------------------------------------------------------------------------------


def test_binary_detection_from_values():
    assert is_spike_map(torch.tensor([0.0, 1.0, 1.0])) and is_spike_map(torch.zeros(3))
    assert is_spike_map(torch.ones(2, dtype=torch.bool))
    assert not is_spike_map(torch.tensor([0.0, 2.0])) and not is_spike_map(torch.tensor([0.0, 0.5]))
    lin = nn.Linear(4, 3)
    cases = {"spikes": torch.tensor([[1.0, 0, 1, 0]]), "silent": torch.zeros(1, 4),
             "real": torch.tensor([[0.3, 0, 1, 0]]), "counts": torch.tensor([[2.0, 0, 1, 0]])}
    out = {k: row(measure(lin, v, T=1), "Linear") for k, v in cases.items()}
    assert out["spikes"].input_spikes and out["spikes"].sops == 2 * 3 and out["spikes"].firing_rate == 0.5
    assert out["silent"].input_spikes and out["silent"].sops == 0 and out["silent"].energy_pj == 0
    for k in ("real", "counts"):  # any value outside {0, 1}: priced as dense MACs
        assert not out[k].input_spikes and out[k].firing_rate is None and out[k].sops is None
        assert out[k].mac_ops == 12 and out[k].energy_pj == pytest.approx(12 * 4.6)
    # binary in one batch but not in another -> not binary overall
    meter = EnergyMeter(lin, 1)
    with torch.no_grad(), meter:
        for x in (cases["spikes"], cases["real"]):
            with meter.batch(1):
                lin(x)
    r = row(meter.report(), "Linear")
    assert not r.input_spikes and r.mac_ops == 12 and r.calls == 2


# ------------------------------------------------------------------------------------------------
# SSSA operations
# ------------------------------------------------------------------------------------------------


class Fixed(nn.Module):
    """Stands in for a Q/K/V neuron: returns given spikes (T, B, C, H, W), ignoring its input."""

    def __init__(self, spikes):
        super().__init__()
        self.spikes = spikes

    def forward(self, x):
        return self.spikes[: x.shape[0]]


def tiny_sssa(version, q, k, v, T=2):
    m = SSSA(dim=4, heads=2, timesteps=T, neuron=NEURON, name=version).eval()
    m.q_lif, m.k_lif, m.v_lif = Fixed(q), Fixed(k), Fixed(v)
    return m


def qkv_spikes():
    # T=2, B=1, C=4 (2 heads x hd 2), H=1, W=2 (N=2 tokens)
    q, k, v = torch.zeros(3, 2, 1, 4, 1, 2)  # each (t, b, c, h, w)
    q[0, 0, 0, 0, 0] = q[1, 0, 3, 0, 1] = q[1, 0, 2, 0, 0] = 1  # 3 Q spikes
    k[0, 0, :2, 0, :] = 1  # 4 K spikes at t=0 (channels 0, 1 of both tokens)
    k[1, 0, 2, 0, 1] = 1  # 5 K spikes
    v[0, 0, 0, 0, 0] = v[0, 0, 1, 0, 1] = v[1, 0, 3, 0, 0] = v[1, 0, 3, 0, 1] = 1  # 4 V spikes
    return q, k, v


def test_sssa_v2_ops_by_hand():
    q, k, v = qkv_spikes()
    m = tiny_sssa("sssa_v2", q, k, v)
    r = row(measure(m, torch.randn(2, 1, 4, 1, 2), T=2, images=1), "SSSA.ops")
    T, nh, N = 2, 2, 2
    expected = {  # op: (type, count)
        "q_count": ("AC", 3), "k_count": ("AC", 5), "alpha": ("AC", T * nh * (N - 1)), "salience": ("MAC", T * nh * N),
        "normalise": ("MAC", T * nh * N), "mw_mix": ("MAC", T * (T + 1) // 2 * nh * N), "threshold": ("AC", T * nh * N),
        "mask_v": ("AC", 4),
    }
    assert {k_: (o["type"], o["count"]) for k_, o in r.ops.items()} == expected
    assert r.ac_ops == 3 + 5 + 4 + 8 + 4 and r.mac_ops == 8 + 8 + 12
    assert r.energy_pj == pytest.approx(0.9 * 24 + 4.6 * 28)
    # ANN equivalent: one dense pass, hd = 2
    ann = {k_: o["ann_count"] for k_, o in r.ops.items()}
    assert ann == {"q_count": nh * N * 1, "k_count": nh * N * 1, "alpha": nh * (N - 1), "salience": nh * N,
                   "normalise": nh * N, "mw_mix": nh * N, "threshold": nh * N, "mask_v": nh * N * 2}


def test_sssa_v1_counts_cross_attention():
    q, k, v = qkv_spikes()
    r = row(measure(tiny_sssa("sssa_v1", q, k, v), torch.randn(2, 1, 4, 1, 2), T=2, images=1), "SSSA.ops")
    assert r.ops["cross_attention"] == {**r.ops["cross_attention"], "type": "MAC", "count": 2 * 2 * 2 * 2}
    assert "alpha" not in r.ops and "salience" not in r.ops


def test_sssa_mixing_at_smaller_T_and_streaming():
    torch.manual_seed(0)
    m = SSSA(dim=8, heads=2, timesteps=4, neuron=NEURON).eval()
    x = torch.randn(4, 2, 8, 3, 3) * 3
    one = row(measure(m, x[:1], T=4, images=2), "SSSA.ops")
    assert one.ops["mw_mix"]["count"] == 1 * 2 * 9  # T=1: one term per token and head
    par = measure(m, x, T=4, images=2)

    def stream_calls(mod):
        with streaming(mod):
            for t in range(4):
                mod(x[t:t + 1])

    st = measure(m, x, T=4, calls=stream_calls, images=2)
    p, s = row(par, "SSSA.ops"), row(st, "SSSA.ops")
    assert p.ops["mw_mix"]["count"] == 4 * 5 // 2 * 2 * 9
    assert {k: o["count"] for k, o in s.ops.items()} == {k: o["count"] for k, o in p.ops.items()}
    assert s.ann_energy_pj == pytest.approx(p.ann_energy_pj)
    for a, b in zip(par.layers, st.layers):  # streaming gives the same spikes, so the same counts
        assert (a.name, a.sops, a.energy_pj) == (b.name, b.sops, pytest.approx(b.energy_pj))


def test_sssa_ops_function_shapes():
    q = (torch.rand(3, 2, 8, 2, 2) < 0.5).float()
    ops = sssa_ops(q, q, q, heads=4, version="sssa_v2", t0=1)
    assert ops["mw_mix"].count.tolist() == [(2 + 3 + 4) * 4 * 4] * 2  # timesteps 1..3: rows of length 2, 3, 4
    assert ops["q_count"].count.tolist() == q.sum(dim=(0, 2, 3, 4)).tolist()


# ------------------------------------------------------------------------------------------------
# the backbone: coverage and SpikingJelly agreement
# ------------------------------------------------------------------------------------------------


def firing_backbone(attn="sssa_v2"):
    """A tiny backbone whose BN affine parameters are set so that it fires at init."""
    torch.manual_seed(0)
    m = SNNViT(SNNViTConfig(widths=(8, 16, 16, 32, 32), depths=(1, 1, 1), heads=(2, 2), timesteps=2, attn=attn))
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.weight.data = 1 + 2 * torch.rand(mod.weight.shape, generator=g)
            mod.bias.data = torch.rand(mod.bias.shape, generator=g)
    return m.eval()


def test_backbone_report_covers_every_conv_once():
    m = SNNViT(SNNViTConfig(timesteps=2)).eval()
    r = measure(m, torch.rand(1, 3, 64, 64), T=2, calls=lambda mod: mod(torch.rand(1, 3, 64, 64), T=2))
    convs = [n for n, mod in m.named_modules() if isinstance(mod, nn.Conv2d)]
    syn = [l.name for l in r.layers if l.kind == "synaptic"]
    assert sorted(syn) == sorted(convs) and len(set(syn)) == len(syn)
    assert all(l.calls == 1 for l in r.layers)
    att = [l.name for l in r.layers if l.kind == "attention"]
    assert att == [f"{n}.ops" for n, mod in m.named_modules() if isinstance(mod, SSSA)]
    assert r.idle_modules == []
    assert [l.name for l in r.layers if not l.input_spikes and l.kind == "synaptic"] == ["stem.0"]
    assert r.neuron_updates > 0


def sj_counts(model, fn):
    from spikingjelly.activation_based.op_counter import DispatchCounterMode, MACCounter, SynOpCounter

    syn, mac = SynOpCounter(), MACCounter()
    with torch.no_grad(), DispatchCounterMode([syn, mac]):
        fn()
    root = type(model).__name__
    tot = lambda c: {k.removeprefix(root + "."): sum(v.values()) for k, v in c.get_counts().items()}  # noqa: E731
    return tot(syn), tot(mac)


def test_agrees_with_spikingjelly_on_conv_and_linear_layers():
    """Our exact SOPs and SpikingJelly's SynOpCounter use the same definition for a conv/linear fed
    by spikes (spike fan-out, via an all-ones kernel): they must agree EXACTLY (tolerance 0)."""

    class Layers(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 6, 3, 1, 1)
            self.b = nn.Conv2d(4, 6, 3, 2, 1, bias=False)
            self.c = nn.Conv2d(4, 6, 3, 1, 2, dilation=2)
            self.d = nn.Conv2d(4, 8, 3, 1, 1, groups=2)
            self.e = nn.Conv2d(4, 4, 3, 1, 1, padding_mode="circular")
            self.f = nn.Linear(4 * 9 * 7, 10)

        def forward(self, s):
            return [self.a(s), self.b(s), self.c(s), self.d(s), self.e(s), self.f(s.flatten(1))]

    net = Layers().eval()
    s = (torch.rand(3, 4, 9, 7, generator=torch.Generator().manual_seed(5)) < 0.2).float()
    ours = measure(net, s, T=1)
    theirs, _ = sj_counts(net, lambda: net(s))
    for l in ours.layers:
        assert l.input_spikes
        assert l.sops * 3 == theirs[l.name], l.name  # ours per image (3 images); theirs is the total


def test_agrees_with_spikingjelly_on_the_backbone():
    """Every conv of a firing backbone: exact SOPs equal SpikingJelly's SynOps (tolerance 0); the
    real-valued stem's MACs equal SpikingJelly's MACCounter on that conv (its BN MACs are in a
    separate scope: we assume BN folded). SSSA's own ops are sums and products, which SynOpCounter
    does not count at all (it only counts mm/bmm/conv), so the attention rows have no counterpart."""
    m = firing_backbone()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    ours = measure(m, x, T=2, calls=lambda mod: mod(x, T=2))
    syn, mac = sj_counts(m, lambda: m(x, T=2))
    fired = 0
    for l in ours.layers:
        if l.kind != "synaptic":
            continue
        if l.input_spikes:
            assert l.sops * 2 == syn.get(l.name, 0), l.name
            fired += l.sops > 0
        else:
            assert l.name == "stem.0" and l.mac_ops * 2 == mac[l.name] and syn.get(l.name, 0) == 0
    assert fired >= 10  # the comparison is not vacuous


def test_ssa_baseline_agrees_with_spikingjelly_and_the_known_difference():
    """Spikformer-style Q K^T V: both count 1 AC per coincident (Q, K) spike pair and N ACs per V
    spike for attn @ V. Known definitional difference: SpikingJelly decides "spike" from tensor
    values, so when every score happens to be 0 (no Q-K coincidence) it treats the score matrix as
    spikes and counts attn @ V as 0; we count N adds per V spike whatever the score values."""
    T, B, C, N = 2, 1, 4, 3
    g = torch.Generator().manual_seed(0)
    q, k, v = ((torch.rand(T, B, C, 1, N, generator=g) < 0.5).float() for _ in range(3))
    for case, kk in (("overlap", k), ("disjoint", torch.zeros_like(k))):
        m = SpikingSelfAttention(C, 2, T, NEURON).eval()
        m.q_lif, m.k_lif, m.v_lif = Fixed(q), Fixed(kk), Fixed(v)
        x = torch.randn(T, B, C, 1, N)
        r = row(measure(m, x, T=T, images=B), "SpikingSelfAttention.ops")
        from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter

        c = SynOpCounter()
        with torch.no_grad(), DispatchCounterMode([c]):
            m(x)
        sj_bmm = sum(v_ for op, v_ in c.get_counts()["Global"].items() if "bmm" in str(op))
        qk, attn_v = r.ops["qk"]["count"], r.ops["attn_v"]["count"]
        assert attn_v == v.sum() * N
        if case == "overlap":
            assert qk > 0 and sj_bmm == qk + attn_v
        else:
            assert qk == 0 and sj_bmm == 0 and attn_v > 0


# ------------------------------------------------------------------------------------------------
# report outputs and images
# ------------------------------------------------------------------------------------------------


def test_report_outputs(tmp_path):
    m = firing_backbone()
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    r = measure_energy(m, [x[:2], x[2:]], timesteps=2, meta={"model": "tiny"})
    d = json.loads(r.save_json(tmp_path / "e.json").read_text())
    for key in ("energy_mj", "ann_energy_mj", "layers", "timesteps", "images", "constants", "sops", "sops_rate",
                "energy_mj_rate_convention", "mean_firing_rate", "method"):
        assert key in d
    assert d["images"] == 3 and d["timesteps"] == 2 and d["model"] == "tiny"
    assert d["constants"]["e_mac_pj"] == 4.6 and d["constants"]["e_ac_pj"] == 0.9
    assert {"name", "firing_rate", "sops", "macs", "energy_pj"} <= set(d["layers"][0])
    assert d["energy_mj"] == pytest.approx(sum(l["energy_pj"] for l in d["layers"]) * 1e-9)
    assert d["energy_mj"] == pytest.approx(sum(r.image_energy_pj) / 3 * 1e-9)  # per-image totals add up
    assert 0 < d["energy_mj"] < d["ann_energy_mj"]
    # batching does not change per-image results
    one = measure_energy(m, [x[i:i + 1] for i in range(3)], timesteps=2)
    assert one.energy_mj == pytest.approx(r.energy_mj) and one.image_energy_pj == pytest.approx(r.image_energy_pj)
    lines = r.save_csv(tmp_path / "e.csv").read_text().splitlines()
    assert lines[0].startswith("name,type,kind,input_spikes,firing_rate") and len(lines) == 1 + len(r.layers)
    assert r.save_plot(tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    assert "energy per image" in r.format_table()
    # max_images cuts the stream
    assert measure_energy(m, [x[:2], x[2:]], timesteps=2, max_images=1).images == 1


def test_images_letterboxed_and_dataset_yaml(tmp_path):
    import cv2
    import numpy as np
    import yaml

    val = tmp_path / "ds" / "images" / "val"
    val.mkdir(parents=True)
    cv2.imwrite(str(val / "a.png"), np.full((40, 80, 3), 255, np.uint8))
    cv2.imwrite(str(val / "b.jpg"), np.zeros((50, 30), np.uint8))
    (val / "notes.txt").write_text("not an image")
    t = load_letterboxed(val / "a.png", 64)
    assert t.shape == (3, 64, 64) and t.min() >= 0 and t.max() <= 1
    assert t[:, 32, 32].tolist() == [1.0, 1.0, 1.0] and t[:, 0, 32].tolist() == pytest.approx([114 / 255] * 3)
    with pytest.raises(ValueError):
        load_letterboxed(val / "a.png", 50)
    (val / "bad.jpg").write_bytes(b"not a jpeg")
    skipped = []
    with pytest.warns(UserWarning):
        batches = list(image_batches(sorted(val.glob("*.*g")), 64, 4, skipped))
    assert [b.shape[0] for b in batches] == [2] and len(skipped) == 1
    cfg = tmp_path / "d.yaml"
    cfg.write_text(yaml.safe_dump({"path": str(tmp_path / "ds"), "train": "images/val", "val": "images/val",
                                   "names": {0: "ship"}}))
    assert [p.name for p in dataset_images(cfg)] == ["a.png", "b.jpg", "bad.jpg"]


def load_tool(monkeypatch):
    """tools/energy.py as a module (tools/ is not a package; it imports its sibling _bootstrap)."""
    import importlib.util
    from pathlib import Path

    tools = Path(__file__).resolve().parents[1] / "tools"
    monkeypatch.syspath_prepend(str(tools))
    spec = importlib.util.spec_from_file_location("energy_tool", tools / "energy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tool_untrained_variant(tmp_path, capsys, monkeypatch):
    pytest.importorskip("detector.models")
    import cv2
    import numpy as np

    main = load_tool(monkeypatch).main

    cv2.imwrite(str(tmp_path / "a.png"), (np.random.default_rng(0).random((70, 90, 3)) * 255).astype(np.uint8))
    out = tmp_path / "out"
    rc = main(["--model", "n", "--source", str(tmp_path / "a.png"), "--imgsz", "64", "--timesteps", "1",
               "--json", str(out / "e.json"), "--csv", str(out / "e.csv"), "--e-ac", "0.5"])
    assert rc == 0
    d = json.loads((out / "e.json").read_text())
    assert d["untrained"] is True and "UNTRAINED" in d["model"] and d["timesteps"] == 1 and d["images"] == 1
    assert d["constants"]["e_ac_pj"] == 0.5 and d["constants"]["name"].startswith("custom")
    assert "UNTRAINED" in capsys.readouterr().out
    assert math.isfinite(d["energy_mj"]) and d["ann_energy_mj"] > 0


def test_tool_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    main = load_tool(monkeypatch).main
    with pytest.raises(SystemExit, match="weights file not found"):
        main(["--weights", str(tmp_path / "nope.pt"), "--source", str(tmp_path)])


# ------------------------------------------------------------------------------------------------
# Integer spikes and modules the meter cannot count
# ------------------------------------------------------------------------------------------------


class Counts(nn.Module):
    """Stands in for a neuron: returns a given count map, ignoring its input."""

    def __init__(self, counts):
        super().__init__()
        self.counts = counts

    def forward(self, x):
        return self.counts


def test_integer_spike_sops_by_hand():
    """One channel, 4 x 4, D = 4: a count of 3 in the interior at (1, 1) and 2 in the corner (0, 0).
    A 3x3 conv (padding 1, 2 output channels) reads (1, 1) from 9 output positions and (0, 0) from 4:
    SOPs = 3 x 9 x 2 + 2 x 4 x 2 = 54 + 16 = 70, the binary events of the expanded form times their
    fan-out. Firing rate = 5 events / (16 values x D 4)."""
    from detector.nn.neurons import make_neuron
    from detector.nn.synapse import SynapticConv2d

    counts = torch.zeros(1, 1, 4, 4)
    counts[0, 0, 1, 1], counts[0, 0, 0, 0] = 3, 2
    net = nn.Sequential(Counts(counts), SynapticConv2d(1, 2, 3, padding=1, bias=False))
    net.levels_from = make_neuron("ilif", max_spikes=4)  # the model's D (its neurons' levels): 4
    r = measure(net, torch.zeros(1, 1, 4, 4), T=1)
    conv = row(r, "1")
    assert conv.input_spikes and conv.sops == 70 and conv.firing_rate == 5 / (16 * 4)
    assert r.levels == 4 and r.to_dict()["binary_slots"] == 4
    assert r.energy_mj == pytest.approx(70 * 0.9e-9)
    # the same counts under a binary model are not spikes: priced as real-valued MACs
    r1 = measure(nn.Sequential(Counts(counts), SynapticConv2d(1, 2, 3, padding=1, bias=False)), torch.zeros(1, 1, 4, 4))
    assert not row(r1, "1").input_spikes


def test_integer_spike_detector_report_states_D_and_T():
    from detector.models import SNNViTYOLO, load_config
    from detector.models.calibration import recalibrate_bn
    from _tiny import TINY

    torch.manual_seed(0)
    model = SNNViTYOLO(load_config(TINY, timesteps=2, neuron={"name": "ilif", "max_spikes": 2}), verbose=False)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    recalibrate_bn(model, [x])
    r = measure(model.eval(), x, T=2)
    d = r.to_dict()
    assert d["levels"] == 2 and d["timesteps"] == 2 and d["binary_slots"] == 4
    spiking = [l for l in r.layers if l.kind == "synaptic" and l.input_spikes]
    # real-valued inputs: the encoding conv and the head's fixed DFL projection (softmax of box logits)
    assert [l.name for l in r.layers if l.kind == "synaptic" and not l.input_spikes] == ["model.0.stem.0", "model.2.dfl.conv"]
    assert len(spiking) > 20 and all(0 <= l.firing_rate <= 1 for l in spiking) and d["sops"] > 0


def test_meter_refuses_what_it_cannot_count():
    from detector.analysis.energy import UncountableModuleError
    from detector.nn.attention import SSSA

    class NewAttention(SSSA):  # a variant that forgot to declare its own operations
        op_counts = SSSA.__mro__[1].op_counts

    m = NewAttention(8, 2, 2, NEURON)
    with pytest.raises(UncountableModuleError, match="does not declare"):
        EnergyMeter(m, 2)

    class Scaled(nn.Module):  # computes with a parameter the meter cannot see
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    with pytest.raises(UncountableModuleError, match="Scaled"):
        EnergyMeter(nn.Sequential(nn.Conv2d(3, 3, 1), Scaled()), 1)
    with pytest.raises(UncountableModuleError, match="Conv1d"):
        EnergyMeter(nn.Sequential(nn.Conv1d(3, 3, 1)), 1)

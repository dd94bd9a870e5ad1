"""The fused neuron kernels (``detector.nn.kernels``) against SpikingJelly 2.0, the reference: spikes
and input gradients bit for bit (``torch.equal``) for every setting the kernels cover, in the C
library and in the PyTorch fallback; integer spikes (I-LIF) by hand; state kept across streaming
calls; a clean fallback when no C compiler is available."""

from __future__ import annotations

import pytest
import torch

from detector.nn import kernels
from detector.nn.neurons import FusedNeuron, SJNeuron, make_neuron

SETTINGS = [
    ("lif", {}),
    ("lif", {"v_reset": None}),
    ("lif", {"tau": 1.7, "v_threshold": 0.8, "alpha": 3.0}),
    ("if", {}),
    ("if", {"v_reset": None, "v_threshold": 0.6}),
    ("ilif", {"max_spikes": 4}),
    ("ilif", {"max_spikes": 2, "tau": 2.0, "v_threshold": 0.7}),
    ("ilif", {"max_spikes": 1}),
    ("ilif", {"max_spikes": 8, "v_threshold": 1.3}),
]


def run_both(name, kw, x, g):
    """(spikes, input gradient) of the SpikingJelly node and of the fused kernel on the same input."""
    out = []
    for backend in ("spikingjelly", "fused"):
        n = make_neuron(name, backend=backend, **kw)
        xi = x.clone().requires_grad_(True)
        s = n(xi)
        (s * g).sum().backward()
        out.append((s.detach(), xi.grad))
    return out


@pytest.fixture(params=["c", "torch"])
def kernel_backend(request, monkeypatch):
    """Run a test once with the C library and once with the PyTorch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(kernels, "_lib", None)
        monkeypatch.setattr(kernels, "_lib_error", "disabled for this test")
    else:
        assert kernels.library() is not None, "the C kernel could not be built on this machine"
    return request.param


@pytest.mark.parametrize("name,kw", SETTINGS)
@pytest.mark.parametrize("T", [1, 2, 4])
def test_fused_equals_spikingjelly_bit_for_bit(name, kw, T, kernel_backend):
    g = torch.Generator().manual_seed(T)
    x = torch.randn(T, 3, 7, 33, generator=g) * 2  # odd sizes: blocks and threads split unevenly
    go = torch.randn(T, 3, 7, 33, generator=g)
    (s_ref, g_ref), (s_fused, g_fused) = run_both(name, kw, x, go)
    assert torch.equal(s_ref, s_fused)
    assert torch.equal(g_ref, g_fused)
    assert 0 < s_ref.float().mean() < (kw.get("max_spikes", 1))  # neither silent nor saturated: a real check


def test_fused_is_the_default_and_reference_stays_selectable():
    assert isinstance(make_neuron("lif"), FusedNeuron)
    assert isinstance(make_neuron("ilif", max_spikes=3), FusedNeuron)
    assert isinstance(make_neuron("lif", backend="spikingjelly"), SJNeuron)
    # settings the kernel does not cover fall back to the reference under "auto", and are refused by "fused"
    assert isinstance(make_neuron("lif", surrogate="sigmoid"), SJNeuron)
    assert isinstance(make_neuron("lif", detach_reset=False), SJNeuron)
    with pytest.raises(ValueError, match="does not support"):
        make_neuron("lif", surrogate="sigmoid", backend="fused")


def test_large_input_uses_threads_and_stays_exact():
    """Big enough for the C kernel to split the work over threads (and over many blocks)."""
    x = torch.randn(4, 2, 16, 40, 40, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad():
        for name, kw in (("lif", {}), ("ilif", {"max_spikes": 4})):
            ref = make_neuron(name, backend="spikingjelly", **kw)(x)
            assert torch.equal(make_neuron(name, backend="fused", **kw)(x), ref)


def test_input_repeated_over_time_is_read_without_copy_and_exact():
    """The encoder's output is one step expanded over T (stride 0): same result as a materialised copy."""
    step = torch.randn(2, 4, 9, 9, generator=torch.Generator().manual_seed(1)) * 2
    x = step.unsqueeze(0).expand(4, *step.shape)
    assert x.stride(0) == 0
    n = make_neuron("lif", backend="fused")
    with torch.no_grad():
        assert torch.equal(n(x), n(x.contiguous()))
        assert torch.equal(n(x), make_neuron("lif", backend="spikingjelly")(x.contiguous()))


def test_ilif_by_hand():
    """D = 4, tau 4/3 (decay 0.25), V_th 1, soft reset, input 2.6 then 0.3 then 0:
    t0: H = 2.6 -> C = round(2.6) = 3, V = -0.4;  t1: H = 0.25 * -0.4 + 0.3 = 0.2 -> C = 0, V = 0.2;
    t2: H = 0.05 -> 0.  Then -1, 9, 1.49: H = -1 -> 0 (V = -1); H = -0.25 + 9 = 8.75 -> clipped to D = 4
    (V = 4.75); H = 1.1875 + 1.49 = 2.6775 -> 3."""
    for backend in ("fused", "spikingjelly"):
        n = make_neuron("ilif", max_spikes=4, backend=backend)
        assert n.levels == 4
        assert n(torch.tensor([[2.6], [0.3], [0.0]])).flatten().tolist() == [3, 0, 0]
        assert n(torch.tensor([[-1.0], [9.0], [1.49]])).flatten().tolist() == [0, 4, 3]


def test_streaming_carries_the_membrane_between_calls():
    x = torch.randn(4, 3, 10, generator=torch.Generator().manual_seed(2)) * 2
    for name, kw in (("lif", {}), ("ilif", {"max_spikes": 2, "tau": 2.0})):
        n = make_neuron(name, backend="fused", **kw)
        with torch.no_grad():
            full = n(x)
            n.streaming = True
            parts = torch.cat([n(x[t:t + 1]) for t in range(4)])
            n.streaming = False
            n.reset_state()
        assert torch.equal(full, parts)


def test_float64_follows_the_reference_too():
    x = torch.randn(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(3)) * 2
    g = torch.randn(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    for name, kw in (("lif", {}), ("ilif", {"max_spikes": 4})):
        (s_ref, g_ref), (s_fused, g_fused) = run_both(name, kw, x, g)
        assert s_fused.dtype == torch.float64
        assert torch.equal(s_ref, s_fused) and torch.equal(g_ref, g_fused)


def test_no_compiler_falls_back_to_pytorch_with_one_warning(tmp_path, monkeypatch):
    """A machine without a C compiler: one warning, then the PyTorch path, same spikes."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # no cached library to find
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(kernels, "_lib", None)
    monkeypatch.setattr(kernels, "_lib_error", None)
    with pytest.warns(UserWarning, match="fused neuron kernel unavailable"):
        assert kernels.library() is None
    assert kernels.backend_name() == "torch"
    x = torch.randn(2, 5, 6) * 2
    assert torch.equal(make_neuron("lif", backend="fused")(x), make_neuron("lif", backend="spikingjelly")(x))


def test_bad_input_is_a_clear_error():
    n = make_neuron("lif")
    with pytest.raises(ValueError, match="time-first"):
        n(torch.ones(5))
    with pytest.raises(ValueError, match="floating-point"):
        n(torch.ones(2, 3, dtype=torch.int64))

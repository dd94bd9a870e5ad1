"""Tests of the attention benchmark library (detector.analysis.attention_bench): the exponent fit
on synthetic data, the peak-memory measurement on known allocations, and the result structure of a
run on two tiny token grids."""

from __future__ import annotations

import json
import math

import pytest
import torch

from detector.analysis import attention_bench as ab


@pytest.mark.parametrize("k", [0.0, 1.0, 1.5, 2.0, 2.37])
def test_fit_exponent_recovers_power_law(k):
    ns = [256, 576, 1024, 4096, 16384]
    assert ab.fit_exponent(ns, [3.7e-4 * n**k for n in ns]) == pytest.approx(k, abs=1e-12)


def test_fit_exponent_is_least_squares_slope():
    # log-log points (0, 0), (1, 1), (2, 3) in base e: slope of the least-squares line = 1.5
    ns = [1.0, math.e, math.e**2]
    assert ab.fit_exponent(ns, [1.0, math.e, math.e**3]) == pytest.approx(1.5)
    assert math.isnan(ab.fit_exponent([64, 64], [1.0, 2.0]))
    with pytest.raises(ValueError):
        ab.fit_exponent([64, 128], [1.0, 0.0])
    with pytest.raises(ValueError):
        ab.fit_exponent([64, 128], [1.0])


def test_parse_grid():
    assert ab.parse_grid("32") == (32, 32)
    assert ab.parse_grid(16) == (16, 16)
    assert ab.parse_grid("24x40") == (24, 40)
    assert ab.parse_grid((8, 12)) == (8, 12)
    for bad in ("", "a", "3x4x5", "0", "-4"):
        with pytest.raises(ValueError):
            ab.parse_grid(bad)


def test_measure_peak_bytes_on_known_allocations():
    MiB = 2**20

    def sequential():  # 1 MiB allocated and freed twice: the peak is 1 MiB, not 2
        for _ in range(2):
            t = torch.empty(MiB // 4)
            t.fill_(1.0)
            del t

    def together():
        a, b = torch.empty(MiB // 4), torch.empty(MiB // 4)
        a.fill_(1.0), b.fill_(1.0)

    keep = torch.empty(16 * MiB // 4)  # live before the step: not counted
    assert MiB <= ab.measure_peak_bytes(sequential) < 1.1 * MiB
    assert 2 * MiB <= ab.measure_peak_bytes(together) < 2.1 * MiB
    del keep


def test_estimate_peak_bytes_scaling():
    args = dict(dim=64, heads=2, timesteps=4, batch=1)
    v2 = [ab.estimate_peak_bytes("sssa_v2", n, **args) for n in (0, 1024, 4096)]
    v1 = [ab.estimate_peak_bytes("sssa_v1", n, **args) for n in (0, 1024, 4096)]
    assert v2[2] - v2[0] == 4 * (v2[1] - v2[0])  # linear above the fixed part
    assert v1[2] - v1[0] > 10 * (v1[1] - v1[0])  # dominated by the quadratic term
    with pytest.raises(ValueError):
        ab.estimate_peak_bytes("flash", 64, **args)


def test_run_benchmark_tiny_structure():
    threads = torch.get_num_threads()
    res = ab.run_benchmark(["4", "6x8"], dim=8, heads=2, timesteps=2, batch=1, repeats=2, min_time=0.0, threads=1,
                           fit_min_tokens=1, log=None)
    assert torch.get_num_threads() == threads  # restored
    assert res["env"]["threads"] == 1
    assert set(res) == {"config", "env", "points", "exponents"}
    assert res["config"]["grids"] == [[4, 4], [6, 8]]
    pts = res["points"]
    assert [(p["attention"], p["tokens"]) for p in pts] == [(a, n) for a in ab.ATTENTIONS for n in (16, 48)]
    for p in pts:
        assert p["status"] == "ok" and p["reason"] == ""
        assert 0 < p["time_s"] <= p["time_median_s"]
        # the estimate is an upper bound of the measured peak (it decides what to skip)
        assert 0 < p["peak_bytes"] <= p["est_peak_bytes"]
    for a in ab.ATTENTIONS:
        e = res["exponents"][a]
        assert e["tokens_all"] == e["tokens_upper"] == [16, 48]
        for k in ("time", "memory", "time_upper", "memory_upper"):
            assert isinstance(e[k], float) and math.isfinite(e[k])
    json.dumps(res, allow_nan=False)  # JSON-able as is
    md = ab.format_markdown(res)
    assert "| 48 (6x8) |" in md and "SSSA-V2" in md and "Spikformer SSA" in md


def test_run_benchmark_skips_over_memory_limit():
    res = ab.run_benchmark([4, 8], dim=8, heads=2, timesteps=2, repeats=1, min_time=0.0, max_mem_gb=1e-9,
                           attentions=["sssa_v1"], log=None)
    assert all(p["status"] == "skipped" and "max-mem-gb" in p["reason"] for p in res["points"])
    assert res["exponents"]["sssa_v1"]["time"] is None
    assert "skipped" in ab.format_markdown(res)


def test_run_benchmark_rejects_bad_arguments():
    with pytest.raises(ValueError):
        ab.run_benchmark([4], attentions=["nope"], log=None)
    with pytest.raises(ValueError):
        ab.run_benchmark([4], dim=9, heads=2, log=None)

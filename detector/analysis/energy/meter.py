"""The energy meter: forward hooks that collect per-image counts while a model runs.

It observes only, never changing the flow (docs/design.md, section 8): hooks on every
``nn.Conv2d`` / ``nn.Linear`` (counted from their real inputs), on every attention's ``tap`` (whose
declared ``op_counts`` price its own work) and on the neurons (updates, reported, not priced). Before
it measures anything it checks that it can account for every module of the model, and refuses a
model with a module whose work it cannot see (``UncountableModuleError``).
"""

from __future__ import annotations

import inspect
import math
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from ...nn.attention import SpikingAttention
from ...nn.neurons import SaccadicNeuron, SpikingNeuron
from ...nn.opcount import AC, MAC, events_per_sample
from ...nn.synapse import model_levels
from ..constants import DEFAULT_PRESET, PRESETS, EnergyConstants
from .counting import conv_fanout, is_spike_map, per_sample_view, time_passes
from .report import EnergyReport, LayerEnergy


class UncountableModuleError(ValueError):
    """The model holds a module whose operations the meter cannot count."""


# Modules with parameters whose own computation is free by the convention above (batch norm is
# folded into the preceding conv at inference).
FREE_WITH_PARAMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)


def _neuron_like(m: nn.Module) -> bool:
    from spikingjelly.activation_based.neuron import BaseNode

    return isinstance(m, (SpikingNeuron, SaccadicNeuron, BaseNode)) or type(m).__module__.startswith(
        "spikingjelly.activation_based.surrogate")


class _PerImage:
    """Per-image counts of one layer: a buffer for the running batch, flushed at batch end, so
    several calls per batch (streaming, shared layers) add up and images a layer never saw get 0."""

    def __init__(self):
        self.done: dict[str, list[torch.Tensor]] = {}
        self.cur: dict[str, torch.Tensor] = {}

    def add(self, key: str, v: torch.Tensor) -> None:
        v = v.detach().to("cpu", torch.float64)
        self.cur[key] = self.cur[key] + v if key in self.cur else v

    def flush(self, images_before: int, B: int) -> None:
        for key in set(self.done) | set(self.cur):
            lst = self.done.setdefault(key, [])
            lst.append(torch.zeros(images_before - sum(t.numel() for t in lst), dtype=torch.float64))
            lst.append(self.cur.get(key, torch.zeros(B, dtype=torch.float64)))
        self.cur = {}

    def get(self, key: str, n: int) -> torch.Tensor:
        v = torch.cat(self.done.get(key, [torch.zeros(0, dtype=torch.float64)]))
        return torch.cat([v, torch.zeros(n - v.numel(), dtype=torch.float64)])


class _Synaptic:
    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.calls = 0
        self.spikes = True
        self.events = 0.0
        self.numel = 0
        self.image_passes = 0  # sum over calls of timesteps x images
        self.dense_macs = 0.0
        self.input_shape: list[int] | None = None
        self.per_image = _PerImage()  # keys: sops, dense


class _Attention:
    def __init__(self, name: str, module: nn.Module):
        self.name, self.module = name, module
        self.calls = 0
        self.image_passes = 0
        self.ops: dict[str, dict] = {}  # op name -> type, ann_type, note, ann (dense one-pass count x passes)
        self.rate_counts: dict[str, list[float]] = {}
        self.per_image = _PerImage()  # keys: op names


class EnergyMeter:
    """Collects per-layer counts through forward hooks while the model runs.

    Usage::

        meter = EnergyMeter(model, timesteps=4)
        with torch.no_grad(), meter:     # installs hooks; eval mode while measuring
            for x in batches:
                with meter.batch(x.shape[0]):
                    model(x, T=4)        # any call(s) that run the model on these images
        report = meter.report(get_constants())

    ``timesteps`` is the T the model is run with; it tells the meter which layers ran on the
    time-folded batch (T*B) and which once per image (B). The model's D (``levels``: the largest spike
    count of its neurons) decides which inputs count as spikes.
    """

    SUPPORTED = (nn.Conv2d, nn.Linear)

    def __init__(self, model: nn.Module, timesteps: int | None = None):
        self.model = model
        trained = getattr(model, "timesteps", None)
        self.trained_timesteps = int(trained) if isinstance(trained, (int, float)) else None
        T = timesteps if timesteps is not None else (self.trained_timesteps or 1)
        if T < 1:
            raise ValueError(f"timesteps must be >= 1, got {T}")
        if self.trained_timesteps is not None and T > self.trained_timesteps:
            raise ValueError(f"timesteps={T} exceeds the model's trained T={self.trained_timesteps}")
        self.T = int(T)
        self.levels = model_levels(model)
        self.check_countable(model)
        self._order: list = []  # layers in the order they first ran (data flow)
        self._syn: dict[nn.Module, _Synaptic] = {}
        self._att: dict[nn.Module, _Attention] = {}
        self._handles: list = []
        self._B: int | None = None
        self.images = 0
        self.neuron_updates = 0.0
        self._was_training = False

    @classmethod
    def check_countable(cls, model: nn.Module) -> None:
        """Raise ``UncountableModuleError`` naming the first module whose work the meter cannot see: an
        attention that does not declare its operations, or a module that computes with parameters of
        its own other than a conv / linear (counted), a normalisation (folded) or a neuron. Modules
        without parameters of their own are containers or element-wise steps (residual sums,
        concatenation, upsampling), unpriced by convention; their children are checked one by one."""
        for name, m in model.named_modules():
            label = f"{name or type(m).__name__} ({type(m).__name__})"
            if isinstance(m, SpikingAttention):
                if not type(m).declares_ops():
                    raise UncountableModuleError(
                        f"cannot measure energy: attention {label} does not declare its operation counts "
                        "(op_counts); see detector/nn/attention/base.py")
                continue
            if isinstance(m, cls.SUPPORTED + FREE_WITH_PARAMS) or _neuron_like(m):
                continue
            if any(True for _ in m.parameters(recurse=False)):
                raise UncountableModuleError(
                    f"cannot measure energy: module {label} computes with its own parameters in a way the meter "
                    "cannot count (only conv / linear layers, normalisations, neurons and attentions that "
                    "declare op_counts are)")

    # -- hooks ---------------------------------------------------------------------------------
    def _syn_hook(self, module, inputs, output):
        B = self._require_batch()
        acc = self._syn[module]
        if acc.calls == 0:
            self._order.append(acc)
        x = inputs[0]
        passes = time_passes(x.shape, self.T, B)
        folded = x.shape[0] == passes * B  # else time-first (T, B, ...)
        acc.calls += 1
        acc.image_passes += passes * B
        spikes = is_spike_map(x, self.levels)
        acc.spikes &= spikes
        acc.events += float(x.to(torch.float64).sum()) if spikes else 0.0
        acc.numel += x.numel()
        acc.input_shape = list(x.shape[1:] if folded else x.shape[2:])  # per image and timestep
        if isinstance(module, nn.Conv2d):
            dense = output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:  # Linear: every input row meets every output feature
            dense = x.numel() * module.out_features
        acc.dense_macs += dense
        acc.per_image.add("dense", torch.full((B,), dense / B, dtype=torch.float64))
        if spikes:
            xs = per_sample_view(x, passes, B)  # (passes, B, ...)
            if isinstance(module, nn.Conv2d):
                sops = conv_fanout(module, xs.sum(0))  # the conv is linear: sum the timesteps first
            else:
                sops = events_per_sample(xs, 1) * module.out_features
            acc.per_image.add("sops", sops)

    def _tap_hook(self, att: _Attention):
        def hook(module, args, kwargs, output):
            B = self._require_batch()
            m = att.module
            if att.calls == 0:
                self._order.append(att)
            att.calls += 1
            q = kwargs["q"]
            att.image_passes += q.shape[0] * B
            ops = m.op_counts(**kwargs)
            for key in ("q", "k", "v", "mask"):
                t = kwargs.get(key)
                if t is not None:
                    c = att.rate_counts.setdefault(key, [0.0, 0.0])
                    c[0] += float(t.to(torch.float64).sum())
                    c[1] += t.numel() * (self.levels if key != "mask" else 1)
            for name, op in ops.items():
                rec = att.ops.setdefault(name, {"type": op.type, "ann_type": op.ann_type, "note": op.note, "ann": 0.0})
                att.per_image.add(name, op.count)
                rec["ann"] += op.ann_count * q.shape[0] * B  # one timestep's dense ops, weighted by timesteps run
        return hook

    def _neuron_hook(self, module, inputs, output):
        self._require_batch()
        self.neuron_updates += output.numel()  # one membrane update per neuron per timestep

    def _require_batch(self) -> int:
        if self._B is None:
            raise RuntimeError("run the model inside `with meter.batch(n_images):` so counts can be per image")
        return self._B

    # -- context -------------------------------------------------------------------------------
    def __enter__(self) -> "EnergyMeter":
        from spikingjelly.activation_based.neuron import BaseNode

        self._was_training = self.model.training
        self.model.eval()  # measure as deployed: BN uses running statistics
        try:
            for name, m in self.model.named_modules():
                name = name or type(m).__name__
                if isinstance(m, self.SUPPORTED):
                    self._syn.setdefault(m, _Synaptic(name, m))
                    self._handles.append(m.register_forward_hook(self._syn_hook))
                if isinstance(m, SpikingAttention):
                    att = self._att.setdefault(m, _Attention(f"{name}.ops", m))
                    self._handles.append(m.tap.register_forward_hook(self._tap_hook(att), with_kwargs=True))
                if isinstance(m, SpikingNeuron) or (isinstance(m, BaseNode) and not isinstance(m, SpikingNeuron)):
                    self._handles.append(m.register_forward_hook(self._neuron_hook))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.model.train(self._was_training)

    @contextmanager
    def batch(self, n_images: int) -> Iterator[None]:
        """Everything the model runs inside this block processes the same ``n_images`` images."""
        if self._B is not None:
            raise RuntimeError("meter.batch() blocks cannot be nested")
        self._B = int(n_images)
        try:
            yield
        finally:
            self._B = None
        for acc in self._order:
            acc.per_image.flush(self.images, int(n_images))
        self.images += int(n_images)

    # -- report --------------------------------------------------------------------------------
    def report(self, constants: EnergyConstants | None = None, meta: dict | None = None) -> EnergyReport:
        """Per-image averages over every image measured so far."""
        c = constants or PRESETS[DEFAULT_PRESET]
        n = self.images
        if n == 0:
            raise RuntimeError("no images were measured")
        rows: list[LayerEnergy] = []
        per_image = torch.zeros(n, dtype=torch.float64)
        price = {AC: c.e_ac_pj, MAC: c.e_mac_pj}
        for acc in self._order:
            if isinstance(acc, _Synaptic):
                rows.append(self._synaptic_row(acc, c, n, per_image))
            else:
                rows.append(self._attention_row(acc, c, n, per_image, price))
        idle = [a.name for a in self._syn.values() if a.calls == 0]
        return EnergyReport(
            layers=rows, constants=c, timesteps=self.T, images=n, image_energy_pj=per_image.tolist(),
            neuron_updates=self.neuron_updates / n, trained_timesteps=self.trained_timesteps, levels=self.levels,
            idle_modules=idle, meta=dict(meta or {}),
        )

    def _synaptic_row(self, acc: _Synaptic, c: EnergyConstants, n: int, per_image: torch.Tensor) -> LayerEnergy:
        sops_v, dense_v = acc.per_image.get("sops", n), acc.per_image.get("dense", n)
        e_v = c.e_ac_pj * sops_v if acc.spikes else c.e_mac_pj * dense_v
        per_image += e_v
        macs = acc.dense_macs / acc.image_passes  # per image and timestep
        steps = acc.image_passes / n
        m = acc.module
        kind = ""
        if isinstance(m, nn.Conv2d):
            kind = f" {m.kernel_size[0]}x{m.kernel_size[1]}/{m.stride[0]}"
            kind += f" d{m.dilation[0]}" if m.dilation[0] > 1 else ""
        if acc.spikes:
            rate = acc.events / (acc.numel * self.levels) if acc.numel else 0.0
            sops = float(sops_v.sum()) / n
            sops_rate = rate * steps * self.levels * macs
            energy, energy_rate, ac_ops, mac_ops = c.e_ac_pj * sops, c.e_ac_pj * sops_rate, sops, 0.0
        else:
            rate = sops = sops_rate = None
            mac_ops = acc.dense_macs / n
            energy = energy_rate = c.e_mac_pj * mac_ops
            ac_ops = 0.0
        return LayerEnergy(
            name=acc.name, type=type(m).__name__ + kind, kind="synaptic", input_spikes=acc.spikes,
            firing_rate=rate, timesteps=steps, macs=macs, sops_rate=sops_rate, sops=sops, ac_ops=ac_ops,
            mac_ops=mac_ops, energy_pj=energy, energy_rate_pj=energy_rate, ann_energy_pj=c.e_mac_pj * macs,
            calls=acc.calls, input_elements=acc.numel / n, input_shape=acc.input_shape,
        )

    def _attention_row(self, acc: _Attention, c: EnergyConstants, n: int, per_image: torch.Tensor,
                       price: dict) -> LayerEnergy:
        ops, ac, mac, ann = {}, 0.0, 0.0, 0.0
        for name, r in acc.ops.items():
            v = acc.per_image.get(name, n)
            per_image += price[r["type"]] * v
            cnt = float(v.sum()) / n
            ann_cnt = r["ann"] / acc.image_passes  # dense ops of one timestep, per image
            ops[name] = {"type": r["type"], "count": cnt, "ann_type": r["ann_type"], "ann_count": ann_cnt,
                         "note": r["note"]}
            ac += cnt if r["type"] == AC else 0.0
            mac += cnt if r["type"] == MAC else 0.0
            ann += price[r["ann_type"]] * ann_cnt
        m = acc.module
        energy = c.e_ac_pj * ac + c.e_mac_pj * mac
        return LayerEnergy(
            name=acc.name, type=getattr(m, "version", type(m).__name__).upper(), kind="attention",
            input_spikes=None, firing_rate=None, timesteps=acc.image_passes / n, macs=None, sops_rate=None,
            sops=None, ac_ops=ac, mac_ops=mac, energy_pj=energy, energy_rate_pj=energy, ann_energy_pj=ann,
            calls=acc.calls, ops=ops, rates={k: a / b for k, (a, b) in acc.rate_counts.items() if b},
        )


def _accepts_T(model: nn.Module) -> bool:
    try:
        params = inspect.signature(model.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "T" or p.kind == inspect.Parameter.VAR_KEYWORD for p in params)


def default_runner(model: nn.Module, timesteps: int | None) -> Callable[[nn.Module, torch.Tensor], object]:
    """``model(x, T=timesteps)`` when the forward takes T (SNNViT, SNNViTYOLO), else ``model(x)``."""
    if timesteps is not None and _accepts_T(model):
        return lambda m, x: m(x, T=timesteps)
    return lambda m, x: m(x)


@torch.no_grad()
def measure_energy(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    timesteps: int | None = None,
    run: Callable[[nn.Module, torch.Tensor], object] | None = None,
    constants: EnergyConstants | None = None,
    max_images: int | None = None,
    meta: dict | None = None,
) -> EnergyReport:
    """Run ``model`` on image ``batches`` (each (B, ...)) and return the per-image energy report.

    ``timesteps``: T to run with (default: the model's own ``timesteps``; must not exceed it).
    ``run(model, x)``: how to run one batch (default ``model(x, T=T)`` or ``model(x)``).
    ``max_images``: stop after this many images (the last batch is cut to fit).
    ``meta``: free-form facts copied into the report (model name, weights, source, image size...).
    """
    meter = EnergyMeter(model, timesteps)
    if run is None and not _accepts_T(model) and meter.T != (meter.trained_timesteps or meter.T):
        raise ValueError(f"{type(model).__name__}.forward takes no T: pass run=... to run it with T={meter.T}")
    run = run or default_runner(model, meter.T)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with meter:
        for x in batches:
            if max_images is not None:
                left = max_images - meter.images
                if left <= 0:
                    break
                x = x[:left]
            with meter.batch(x.shape[0]):
                run(model, x.to(device))
    return meter.report(constants, meta)

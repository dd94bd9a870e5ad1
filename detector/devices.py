"""One device resolver for every tool: the names Ultralytics accepts, mapped once.

    cpu            the CPU
    mps            Apple's Metal device
    cuda, cuda:N   a CUDA GPU (cuda = GPU 0)
    N              GPU N (Ultralytics' spelling)
    N,M,...        several GPUs: training runs Ultralytics' DDP over them; inference tools refuse it

``resolve_device`` checks that the device is there and returns a ``Device``: ``torch`` is what a model
is moved to (``model.to(dev.torch)``), ``ultralytics`` what Ultralytics' trainer and validator are given
(they reject ``cuda:0``-style names in some places and need ``0,1`` for DDP). A device that is not there,
or a misspelt one, is a one-line ValueError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^(cpu|mps|cuda(:\d+)?|\d+(,\d+)*)$")


@dataclass(frozen=True)
class Device:
    kind: str  # "cpu", "cuda" or "mps"
    indices: tuple[int, ...] = ()  # CUDA GPU indices; empty for cpu / mps

    @property
    def torch(self):
        import torch

        return torch.device(f"cuda:{self.indices[0]}") if self.kind == "cuda" else torch.device(self.kind)

    @property
    def ultralytics(self) -> str:
        return ",".join(map(str, self.indices)) if self.kind == "cuda" else self.kind

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return self.ultralytics if self.kind != "cuda" else ",".join(f"cuda:{i}" for i in self.indices)


def parse_device(spec) -> Device:
    """``spec`` as a ``Device`` by its spelling alone, not checked against this machine (a survey's
    client names the device its workers run on); a misspelt one is a one-line ValueError."""
    if isinstance(spec, Device):
        return spec
    s = str(spec if spec is not None else "cpu").strip().lower().replace(" ", "")
    if not _SPEC.match(s):
        raise ValueError(f"device must be cpu, mps, cuda, cuda:N or GPU indices like 0 or 0,1; got {spec!r}")
    if s in {"cpu", "mps"}:
        return Device(s)
    if s.startswith("cuda"):
        return Device("cuda", (int(s.split(":")[1]) if ":" in s else 0,))
    idx = tuple(int(i) for i in s.split(","))
    if len(set(idx)) != len(idx):
        raise ValueError(f"device {spec!r} names a GPU twice")
    return Device("cuda", idx)


def resolve_device(spec, multi: bool = False) -> Device:
    """``spec`` (a name above, a ``torch.device`` or a ``Device``) as a ``Device`` that exists here.
    ``multi``: whether several GPUs are allowed (training); otherwise ``0,1`` is refused in one line."""
    import torch

    if isinstance(spec, Device) and (multi or len(spec.indices) <= 1):
        return spec  # resolved already (an options record resolves its device once, at construction)
    dev = parse_device(spec)
    if dev.kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device mps is not available on this machine; use --device cpu")
    if dev.kind == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        missing = [i for i in dev.indices if i >= n]
        if missing:
            have = f"{n} GPU(s): " + ", ".join(map(str, range(n))) if n else "no CUDA GPU"
            raise ValueError(f"device {spec!r} is not there: this machine has {have}; use --device cpu")
        if len(dev.indices) > 1 and not multi:
            raise ValueError(f"device {spec!r}: this tool runs on one device; give one GPU, e.g. --device "
                             f"{dev.indices[0]} (several GPUs are for training, through DDP)")
    return dev

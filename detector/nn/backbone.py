"""SNN-ViT backbone: encoding conv, GL-SPS stages and SSSA blocks, with P3/P4/P5 outputs.

Data flow (``(T, B, C, H, W)`` after the encoder):

    image (B, 3, H, W)
      -> stem: conv3x3/2 + BN, run ONCE on the real image, repeated over T (direct encoding)
      -> GL-SPS /4 -> GL-SPS /8 -> spiking res blocks          -> LIF -> P3 spikes (stride 8)
      -> GL-SPS /16 -> conv RPE -> SSSA blocks                  -> LIF -> P4 spikes (stride 16)
      -> GL-SPS /32 -> conv RPE -> SSSA blocks                  -> LIF -> P5 spikes (stride 32)

The paper keeps a single scale after patch splitting and does not say which layers feed the detector;
the three-scale layout above is this project's choice (docs/design.md, section 2).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from .blocks import GLSPS, ConvRPE, SpikeResBlock, SSSABlock
from .neurons import make_neuron


@dataclass
class SNNViTConfig:
    """Everything needed to rebuild the backbone; stored inside every checkpoint."""

    widths: tuple[int, ...] = (16, 32, 64, 128, 256)  # stem, /4, P3, P4, P5 channels
    depths: tuple[int, ...] = (1, 2, 1)  # res blocks at P3, SSSA blocks at P4, SSSA blocks at P5
    heads: tuple[int, ...] = (2, 4)  # attention heads at P4, P5
    mlp_ratio: float = 4.0
    attn: str = "sssa_v2"  # sssa_v1 | sssa_v2 | ssa
    timesteps: int = 4
    dilations: tuple[int, ...] = (1, 2)  # GL-SPS branches: 1 = local, >1 = global (dilated)
    neuron: dict = field(default_factory=lambda: {"name": "lif", "tau": 2.0, "v_threshold": 1.0, "surrogate": "atan"})
    # vth_init: salience at init is ~0.0025 on average (firing rates ~0.05); 0.005 lets ~20% of tokens through.
    saccade: dict = field(default_factory=lambda: {"mw_init": "identity", "vth_init": 0.005, "alpha": 40.0})

    def __post_init__(self):
        self.widths, self.depths, self.heads, self.dilations = (
            tuple(int(v) for v in x) for x in (self.widths, self.depths, self.heads, self.dilations)
        )
        if len(self.widths) != 5 or len(self.depths) != 3 or len(self.heads) != 2:
            raise ValueError("SNNViTConfig needs 5 widths, 3 depths and 2 head counts")
        for dim, nh in zip(self.widths[3:], self.heads):
            if dim % nh:
                raise ValueError(f"width {dim} not divisible by {nh} heads")
        if self.timesteps < 1:
            raise ValueError("timesteps must be >= 1")

    @classmethod
    def from_dict(cls, d: dict) -> "SNNViTConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown backbone config keys: {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class SNNViT(nn.Module):
    """The SNN-ViT backbone. ``forward(img, T=None)`` returns ``[P3, P4, P5]`` spike maps
    ``(T, B, C, H/s, W/s)`` for s = 8, 16, 32; input sides must be multiples of 32."""

    strides = (8, 16, 32)

    def __init__(self, cfg: SNNViTConfig | dict | None = None):
        super().__init__()
        cfg = SNNViTConfig.from_dict(cfg) if isinstance(cfg, dict) else (cfg or SNNViTConfig())
        self.cfg = cfg
        c0, c1, c3, c4, c5 = cfg.widths
        nu, T = cfg.neuron, cfg.timesteps
        self.stem = nn.Sequential(nn.Conv2d(3, c0, 3, 2, 1, bias=False), nn.BatchNorm2d(c0))
        self.sps1 = GLSPS(c0, c1, nu, dilations=cfg.dilations)
        self.sps2 = GLSPS(c1, c3, nu, dilations=cfg.dilations)
        self.p3_blocks = nn.Sequential(*(SpikeResBlock(c3, nu) for _ in range(cfg.depths[0])))
        self.sps3 = GLSPS(c3, c4, nu, dilations=cfg.dilations)
        self.rpe4 = ConvRPE(c4, nu)
        self.p4_blocks = nn.Sequential(
            *(SSSABlock(c4, cfg.heads[0], T, nu, cfg.attn, cfg.mlp_ratio, cfg.saccade) for _ in range(cfg.depths[1]))
        )
        self.sps4 = GLSPS(c4, c5, nu, dilations=cfg.dilations)
        self.rpe5 = ConvRPE(c5, nu)
        self.p5_blocks = nn.Sequential(
            *(SSSABlock(c5, cfg.heads[1], T, nu, cfg.attn, cfg.mlp_ratio, cfg.saccade) for _ in range(cfg.depths[2]))
        )
        self.out_lifs = nn.ModuleList(make_neuron(**nu) for _ in range(3))
        self.out_channels = (c3, c4, c5)

    @property
    def timesteps(self) -> int:
        return self.cfg.timesteps

    def encode(self, img: torch.Tensor, T: int) -> torch.Tensor:
        """Real-valued encoding conv, run once and repeated over T: (B,3,H,W) -> (T,B,C0,H/2,W/2)."""
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"image batch must be (B, 3, H, W), got {tuple(img.shape)}")
        if img.shape[-1] % 32 or img.shape[-2] % 32:
            raise ValueError(f"input sides must be multiples of 32, got {tuple(img.shape[-2:])}")
        x = self.stem(img)  # (B, C0, H/2, W/2)
        return x.unsqueeze(0).expand(T, *x.shape)  # (T, B, C0, H/2, W/2), a view: no copy

    def forward(self, img: torch.Tensor, T: int | None = None) -> list[torch.Tensor]:
        T = self.timesteps if T is None else int(T)
        if not 1 <= T <= self.timesteps:
            raise ValueError(f"T must be between 1 and the model's T={self.timesteps} (M_w is T x T), got {T}")
        x = self.encode(img, T)
        x = self.p3_blocks(self.sps2(self.sps1(x)))  # (T, B, c3, H/8, W/8)
        p3 = x
        x = self.p4_blocks(self.rpe4(self.sps3(x)))  # (T, B, c4, H/16, W/16)
        p4 = x
        x = self.p5_blocks(self.rpe5(self.sps4(x)))  # (T, B, c5, H/32, W/32)
        return [lif(p) for lif, p in zip(self.out_lifs, (p3, p4, x))]

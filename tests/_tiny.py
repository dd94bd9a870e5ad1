"""The tiny SNN-ViT-YOLO configs shared by the tests (every key of detector/models/config.py, small
widths): ``TINY``, T=2 (~0.2 M parameters), three named classes; ``TINY_T1``, T=1, one class, for the
in-process training runs of the robustness tests; ``tiny_ship_model``, the one-class ``TINY`` model
that the tools' tests save as weights.

The saccadic threshold is lowered from the variants' 0.02 (as in test_nn_core.py): at initialisation
the normalised salience is ~0.0025, so with 0.02 hardly a token fires and the attention branch would
get zero gradients and make the equivalence checks vacuous."""

TINY = {
    "nc": 3,
    "timesteps": 2,
    "reg_max": 16,
    "backbone": {"widths": [8, 16, 16, 32, 32], "depths": [1, 1, 1], "heads": [2, 2], "mlp_ratio": 2.0,
                 "attn": "sssa_v2", "dilations": [1, 2]},
    "neck": {"widths": [16, 32, 32], "depth": 1},
    "neuron": {"name": "lif", "tau": 2.0, "v_threshold": 1.0, "surrogate": "atan"},
    "saccade": {"mw_init": "identity", "vth_init": 0.005, "alpha": 40.0},
    "names": {0: "ship", 1: "plane", 2: "tank"},
}


def tiny_config(nc: int | None = None) -> dict:
    """A copy of ``TINY``; with ``nc``, that many classes and default names."""
    cfg = {k: v for k, v in TINY.items() if nc is None or k != "names"}
    if nc is not None:
        cfg["nc"] = nc
    return cfg


# what differs from TINY: one timestep, one class, narrower, one head per stage, the variants' threshold
TINY_T1 = {
    **tiny_config(nc=1),
    "timesteps": 1,
    "backbone": {**TINY["backbone"], "widths": [8, 8, 16, 16, 32], "heads": [1, 1], "mlp_ratio": 1.0},
    "neck": {"widths": [16, 16, 32], "depth": 1},
    "saccade": {**TINY["saccade"], "vth_init": 0.02},
}


def tiny_ship_model(seed: int = 0):
    """``TINY`` with one class named ship, seeded, freshly initialised."""
    import torch

    from detector.models import SNNViTYOLO, load_config

    torch.manual_seed(seed)
    return SNNViTYOLO(load_config(TINY, nc=1, names={0: "ship"}), verbose=False)

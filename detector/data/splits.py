"""Split rules: seeded random train/val/test, the SSDD last-digit rule, and carving val out of train.

All rules are pure functions of (keys, settings): the same keys and seed always give the same split,
whatever order the keys arrive in (keys are sorted before shuffling).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence

from .records import DEFAULT_RATIOS


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test fractions: three non-negative numbers summing to 1."""
    if len(ratios) != 3:
        raise ValueError(f"split ratios must be three numbers (train, val, test), got {tuple(ratios)}")
    r = tuple(float(x) for x in ratios)
    if min(r) < 0 or abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(f"split ratios must be >= 0 and sum to 1, got {r}")
    return r  # type: ignore[return-value]


def seeded_split(keys: Iterable[str], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = 0) -> dict[str, str]:
    """Assign each key to train/val/test at random with a fixed seed.

    Sizes are ``round(n * ratio)`` for val and test and the rest for train, so 650 NWPU images at
    60/20/20 give 390/130/130.
    """
    r = check_ratios(ratios)
    ordered = sorted(set(keys))
    random.Random(seed).shuffle(ordered)
    n = len(ordered)
    n_val, n_test = round(n * r[1]), round(n * r[2])
    n_train = max(n - n_val - n_test, 0)
    n_val = min(n_val, n - n_train)
    split: dict[str, str] = {}
    for i, key in enumerate(ordered):
        split[key] = "train" if i < n_train else "val" if i < n_train + n_val else "test"
    return split


def ssdd_split(key: str) -> str | None:
    """SSDD convention: ids whose last digit is 1 or 9 are test, the rest train; None if no last digit."""
    if not key or not key[-1].isdigit():
        return None
    return "test" if key[-1] in "19" else "train"


def carve_val(split: dict[str, str], fraction: float, seed: int = 0) -> dict[str, str]:
    """Move ``round(n_train * fraction)`` seeded-random train keys to val; other keys are unchanged."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val fraction must be in [0, 1), got {fraction}")
    train = sorted(k for k, s in split.items() if s == "train")
    random.Random(seed).shuffle(train)
    moved = set(train[: round(len(train) * fraction)])
    return {k: ("val" if k in moved else s) for k, s in split.items()}


def carve_val_records(ds, fraction: float, seed: int = 0) -> None:
    """Move a seeded ``fraction`` of a read dataset's train images to val, in place (for formats whose own
    splits have no val, e.g. a COCO set with train and test files only); noted in ``ds.notes`` and
    ``ds.options``. Refused when the dataset already has a val split."""
    if fraction <= 0:
        return
    if any(r.split == "val" for r in ds.records):
        raise ValueError("the dataset already has a val split; --val-fraction carves one only where there is none")
    keys = {str(r.src): r.split for r in ds.records}
    split = carve_val(keys, fraction, seed)
    for r in ds.records:
        r.split = split[str(r.src)]
    moved = sum(s == "val" for s in split.values())
    ds.options["val_fraction"], ds.options["split_seed"] = fraction, seed
    ds.notes.append(f"val is {fraction} of train, seeded random (seed {seed}): {moved} images")

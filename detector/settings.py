"""Process settings, at the bottom of the package: offline and private by default (no analytics, no
downloads, no automatic package installs), CPU threads, fonts, Ultralytics' settings.

Two steps, each done once per process:

* ``set_environment()`` - run by ``detector/__init__.py``, so before anything imports Ultralytics
  (which reads these environment variables at import time);
* ``apply()`` - the settings that need Ultralytics imported; run by ``detector/engine/__init__.py``
  (training, validation, prediction) and by ``detector.io.writers`` (plotting), the two places where
  Ultralytics does work. Importing ``detector.data`` or ``detector.nn`` alone stays light.

What they do:

* ``YOLO_OFFLINE=1``: Ultralytics' online check answers False, so nothing tries the network;
* ``YOLO_AUTOINSTALL=0``: Ultralytics never pip-installs missing packages;
* ``YOLO_CONFIG_DIR``: a private settings folder for this project (unless the user set one), so the
  settings below never change the user's own Ultralytics settings;
* settings ``sync`` (analytics) and every third-party logger integration off;
* fonts: Ultralytics looks for ``Arial.ttf`` / ``Arial.Unicode.ttf`` in its config folder and
  downloads them if missing. We place matplotlib's bundled DejaVu Sans there under those names.
* CPU threads: every core (``SNNVIT_THREADS`` to change), where Ultralytics would use cores - 1;
* the AMP self-check (which downloads a reference model on CUDA) is replaced by a local check, and the
  trainer's autocast by one that allows bf16 on the CPU (``detector.precision``).

A user may still opt in by setting the variables themselves before importing ``detector``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

_DONE = False


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (``$XDG_CACHE_HOME/snnvit-yolo``, else ``~/.cache/snnvit-yolo``), or a
    folder inside it."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "snnvit-yolo", *parts)


def default_config_dir() -> Path:
    return cache_dir("ultralytics")


def cpu_threads() -> int:
    """Threads for CPU work: ``SNNVIT_THREADS`` or every core."""
    return max(1, int(os.environ.get("SNNVIT_THREADS", os.cpu_count() or 1)))


def set_environment() -> None:
    """Set the environment before Ultralytics is imported (no effect on variables already set, except
    PROJ_NETWORK, always off)."""
    # Ultralytics sets OMP_NUM_THREADS=1 when unset, which would leave torch on one core on CPU.
    os.environ.setdefault("OMP_NUM_THREADS", str(cpu_threads()))
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    # Forced, not a default: PROJ reads it once, when rasterio first uses PROJ, and GDAL's own setting
    # (detector.io.gdal.GDAL_CONFIG) does not override it: PROJ_NETWORK=ON in the user's environment
    # let PROJ fetch datum grids from its CDN while a raster's corners were reprojected.
    os.environ["PROJ_NETWORK"] = "OFF"
    os.environ.setdefault("YOLO_VERBOSE", os.environ.get("SNNVIT_VERBOSE", "True"))
    if "YOLO_CONFIG_DIR" not in os.environ:
        d = default_config_dir()
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only home: fall back to a temp folder
            import tempfile

            d = Path(tempfile.gettempdir()) / "snnvit-yolo-ultralytics"
            d.mkdir(parents=True, exist_ok=True)
        os.environ["YOLO_CONFIG_DIR"] = str(d)


def install_fonts(config_dir: Path) -> None:
    """Copy a bundled font to the names Ultralytics asks for, so plotting never downloads one."""
    import matplotlib

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        dst = config_dir / name
        if not dst.exists() and src.exists():
            tmp = dst.with_suffix(".tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # atomic: a concurrent reader never sees half a font


def local_check_amp(model) -> bool:
    """Replacement for Ultralytics' fp16 AMP check: no reference-model download. fp16 AMP is used on CUDA
    only (the CPU's mixed precision is bf16, which skips this check: ``detector.precision``), and only if
    a half-precision forward of this very model gives finite outputs."""
    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    try:
        with torch.autocast("cuda"), torch.no_grad():
            was_training = model.training
            model.eval()
            out = model(torch.zeros(1, 3, 64, 64, device=device))
            model.train(was_training)
        y = out[0] if isinstance(out, (tuple, list)) else out
        return bool(torch.isfinite(y).all())
    except Exception:  # noqa: BLE001 - any failure means: train in fp32
        return False


def apply() -> None:
    """Make the whole Ultralytics stack offline and private (idempotent)."""
    global _DONE
    if _DONE:
        return
    set_environment()
    from ultralytics import utils as ul_utils
    from ultralytics.engine import trainer as ul_trainer

    off = {k: False for k in ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")}
    if any(ul_utils.SETTINGS.get(k) for k in off):
        ul_utils.SETTINGS.update(off)
    install_fonts(Path(ul_utils.USER_CONFIG_DIR))
    ul_trainer.check_amp = local_check_amp
    from .precision import autocast

    ul_trainer.autocast = autocast  # Ultralytics' own refuses bf16 off CUDA
    # Ultralytics' select_device() sets torch to (cores - 1) threads on CPU: one thread on 2 cores.
    from ultralytics.utils import torch_utils as ul_torch_utils

    ul_torch_utils.NUM_THREADS = cpu_threads()
    _DONE = True

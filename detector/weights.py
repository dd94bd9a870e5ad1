"""Safe saving and loading of SNN-ViT-YOLO checkpoints.

A checkpoint is a plain dict of tensors and primitive values: the model config (which rebuilds the
architecture exactly), class names, a state dict, and optional training state. It is read with
``torch.load(weights_only=True)``, which refuses any pickled object that is not plain data, so
loading weights never executes code. Files are written atomically (temp file + ``os.replace``), so an
interrupted save never leaves a truncated checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .models.settings import ModelSettings

FORMAT = "snnvit-yolo-checkpoint"
FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


# --------------------------------------------------------------------------------------------
# Shipped models, by name
# --------------------------------------------------------------------------------------------


def shipped_dir() -> Path:
    """The folder of the shipped weights: inside the installed package (``detector/shipped``, where a
    non-editable ``pip install .`` puts the top-level ``weights/`` folder, see setup.py), else the
    source tree's ``weights/`` (a checkout, or an editable install)."""
    installed = Path(__file__).resolve().parent / "shipped"
    return installed if (installed / "models.yaml").is_file() else REPO_ROOT / "weights"


def shipped_models() -> tuple[str, dict[str, dict[str, str]]]:
    """(default name, {name: {"file", "summary"}}) from the shipped folder's ``models.yaml``."""
    from .files import read_yaml

    path = shipped_dir() / "models.yaml"
    try:
        reg = read_yaml(path, "the shipped model registry")
        models = {str(k): {"file": str(v["file"]), "summary": str(v.get("summary", ""))} for k, v in reg["models"].items()}
        default = str(reg["default"])
    except ValueError:
        raise
    except (OSError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"the shipped model registry {path} is unreadable ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:160]})") from None
    bad = [k for k, v in models.items() if not MODEL_NAME.match(k) or Path(v["file"]).name != v["file"]]
    if bad or default not in models:
        raise ValueError(f"{path}: bad entries {bad} or default {default!r} not listed")
    return default, models


def shipped_listing() -> str:
    """One line per shipped model: name, file, the card's one-line summary (``--weights list``)."""
    default, models = shipped_models()
    folder = shipped_dir()
    return "\n".join(f"{k:8s} {v['file']}{' (default)' if k == default else ''}{'' if (folder / v['file']).is_file() else ' [missing]'}"
                     f"\n         {v['summary']}" for k, v in models.items())


def shipped_path(name: str) -> Path:
    """The file of the shipped model ``name``; ValueError naming the shipped ones otherwise."""
    default, models = shipped_models()
    if name not in models:
        raise ValueError(f"no shipped model named {name!r}; shipped: {', '.join(models)} (--weights list)")
    return shipped_dir() / models[name]["file"]


def default_weights() -> Path:
    """The default shipped model's file (read from the registry when asked, so that a broken registry is
    one line from the tool that needs it, never an import error)."""
    return shipped_path(shipped_models()[0])


def resolve_weights(spec: str | Path | None) -> Path:
    """The weights file ``spec`` names: None = the default shipped model; a shipped model's short name
    (a bare word without a suffix or a folder, e.g. ``ssdd``; write ``./ssdd`` for a file of that name);
    otherwise a path. A missing file is a FileNotFoundError naming it."""
    if spec is not None and not str(spec).strip():
        raise ValueError("--weights is empty: give a shipped model's name (--weights list shows them) or a checkpoint "
                         "path, or leave it out for the default model")
    if spec is None:
        path = default_weights()
        if not path.is_file():
            raise FileNotFoundError(f"default weights not found: {path} (pass --weights PATH or a shipped name; "
                                    "--weights list shows them)")
        return path
    s = str(spec)
    if isinstance(spec, str) and MODEL_NAME.match(s) and not Path(s).suffix:
        if not Path(s).exists() or s in shipped_models()[1]:
            path = shipped_path(s)
            if not path.is_file():
                raise FileNotFoundError(f"shipped model {s!r}: weights file not found: {path}")
            return path
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    return path


class UnsafeCheckpointError(RuntimeError):
    """The file holds pickled objects other than plain data (it could run code): refused."""


def plain(obj: Any) -> Any:
    """Convert to data that ``weights_only`` loading accepts (paths, namespaces, numpy scalars...)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {plain(k) if not isinstance(k, (str, int)) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except (TypeError, ValueError):
            pass
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        return plain(vars(obj))
    return str(obj)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save to a temp file in the same folder, fsync, then rename over ``path``. Temp files that
    killed saves of ``path`` left are removed first; a full disk is ``detector.files.DiskFullError``
    (one line naming the disk), and the temp file is removed on any failure."""
    from .files import remove_leftovers, writing

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers([path])
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with writing(path):
            with os.fdopen(fd, "wb") as f:
                torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it normal permissions
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_checkpoint_leftovers(folder: str | Path) -> list[Path]:
    """Temp files that killed saves left in a run's weights folder (``.last.pt.XXXXXXXX.tmp``,
    ``.best.pt.tmp``..., and ``best.tmp`` / ``epochN.tmp`` of earlier versions): removed, returned."""
    from .files import remove_leftovers

    folder = Path(folder)
    if not folder.is_dir():
        return []
    old = [p for p in folder.iterdir() if re.fullmatch(r"(best|epoch\d+)\.tmp", p.name) and p.is_file()]
    for p in old:
        p.unlink()
    names = {"last.pt", "best.pt", *(p.name for p in folder.glob("epoch*.pt"))}
    return old + remove_leftovers(folder / n for n in names)


def save_checkpoint(path: str | Path, model: torch.nn.Module, **extra: Any) -> Path:
    """Save ``model`` (an SNNViTYOLO) with its config and names, plus any plain ``extra`` fields."""
    ckpt = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": plain(model.yaml),
        "names": {int(k): str(v) for k, v in model.names.items()},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    ckpt.update({k: plain(v) if k not in {"optimizer", "ema_state_dict"} else v for k, v in extra.items()})
    return atomic_torch_save(ckpt, path)


def _unpickler_reason(e: Exception) -> str:
    """What torch's weights-only unpickler refused (e.g. "Unsupported global: GLOBAL builtins.exec"), without
    its advice to retry with ``weights_only=False`` (which would run the file's code) or colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    m = re.search(r"Unsupported (global|operand)[^\n.]*", text)
    if m:
        return m.group(0).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and "weights_only" not in line and "Please" not in line and "WeightsUnpickler" not in line:
            return line[:160]
    return type(e).__name__


def read_plain_file(path: str | Path, what: str = "weights") -> dict:
    """Read a torch file that must hold only plain data (tensors, numbers, strings, lists, dicts),
    with ``weights_only=True``: a file with pickled code is refused before anything in it runs.
    Raises FileNotFoundError, UnsafeCheckpointError or ValueError, each one line naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        import warnings

        with warnings.catch_warnings():  # torch's notes on the pickle protocol: the refusal below says it all
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        why = _unpickler_reason(e)
        raise UnsafeCheckpointError(
            f"refused to load {path}: it contains pickled Python objects, not only plain data ({why}); loading it "
            f"could run code, so it was not loaded. Only plain-data SNN-ViT-YOLO files are accepted."
        ) from e
    except Exception as e:  # noqa: BLE001 - corrupt bytes surface as RuntimeError, EOFError, KeyError, ...
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ValueError(f"cannot read {what} file {path}: corrupt or not a torch file ({type(e).__name__}: {first})") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path} is not an SNN-ViT-YOLO {what} file (not a dict)")
    return obj


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely. Raises FileNotFoundError, UnsafeCheckpointError or ValueError."""
    return check_checkpoint(read_plain_file(path, "weights"), Path(path))


def check_checkpoint(ckpt: dict, path: Path) -> dict:
    if ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not an SNN-ViT-YOLO checkpoint (missing format tag {FORMAT!r})")
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path} was written by a newer SNN-ViT-YOLO (format {ckpt['format_version']})")
    return ckpt


def build_from_checkpoint(ckpt: dict, use_ema: bool = True, source: Any = "checkpoint"):
    """Rebuild the model from a checkpoint dict (EMA weights when present and ``use_ema``). The stored
    config is validated with bounds before anything is built (``detector.models.config``); every
    problem is a ValueError naming ``source`` and the field."""
    from .models import SNNViTYOLO

    cfg = ckpt.get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{source}: the checkpoint holds no model config")
    state = ckpt.get("ema_state_dict") if use_ema and ckpt.get("ema_state_dict") else ckpt.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError(f"{source}: the checkpoint's state_dict is missing or not a dict of tensors")
    try:
        model = SNNViTYOLO(cfg, verbose=False)
    except (ValueError, FileNotFoundError) as e:
        raise ValueError(f"{source}: {e}") from e
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ValueError(f"{source}: weights do not match the stored config ({' '.join(first[:2])[:240]})") from e
    names = ckpt.get("names") or model.names
    if not isinstance(names, dict) or sorted(names) != list(range(int(model.yaml["nc"]))):
        raise ValueError(f"{source}: class names {names!r} do not match nc={model.yaml['nc']}")
    model.set_names(names)
    model.settings = checkpoint_settings(ckpt, model, source)
    return model


def checkpoint_settings(ckpt: dict, model, source: Any = "checkpoint") -> ModelSettings:
    """The model's settings (``detector.models.settings``) from a checkpoint; sizes out of bounds are
    ignored (a hostile or damaged file must not choose an absurd default)."""
    from dataclasses import replace

    from .models.settings import settings_of

    args = ckpt.get("train_args")
    imgsz = args.get("imgsz") if isinstance(args, dict) else None
    ok = isinstance(imgsz, int) and not isinstance(imgsz, bool) and 32 <= imgsz <= 8192 and imgsz % 32 == 0
    size = ckpt.get("train_image_size")
    ok_size = isinstance(size, int) and not isinstance(size, bool) and 32 <= size <= 100_000
    return replace(settings_of(model), train_imgsz=imgsz if ok else None, train_image_size=size if ok_size else None,
                   source=str(source))


def default_imgsz(model, fallback: int | None = None) -> int:
    """The image size a model was trained at (from its checkpoint), else ``fallback``: the size at which
    its objects have the scale it learned (``ModelSettings.imgsz``'s default when None)."""
    from .models.settings import settings_of

    s = settings_of(model)
    return s.imgsz() if fallback is None else s.imgsz(fallback)


def load_model(path: str | Path | None = None, device: str | torch.device = "cpu", use_ema: bool = True):
    """An SNN-ViT-YOLO checkpoint (a path or a shipped model's name; default: the default shipped
    model) as a PyTorch model in eval mode, batch norm not folded (training, analysis and export can
    use it). Inference tools get a ready runtime from ``detector.infer.load_runtime``."""
    from .devices import resolve_device

    device = resolve_device(device).torch
    path = resolve_weights(path)
    if path.suffix.lower() == ".onnx":
        raise ValueError(f"{path} is an ONNX export: it runs through detector.infer.load_runtime (ONNX Runtime)")
    model = build_from_checkpoint(load_checkpoint(path), use_ema=use_ema, source=path)
    return model.to(device).eval()


def export_weights(src: str | Path, dst: str | Path, half: bool = True, use_ema: bool = True, overwrite: bool = False,
                   **note: Any) -> Path:
    """Write an inference-only copy of a training checkpoint, spiking or ANN (a YOLOv8 baseline or
    teacher of ``tools/train_baseline.py``): the EMA weights (else the raw ones) as ``state_dict``,
    floating tensors in fp16 when ``half`` (loading casts them back to the model's float32), plus the
    fields that rebuild the model, epoch, training arguments and metrics; no optimizer or training
    state. Extra keyword arguments are stored as plain fields (e.g. ``note="..."``).

    Never replaces ``src`` itself, and an existing ``dst`` only with ``overwrite``."""
    if Path(dst).resolve() == Path(src).resolve():
        raise ValueError(f"refusing to write the inference copy over its source {src}: choose another output file")
    if Path(dst).is_dir():
        raise ValueError(f"output {dst} is a folder; give a file name")
    if Path(dst).exists() and not overwrite:
        raise ValueError(f"{dst} exists; pass --overwrite to replace it")
    ckpt = read_plain_file(src, "weights")
    ann = ckpt.get("format") == ANN_FORMAT
    ckpt = check_ann_checkpoint(ckpt, Path(src)) if ann else check_checkpoint(ckpt, Path(src))
    state = ckpt.get("ema_state_dict") if use_ema and ckpt.get("ema_state_dict") else ckpt["state_dict"]
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    model_fields = ("format", "format_version", "arch", "nc", "names") if ann else ("format", "format_version", "config", "names")
    out = {k: ckpt[k] for k in model_fields if k in ckpt}
    out["state_dict"] = state
    out.update({k: ckpt[k] for k in ("epoch", "best_fitness", "train_args", "train_metrics", "train_image_size", "distill")
                if k in ckpt})
    for k in ("train_args", "distill"):  # a file meant to be shared names no folder of the machine that trained it
        if isinstance(out.get(k), dict):
            out[k] = {key: local_path_name(v) for key, v in out[k].items()}
    out.update({k: plain(v) for k, v in note.items()})
    (build_ann if ann else build_from_checkpoint)(out, source=src)  # refuse to write a file that would not load
    return atomic_torch_save(out, dst)


def local_path_name(value: Any) -> Any:
    """An absolute path (POSIX or Windows) reduced to its last part; anything else unchanged."""
    if isinstance(value, str) and (value.startswith(("/", "\\\\")) or (len(value) > 2 and value[1] == ":"
                                                                         and value[2] in "/\\")):
        return value.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
    return value


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# ANN checkpoints (the YOLOv8 baseline / distillation teacher), in the same plain-data spirit
# --------------------------------------------------------------------------------------------

ANN_FORMAT = "snnvit-yolo-ann"
# Ultralytics' bundled model YAMLs an ANN checkpoint may be rebuilt from (read from the installed package
# only; a checkpoint never supplies a model YAML of its own, which Ultralytics' parser would interpret).
ANN_ARCHS = ("yolov8n.yaml", "yolov8s.yaml", "yolov8m.yaml", "yolov8l.yaml", "yolov8x.yaml")
MAX_CLASSES = 10_000


def save_ann_checkpoint(path: str | Path, model: torch.nn.Module, arch: str, names: dict, **extra: Any) -> Path:
    """Save an Ultralytics detection model as plain tensors: ``arch`` (one of ``ANN_ARCHS``), class names,
    the state dict, plus plain ``extra`` fields (EMA weights, optimizer state, training state...)."""
    if arch not in ANN_ARCHS:
        raise ValueError(f"ANN architecture {arch!r} is not one of {list(ANN_ARCHS)}")
    names = {int(k): str(v) for k, v in dict(names).items()}
    ckpt = {"format": ANN_FORMAT, "format_version": 1, "arch": arch, "nc": len(names), "names": names,
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
    ckpt.update({k: plain(v) if k not in {"optimizer", "ema_state_dict"} else v for k, v in extra.items()})
    return atomic_torch_save(ckpt, path)


def load_ann_checkpoint(path: str | Path) -> dict:
    """Read and validate an ANN checkpoint (``save_ann_checkpoint``); ValueError names the bad field."""
    return check_ann_checkpoint(read_plain_file(path, "ANN weights"), Path(path))


def check_ann_checkpoint(ckpt: dict, path: Path) -> dict:
    if ckpt.get("format") != ANN_FORMAT:
        raise ValueError(f"{path} is not an ANN baseline/teacher checkpoint of this project (format tag {ANN_FORMAT!r} "
                         "missing); make one with tools/train_baseline.py")
    arch, nc, names = ckpt.get("arch"), ckpt.get("nc"), ckpt.get("names")
    if arch not in ANN_ARCHS:
        raise ValueError(f"{path}: architecture {arch!r} is not one of {list(ANN_ARCHS)}")
    if isinstance(nc, bool) or not isinstance(nc, int) or not 1 <= nc <= MAX_CLASSES:
        raise ValueError(f"{path}: nc must be an integer in 1..{MAX_CLASSES}, got {nc!r}")
    if not isinstance(names, dict) or sorted(names) != list(range(nc)) or not all(isinstance(v, str) for v in names.values()):
        raise ValueError(f"{path}: names must map 0..{nc - 1} to strings")
    for key in ("state_dict", "ema_state_dict"):
        sd = ckpt.get(key)
        if key == "state_dict" or sd is not None:
            if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
                raise ValueError(f"{path}: {key} must be a dict of tensors")
    return ckpt


def build_ann(ckpt: dict, use_ema: bool = True, source: Any = "checkpoint") -> torch.nn.Module:
    """An Ultralytics ``DetectionModel`` rebuilt from a validated ANN checkpoint (EMA weights when
    present and ``use_ema``), float32, with its class names."""
    from ultralytics.nn.tasks import DetectionModel

    model = DetectionModel(ckpt["arch"], nc=int(ckpt["nc"]), verbose=False)
    state = ckpt.get("ema_state_dict") if use_ema and ckpt.get("ema_state_dict") else ckpt["state_dict"]
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()}, strict=True)
    except RuntimeError as e:
        raise ValueError(f"{source}: weights do not fit {ckpt['arch']} with nc={ckpt['nc']}: "
                         f"{str(e).splitlines()[0][:200]}") from e
    model.names = {int(k): str(v) for k, v in ckpt["names"].items()}
    return model

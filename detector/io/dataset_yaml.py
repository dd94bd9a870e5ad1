"""Dataset YAMLs, read safely: local files only, nothing downloaded or executed.

Ultralytics' own reader (``check_det_dataset``) fetches a dataset YAML given as a URL, extracts an
archive given in its place, and, when the images are missing, runs the YAML's ``download:`` entry
(a URL, a shell command or Python code). The project's tools promise to stay offline and never run
anything named in a data file, so every tool passes a dataset YAML through ``check_dataset_yaml``
first: a local ``.yaml`` file whose split folders exist; a ``download:`` entry is reported and
ignored. Only then does Ultralytics read it, with downloads off.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable

from ..files import read_yaml

LOGGER = logging.getLogger("detector.data")
MAX_CLASSES = 10_000


def _is_remote(s: str) -> bool:
    return "://" in s or s.startswith(("ul:", "http:", "https:"))


def _dataset_root(d: dict, yaml_path: Path) -> Path:
    """The dataset root exactly as Ultralytics resolves it (``path`` relative to the working folder,
    else to its datasets folder; default: the YAML's folder)."""
    p = Path(str(d.get("path") or yaml_path.parent))
    if not p.exists() and not p.is_absolute():
        from ultralytics.utils import DATASETS_DIR

        p = (Path(DATASETS_DIR) / p).resolve()
    return p


def check_dataset_yaml(data: str | Path, splits: Iterable[str] = ("train", "val")) -> Path:
    """Validate a dataset YAML before anything else reads it; returns its path.

    Raises ValueError (a URL, not a YAML mapping, bad names / nc) or FileNotFoundError (the file, or a
    needed split's images, missing), each one line naming the file."""
    s = str(data)
    if not s:
        raise ValueError("no dataset YAML given (--data)")
    if _is_remote(s):
        raise ValueError(f"dataset must be a local YAML file, not a URL: {s} (the tools never download data)")
    path = Path(s).expanduser()
    if not path.is_file():
        hint = "" if path.suffix else " (bundled dataset names are not supported: the tools never download data)"
        raise FileNotFoundError(f"dataset YAML not found: {path}" + hint)
    if path.suffix.lower() not in {".yaml", ".yml"}:
        raise ValueError(f"dataset must be a .yaml file, got {path}")
    d = read_yaml(path, "dataset YAML")
    if not isinstance(d, dict):
        raise ValueError(f"dataset YAML {path} is not a mapping")
    if d.get("download") is not None:
        LOGGER.warning(f"{path}: its 'download:' entry is ignored (the tools never download or run anything "
                       "named in a dataset YAML)")
    names, nc = d.get("names"), d.get("nc")
    if names is None and nc is None:
        raise ValueError(f"dataset YAML {path} has neither 'names' nor 'nc'")
    if names is not None and not isinstance(names, (list, dict)):
        raise ValueError(f"dataset YAML {path}: 'names' must be a list or a mapping")
    n = len(names) if names is not None else nc
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLASSES:
        raise ValueError(f"dataset YAML {path}: the number of classes must be in 1..{MAX_CLASSES}, got {n!r}")
    for key in ("path", "train", "val", "test"):
        v = d.get(key)
        for item in (v if isinstance(v, list) else [v]):
            if item is not None and (not isinstance(item, str) or _is_remote(item)):
                raise ValueError(f"dataset YAML {path}: '{key}' must be a local path, got {item!r}")
    root = _dataset_root(d, path)
    for split in splits:
        entry = d.get(split)
        if entry is None and split == "val":
            entry = d.get("validation")
        if not entry:
            raise ValueError(f"dataset YAML {path} has no '{split}' split")
        for item in (entry if isinstance(entry, list) else [entry]):
            x = (root / item).resolve()
            if not x.exists() and str(item).startswith("../"):
                x = (root / str(item)[3:]).resolve()
            if not x.exists():
                raise FileNotFoundError(f"dataset {path}: '{split}' images not found: {x} (the tools never download "
                                        "data; convert the dataset with tools/convert.py)")
            _refuse_special_files(x, path)
    return path


def _refuse_special_files(folder: Path, yaml_path: Path) -> None:
    """Ultralytics opens every file of a split folder (and of its ``labels`` twin): a FIFO there would
    block training or validation forever, so one is refused in one line before it is read."""
    from ..files import file_kind

    twin = Path(str(folder).replace(f"{os.sep}images", f"{os.sep}labels"))
    for top in {folder, twin}:
        if not top.is_dir():
            continue
        for dirpath, _, files in os.walk(top):
            for name in files:
                p = Path(dirpath) / name
                if p.exists() and not p.is_file():  # a broken link is Ultralytics' to report (a missing file)
                    raise ValueError(f"dataset {yaml_path}: {p} is {file_kind(p)}, not a regular file; remove it "
                                     "(reading it would block)")


def load_dataset(data: str | Path, split: str | None = None) -> dict[str, Any]:
    """``check_dataset_yaml``, then Ultralytics' parsed dataset dict (absolute paths, names), with
    downloads off. ``split``: the split the caller needs besides train/val (e.g. ``test``)."""
    splits = ["val"] + ([split] if split and split != "val" else [])
    path = check_dataset_yaml(data, splits)
    from ultralytics.data.utils import check_det_dataset

    return check_det_dataset(str(path), autodownload=False)

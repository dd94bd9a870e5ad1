"""Writing files so that a failure never leaves half a file, and a full disk is one clear line.

* ``atomic_write_bytes`` / ``atomic_write_text`` / ``atomic_copy``: write a hidden temporary file
  beside the target (``.NAME.tmp``), then rename it over the target; on any failure (a full disk,
  Ctrl-C) the temporary file is removed and the target keeps its old content (or stays absent).
* ``writing(path)``: a full disk (ENOSPC) or an exhausted quota (EDQUOT) while writing ``path``
  becomes ``DiskFullError``, whose one line names the file, the disk (its mount point) and the space
  left there. The tools print it as their one-line error.
* ``remove_leftovers``: temporary files a killed process left beside files the tool wrote (a process
  killed with SIGKILL runs no cleanup); removed at the next start. Only names derived from the tool's
  own outputs are removed, never anything else.
* ``file_kind``: what a path that is not a regular file is (FIFO, socket, device, broken link), for the
  messages of readers that take only regular files (reading a FIFO blocks forever).
* ``interrupts_held``: Ctrl-C held during a group of writes that must agree (one frame's outputs).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """A write failed because the disk (or the user's quota) is full; the message is one line naming the
    file, the disk and the space left."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return str(self.strerror)


def _existing(path: Path) -> Path:
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def mount_point(path: str | Path) -> Path:
    """The mount point of the file system holding ``path`` (or its nearest existing folder)."""
    p = _existing(Path(path)).resolve()
    while not os.path.ismount(p):
        p = p.parent
    return p


def size_text(n: float) -> str:
    """Bytes in words: "512 bytes", "3.1 GiB"."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def disk_full_error(e: OSError, path: str | Path) -> DiskFullError:
    """``DiskFullError`` for ``e`` (ENOSPC / EDQUOT) raised while writing ``path``."""
    where = _existing(Path(path))
    try:
        free = size_text(shutil.disk_usage(where).free) + " free"
    except OSError:
        free = "free space unknown"
    what = "disk quota exceeded" if e.errno == errno.EDQUOT else "no space left"
    return DiskFullError(e.errno, f"{what} on the disk mounted at {mount_point(where)} ({free}) while writing "
                                  f"{path}; free some space or write elsewhere")


@contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into ``DiskFullError`` naming it."""
    try:
        yield
    except DiskFullError:
        raise
    except OSError as e:
        if e.errno in DISK_FULL:
            raise disk_full_error(e, path) from e
        raise


def temp_path(path: Path) -> Path:
    """The temporary file an atomic write of ``path`` goes through."""
    return path.with_name(f".{path.name}.tmp")


def _atomic(path: Path, fill, fsync: bool = False) -> Path:
    path = Path(path)
    tmp = temp_path(path)
    try:
        with writing(path):
            with open(tmp, "wb") as f:
                fill(f)
                if fsync:  # on disk before the rename, so a power cut cannot leave an empty target
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return _atomic(Path(path), lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: str | Path, dst: str | Path, fsync: bool = False) -> Path:
    """Copy ``src`` to ``dst`` through a temporary file (never a half-copied ``dst``)."""
    def fill(f):
        with open(src, "rb") as s:
            shutil.copyfileobj(s, f, 1 << 20)

    return _atomic(Path(dst), fill, fsync)


# mkstemp's names: PREFIX + 8 characters of [a-z0-9_] + SUFFIX (detector.weights.atomic_torch_save)
_RANDOM = "[a-z0-9_]{8}"


def leftover_names(name: str) -> re.Pattern[str]:
    """Temporary files an interrupted write of ``name`` can leave: ``.NAME.tmp``, ``.NAME.tmp.EXT``
    (renders of earlier versions) and ``.NAME.XXXXXXXX.tmp`` (torch saves)."""
    n = re.escape(name)
    return re.compile(rf"^\.{n}\.tmp(\.[A-Za-z0-9]+)?$|^\.{n}\.{_RANDOM}\.tmp$")


def remove_leftovers(paths: Iterable[str | Path]) -> list[Path]:
    """Remove the temporary files interrupted writes of ``paths`` left beside them; returns them."""
    by_folder: dict[Path, set[str]] = {}
    for p in map(Path, paths):
        by_folder.setdefault(p.parent, set()).add(p.name)
    gone = []
    for folder, names in by_folder.items():
        if not folder.is_dir():
            continue
        patterns = [leftover_names(n) for n in names]
        for p in folder.iterdir():
            if p.name.startswith(".") and any(pat.match(p.name) for pat in patterns) and (p.is_file() or p.is_symlink()):
                p.unlink()
                gone.append(p)
    return gone


def file_kind(path: str | Path) -> str:
    """What a path that is not a regular file is, for messages: "a FIFO", "a broken link"..."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except OSError:
        return "a broken link" if p.is_symlink() else "missing"
    for test, kind in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a regular file")):
        if test(mode):
            return kind
    return "not a regular file"


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Ctrl-C (SIGINT) during the block is held until the block ends, then raised: a group of writes
    that must agree (one frame's outputs) is done completely or, if interrupted before, not at all.
    Outside the main thread (where handlers cannot be set) the block runs unguarded."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, object]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pending.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            if callable(previous):
                previous(*pending[0])
            elif previous != signal.SIG_IGN:
                raise KeyboardInterrupt


MAX_YAML_BYTES = 1 << 20  # a model config, dataset YAML or model registry is a few kB


def read_yaml(path: str | Path, what: str) -> Any:
    """The one way the project reads a YAML file it did not write (model configs, dataset YAMLs, the shipped
    model registry): a regular file of at most ``MAX_YAML_BYTES``, without aliases (``*name``: a few
    lines of them can expand into gigabytes, the "billion laughs"), parsed by the safe loader (no Python
    objects). Raises ValueError naming the file (``what``: "dataset YAML"...) and why."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {p} is not a regular file ({file_kind(p)})")
    if p.stat().st_size > MAX_YAML_BYTES:
        raise ValueError(f"{what} {p} is {p.stat().st_size:,} bytes (at most {MAX_YAML_BYTES:,})")
    try:
        text = p.read_text(encoding="utf-8")
        if any(isinstance(ev, yaml.AliasEvent) for ev in yaml.parse(text, Loader=yaml.SafeLoader)):
            raise ValueError(f"{what} {p} uses YAML aliases (*name), which are not read: write the values out")
        return yaml.safe_load(text)
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot parse {what} {p}: {' '.join(str(e).split())[:160]}") from None

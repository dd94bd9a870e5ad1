"""A full disk, simulated: ``FullDisk`` wraps ``open`` so that files written under one folder share a
fixed number of bytes, after which writes fail with ENOSPC. Not a test module: tests/test_full_disk.py
installs it in-process and in the tools it runs as subprocesses."""

from __future__ import annotations

import builtins
import errno
import io
import os
from pathlib import Path
from typing import Callable


class _Full:
    """A writable file whose writes fail with ENOSPC past the shared room."""

    def __init__(self, f, disk: "FullDisk"):
        self._f, self._disk = f, disk

    def write(self, data):
        n = len(data)
        left = self._disk.room - self._disk.used
        if n > left:
            if left > 0:
                self._f.write(data[:left])
                self._f.flush()
            self._disk.used = self._disk.room
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._disk.used += n
        return self._f.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __iter__(self):
        return iter(self._f)

    def __getattr__(self, name):
        return getattr(self._f, name)


class FullDisk:
    """``builtins.open`` / ``io.open`` (and so ``os.fdopen``, ``Path.write_text``) wrapped: files opened for
    writing under ``folder`` (and matching ``only``) share ``room`` bytes, then writes fail with ENOSPC."""

    def __init__(self, folder: Path, room: int = 0, only: Callable[[Path], bool] = lambda p: True):
        self.folder, self.room, self.used, self.only = Path(folder).resolve(), room, 0, only
        self._open = builtins.open

    def _path(self, file) -> Path | None:
        if isinstance(file, int):
            try:
                return Path(os.readlink(f"/proc/self/fd/{file}"))
            except OSError:
                return None
        return Path(os.path.abspath(os.fsdecode(file)))

    def open(self, file, mode="r", *args, **kwargs):
        f = self._open(file, mode, *args, **kwargs)
        p = self._path(file)
        if any(c in mode for c in "wax+") and p is not None and self.folder in p.parents and self.only(p):
            return _Full(f, self)
        return f

    def install(self, monkeypatch=None):
        for mod in (builtins, io):
            if monkeypatch is not None:
                monkeypatch.setattr(mod, "open", self.open)
            else:
                mod.open = self.open
        return self

"""The output folder of a run (``OutputFolder``): where detection and heatmaps write, and its rules.

* every input gets its own outputs: names mirror the input's path below the inputs' common folder
  (sub-folders stay sub-folders), and inputs that differ only by suffix (``a.jpg`` / ``a.png``) get
  the suffix in the name (``a_jpg`` / ``a_png``);
* the folder may not be, or lie inside, a source folder, and no output may replace an input;
* the tool never replaces a file it did not write: what it writes is recorded in the folder's
  manifest (``.snnvit-outputs``), and an existing file not listed there stops the run before it starts;
* nothing is written outside the folder: a link in it (a sub-folder or a file) that leads out of it
  is refused, and so is a manifest that is a link or a FIFO;
* one run at a time: ``prepare`` holds the folder (a lock on the manifest, released when the run ends
  or dies), and a second run into it meanwhile is refused in one line - two runs would set aside each
  other's live line files (``predictions.jsonl``) and overwrite each other's final files;
* a killed run's temporary files beside outputs it wrote are removed at the next start
  (``detector.files``: files are written whole, through a temporary file and a rename).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..checks import inside
from ..files import remove_leftovers, writing

MANIFEST = ".snnvit-outputs"


# --------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------


def next_run_folder(base: str | Path) -> Path:
    """``base`` if it does not exist or is empty, else ``base2``, ``base3``... (a fresh run folder)."""
    base = Path(base)
    if not base.exists() or (base.is_dir() and not any(base.iterdir())):
        return base
    k = 2
    while True:
        p = base.with_name(f"{base.name}{k}")
        if not p.exists():
            return p
        k += 1


class OutputFolder:
    """Where a run writes, with the safety rules of the module docstring."""

    def __init__(self, path: str | Path, inputs: Iterable[Path], root: Path | None, source_folders: Iterable[Path] = ()):
        self.path = Path(path)
        self.inputs = [Path(p) for p in inputs]
        self.root = root
        for folder in source_folders:
            if inside(self.path, folder):
                raise ValueError(f"output folder {self.path} is inside the source folder {folder}: the rendered "
                                 "images would mix with (or replace) the inputs; choose an output folder elsewhere")
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"output {self.path} exists and is not a folder")
        m = self.path / MANIFEST
        if m.is_symlink() or (m.exists() and not m.is_file()):  # appending to it would write elsewhere, or block
            raise ValueError(f"{m} is not a regular file (a link or a FIFO?): choose another --out folder")
        self._lock_file = None
        self._input_set = {p.resolve() for p in self.inputs}
        self._ours = self._read_manifest()
        self.stems = self._plan_stems()

    # -- names ---------------------------------------------------------------------------------
    def _plan_stems(self) -> dict[Path, Path]:
        """A unique relative output stem for every input (see the module docstring)."""
        rel = {}
        for p in self.inputs:
            r = Path(p.name)
            if self.root is not None:
                try:
                    r = p.resolve().relative_to(self.root)
                except ValueError:
                    pass
            rel[p] = r
        by_stem: dict[str, list[Path]] = {}
        for p, r in rel.items():
            by_stem.setdefault(str(r.with_suffix("")).casefold(), []).append(p)
        stems, used = {}, set()
        for p in self.inputs:
            r = rel[p]
            s = r.with_suffix("")
            if len(by_stem[str(s).casefold()]) > 1:  # a.jpg and a.png: keep the suffix in the name
                s = r.parent / f"{r.stem}_{r.suffix.lstrip('.').lower()}"
            base, k = s, 2
            while str(s).casefold() in used:
                s = base.parent / f"{base.name}-{k}"
                k += 1
            used.add(str(s).casefold())
            stems[p] = s
        return stems

    def stem(self, source: Path) -> Path:
        return self.stems[Path(source)]

    # -- safety ---------------------------------------------------------------------------------
    def _read_manifest(self) -> set[str]:
        m = self.path / MANIFEST
        if not m.is_file():
            return set()
        return {ln.strip() for ln in m.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()}

    def check(self, path: Path) -> Path:
        """Refuse to write ``path`` if it is an input, or an existing file this tool did not write."""
        rel = path.relative_to(self.path).as_posix()
        if path.resolve() in self._input_set:
            raise ValueError(f"refusing to write {path}: it is one of the inputs")
        parent = path.parent
        while not parent.exists() and parent != self.path:
            parent = parent.parent
        if not inside(parent, self.path) or path.is_symlink():  # a link in the folder must not lead outside it
            raise ValueError(f"refusing to write {path}: it is, or lies below, a link leading out of {self.path}")
        if path.exists() and rel not in self._ours:
            raise ValueError(f"refusing to overwrite {path}: the file was not written by this tool (not in "
                             f"{self.path / MANIFEST}); choose another --out folder")
        return path

    def check_all(self, paths: Iterable[Path]) -> None:
        for p in paths:
            self.check(p)

    def claim(self, path: Path) -> Path:
        """Check ``path``, create its folder, and record it in the manifest before it is written."""
        self.check(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rel = path.relative_to(self.path).as_posix()
        if rel not in self._ours:
            with writing(self.path / MANIFEST), open(self.path / MANIFEST, "a", encoding="utf-8") as f:
                f.write(rel + "\n")
            self._ours.add(rel)
        return path

    def prepare(self) -> None:
        """Create the folder and hold it for this run (a second run into it, while this one runs, is refused
        in one line: two runs would write one another's line files and final files); remove the temporary
        files a killed run left beside outputs it wrote."""
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        # an edited manifest cannot point the clean-up elsewhere
        remove_leftovers(p for rel in self._ours if inside((p := self.path / rel).parent, self.path))

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        f = open(self.path / MANIFEST, "a", encoding="utf-8")  # the manifest itself is the lock (flock: released on exit)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise ValueError(f"output folder {self.path} is in use by another run: wait for it to finish or choose "
                             "another --out") from None
        self._lock_file = f

    def release(self) -> None:
        """End this run's hold on the folder (``prepare``)."""
        f, self._lock_file = self._lock_file, None
        if f is not None:
            f.close()

    def own_files(self, pattern: str) -> list[Path]:
        """The files matching ``pattern`` at the folder's top that the manifest lists (this tool wrote them)."""
        return [p for p in self.path.glob(pattern) if p.is_file() and p.relative_to(self.path).as_posix() in self._ours]

    def set_aside(self, path: Path, tag: str = "interrupted") -> Path:
        """Rename ``path`` (a result a killed run left) to a free ``STEM.TAG[-k]SUFFIX`` and record it."""
        k, new = 1, path.with_name(f"{path.stem}.{tag}{path.suffix}")
        while new.exists() or new.is_symlink():
            k += 1
            new = path.with_name(f"{path.stem}.{tag}-{k}{path.suffix}")
        os.replace(path, self.claim(new))
        return new

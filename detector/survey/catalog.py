"""The scenes of a survey: a folder, a glob pattern, a single image, a text list of paths (``.txt``, one a
line, ``#`` comments, relative to the list's folder), or a local STAC ItemCollection, Catalog or
Collection (``.json``, read with pystac).

STAC is read offline and only where the user pointed: the JSON files are read through ``LocalStacIO``,
which refuses URLs and any file outside the folder of the JSON named; an asset must be a local regular
file with an image suffix (a URL, ``s3://`` and the like are listed as skipped, never fetched). An item's
image assets are its scenes (``asset`` picks one key), thumbnails and overviews left out.

Each scene is a ``SceneRef``: a stable id (the path below the inputs' common folder, or ``ITEM/ASSET``),
the absolute path, its size and modification time (what resume compares), and the file name its outputs
take (``name``: the id made file-safe, unique).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..files import file_kind
from ..io.images import expand_source, is_image, suffix

MAX_JSON_BYTES = 256 << 20  # a STAC file larger than this is refused (a crafted file could be endless)
MAX_LIST_BYTES = 64 << 20
SKIP_ROLES = {"thumbnail", "overview", "visual-preview"}


@dataclass(frozen=True)
class SceneRef:
    id: str
    path: str
    size: int
    mtime_ns: int
    name: str


def safe_name(text: str) -> str:
    """A file name made of ``text``: letters, digits, ``.``, ``-`` and ``_`` kept, the rest ``_``, path
    separators ``__``; never hidden, never empty, at most 150 characters."""
    s = re.sub(r"[^A-Za-z0-9._-]", "_", text.replace("/", "__").replace("\\", "__")).lstrip(".") or "scene"
    return s[:150]


def _refs(found: list[tuple[str, Path]]) -> list[SceneRef]:
    """SceneRefs for (id, path) pairs: one per file (the first id wins), names unique (a hash of the id
    is added to names that collide after ``safe_name``)."""
    seen, pairs = set(), []
    for sid, p in found:
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            pairs.append((sid, Path(p).absolute()))
    names = [safe_name(sid) for sid, _ in pairs]
    clash = {n for n in names if names.count(n) > 1 or n.lower() in {"manifest", "detections"}}
    out = []
    for (sid, p), n in zip(pairs, names):
        if n in clash:
            n = f"{n[:140]}-{hashlib.sha256(sid.encode()).hexdigest()[:8]}"
        st = p.stat()
        out.append(SceneRef(sid, str(p), st.st_size, st.st_mtime_ns, n))
    return out


def _files(paths: list[Path], root: Path | None) -> list[tuple[str, Path]]:
    def rel(p: Path) -> str:
        try:
            return p.resolve().relative_to(root).as_posix() if root else p.name
        except ValueError:
            return p.name
    return [(rel(p), p) for p in paths]


def _text_list(path: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    if path.stat().st_size > MAX_LIST_BYTES:
        raise ValueError(f"{path}: a list of scenes larger than {MAX_LIST_BYTES >> 20} MiB")
    files, skipped = [], []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if "://" in s:
            skipped.append((s, "not a local file (a URL): survey reads local files only"))
            continue
        p = Path(s).expanduser()
        p = p if p.is_absolute() else path.parent / p
        why = _not_a_scene(p)
        if why:
            skipped.append((s, why))
        else:
            files.append(p)
    return files, skipped


def _not_a_scene(p: Path) -> str | None:
    if not p.is_file():
        return "not found" if not p.exists() and not p.is_symlink() else f"not a regular file ({file_kind(p)})"
    if not is_image(p):
        return f"not an image (suffix {suffix(p) or 'none'})"
    return None


class _LocalStacIO:
    """A pystac StacIO reading local JSON files under one folder, nothing else (built lazily: pystac is
    imported only for STAC sources)."""

    @staticmethod
    def make(root: Path):
        import pystac

        class LocalStacIO(pystac.StacIO):
            refused: list[str] = []  # why links were refused (pystac rewords the errors it catches)

            def read_text(self, source, *args, **kwargs) -> str:
                href = str(source)
                parsed = urlparse(href)
                p = Path(unquote(parsed.path) if parsed.scheme else href).resolve()
                if parsed.scheme not in ("", "file") or parsed.netloc:
                    self.refused.append(f"STAC link {href} is not a local file (survey never fetches)")
                elif root not in p.parents:
                    self.refused.append(f"STAC link {href} lies outside {root}")
                else:
                    return _read_json_text(p)
                raise ValueError(self.refused[-1])

            def write_text(self, dest, txt, *args, **kwargs) -> None:
                raise ValueError("survey never writes STAC files")

        io = LocalStacIO()
        io.refused = []
        return io


def _read_json_text(p: Path) -> str:
    if not p.is_file():
        raise ValueError(f"{p}: not a regular file ({file_kind(p)})")
    if p.stat().st_size > MAX_JSON_BYTES:
        raise ValueError(f"{p}: a STAC file larger than {MAX_JSON_BYTES >> 20} MiB")
    return p.read_text(encoding="utf-8", errors="replace")


def _stac(path: Path, asset: str | None) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    import pystac

    root = path.resolve().parent
    io = _LocalStacIO.make(root)
    try:
        d = json.loads(_read_json_text(path))
        if isinstance(d, dict) and d.get("type") == "FeatureCollection":
            items = list(pystac.ItemCollection.from_dict(d, preserve_dict=False).items)
        elif isinstance(d, dict) and d.get("type") in ("Catalog", "Collection"):
            cat = pystac.read_dict(d, href=str(path.resolve()), stac_io=io)
            items = list(cat.get_items(recursive=True))
        elif isinstance(d, dict) and d.get("type") == "Feature":
            items = [pystac.Item.from_dict(d, preserve_dict=False)]
        else:
            raise ValueError("not a STAC ItemCollection, Catalog, Collection or Item")
    except (ValueError, KeyError, TypeError, AttributeError, pystac.STACError) as e:
        if io.refused:
            raise ValueError(f"{path}: {io.refused[0]}") from e
        raise ValueError(f"{path}: cannot read it as STAC ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from e
    found, skipped = [], []
    for item in items:
        href = item.get_self_href()
        base = Path(href).resolve().parent if href and "://" not in href else root
        keys = [asset] if asset else sorted(item.assets)
        chosen, reported = 0, len(skipped)
        for key in keys:
            a = item.assets.get(key)
            label = f"{item.id}/{key}"
            if a is None:
                skipped.append((label, f"item has no asset {key!r}"))
                continue
            if SKIP_ROLES & set(a.roles or ()):
                continue
            parsed = urlparse(a.href)
            if parsed.scheme not in ("", "file") or parsed.netloc:
                skipped.append((label, f"asset {a.href} is not a local file (survey never fetches)"))
                continue
            p = Path(unquote(parsed.path) if parsed.scheme else a.href)
            p = p if p.is_absolute() else base / p
            why = _not_a_scene(p)
            if why and not asset and why.startswith("not an image"):
                continue  # metadata, XML annotations...: not scenes
            if why:
                skipped.append((label, f"{p}: {why}"))
                continue
            found.append((label, p))
            chosen += 1
        if not chosen and len(skipped) == reported:
            skipped.append((item.id, "no local image asset"))
    return found, skipped


def catalog(source: str | Path, asset: str | None = None) -> tuple[list[SceneRef], list[tuple[str, str]], list[Path]]:
    """(scenes, skipped entries with the reason, the source folders outputs must stay out of)."""
    s = str(source)
    p = Path(s).expanduser()
    if p.is_file() and suffix(p) == "json":
        found, skipped = _stac(p, asset)
        return _refs(found), skipped, [p.resolve().parent]
    if asset:
        raise ValueError("asset names a STAC asset; the source is not a STAC file (.json)")
    if p.is_file() and suffix(p) == "txt":
        files, skipped = _text_list(p)
        root = Path(os.path.commonpath([str(f.resolve().parent) for f in files])) if files else None
        return _refs(_files(files, root)), skipped, sorted({f.resolve().parent for f in files})
    src = expand_source(s)
    skipped = list(src.skipped) + [(str(v), "a video: survey reads images only") for v in src.videos]
    return _refs(_files(src.images, src.root)), skipped, list(src.folders) or [f.parent for f in src.images]

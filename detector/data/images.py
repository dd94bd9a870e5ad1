"""Image files: finding them by stem and reading their size from the header without decoding."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..files import file_kind
from ..io.images import is_image  # the project's one suffix list: what Ultralytics trains on
from .records import ProblemLog

# Ultralytics rejects images whose sides are below 10 px as corrupt.
MIN_SIDE = 10
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class ImageInfo:
    """Header facts about one image file."""

    width: int
    height: int
    exif_orientation: int  # 1 = none; anything else makes OpenCV rotate the pixels on load
    truncated_jpeg: bool  # JPEG without the FFD9 end marker


def index_images(folder: Path) -> dict[str, list[Path]]:
    """Map each file stem in ``folder`` to its image files (several when only the suffix differs)."""
    found: dict[str, list[Path]] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.is_file() and is_image(path):
                found.setdefault(path.stem, []).append(path)
    return found


def regular_files(paths: Iterable[Path], log: ProblemLog) -> list[Path]:
    """The regular files among ``paths``; the others (a FIFO would block the reader forever, sockets,
    devices, broken links) are reported as ``not_a_file`` and left out."""
    keep = []
    for p in paths:
        if p.is_file():
            keep.append(p)
        else:
            log.add("not_a_file", p, f"annotation path is {file_kind(p)}, not a regular file", "not read")
    return keep


def probe_image(path: Path) -> ImageInfo:
    """Read size and orientation from the header; raise ``OSError`` naming the file if unreadable."""
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = int(im.getexif().get(_EXIF_ORIENTATION, 1) or 1)
            fmt = im.format
    # Broad on purpose: besides PIL's own errors, Ultralytics patches Image.open and answers an
    # unidentified file with an ImportError when its optional HEIF plugin is not installed.
    except Exception as exc:  # noqa: BLE001
        reason = "not an image format PIL can identify" if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise OSError(f"cannot read image {path}: {reason}") from exc
    truncated = False
    if fmt == "JPEG":
        with open(path, "rb") as f:
            f.seek(-2, 2)
            truncated = f.read(2) != b"\xff\xd9"
    return ImageInfo(width=width, height=height, exif_orientation=orientation, truncated_jpeg=truncated)

"""Frames: what detection loops over. Still images and video frames alike become ``Frame`` objects,
so ``detect()`` is one loop whatever the source holds."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from .georef import GeoReference
from .images import ImageReadError, SourceList, iter_video, load_image, video_fps
from .scene import LAZY_PIXELS, Scene, open_scene

@dataclass
class Frame:
    """One image to detect on: a still image, or a frame of a video (``index`` and ``fps`` set)."""

    source: Path
    pixels: np.ndarray | Scene  # BGR uint8 (H, W, 3), or a lazy scene read window by window (detector.io.scene)
    index: int | None = None  # video frame index
    fps: float | None = None  # frame rate of the rendered video (the source's, divided by the stride)
    geo: GeoReference | None = None


def iter_frames(src: SourceList, vid_stride: int = 1, on_skip: Callable[[Path, str], None] | None = None,
                lazy: bool = False, lazy_pixels: int | None = LAZY_PIXELS) -> Iterator[Frame]:
    """Frames of every image, then of every video (every ``vid_stride``-th frame), in source order.
    A file that cannot be read is skipped and reported to ``on_skip(path, reason)``. ``lazy`` (sliced
    inference): a raster of more than ``lazy_pixels`` pixels, or too large to read whole (None: only
    then), comes as a lazy scene read window by window (``detector.io.scene.open_scene``)."""

    def skip(path: Path, why: str) -> None:
        if on_skip is not None:
            on_skip(path, why)

    for path in src.images:
        scene = open_scene(path, lazy_pixels) if lazy else None
        if scene is not None:
            from .geo import read_georeference

            yield Frame(path, scene, geo=read_georeference(path))
            scene.close()
            continue
        try:
            im = load_image(path)
        except ImageReadError as e:
            skip(path, str(e))
            continue
        yield Frame(path, im.pixels, geo=im.geo)
    for path in src.videos:
        fps = video_fps(path) / max(vid_stride, 1)
        n = 0
        try:
            for i, pixels in iter_video(path, vid_stride):
                n += 1
                yield Frame(path, pixels, index=i, fps=fps)
        except ImageReadError as e:
            skip(path, str(e))
            continue
        if n == 0:
            skip(path, "video has no readable frames")

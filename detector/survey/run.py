"""The survey's driver (the Dask client side): catalog -> the scenes still to do -> tasks -> one output
file per scene, a manifest, progress.

Tasks. Every scene to do gets a scene task (``worker.scene_task``). A scene it reads whole (at most
``split_pixels`` pixels, or few tiles) is detected there and then; a larger one comes back as its tile
grid, which is cut into tiles tasks of ``tiles_per_task`` tiles, spread over every worker (ahead of
scenes not yet started, so that scenes finish in turn). When the last tiles task of a scene is in, the
client merges its tiles (``detector.infer.tiled.merge_tiles``, as sliced inference in one process
does) and writes the scene's file: a file is written once, whole, from all its tiles, so a tile lost
with its worker and rerun elsewhere can never leave a partial or doubled scene.

Faults. A lost worker's tasks are rerun by the scheduler on another worker (up to Dask's
``distributed.scheduler.allowed-failures``, then ``KilledWorker``); a task that raised is rerun
``retries`` times; a scene whose task failed for good, or that could not be read, is recorded as
``failed`` with its one-line reason while the others go on. Ctrl-C cancels what is running and leaves
the scene files written so far, each complete, and a manifest that says so.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .. import checks
from ..files import interrupts_held, remove_leftovers
from .catalog import SceneRef, catalog
from .options import SurveyOptions, detection_settings, settings_sha256
from .output import MERGED, Manifest, merge_scenes, ours, output_path, scene_table, write_table

MANIFEST = "manifest.csv"
SAVE_EVERY = 2.0  # s: the manifest is rewritten at most this often while scenes finish (and at the end)
REPORT_EVERY = 10.0  # s between progress lines


@dataclass
class SurveySummary:
    out: Path
    scenes: int = 0  # in the catalog
    done: int = 0  # run now
    skipped: int = 0  # done by an earlier run with the same model and settings, file unchanged
    failed: int = 0
    pending: int = 0  # not run (interrupted)
    detections: int = 0  # in the scenes run now
    tiles: int = 0
    seconds: float = 0.0  # from the first task sent to the last result in (cluster start-up not included)
    files: list[Path] = field(default_factory=list)
    not_scenes: list[tuple[str, str]] = field(default_factory=list)  # catalog entries that are not scenes
    merged: Path | None = None


@dataclass
class _InFlight:
    ref: SceneRef
    result: Any = None  # worker.SceneResult
    parts: list[np.ndarray] = field(default_factory=list)
    full: list[tuple[int, int]] = field(default_factory=list)  # corners of tiles that reached max_det
    waiting: int = 0  # tiles tasks not yet in
    seconds: float = 0.0  # worker time


class Progress:
    """Scenes and tiles done of the totals known so far, and an estimate of the time left (tiles of scenes
    not yet opened counted at the mean of those opened)."""

    def __init__(self, scenes: int, out: Callable[[str], None], every: float = REPORT_EVERY):
        self.scenes, self.out, self.every = scenes, out, every
        self.t0 = self.last = time.perf_counter()
        self.done = self.failed = self.tiles_done = self.tiles_known = self.opened = 0
        self.said = (-1, -1)

    def report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if (not force and now - self.last < self.every) or self.said == (self.done + self.failed, self.tiles_done):
            return
        self.last, self.said = now, (self.done + self.failed, self.tiles_done)
        spent = now - self.t0
        per_scene = self.tiles_known / self.opened if self.opened else 0.0
        left_tiles = self.tiles_known - self.tiles_done + (self.scenes - self.opened) * per_scene
        rate = self.tiles_done / spent if spent > 0 else 0.0
        eta = f", about {_duration(left_tiles / rate)} left" if rate > 0 and self.tiles_done else ""
        failed = f" ({self.failed} failed)" if self.failed else ""
        self.out(f"  scenes {self.done + self.failed}/{self.scenes}{failed}, tiles {self.tiles_done:,}/"
                 f"{self.tiles_known:,} ({rate:.2f} tiles/s), {_duration(spent)}{eta}")


def _duration(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


@contextlib.contextmanager
def connect(opts: SurveyOptions, log: Callable[[str], None]) -> Iterator[Any]:
    """A Dask client: of the scheduler ``opts.scheduler`` names, else of an embedded ``LocalCluster``
    (``opts.workers`` processes of one thread, on 127.0.0.1 only; Dask's dashboard when bokeh is
    installed; Dask's own log quiet: a task's failure reaches the survey through its future, and the
    workers' heartbeats racing the scheduler's shutdown are not news)."""
    from distributed import Client, LocalCluster

    if opts.scheduler:
        with Client(opts.scheduler, timeout="30s") as client:
            yield client
        return
    dash = "127.0.0.1:0" if importlib.util.find_spec("bokeh") else None
    with LocalCluster(n_workers=opts.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=dash, resources=opts.resource_dict() or None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        yield client


def _check_out(out: Path, folders: list[Path]) -> None:
    for f in folders:
        if checks.inside(out, f):
            raise ValueError(f"output folder {out} lies in the source folder {f}; write elsewhere")
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {out} is not a folder")


def decide_runtime(opts: SurveyOptions, weights: Path) -> SurveyOptions:
    """``opts`` with ``--runtime auto`` decided once, here, as ``detect`` decides it: the settings' hash
    then names the runtime that made the detections (a rerun after the choice changed redoes the
    scenes), and the workers are sent its name. Where auto picks a faster runtime than the reference
    (int8 on a CPU), the client loads it first: its graph is built (or found) once in the cache rather
    than by every worker of an embedded cluster at once, and a failure gives way to the reference with
    one warning (``load_runtime``), which the workers then run."""
    from dataclasses import replace

    from ..devices import parse_device
    from ..infer.runtime import AUTO, choose_runtime, is_auto, load_runtime

    if not is_auto(opts.runtime):
        return opts
    spec = choose_runtime(opts.runtime, weights, parse_device(opts.device).kind, detection=True)
    name = spec.name if spec.name == AUTO[weights.suffix.lower()] else load_runtime(
        weights, opts.device, opts.runtime, detection=True).name
    return replace(opts, runtime=name)


def survey(source: str | Path, out: str | Path, opts: SurveyOptions | None = None, client: Any = None,
           log: Callable[[str], None] = print) -> SurveySummary:
    """Run the model over every scene of ``source`` (``catalog``) on Dask and write ``out`` (module
    ``output``). ``client``: a ``distributed.Client`` to run on (else ``opts.scheduler`` or an embedded
    cluster). Scenes done by an earlier run into ``out`` with the same model and settings, files
    unchanged, are skipped."""
    from ..weights import resolve_weights, sha256

    opts = opts or SurveyOptions()
    out = Path(out)
    scenes, not_scenes, folders = catalog(source, opts.asset)
    _check_out(out, folders)
    weights = resolve_weights(opts.weights)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / MANIFEST)
    opts = decide_runtime(opts, weights)  # int8: its graph built or found here, once, not by every worker
    model_sha, settings = sha256(weights), detection_settings(opts)
    settings_sha = settings_sha256(settings)
    remove_leftovers([out / MANIFEST, out / MERGED] + [output_path(out, s, k) for s in scenes for k in ("map", "pixel")])
    summary = SurveySummary(out=out, scenes=len(scenes), not_scenes=not_scenes)
    for entry, why in not_scenes:
        log(f"not a scene: {entry}: {why}")
    todo = []
    for s in scenes:
        row = manifest.current(s, model_sha, settings_sha, out)
        if row is None:
            todo.append(s)
            manifest.set(s, status="pending", model_sha256=model_sha, settings_sha256=settings_sha, error="")
        else:
            manifest.set(s, status="skipped")
            summary.skipped += 1
    manifest.save()
    log(f"survey: {len(scenes)} scene(s), {len(todo)} to run, {summary.skipped} done earlier with the same model "
        f"and settings (skipped) -> {out}")
    record = {"model": Path(weights).name, "model_sha256": model_sha, "settings": settings,
              "settings_sha256": settings_sha}
    if todo:
        if client is not None:
            _run(client, todo, opts, out, manifest, record, summary, log)
        else:
            with connect(opts, log) as c:
                _run(c, todo, opts, out, manifest, record, summary, log)
    if opts.merge:
        files = sorted(out / r["output"] for r in manifest.rows.values()
                       if r["status"] in ("done", "skipped") and r["output"].startswith("scenes/")
                       and r["scene"] in {s.id for s in scenes})
        summary.merged = merge_scenes(out, files)
    summary.pending = sum(r["status"] == "pending" for r in manifest.rows.values())
    rate = f" in {summary.seconds:.1f} s ({summary.tiles / summary.seconds:.2f} tiles/s)" if summary.seconds else ""
    log(f"survey: {summary.done} scene(s) run ({summary.detections} detection(s), {summary.tiles} tile(s){rate}), "
        f"{summary.skipped} skipped, {summary.failed} failed, {summary.pending} pending -> {out / MANIFEST}")
    return summary


def _run(client: Any, todo: list[SceneRef], opts: SurveyOptions, out: Path, manifest: Manifest, record: dict,
         summary: SurveySummary, log: Callable[[str], None]) -> None:
    from distributed import as_completed

    from ..infer.tiled import merge_tiles, warn_full_tiles
    from .worker import scene_task, tiles_task

    link = getattr(client, "dashboard_link", None)
    n_workers = len(client.scheduler_info().get("workers", {}))
    dash = f"dashboard {link}" if link and importlib.util.find_spec("bokeh") else "no dashboard (bokeh not installed)"
    log(f"dask: {n_workers} worker(s) at {client.scheduler.address}; {dash}")
    resources = opts.resource_dict() or None
    run_id = uuid.uuid4().hex[:8]
    flight: dict[str, _InFlight] = {}
    owner: dict[str, tuple[str, Any]] = {}  # task key -> (scene id, future)
    progress = Progress(len(todo), log)
    ac = as_completed()
    last_save = time.perf_counter()

    def submit(fn, *args, sid: str, key: str, priority: int) -> None:
        f = client.submit(fn, *args, key=key, retries=opts.retries, resources=resources, priority=priority, pure=False)
        owner[f.key] = (sid, f)
        ac.add(f)

    def end(st: _InFlight, error: str | None, det: np.ndarray | None = None) -> None:
        nonlocal last_save
        flight.pop(st.ref.id, None)
        if error is not None:  # the scene's other tasks are of no use now
            client.cancel([f for sid, f in owner.values() if sid == st.ref.id])
        old = [output_path(out, st.ref, k) for k in ("map", "pixel")]
        with interrupts_held():  # the scene's file and its manifest row agree, Ctrl-C or not
            if error is None:
                try:
                    kind, table = scene_table(st.ref, det, st.result.geo, st.result.names, record | {
                        "scene": st.ref.id, "source": st.ref.path, "source_size": st.ref.size,
                        "source_mtime_ns": st.ref.mtime_ns})
                    path = write_table(output_path(out, st.ref, kind), table)
                except (OSError, ValueError) as e:
                    error = " ".join(str(e).split())
            for p in old:  # an earlier run's output of this scene (another kind, or a failed scene's)
                if (error is not None or p != path) and p.is_file() and ours(p):
                    p.unlink()
            if error is None:
                summary.done += 1
                summary.detections += len(det)
                summary.files.append(path)
                progress.done += 1
                manifest.set(st.ref, status="done", detections=len(det), tiles=st.result.n_tiles,
                             seconds=round(st.seconds, 2), output=path.relative_to(out).as_posix(), error="")
                log(f"scene {summary.done + summary.failed}/{len(todo)} {st.ref.id}: {len(det)} detection(s), "
                    f"{st.result.n_tiles} tile(s), {st.seconds:.1f} s -> {path.relative_to(out)}")
            else:
                summary.failed += 1
                progress.failed += 1
                manifest.set(st.ref, status="failed", detections="", tiles="", seconds=round(st.seconds, 2),
                             output="", error=error)
                log(f"scene {summary.done + summary.failed}/{len(todo)} {st.ref.id}: failed: {error}")
            if time.perf_counter() - last_save >= SAVE_EVERY or not flight:
                manifest.save()
                last_save = time.perf_counter()

    try:
        for i, s in enumerate(todo):
            flight[s.id] = _InFlight(s)
            submit(scene_task, s, opts, sid=s.id, key=f"scene-{i}-{s.name[:40]}-{run_id}", priority=0)
        for fut in ac:
            st = flight.get(owner.pop(fut.key, ("", None))[0])
            if st is None:  # a task of a scene that already failed
                continue
            try:
                res = fut.result()
            except Exception as e:  # noqa: BLE001 - the task failed for good (KilledWorker, its retries spent)
                end(st, f"{type(e).__name__}: {' '.join(str(e).split())}"[:500])
                continue
            st.seconds += res.seconds
            if res.model_sha256 != record["model_sha256"]:
                end(st, f"a worker's weights differ from the client's (sha256 {res.model_sha256[:12]}... vs "
                        f"{record['model_sha256'][:12]}...): install the same weights on every worker")
            elif res.error is not None:
                end(st, res.error)
            elif st.result is None:  # the scene task
                st.result = res
                progress.opened += 1
                progress.tiles_known += res.n_tiles
                if res.det is not None:
                    progress.tiles_done += res.n_tiles
                    summary.tiles += res.n_tiles
                    end(st, None, res.det)
                else:
                    for k in range(0, len(res.tiles), opts.tiles_per_task):
                        st.waiting += 1
                        submit(tiles_task, st.ref, opts, res.tiles[k:k + opts.tiles_per_task], k, res.tile,
                               sid=st.ref.id, key=f"tiles-{k}-{st.ref.name[:40]}-{run_id}", priority=1)
                    res.tiles = None  # the grid is not needed any more
            else:  # a tiles task
                st.parts.append(res.det)
                st.full += res.full
                st.waiting -= 1
                progress.tiles_done += res.n_tiles
                summary.tiles += res.n_tiles
                if st.waiting == 0:
                    det = np.concatenate(st.parts)
                    warn_full_tiles(st.full, opts.max_det, st.ref.path)
                    end(st, None, merge_tiles(det[:, :6], det[:, 6].astype(int), opts.iou))
            progress.report()
    finally:
        client.cancel([f for _, f in owner.values()])
        manifest.save()
        progress.report(force=True)
        summary.seconds = time.perf_counter() - progress.t0

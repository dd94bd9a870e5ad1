"""Full disks and interrupted saves (issue 24, item 5): one-line errors naming the disk, no temporary file
left behind (on failure, and from a killed run at the next start), outputs that agree after Ctrl-C, and
kept results never deleted without a word.

A full disk is simulated in-process (``FullDisk``): files opened for writing under a folder get a
wrapper whose writes fail with ENOSPC once the room is used up, after writing what fits (as a real
disk does). Tools run as commands get the same wrapper installed before they start (``run_full``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import detector  # noqa: F401
from detector import weights as W
from detector.infer import detect
from _full_disk import FullDisk
from _tools import IMGSZ, REPO, TOOLS, images_folder, make_dataset, one_line_error, run_tool


def run_full(folder: Path, room: int, tool: Path, *args, only: str = "", timeout: float = 300):
    """Run ``tool`` with the disk under ``folder`` full after ``room`` bytes (files whose name contains
    ``only``)."""
    code = (f"import runpy, sys; sys.path[:0] = [{str(REPO / 'tests')!r}, {str(tool.parent)!r}]\n"
            "from _full_disk import FullDisk\n"
            f"FullDisk({str(folder)!r}, {room}, lambda p: {only!r} in p.name).install()\n"
            f"sys.argv = [{str(tool)!r}, *sys.argv[1:]]\n"
            f"runpy.run_path({str(tool)!r}, run_name='__main__')\n")
    return run_tool("-c", code, *args, timeout=timeout)


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp" in p.name)


def assert_names_the_disk(text: str, path: Path) -> None:
    assert "no space left" in text.lower() and str(path) in text and "free" in text and "\n" not in text.strip()


# ------------------------------------------------------------------------------------------------
# detect
# ------------------------------------------------------------------------------------------------


def test_detect_on_a_full_disk_is_one_line_and_leaves_no_temp_file(tmp_path, tiny_weights, monkeypatch):
    from detector.files import DiskFullError

    src = images_folder(tmp_path / "src", ["a.png", "b.png"])
    out = tmp_path / "out"
    FullDisk(out, 0, lambda p: p.name.startswith(".predictions.json")).install(monkeypatch)
    with pytest.raises(DiskFullError) as e:
        detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, conf=0.0, outputs=("image", "json"), verbose=False)
    assert_names_the_disk(str(e.value), out / "predictions.json")
    assert temp_files(out) == []
    lines = (out / "predictions.jsonl").read_text().splitlines()  # what was done is kept
    assert len(lines) == 2 and not (out / "predictions.json").exists()
    monkeypatch.undo()
    r = run_full(tmp_path / "o2", 0, TOOLS / "detect.py", "--source", src, "--weights", tiny_weights, "--runtime", "eager",
                 "--out", tmp_path / "o2", "--imgsz", IMGSZ, "--save-txt")
    assert_names_the_disk(one_line_error(r), tmp_path / "o2")
    assert temp_files(tmp_path / "o2") == []


def test_detect_removes_its_leftover_temp_files_at_the_next_start(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.png"])
    out = tmp_path / "out"
    detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, outputs=("image", "json", "txt"), verbose=False)
    left = [out / ".predictions.json.tmp", out / ".a.jpg.tmp.jpg", out / ".a.jpg.tmp", out / "labels" / ".a.txt.tmp"]
    for p in left:  # what a run killed half-way through each write leaves
        p.write_bytes(b"half")
    mine = out / ".notes.tmp"  # not derived from anything the tool wrote: not its to delete
    mine.write_text("mine")
    detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, outputs=("image", "json", "txt"), verbose=False)
    assert [p for p in left if p.exists()] == [] and mine.read_text() == "mine"


def test_outputs_agree_after_ctrl_c(tmp_path, tiny_weights, monkeypatch):
    """Ctrl-C arriving between two writers of a frame: every output holds the same frames."""
    import detector.io.writers as Wr

    src = images_folder(tmp_path / "src", ["a.png", "b.png", "c.png"])
    real = Wr.CocoJsonWriter.write
    n = {"frames": 0}

    def then_ctrl_c(self, frame, det):
        real(self, frame, det)
        n["frames"] += 1
        if n["frames"] == 2:
            signal.raise_signal(signal.SIGINT)  # delivered at the next bytecode, before the GeoJSON writer

    monkeypatch.setattr(Wr.CocoJsonWriter, "write", then_ctrl_c)
    # Ctrl-C as in a terminal, whatever this process inherited (a job started in the background of a
    # non-interactive shell ignores SIGINT, and then nothing would be interrupted)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "out"
    try:
        with pytest.raises(KeyboardInterrupt):
            detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, conf=0.0, outputs=("image", "json", "txt", "geojson"),
                   verbose=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    in_json = {p["file_name"] for p in json.loads((out / "predictions.json").read_text())}
    in_geojson = {f["properties"]["source"] for f in json.loads((out / "detections.pixels.geojson").read_text())["features"]}
    rendered = {p.stem + ".png" for p in out.glob("*.jpg")}
    labels = {p.stem + ".png" for p in (out / "labels").glob("*.txt")}
    assert in_json == in_geojson == rendered == labels == {"a.png", "b.png"}


@pytest.mark.slow
def test_a_rerun_keeps_the_predictions_of_a_killed_run(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    code = (f"import os, sys; sys.path.insert(0, {str(REPO)!r})\n"
            "import detector.infer.pipeline as P\n"
            "real, n = P.predict_image, [0]\n"
            "def f(*a, **k):\n"
            "    n[0] += 1\n"
            "    if n[0] == 3:\n"
            "        os._exit(9)  # SIGKILL-like: no cleanup at all\n"
            "    return real(*a, **k)\n"
            "P.predict_image = f\n"
            f"P.detect({str(src)!r}, {str(tiny_weights)!r}, {str(out)!r}, runtime='eager', imgsz={IMGSZ}, conf=0.0, outputs=('json',),"
            " verbose=False)\n")
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 9
    kept = (out / "predictions.jsonl").read_text()
    assert len(kept.splitlines()) == 2
    r = run_tool(TOOLS / "detect.py", "--source", src, "--weights", tiny_weights, "--runtime", "eager", "--out", out,
                 "--imgsz", IMGSZ, "--save-json", "--no-render", "--conf", "0")
    assert r.returncode == 0, r.stderr[-2000:]
    aside = [p for p in out.iterdir() if p.suffix == ".jsonl"]
    assert [p.read_text() for p in aside] == [kept]  # set aside, not deleted ...
    assert aside[0].name in r.stdout + r.stderr  # ... and said so
    assert len(json.loads((out / "predictions.json").read_text())) > 0


# ------------------------------------------------------------------------------------------------
# convert, export_weights, train
# ------------------------------------------------------------------------------------------------


def test_convert_on_a_full_disk(tmp_path):
    from detector.data import convert_voc
    from detector.files import DiskFullError
    from _tools import tiny_voc

    root = tiny_voc(tmp_path / "voc")
    out = tmp_path / "out"
    disk = FullDisk(out, 300)
    with pytest.MonkeyPatch.context() as mp:
        disk.install(mp)
        with pytest.raises(DiskFullError) as e:
            convert_voc(root, out, classes=["ship"], split="seeded")
    assert_names_the_disk(str(e.value), out)
    assert temp_files(out) == []
    assert not (out / "data.yaml").exists()  # an unfinished conversion cannot be mistaken for a finished one
    r = run_full(out, 300, TOOLS / "convert.py", "voc", "--root", root, "--out", out, "--overwrite", "--classes", "ship")
    assert_names_the_disk(one_line_error(r), out)
    convert_voc(root, out, classes=["ship"], split="seeded", overwrite=True)  # room again: a rerun finishes
    assert (out / "data.yaml").is_file() and temp_files(out) == []


def test_export_weights_on_a_full_disk(tmp_path, tiny_weights):
    dst = tmp_path / "o" / "small.pt"
    dst.parent.mkdir()
    r = run_full(dst.parent, 10_000, TOOLS / "export_weights.py", tiny_weights, dst)
    assert_names_the_disk(one_line_error(r), dst)
    assert list(dst.parent.iterdir()) == []


def test_torch_saves_remove_leftovers_of_killed_saves(tmp_path, tiny_weights):
    dst = tmp_path / "small.pt"
    stale = [tmp_path / ".small.pt.ab12cd34.tmp", tmp_path / ".small.pt.x_y9z0w1.tmp"]
    for p in stale:
        p.write_bytes(b"half")
    other = tmp_path / ".other.pt.ab12cd34.tmp"  # another file's: left alone
    other.write_bytes(b"x")
    W.export_weights(tiny_weights, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "small.pt"]


def tiny_model_yaml(tmp_path: Path) -> Path:
    import yaml
    from _tiny import tiny_config

    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(nc=1)))
    return path


@pytest.mark.slow
def test_train_on_a_full_disk(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    project = tmp_path / "runs"
    r = run_full(project, 0, TOOLS / "train.py", "--data", ds, "--model", tiny_model_yaml(tmp_path), "--epochs", "1",
                 "--imgsz", IMGSZ, "--batch", "2", "--workers", "0", "--no-plots", "--project", project, only=".pt",
                 timeout=600)
    assert_names_the_disk(one_line_error(r), project / "exp" / "weights")
    assert temp_files(project) == []


@pytest.mark.slow
def test_the_next_save_removes_leftovers_of_killed_saves(tmp_path):
    from detector.engine.trainer import train

    ds = make_dataset(tmp_path / "ds")
    t = train(ds, model=str(tiny_model_yaml(tmp_path)), epochs=1, imgsz=IMGSZ, batch=2, workers=0, plots=False,
              project=tmp_path / "runs", val=False)
    wdir = Path(t.wdir)
    stale = [wdir / ".last.pt.k1ll3d00.tmp", wdir / ".best.pt.tmp", wdir / "best.tmp", wdir / "epoch0.tmp"]
    for p in stale:  # what saves killed half-way leave (best.tmp, epochN.tmp: names of earlier versions)
        p.write_bytes(b"half")
    mine = wdir / "notes.tmp"
    mine.write_text("mine")
    train("", resume=str(wdir / "last.pt"), epochs=2)
    assert [p.name for p in stale if p.exists()] == [] and mine.read_text() == "mine"
    assert W.load_checkpoint(wdir / "last.pt")["epoch"] == 1

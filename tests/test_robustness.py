"""Robustness (issue 8): bad inputs, unsafe weights, interrupted training, non-finite losses, seeds.

Every test runs on CPU on tiny inputs (the whole file takes 2-3 minutes on 2 cores): a model config with
small widths and T=1, 64-px images, one to four epochs. What each part checks:

1. detect, val, train and convert survive bad inputs (corrupt, empty and non-image files, a huge
   image, grayscale / RGBA / 16-bit TIFF, paths with spaces and non-ASCII characters): they carry on
   with the good files and name every skipped file.
2. A malicious pickle hidden inside an otherwise valid checkpoint is refused without running it,
   through the library, the trainer and ``tools/detect.py``. (The plain malicious-pickle case and
   the weights round trip are in ``test_detector.py``.)
3. Training killed mid-epoch resumes from the next epoch and loses no completed epoch; checkpoint
   writes are atomic (a crash during a save leaves the old file intact).
4. A NaN or inf loss or gradient stops training with a clear error; no non-finite weights are saved.
5. The same seed gives bit-identical weights after an epoch on CPU; another seed does not.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detector  # noqa: F401  (offline settings before Ultralytics)
from detector import weights as W
from detector.infer import detect
from detector.io.images import read_image
from detector.models import SNNViTYOLO
from _tiny import TINY_T1
from _yolo_data import IMGSZ, TRAIN_KW, make_yolo_dataset, scene, write_image

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


# -- helpers ------------------------------------------------------------------------------------------
def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("SNNVIT_THREADS", "2")
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_tool(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=tool_env(),
                          cwd=REPO)


def png_bomb(path: Path, width: int = 60000, height: int = 60000) -> Path:
    """A tiny PNG whose header claims a huge size (an image no reader should try to allocate)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])  # 8-bit gray
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


class Records(logging.Handler):
    """Collects the messages of a logger (Ultralytics' logger does not propagate to the root)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


class capture_logs:
    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(n) for n in names]
        self.records = Records()

    def __enter__(self) -> Records:
        for lg in self.loggers:
            lg.addHandler(self.records)
        return self.records

    def __exit__(self, *exc):
        for lg in self.loggers:
            lg.removeHandler(self.records)


BAD_TRAIN = ("corrupt_train.jpg", "empty_train.png", "badlabel_train.png")
BAD_VAL = ("corrupt_val.jpg", "empty_val.png", "badlabel_val.png")


def state_tensors(ckpt: dict) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in ckpt["state_dict"].items()}
    out.update({f"ema.{k}": v for k, v in (ckpt.get("ema_state_dict") or {}).items()})
    return out


def assert_finite_checkpoint(path: Path) -> dict:
    ckpt = W.load_checkpoint(path)
    bad = [k for k, v in state_tensors(ckpt).items() if v.is_floating_point() and not torch.isfinite(v).all()]
    assert not bad, f"{path} holds non-finite tensors: {bad[:5]}"
    return ckpt


def read_csv_epochs(csv: Path) -> list[int]:
    rows = [r for r in csv.read_text().splitlines()[1:] if r.strip()]
    return [int(float(r.split(",")[0])) for r in rows]


@pytest.fixture(scope="module")
def tiny_model() -> SNNViTYOLO:
    torch.manual_seed(0)
    m = SNNViTYOLO(dict(TINY_T1), verbose=False)
    m.set_names(["box"])
    return m.eval()


@pytest.fixture
def restore_torch_globals():
    """Ultralytics' seeding turns on deterministic algorithms process-wide; put things back."""
    det, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    yield
    torch.use_deterministic_algorithms(det)
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bad_dataset(tmp_path_factory) -> Path:
    # The folder name itself has a space and non-ASCII characters.
    return make_yolo_dataset(tmp_path_factory.mktemp("ds") / "data set ñ 北")


@pytest.fixture(scope="module")
def seed0_run(bad_dataset, tiny_yaml, tmp_path_factory):
    """One epoch of training (seed 0) on the dataset with bad files; its logs are kept for the tests."""
    from detector.engine.trainer import SNNTrainer, train

    det = torch.are_deterministic_algorithms_enabled()
    initial: dict[str, torch.Tensor] = {}
    real_setup = SNNTrainer._setup_train

    def setup_and_record(self):  # the weights training starts from, to show that it changed them
        real_setup(self)
        initial.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})

    SNNTrainer._setup_train = setup_and_record
    try:
        with capture_logs("ultralytics") as logs:
            trainer = train(bad_dataset, tiny_yaml, epochs=1, seed=0, project=tmp_path_factory.mktemp("runs"),
                            name="seed0", **TRAIN_KW)
    finally:
        SNNTrainer._setup_train = real_setup
        torch.use_deterministic_algorithms(det)
    return trainer, logs.text, initial


# == 1. bad inputs ====================================================================================
def test_read_image_formats(tmp_path):
    """Grayscale, RGBA and 16-bit TIFF become 8-bit BGR with the right content; odd paths work."""
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    d = tmp_path / "dir with space" / "ñandú 北京"
    got = read_image(write_image(d / "gray.png", gray))
    assert got.shape == (20, 30, 3) and got.dtype == np.uint8 and (got == gray[..., None]).all()
    got = read_image(write_image(d / "rgba.png", cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)))
    assert (got == bgr).all()
    got = read_image(write_image(d / "ñandú 北京 16.tif", gray.astype(np.uint16) * 257))
    assert got.shape == (20, 30, 3) and got.dtype == np.uint8
    assert np.corrcoef(got[..., 0].ravel().astype(float), gray.ravel().astype(float))[0, 1] > 0.99
    assert got.max() >= 250 and got.min() <= 5  # stretched to the full 8-bit range, not crushed to black
    rgb16 = write_image(d / "rgb16.tif", bgr[..., ::-1].astype(np.uint16) * 257)  # tifffile writes RGB
    got = read_image(rgb16)
    assert np.corrcoef(got.ravel().astype(float), bgr.ravel().astype(float))[0, 1] > 0.99


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # our own header check
@pytest.mark.slow
def test_detect_skips_bad_files_and_renders_good_ones(tmp_path, tiny_model):
    rng = np.random.default_rng(2)
    src = tmp_path / "in put"
    good = {
        "good.jpg": scene(rng)[0],
        "gray.png": cv2.cvtColor(scene(rng)[0], cv2.COLOR_BGR2GRAY),
        "rgba.png": cv2.cvtColor(scene(rng)[0], cv2.COLOR_BGR2BGRA),
        "sixteen.tif": cv2.cvtColor(scene(rng)[0], cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257,
        "rgb16.tif": scene(rng)[0].astype(np.uint16) * 257,
        "dir with space/ñandú 北京.tif": scene(rng)[0],
    }
    for rel, img in good.items():
        write_image(src / rel, img)
    # A 12000x9000 8-bit image (108 Mpx): compresses to ~100 kB, decodes to 324 MB as BGR.
    huge = np.zeros((9000, 12000), np.uint8)
    huge[2000:6000, 3000:9000] = 200
    write_image(src / "huge.png", huge)
    del huge
    good["huge.png"] = None
    (src / "empty.jpg").write_bytes(b"")
    (src / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + rng.bytes(500))
    (src / "corrupt.tif").write_bytes(b"II*\x00" + rng.bytes(500))
    (src / "fake.png").write_text("this is text, not a PNG")
    (src / "notes.txt").write_text("not an image")
    png_bomb(src / "bomb.png")
    bad = {"empty.jpg", "corrupt.jpg", "corrupt.tif", "fake.png", "notes.txt", "bomb.png"}

    out = tmp_path / "out ñ"
    with capture_logs("ultralytics") as logs:
        summary = detect(src, model=tiny_model, out=out, imgsz=IMGSZ, outputs=("image", "txt", "json"), verbose=False)

    assert summary.images == len(good)
    for rel in good:
        stem = Path(rel).with_suffix("")  # outputs mirror the input's path below the source folder
        rendered = out / f"{stem}.jpg"
        assert rendered.is_file(), rendered
        assert (out / "labels" / f"{stem}.txt").is_file()
    from PIL import Image

    with Image.open(out / "huge.jpg") as im:  # header only: the rendering keeps the original size
        assert im.size == (12000, 9000)
    assert (out / "predictions.json").is_file()
    skipped = {Path(f).name: why for f, why in summary.skipped}
    assert set(skipped) == bad
    for name, why in skipped.items():
        if name != "notes.txt":  # expand_source's reason is about the suffix; the entry names the file
            assert name in why, why
        assert name in logs.text  # and the warning names it too
    assert "empty" in skipped["empty.jpg"]
    assert not any(name in logs.text for name in ("good.jpg", "gray.png", "huge.png"))


@pytest.mark.slow
def test_detect_cli_reports_skipped(tmp_path, tiny_model):
    """The tool carries on past bad files, exits 0 and lists what it skipped."""
    weights = W.save_checkpoint(tmp_path / "tiny.pt", tiny_model)
    src = tmp_path / "src dir ñ"
    write_image(src / "北京 ok.png", scene(np.random.default_rng(3))[0])
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (src / "zero.png").write_bytes(b"")
    r = run_tool(str(TOOLS / "detect.py"), "--source", str(src), "--weights", str(weights), "--runtime", "eager",
                 "--out", str(tmp_path / "o"), "--imgsz", str(IMGSZ))
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "o" / "北京 ok.jpg").is_file()
    assert "skipped 2" in r.stdout and "broken.jpg" in r.stdout and "zero.png" in r.stdout


@pytest.mark.slow
def test_train_survives_bad_files(seed0_run):
    trainer, log, _ = seed0_run
    assert trainer.last.is_file() and trainer.best.is_file()
    ckpt = assert_finite_checkpoint(trainer.last)
    assert ckpt["epoch"] == 0
    for name in BAD_TRAIN + BAD_VAL:
        assert name in log and "ignoring corrupt image/label" in log, name
    assert "labels require 5 columns" in log
    assert "out of bounds" in log
    # the usable oddities (grayscale, RGBA, 16-bit TIFF, non-ASCII name) were not flagged
    for name in ("gray.png", "rgba.png", "sixteen.tif", "ñandú 北京.png"):
        assert name not in log, name
    assert len(trainer.train_loader.dataset) == 8  # 4 plain + 4 odd ones; the 3 bad ones dropped


@pytest.mark.slow
def test_val_survives_bad_files(bad_dataset, seed0_run, tmp_path):
    from detector.engine.validator import evaluate

    trainer = seed0_run[0]
    with capture_logs("ultralytics") as logs:
        r = evaluate(bad_dataset, weights=trainer.last, imgsz=IMGSZ, batch=4, project=tmp_path, plots=False,
                     json_out=tmp_path / "m.json")
    assert r["images"] == 2  # val0, val1; the corrupt, empty and badly labelled images were skipped
    assert (tmp_path / "m.json").is_file()
    for name in BAD_VAL:
        assert name in logs.text, name


def test_convert_voc_reports_bad_files(tmp_path):
    """tools/convert.py voc: bad images are listed in report.json by name; good ones (any path) are kept."""
    import json

    root = tmp_path / "voc root ñ 北京"
    (root / "Annotations").mkdir(parents=True)
    rng = np.random.default_rng(4)

    def add(stem: str, file_name: str, size=(64, 48)) -> None:
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{file_name}</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            "<depth>3</depth></size><object><name>ship</name><difficult>0</difficult><bndbox><xmin>5</xmin>"
            "<ymin>5</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>", encoding="utf-8")

    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for stem in ("000001", "000002", "000003", "ñandú 北京"):
        write_image(root / "JPEGImages" / f"{stem}.jpg", img)
        add(stem, f"{stem}.jpg")
    write_image(root / "JPEGImages" / "000008.tif", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 257)
    add("000008", "000008.tif")
    huge = np.zeros((9000, 12000), np.uint8)
    write_image(root / "JPEGImages" / "000009.png", huge)
    del huge
    add("000009", "000009.png", size=(12000, 9000))
    (root / "JPEGImages" / "000004.jpg").write_bytes(b"\xff\xd8 garbage" * 10)  # corrupt
    add("000004", "000004.jpg")
    (root / "JPEGImages" / "000005.jpg").write_bytes(b"")  # empty
    add("000005", "000005.jpg")
    (root / "JPEGImages" / "000006.txt").write_text("not an image")  # non-image
    add("000006", "000006.txt")
    (root / "JPEGImages" / "000007.png").write_text("text in a .png")  # non-image with an image suffix
    add("000007", "000007.png")

    out = tmp_path / "out dir"
    r = run_tool(str(TOOLS / "convert.py"), "voc", "--root", str(root), "--out", str(out), "--classes", "ship",
                 "--split", "seeded", "--ratios", "1", "0", "0", timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    problems = {Path(p["file"]).name: p for p in report["problems"]}
    assert problems["000004.jpg"]["kind"] == "unreadable_image"
    assert problems["000005.jpg"]["kind"] == "unreadable_image"
    assert problems["000006.txt"]["kind"] == "unsupported_format"
    assert problems["000007.png"]["kind"] == "unreadable_image"
    for name in ("000004.jpg", "000005.jpg", "000006.txt", "000007.png"):
        assert "skipped" in problems[name]["action"]
        assert name in r.stderr  # the log line names the file too
    kept = sorted(p.name for p in (out / "images" / "train").iterdir())
    assert kept == sorted(["000001.jpg", "000002.jpg", "000003.jpg", "000008.tif", "000009.png", "ñandú 北京.jpg"])
    assert report["total"]["images"] == 6
    coco = json.loads((out / "annotations" / "train.json").read_text())
    assert {"file_name": "000009.png", "width": 12000, "height": 9000} in [
        {k: im[k] for k in ("file_name", "width", "height")} for im in coco["images"]]


# == 2. weights never execute code ===================================================================
class _Evil:
    """Pickles to a call that writes a marker file when unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def _valid_looking(model, evil) -> dict:
    return {"format": W.FORMAT, "format_version": W.FORMAT_VERSION, "config": W.plain(model.yaml),
            "names": dict(model.names), "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "epoch": 0, "evil": evil}


@pytest.mark.parametrize("variant", ["top_level", "in_state_dict", "in_train_args", "legacy_format"])
def test_payload_inside_valid_checkpoint_is_refused(tmp_path, tiny_model, variant):
    marker = tmp_path / "pwned"
    ckpt = _valid_looking(tiny_model, _Evil(marker))
    kw = {}
    if variant == "in_state_dict":
        ckpt["state_dict"]["model.0.evil"] = ckpt.pop("evil")
    elif variant == "in_train_args":
        ckpt["train_args"] = {"lr0": 0.01, "data": ckpt.pop("evil")}
    elif variant == "legacy_format":
        kw["_use_new_zipfile_serialization"] = False
    path = tmp_path / "evil.pt"
    torch.save(ckpt, path, **kw)
    with pytest.raises(W.UnsafeCheckpointError, match="refused") as e:
        W.load_checkpoint(path)
    assert str(path) in str(e.value) and "GLOBAL exec" in str(e.value)  # names the file and the offending global
    assert "weights_only" not in str(e.value)  # no advice on how to switch the protection off
    with pytest.raises(W.UnsafeCheckpointError):
        W.load_model(path)
    assert not marker.exists()
    # control: the payload is live, so the refusal above is what kept it from running
    torch.load(path, weights_only=False)
    assert marker.read_text() == "pwned"


def test_trainer_refuses_evil_checkpoint(tmp_path, tiny_model, bad_dataset, restore_torch_globals):
    """Resuming from, or starting training from, a booby-trapped .pt is refused before anything runs."""
    from detector.engine.trainer import train

    marker = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    torch.save(_valid_looking(tiny_model, _Evil(marker)), path)
    with pytest.raises(W.UnsafeCheckpointError, match="refused"):
        train(bad_dataset, resume=path, device="cpu")
    with pytest.raises(W.UnsafeCheckpointError, match="refused"):
        train(bad_dataset, path, epochs=1, project=tmp_path, name="x", **TRAIN_KW)
    assert not marker.exists()


@pytest.mark.slow
def test_detect_tool_refuses_evil_weights(tmp_path, tiny_model):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil weights ñ.pt"
    torch.save(_valid_looking(tiny_model, _Evil(marker)), path)
    src = write_image(tmp_path / "img.png", scene(np.random.default_rng(5))[0])
    r = run_tool(str(TOOLS / "detect.py"), "--source", str(src), "--weights", str(path), "--out",
                 str(tmp_path / "out"), "--imgsz", str(IMGSZ), timeout=120)
    assert r.returncode != 0
    assert "refused" in r.stderr and str(path) in r.stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "img.jpg").exists()


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file", b"PK\x03\x04" + bytes(100)])
def test_corrupt_weights_give_a_clear_error(tmp_path, content):
    """Not-a-checkpoint files raise ValueError or UnsafeCheckpointError naming the file, nothing else."""
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises((ValueError, W.UnsafeCheckpointError)) as e:
        W.load_checkpoint(path)
    assert str(path) in str(e.value)


# == 3. interrupted training and atomic checkpoints ==================================================
def _wait_for_checkpoint(proc: subprocess.Popen, last: Path, min_epoch: int, timeout: float) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended (rc {proc.returncode}) before {last} reached epoch {min_epoch}")
        if last.exists():
            # Reading while the trainer may be writing: atomic saves mean we never see half a file.
            epoch = int(W.load_checkpoint(last)["epoch"])
            if epoch >= min_epoch:
                return epoch
        time.sleep(0.1)
    raise AssertionError(f"{last} did not reach epoch {min_epoch} within {timeout} s")


@pytest.mark.slow
def test_killed_training_resumes_without_losing_epochs(tmp_path, tiny_yaml):
    epochs = 4
    data = make_yolo_dataset(tmp_path / "ds", n_train=8, n_val=2, bad=False)
    project = tmp_path / "runs"
    log = open(tmp_path / "train.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(TOOLS / "train.py"), "--data", str(data), "--model", str(tiny_yaml), "--epochs",
         str(epochs), "--imgsz", str(IMGSZ), "--batch", "2", "--workers", "0", "--project", str(project), "--name",
         "run", "--no-plots", "--close-mosaic", "0", "--seed", "0"],
        stdout=log, stderr=subprocess.STDOUT, env=tool_env(), cwd=REPO)
    last = project / "run" / "weights" / "last.pt"
    try:
        _wait_for_checkpoint(proc, last, 0, timeout=240)  # >= 1 completed epoch (stored 0-based: 0)
        proc.send_signal(signal.SIGKILL)  # mid-way through the next epoch: no chance to clean up
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    done = int(W.load_checkpoint(last)["epoch"])  # what the checkpoint holds now, after the kill
    assert done < epochs - 1, "the run finished before it could be interrupted; make it longer"
    csv = project / "run" / "results.csv"
    rows = read_csv_epochs(csv)
    assert rows[: done + 1] == list(range(1, done + 2)) and len(rows) <= done + 2
    if len(rows) == done + 1:
        # Simulate the worst moment to die: after the next epoch's metrics row, before its checkpoint.
        with open(csv, "a") as f:
            f.write(f"{done + 2},1.0,0.5,0.5,0.5\n")

    r = run_tool(str(TOOLS / "train.py"), "--resume", str(last), timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert f"from epoch {done + 2} to {epochs} total epochs" in out
    final = assert_finite_checkpoint(last)
    assert final["epoch"] == epochs - 1
    assert read_csv_epochs(csv) == list(range(1, epochs + 1)), csv.read_text()
    assert not list((project / "run").parent.glob("run?*")), "resume must continue in the same run folder"


def test_crash_during_save_keeps_old_checkpoint(tmp_path, tiny_model, monkeypatch):
    path = tmp_path / "last.pt"
    W.save_checkpoint(path, tiny_model, epoch=3)
    good = path.read_bytes()
    real_save = torch.save

    def half_then_crash(obj, f, *a, **k):
        buf = io.BytesIO()
        real_save(obj, buf, *a, **k)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        raise KeyboardInterrupt("simulated crash mid-save")  # BaseException, like a real interruption

    monkeypatch.setattr(torch, "save", half_then_crash)
    with pytest.raises(KeyboardInterrupt):
        W.save_checkpoint(path, tiny_model, epoch=4)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert W.load_checkpoint(path)["epoch"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


def test_sigkill_during_save_keeps_old_checkpoint(tmp_path, tiny_model):
    """A process killed (SIGKILL: no cleanup at all) half-way through writing leaves the old file intact."""
    path = tmp_path / "last.pt"
    W.save_checkpoint(path, tiny_model, epoch=3)
    good = path.read_bytes()
    code = (
        "import io, os, signal, sys, torch\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from detector import weights as W\n"
        "ck = W.load_checkpoint(sys.argv[1])\n"
        "real = torch.save\n"
        "def half(obj, f, *a, **k):\n"
        "    b = io.BytesIO(); real(obj, b); f.write(b.getvalue()[: len(b.getvalue()) // 2]); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "torch.save = half\n"
        "ck['epoch'] = 4\n"
        "W.atomic_torch_save(ck, sys.argv[1])\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    assert path.read_bytes() == good
    assert W.load_checkpoint(path)["epoch"] == 3
    # The half-written temp file is hidden and never has the target's name.
    assert all(p.name.startswith(".last.pt.") and p.name.endswith(".tmp") for p in tmp_path.iterdir() if p != path)


def test_atomic_save_never_exposes_a_partial_file(tmp_path, monkeypatch):
    """While torch.save is writing, the target path holds the old file (or nothing), never new bytes."""
    path = tmp_path / "w.pt"
    obj = {"x": torch.arange(100_000, dtype=torch.float32)}
    real_save = torch.save
    seen: list[bytes | None] = []

    def slow_save(o, f, *a, **k):
        buf = io.BytesIO()
        real_save(o, buf, *a, **k)
        data = buf.getvalue()
        step = len(data) // 8 + 1
        for i in range(0, len(data), step):
            f.write(data[i:i + step])
            f.flush()
            seen.append(path.read_bytes() if path.exists() else None)

    monkeypatch.setattr(torch, "save", slow_save)
    W.atomic_torch_save(obj, path)  # first write: nothing at the target until it is complete
    assert seen and all(s is None for s in seen)
    first = path.read_bytes()
    seen.clear()
    W.atomic_torch_save({"x": obj["x"] + 1}, path)  # overwrite: the old file until the new one is complete
    assert seen and all(s == first for s in seen)
    monkeypatch.undo()
    assert torch.equal(torch.load(path, weights_only=True)["x"], obj["x"] + 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]
    # A save that fails before writing anything leaves no target at all.
    monkeypatch.setattr(torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        W.atomic_torch_save(obj, tmp_path / "new.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pt"]


# == 4. non-finite loss or gradient ==================================================================
@pytest.mark.slow
@pytest.mark.parametrize("where", ["loss", "grad"])
def test_non_finite_stops_training(tmp_path, tiny_yaml, monkeypatch, restore_torch_globals, where):
    """Poison the loss (or a gradient) after the first epoch: training stops with FloatingPointError
    and the only checkpoint on disk is the last good one, with finite weights."""
    from detector.engine.trainer import train

    data = make_yolo_dataset(tmp_path / "ds", n_train=4, n_val=2, bad=False)
    batches_per_epoch = 2  # 4 images, batch 2
    calls = {"n": 0}
    real_loss = SNNViTYOLO.loss

    def poisoned(self, batch, preds=None):
        loss, items = real_loss(self, batch, preds)
        if self.training:
            calls["n"] += 1
            if calls["n"] > batches_per_epoch:  # first batch of the second epoch
                if where == "loss":
                    loss = loss * float("nan")
                else:
                    p = next(self.parameters())
                    p.register_hook(lambda g: torch.full_like(g, float("inf")))
        return loss, items

    monkeypatch.setattr(SNNViTYOLO, "loss", poisoned)
    with pytest.raises(FloatingPointError) as e:
        train(data, tiny_yaml, epochs=3, seed=0, project=tmp_path / "runs", name="nan", val=False, save_period=1,
              **TRAIN_KW)
    msg = str(e.value)
    assert ("non-finite training loss" if where == "loss" else "non-finite gradient") in msg
    assert "epoch 2" in msg and "last.pt" in msg
    wdir = tmp_path / "runs" / "nan" / "weights"
    ckpt = assert_finite_checkpoint(wdir / "last.pt")
    assert ckpt["epoch"] == 0  # the epoch that completed; nothing written after the NaN
    assert sorted(p.name for p in wdir.iterdir()) == ["best.pt", "epoch0.pt", "last.pt"]  # no temp files
    assert_finite_checkpoint(wdir / "epoch0.pt")


@pytest.mark.slow
def test_nan_in_first_epoch_writes_no_checkpoint(tmp_path, tiny_yaml, monkeypatch, restore_torch_globals):
    from detector.engine.trainer import train

    data = make_yolo_dataset(tmp_path / "ds", n_train=2, n_val=2, bad=False)
    monkeypatch.setattr(SNNViTYOLO, "loss", lambda self, batch, preds=None: (torch.tensor([float("inf")],
                                                                                          requires_grad=True), {}))
    with pytest.raises(FloatingPointError, match="non-finite training loss.*Last good checkpoint: none"):
        train(data, tiny_yaml, epochs=1, seed=0, project=tmp_path / "runs", name="inf", val=False, **TRAIN_KW)
    assert not list((tmp_path / "runs").rglob("*.pt"))


@pytest.mark.slow
def test_non_finite_loss_without_optimizer_step_is_caught(tmp_path, tiny_yaml, monkeypatch, restore_torch_globals):
    """With gradient accumulation the last batches of a run reach no optimizer step; a NaN loss there
    must still stop training (before the final checkpoint is written)."""
    from detector.engine.trainer import train

    data = make_yolo_dataset(tmp_path / "ds", n_train=8, n_val=2, bad=False)
    calls = {"n": 0}
    real_loss = SNNViTYOLO.loss

    def nan_in_last_batch(self, batch, preds=None):
        loss, items = real_loss(self, batch, preds)
        if self.training:
            calls["n"] += 1
            if calls["n"] == 4:  # 4 batches; nbs=6 -> accumulate 3: the only step is after batch 3
                loss = loss * float("nan")
        return loss, items

    monkeypatch.setattr(SNNViTYOLO, "loss", nan_in_last_batch)
    with pytest.raises(FloatingPointError, match="non-finite training loss.*epoch 1"):
        train(data, tiny_yaml, epochs=1, seed=0, project=tmp_path / "runs", name="acc", val=False,
              **{**TRAIN_KW, "nbs": 6})
    assert calls["n"] == 4
    assert not list((tmp_path / "runs").rglob("*.pt"))


# == 5. reproducibility ==============================================================================
@pytest.mark.slow
def test_same_seed_bit_identical_other_seed_differs(seed0_run, bad_dataset, tiny_yaml, tmp_path,
                                                    restore_torch_globals):
    from detector.engine.trainer import train

    first = W.load_checkpoint(seed0_run[0].last)
    initial = seed0_run[2]
    trained = [k for k, v in first["state_dict"].items() if v.is_floating_point() and not torch.equal(v, initial[k])]
    assert len(trained) > len(initial) // 2, "the epoch barely changed the weights: the comparison would be vacuous"
    again = W.load_checkpoint(train(bad_dataset, tiny_yaml, epochs=1, seed=0, project=tmp_path, name="again",
                                    **TRAIN_KW).last)
    a, b = state_tensors(first), state_tensors(again)
    assert a.keys() == b.keys() and len(a) > 100
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"same seed, different tensors: {differ[:5]}"
    other = W.load_checkpoint(train(bad_dataset, tiny_yaml, epochs=1, seed=1, project=tmp_path, name="other",
                                    **TRAIN_KW).last)
    c = state_tensors(other)
    changed = [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], c[k])]
    assert len(changed) > len(a) // 2, f"another seed changed only {len(changed)} of {len(a)} tensors"

"""Hostile and outsized inputs, round 3 (issue 24): SAR strips, traversal in annotations, special files,
stored training values in bounds but absurd, careless options.

Every test builds the trap first, then checks the promise of README's "Security and data safety": one bad
file never stops a folder, every error is one line naming the file or option, nothing is read from
outside the dataset, and nothing a checkpoint names is opened. Runs that could exhaust memory if the
check regressed are made in a subprocess under an address-space limit (``run_tool(..., memory_gb=...)``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import detector  # noqa: F401
from detector.infer import detect
from _tools import (IMGSZ, TOOLS, images_folder, make_dataset, one_line_error, run_tool, tiny_coco, tiny_nwpu, tiny_voc,
                    training_checkpoint)

# ------------------------------------------------------------------------------------------------
# 1. SAR strips longer than JPEG's 65,500 px
# ------------------------------------------------------------------------------------------------


def strip(path: Path, w: int = 66_000, h: int = 300) -> Path:
    """A long dark SAR strip with a bright ship near its far end (compresses to a few kB as PNG)."""
    img = np.full((h, w, 3), 12, np.uint8)
    img[h // 3: h // 3 + 40, w - 900: w - 700] = 230
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def test_a_strip_too_long_for_jpeg_is_rendered_and_its_predictions_kept(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["b.png"])
    strip(src / "a_strip.png")
    out = tmp_path / "out"
    s = detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, conf=0.0, outputs=("image", "json", "geojson"),
               verbose=False)
    assert s.images == 2  # the strip did not stop the folder
    preds = json.loads((out / "predictions.json").read_text())
    assert {p["file_name"] for p in preds} == {"a_strip.png", "b.png"}
    feats = json.loads((out / "detections.pixels.geojson").read_text())["features"]  # plain PNGs: pixel boxes
    assert {f["properties"]["source"] for f in feats} == {"a_strip.png", "b.png"}
    render = cv2.imread(str(out / "a_strip.jpg"))
    assert render is not None and max(render.shape[:2]) <= 65_500 and render.shape[1] > 60_000
    # the tool: exit 0, the render's downscaling said in one line
    r = run_tool(TOOLS / "detect.py", "--source", src, "--weights", tiny_weights, "--runtime", "eager", "--out", tmp_path / "out2",
                 "--imgsz", IMGSZ, "--save-json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "a_strip" in r.stdout + r.stderr and "65500" in (r.stdout + r.stderr).replace(",", "")


def test_a_frame_whose_render_fails_is_reported_and_the_folder_goes_on(tmp_path, tiny_weights, monkeypatch):
    """Any render failure (not a full disk) costs that frame's render only: reported, predictions kept."""
    import detector.io.writers as Wr

    src = images_folder(tmp_path / "src", ["a.png", "b.png", "c.png"])
    real = Wr.render

    def fails_on_b(img, det, names, path=""):
        if Path(path).name == "b.png":
            raise cv2.error("simulated encoder failure")
        return real(img, det, names, path)

    monkeypatch.setattr(Wr, "render", fails_on_b)
    out = tmp_path / "out"
    s = detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, conf=0.0, outputs=("image", "json"), verbose=False)
    assert s.images == 3
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a.jpg", "c.jpg"]
    assert {p["file_name"] for p in json.loads((out / "predictions.json").read_text())} == {"a.png", "b.png", "c.png"}
    assert [(Path(f).name, "image" in why) for f, why in s.skipped] == [("b.png", True)]


# ------------------------------------------------------------------------------------------------
# 3. Path traversal in annotations
# ------------------------------------------------------------------------------------------------


def outside_image(tmp_path: Path) -> Path:
    p = tmp_path / "outside" / "secret.jpg"
    p.parent.mkdir(parents=True)
    cv2.imwrite(str(p), np.full((48, 64, 3), 200, np.uint8))
    return p


def copied_or_linked(out: Path, secret: Path) -> list[Path]:
    """Output images that are (or point at) ``secret``."""
    data = secret.read_bytes()
    return [p for p in (out / "images").rglob("*") if p.is_file() and (p.resolve() == secret.resolve()
                                                                     or p.read_bytes() == data)]


@pytest.mark.parametrize("link", ["copy", "symlink"])
@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_voc_filename_cannot_reach_outside_the_root(tmp_path, link, how):
    from detector.data import convert_voc

    root = tiny_voc(tmp_path / "voc")
    secret = outside_image(tmp_path)
    name = "../../outside/secret.jpg" if how == "relative" else str(secret)
    (root / "JPEGImages" / "000001.jpg").unlink()  # the annotation's own image is missing: <filename> is used
    xml = (root / "Annotations" / "000001.xml").read_text()
    (root / "Annotations" / "000001.xml").write_text(xml.replace("<annotation>", f"<annotation><filename>{name}</filename>"))
    rep = convert_voc(root, tmp_path / "out", classes=["ship"], split="seeded", ratios=(1, 0, 0), link=link)
    assert copied_or_linked(tmp_path / "out", secret) == []
    bad = [p for p in rep["problems"] if p["kind"] == "outside_source"]
    assert len(bad) == 1 and "000001.xml" in bad[0]["file"] and "skipped" in bad[0]["action"]
    assert rep["total"]["images"] == 9


@pytest.mark.parametrize("link", ["copy", "symlink"])
@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_coco_file_name_cannot_reach_outside_the_root(tmp_path, link, how):
    from detector.data import convert_coco

    root = tiny_coco(tmp_path / "coco")
    secret = outside_image(tmp_path)
    ann = root / "annotations" / "train.json"
    data = json.loads(ann.read_text())
    data["images"].append({"id": 1, "file_name": "../../outside/secret.jpg" if how == "relative" else str(secret),
                           "width": 64, "height": 48})
    data["annotations"].append({"id": 1, "image_id": 1, "category_id": 0, "bbox": [1, 2, 10, 12], "iscrowd": 0})
    ann.write_text(json.dumps(data))
    rep = convert_coco(root, tmp_path / "out", link=link)
    assert copied_or_linked(tmp_path / "out", secret) == []
    bad = [p for p in rep["problems"] if p["kind"] == "outside_source"]
    assert len(bad) == 1 and "train.json" in bad[0]["file"] and "secret.jpg" in bad[0]["problem"]
    assert rep["total"]["images"] == 2


def test_a_link_inside_the_image_folder_cannot_reach_outside(tmp_path):
    """NWPU names no paths, but an image file may be a link: images resolve inside the source folders."""
    from detector.data import convert_nwpu

    root = tiny_nwpu(tmp_path / "nwpu")
    secret = outside_image(tmp_path)
    (root / "positive image set" / "001.jpg").unlink()
    (root / "positive image set" / "001.jpg").symlink_to(secret)
    rep = convert_nwpu(root, tmp_path / "out", ratios=(1, 0, 0), link="copy")
    assert copied_or_linked(tmp_path / "out", secret) == []
    assert [p["kind"] for p in rep["problems"]] == ["outside_source"]


def test_an_image_folder_given_explicitly_may_lie_elsewhere(tmp_path):
    """An image folder the user names (COCO --images) is a source folder of its own, wherever it is."""
    from detector.data import convert_coco

    root = tiny_coco(tmp_path / "coco")
    elsewhere = tmp_path / "elsewhere"
    (root / "train2017").rename(elsewhere)
    rep = convert_coco(root, tmp_path / "out", splits={"train": ("annotations/train.json", str(elsewhere)),
                                                        "val": ("annotations/valid.json", None)})
    assert rep["splits"]["train"]["images"] == 1
    assert [p for p in rep["problems"] if p["kind"] == "outside_source"] == []


# ------------------------------------------------------------------------------------------------
# 4. Special files (FIFOs) where files are expected
# ------------------------------------------------------------------------------------------------


def fifo(path: Path) -> Path:
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("fmt", ["nwpu", "voc", "coco"])
def test_a_fifo_annotation_never_hangs_convert(tmp_path, fmt):
    build = {"nwpu": tiny_nwpu, "voc": tiny_voc, "coco": tiny_coco}[fmt]
    root = build(tmp_path / fmt)
    pipe = fifo({"nwpu": root / "ground truth" / "002.txt", "voc": root / "Annotations" / "000002.xml",
                 "coco": root / "annotations" / "valid.json"}[fmt])
    r = run_tool(TOOLS / "convert.py", fmt, "--root", root, "--out", tmp_path / "out", timeout=120)
    if fmt == "coco":  # a split's annotation file: the conversion cannot go on without it
        assert "not a regular file" in one_line_error(r) and str(pipe) in r.stderr
        return
    assert r.returncode == 0, r.stderr[-2000:]
    problems = json.loads((tmp_path / "out" / "report.json").read_text())["problems"]
    assert [(p["kind"], Path(p["file"]).name) for p in problems if p["kind"] == "not_a_file"] == [("not_a_file", pipe.name)]


def test_detect_lists_special_files_as_skipped(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.png"])
    fifo(src / "pipe.png")
    (src / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    s = detect(src, tiny_weights, tmp_path / "out", runtime="eager", imgsz=IMGSZ, verbose=False)
    assert s.images == 1
    skipped = {Path(f).name: why for f, why in s.skipped}
    assert set(skipped) == {"pipe.png", "dangling.png"} and "not a regular file" in skipped["pipe.png"]
    line = one_line_error(run_tool(TOOLS / "detect.py", "--source", src / "pipe.png", "--weights", tiny_weights,
                                   "--out", tmp_path / "out2", timeout=120))
    assert "pipe.png" in line and "not a regular file" in line


@pytest.mark.parametrize("where", ["images", "labels"])
@pytest.mark.slow
def test_a_fifo_in_a_dataset_never_hangs_val_or_energy(tmp_path, tiny_weights, where):
    """Ultralytics opens every file of a split folder: a FIFO there is refused before it is read."""
    ds = make_dataset(tmp_path / "ds")
    pipe = fifo(tmp_path / "ds" / where / "val" / ("9.png" if where == "images" else "0.txt"))
    for tool in ("val.py", "energy.py"):
        line = one_line_error(run_tool(TOOLS / tool, "--data", ds, "--weights", tiny_weights, "--imgsz", IMGSZ,
                                       timeout=120))
        assert str(pipe) in line and "not a regular file" in line


# ------------------------------------------------------------------------------------------------
# 6. Stored training values in bounds but absurd; paths named by a checkpoint
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_resume_checks_what_the_run_would_allocate(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    last = training_checkpoint(tmp_path, ds, imgsz=8192, batch=4096)
    r = run_tool(TOOLS / "train.py", "--resume", last, timeout=240, memory_gb=8)
    line = one_line_error(r)
    assert "batch" in line and "imgsz" in line and "--batch" in line and "--imgsz" in line
    # the options the message names do override the stored values: this resume passes the check (and
    # gets as far as this fake checkpoint's empty optimizer state)
    r = run_tool(TOOLS / "train.py", "--resume", last, "--batch", "2", "--imgsz", IMGSZ, timeout=240, memory_gb=8)
    assert "activations" not in r.stderr and "parameter groups" in one_line_error(r)


def test_resume_with_smaller_overrides_passes_the_memory_check(tmp_path):
    from detector.engine.resume import check_resume_memory
    from _tiny import tiny_ship_model

    model = tiny_ship_model()
    need = check_resume_memory(model, batch=2, imgsz=IMGSZ, device="cpu", source="last.pt")
    assert 0 < need < 2**30
    with pytest.raises(ValueError, match="--batch"):
        check_resume_memory(model, batch=4096, imgsz=8192, device="cpu", source="last.pt")


_OPENED: list[str] = []


def _audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed; this one only records paths


def test_resume_never_opens_a_teacher_path_from_the_checkpoint(tmp_path):
    from detector.engine.trainer import train

    ds = make_dataset(tmp_path / "ds")
    bait = tmp_path / "bait.pt"
    bait.write_bytes(b"not a teacher")
    last = training_checkpoint(tmp_path, ds)
    ck = torch.load(last, weights_only=True)
    ck["distill"] = {"teacher": str(bait), "teacher_sha256": "0" * 64, "cls_weight": 0.5, "box_weight": 1.0,
                     "temperature": 2.0}
    torch.save(ck, last)
    _OPENED.clear()
    with pytest.raises(ValueError, match="--teacher") as e:
        train("", resume=str(last))
    assert str(bait) not in _OPENED
    assert "\n" not in str(e.value) and "weights are kept" in str(e.value)


def test_stored_epochs_nan_names_the_field(tmp_path):
    from detector.engine.trainer import train

    ds = make_dataset(tmp_path / "ds")
    last = training_checkpoint(tmp_path, ds, epochs=float("nan"))
    with pytest.raises(ValueError, match="epochs"):
        train("", resume=str(last))


# ------------------------------------------------------------------------------------------------
# 8. Careless options
# ------------------------------------------------------------------------------------------------


def test_heatmap_dpi_is_bounded(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.png"])
    r = run_tool(TOOLS / "heatmap.py", "--source", src, "--weights", tiny_weights, "--out", tmp_path / "o",
                 "--dpi", "5000", timeout=240, memory_gb=8)
    line = one_line_error(r)
    assert "dpi 5000" in line and "dpi" in line.split("use")[-1]
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())  # refused before any panel


@pytest.mark.parametrize("n", ["-1", "0"])
def test_heatmap_max_images_must_be_positive(tmp_path, tiny_weights, n):
    src = images_folder(tmp_path / "src", ["a.png", "b.png"])
    line = one_line_error(run_tool(TOOLS / "heatmap.py", "--source", src, "--weights", tiny_weights, "--out",
                                   tmp_path / "o", "--max-images", n))
    assert "max_images" in line or "--max-images" in line


def test_energy_outputs_are_checked_before_the_run(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.png"])
    (tmp_path / "dir").mkdir()
    r = run_tool(TOOLS / "energy.py", "--source", src, "--weights", tiny_weights, "--imgsz", IMGSZ,
                 "--json", tmp_path / "dir")
    line = one_line_error(r)
    assert "--json" in line and "folder" in line
    assert "mJ" not in r.stdout  # refused before measuring

"""Hostile files and careless commands: no code runs, no network is used, no data is lost.

Each test first builds the trap (a crafted checkpoint, a dataset YAML whose ``download:`` would write a
marker file, a folder of colliding names, an output folder holding the user's files, a copied run) and
then checks that the tools refuse it with one line, that the marker never appears, and that nothing
the tool did not write is touched. Tools are also run as commands, to check the one-line errors.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

import detector  # noqa: F401
from detector import weights as W
from detector.infer import detect
from _tools import IMGSZ, REPO, TOOLS, images_folder, make_dataset, one_line_error, run_tool, training_checkpoint

def marker_yaml(tmp_path: Path, marker: Path, images_exist: bool) -> Path:
    """A dataset YAML whose ``download:`` is Python code that would write ``marker``."""
    root = tmp_path / ("ds" if images_exist else "missing")
    cfg = make_dataset(root) if images_exist else root / "data.yaml"
    root.mkdir(parents=True, exist_ok=True)
    d = {"path": str(root), "train": "images/train", "val": "images/val", "names": {0: "ship"},
         "download": f"open({str(marker)!r}, 'w').write('ran')"}
    cfg.write_text(yaml.safe_dump(d))
    return cfg


# ------------------------------------------------------------------------------------------------
# 1-3: code execution and network
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("data", "https://example.com/evil.yaml"),
    ("cfg", "/tmp/evil.yaml"),
    ("tracker", "evil.yaml"),
    ("distill_model", "evil.pt"),
    ("task", "segment"),
    ("epochs", 10**9),
    ("sneaky", "x"),
])
def test_resume_refuses_hostile_stored_arguments(tmp_path, field, value, no_network):
    from detector.engine.trainer import train

    ds = make_dataset(tmp_path / "ds")
    last = training_checkpoint(tmp_path, ds, **{field: value})
    with pytest.raises(ValueError, match=field):
        train("", resume=str(last))
    assert no_network == []


def test_resume_ignores_a_stored_run_folder(tmp_path):
    """A checkpoint naming another run's folder as save_dir / project / name resumes in its own folder."""
    from detector.engine.trainer import SNNTrainer

    ds = make_dataset(tmp_path / "ds")
    victim = tmp_path / "victim"
    (victim / "weights").mkdir(parents=True)
    (victim / "weights" / "last.pt").write_text("precious")
    last = training_checkpoint(tmp_path, ds, save_dir=str(victim), project=str(tmp_path), name="victim")
    t = SNNTrainer(overrides={"resume": str(last), "model": str(last), "data": "", "device": "cpu"})
    assert Path(t.save_dir) == last.parent.parent and t.last == last
    assert (victim / "weights" / "last.pt").read_text() == "precious"


def test_resume_refuses_an_inference_export(tmp_path, tiny_weights):
    from detector.engine.trainer import train

    with pytest.raises(ValueError, match="cannot be resumed"):
        train("", resume=str(tiny_weights))


@pytest.mark.parametrize("tool", ["val", "train", "energy"])
@pytest.mark.slow
def test_dataset_download_key_never_runs(tmp_path, tiny_weights, tool, no_network):
    """Missing images: a one-line error naming the path; images present: the download key is ignored.
    Either way the marker the YAML's code would write never appears."""
    from detector.engine.trainer import train
    from detector.engine.validator import evaluate
    from detector.io.batches import dataset_images

    marker = tmp_path / "ran.txt"
    run = {"val": lambda d: evaluate(d, tiny_weights, split="val", imgsz=IMGSZ, plots=False, project=tmp_path),
           "train": lambda d: train(d, model=str(tiny_weights), epochs=1, imgsz=IMGSZ, batch=2, workers=0,
                                    plots=False, project=tmp_path, val=False),
           "energy": lambda d: dataset_images(d, "val")}[tool]
    with pytest.raises(FileNotFoundError, match="images not found"):
        run(marker_yaml(tmp_path, marker, images_exist=False))
    assert not marker.exists()
    run(marker_yaml(tmp_path, marker, images_exist=True))
    assert not marker.exists() and no_network == []


@pytest.mark.parametrize("data", ["https://example.com/data.yaml", "coco8.yaml", "coco8"])
@pytest.mark.slow
def test_remote_or_bundled_dataset_is_a_one_line_error(data):
    r = run_tool(TOOLS / "val.py", "--data", data)
    line = one_line_error(r)
    assert data in line and ("URL" in line or "not found" in line)


@pytest.mark.slow
def test_baseline_tool_refuses_pickled_checkpoints(tmp_path):
    marker = tmp_path / "ran.txt"

    class Evil:
        def __reduce__(self):
            return (exec, (f"open({str(marker)!r}, 'w').write('x')",))

    evil = tmp_path / "last.pt"
    torch.save({"model": Evil(), "train_args": {}}, evil)
    ds = make_dataset(tmp_path / "ds")
    for args in (["--resume", evil], ["--eval", evil, "--data", ds]):
        line = one_line_error(run_tool(TOOLS / "train_baseline.py", *args))
        assert "refused" in line and "pickled" in line
    assert not marker.exists()


def test_refusal_message_is_plain(tmp_path):
    """No garbled advice to retry with weights_only=False (which would run the code)."""

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    p = tmp_path / "evil.pt"
    torch.save({"format": W.FORMAT, "x": Evil()}, p)
    with pytest.raises(W.UnsafeCheckpointError) as e:
        W.load_checkpoint(p)
    msg = str(e.value)
    assert "refused to load" in msg and "pickled" in msg and "could run code" in msg
    assert "weights_only=False" not in msg and "\n" not in msg and "\x1b" not in msg


# ------------------------------------------------------------------------------------------------
# 4-7: data loss
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_detect_refuses_to_write_into_the_source(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.jpg", "b.png"])
    before = {p: p.read_bytes() for p in src.rglob("*")}
    for out in (src, src / "renders"):
        with pytest.raises(ValueError, match="inside the source folder"):
            detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, verbose=False)
    line = one_line_error(run_tool(TOOLS / "detect.py", "--source", src, "--weights", tiny_weights, "--runtime", "eager",
                                   "--out", src))
    assert "inside the source folder" in line
    assert {p: p.read_bytes() for p in src.rglob("*")} == before  # not a byte changed


def test_detect_outputs_never_collide(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.jpg", "a.png", "sub/x.jpg", "sub_x.jpg", "d1/same.png", "d2/same.png"])
    out = tmp_path / "out"
    s = detect(str(src / "**" / "*.*"), tiny_weights, out, runtime="eager", imgsz=IMGSZ, conf=0.0, outputs=("image", "txt", "json"),
               verbose=False)
    assert s.images == 6
    renders = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert renders == ["a_jpg.jpg", "a_png.jpg", "d1/same.jpg", "d2/same.jpg", "sub/x.jpg", "sub_x.jpg"]
    labels = sorted(p.relative_to(out / "labels").as_posix() for p in (out / "labels").rglob("*.txt"))
    assert labels == [r.replace(".jpg", ".txt") for r in renders]
    preds = json.loads((out / "predictions.json").read_text())
    assert {p["file_name"] for p in preds} == {"a.jpg", "a.png", "sub/x.jpg", "sub_x.jpg", "d1/same.png", "d2/same.png"}
    assert not (out / "predictions.jsonl").exists()  # the line log is folded into the JSON at the end


def test_detect_never_overwrites_files_it_did_not_write(tmp_path, tiny_weights):
    src = images_folder(tmp_path / "src", ["a.jpg"])
    out = tmp_path / "mine"
    out.mkdir()
    (out / "a.jpg").write_text("my own file")
    with pytest.raises(ValueError, match="not written by this tool"):
        detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, verbose=False)
    assert (out / "a.jpg").read_text() == "my own file"
    (out / "a.jpg").unlink()
    detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, verbose=False)
    detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, verbose=False)  # its own outputs may be replaced
    assert (out / "a.jpg").is_file()


def test_detect_crash_keeps_the_predictions_so_far(tmp_path, tiny_weights, monkeypatch):
    """A run killed after two images: their predictions are on disk, one JSON line per image."""
    import detector.infer.pipeline as P

    src = images_folder(tmp_path / "src", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    real = P.predict_image
    calls = {"n": 0}

    def dies_on_third(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third image
        return real(*a, **k)

    monkeypatch.setattr(P, "predict_image", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        detect(src, tiny_weights, out, runtime="eager", imgsz=IMGSZ, conf=0.0, outputs=("json",), verbose=False)
    preds = json.loads((out / "predictions.json").read_text())  # closed on the way out: what was done is kept
    assert {p["file_name"] for p in preds} == {"a.png", "b.png"}


def test_detect_line_log_survives_a_hard_kill(tmp_path, tiny_weights):
    """SIGKILL-like death (no cleanup at all): the per-frame line log holds every finished image."""
    src = images_folder(tmp_path / "src", ["a.png", "b.png", "c.png"])
    out = tmp_path / "out"
    code = f"""
import os, detector
import detector.infer.pipeline as P
real = P.predict_image
n = [0]
def f(*a, **k):
    n[0] += 1
    if n[0] == 3:
        os._exit(9)
    return real(*a, **k)
P.predict_image = f
P.detect({str(src)!r}, {str(tiny_weights)!r}, {str(out)!r}, runtime="eager", imgsz={IMGSZ}, conf=0.0, outputs=("json",), verbose=False)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 9, r.stderr[-2000:]
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 2 and not (out / "predictions.json").exists()
    assert {rec["file_name"] for ln in lines for rec in json.loads(ln)} <= {"a.png", "b.png"}


def test_convert_overwrite_deletes_only_its_own_files(tmp_path):
    from detector.data import convert_ssdd  # noqa: F401  (module import check)
    from detector.data.voc import read_voc
    from detector.data.writer import write_dataset

    src = tmp_path / "voc"
    (src / "Annotations").mkdir(parents=True)
    (src / "JPEGImages").mkdir()
    cv2.imwrite(str(src / "JPEGImages" / "1.jpg"), np.zeros((40, 40, 3), np.uint8))
    (src / "Annotations" / "1.xml").write_text(
        "<annotation><size><width>40</width><height>40</height></size><object><name>ship</name>"
        "<bndbox><xmin>5</xmin><ymin>5</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>")
    out = tmp_path / "out"
    for d in ("images", "labels", "annotations"):  # a folder of the user's that happens to use these names
        (out / d).mkdir(parents=True)
        (out / d / "keep.txt").write_text("mine")
    (out / "data.yaml").write_text("mine")
    with pytest.raises(ValueError, match="not written by this converter"):
        write_dataset(read_voc(src, split="seeded", ratios=(1, 0, 0)), out, overwrite=True)
    assert all((out / d / "keep.txt").read_text() == "mine" for d in ("images", "labels", "annotations"))
    assert (out / "data.yaml").read_text() == "mine"
    # a source inside the output folder: refused before anything is deleted
    inner = tmp_path / "outer"
    (inner / "voc").parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(src, inner / "voc")
    ds = read_voc(inner / "voc", split="seeded", ratios=(1, 0, 0))
    ds.root = tmp_path  # the dataset's root elsewhere, its images inside the output
    with pytest.raises(ValueError, match="source"):
        write_dataset(ds, inner, overwrite=True)
    assert (inner / "voc" / "JPEGImages" / "1.jpg").is_file()


def test_resuming_a_copied_run_leaves_the_original_alone(tmp_path):
    from detector.engine.trainer import SNNTrainer

    ds = make_dataset(tmp_path / "ds")
    orig = training_checkpoint(tmp_path, ds)
    orig_run = orig.parent.parent
    (orig_run / "results.csv").write_text("epoch,x\n1,0.5\n")
    copy_run = tmp_path / "copy"
    import shutil

    shutil.copytree(orig_run, copy_run)
    before = {p: p.read_bytes() for p in orig_run.rglob("*") if p.is_file()}
    t = SNNTrainer(overrides={"resume": str(copy_run / "weights" / "last.pt"), "model": "x", "data": "", "device": "cpu"})
    assert Path(t.save_dir) == copy_run.resolve()
    assert {p: p.read_bytes() for p in orig_run.rglob("*") if p.is_file()} == before


def test_export_never_replaces_its_source(tmp_path, tiny_weights):
    src = tmp_path / "best.pt"
    src.write_bytes(tiny_weights.read_bytes())
    with pytest.raises(ValueError, match="over its source"):
        W.export_weights(src, src)
    dst = tmp_path / "small.pt"
    dst.write_text("mine")
    with pytest.raises(ValueError, match="exists"):
        W.export_weights(src, dst)
    assert dst.read_text() == "mine"
    W.export_weights(src, dst, overwrite=True)
    assert W.load_model(dst) is not None
    line = one_line_error(run_tool(TOOLS / "export_weights.py", src, src))
    assert "over its source" in line


# ------------------------------------------------------------------------------------------------
# 8-10: wrong results and rough edges
# ------------------------------------------------------------------------------------------------


def test_val_refuses_mismatched_class_names(tmp_path, tiny_weights):
    from detector.engine.validator import evaluate

    ds = make_dataset(tmp_path / "ds", names=("boat",))
    with pytest.raises(ValueError, match="class names differ"):
        evaluate(ds, tiny_weights, imgsz=IMGSZ, plots=False, project=tmp_path)
    r = evaluate(ds, tiny_weights, imgsz=IMGSZ, plots=False, project=tmp_path, class_map={"ship": "boat"})
    assert r["per_class"][0]["name"] == "boat"
    with pytest.raises(ValueError, match="does not have"):
        evaluate(ds, tiny_weights, imgsz=IMGSZ, plots=False, project=tmp_path, class_map={"plane": "boat"})


def test_missing_label_file_counts_as_background(tmp_path, tiny_weights):
    from detector.engine.validator import evaluate

    ds = make_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "labels" / "val" / "3.txt").unlink()
    r = evaluate(ds, tiny_weights, imgsz=IMGSZ, plots=False, project=tmp_path)
    assert r["images"] == 4 and r["per_class"][0]["instances"] == 3  # scored, with no objects


def test_val_warns_when_the_two_evaluations_disagree(tmp_path, tiny_weights, monkeypatch):
    import detector.engine.validator as V

    real = V.coco_evaluate
    monkeypatch.setattr(V, "coco_evaluate", lambda gt, preds: {**real(gt, preds), "map50": 0.9, "map": 0.9})
    ds = make_dataset(tmp_path / "ds")
    (tmp_path / "ds" / "annotations").mkdir()
    (tmp_path / "ds" / "annotations" / "val.json").write_text(json.dumps({
        "images": [{"id": i + 1, "file_name": f"{i}.png", "width": IMGSZ, "height": IMGSZ} for i in range(4)],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [20, 16, 24, 24], "area": 576,
                         "iscrowd": 0} for i in range(4)],
        "categories": [{"id": 1, "name": "ship"}]}))
    d = yaml.safe_load(ds.read_text())
    ds.write_text(yaml.safe_dump({**d, "coco_json": {"val": "annotations/val.json"}}))
    messages = []
    monkeypatch.setattr(V.LOGGER, "warning", lambda m, *a, **k: messages.append(str(m)))
    V.evaluate(ds, tiny_weights, imgsz=IMGSZ, plots=False, project=tmp_path, conf=0.5)
    assert any("disagree" in m for m in messages)


@pytest.mark.parametrize("section,key,value,field", [
    (None, "nc", 10**7, "nc"),
    (None, "timesteps", 10**6, "timesteps"),
    ("backbone", "depths", [10**6, 1, 1], "depths"),
    ("backbone", "widths", [8, 16, 16, 10**6, 32], "widths"),
    ("neck", "depth", 10**5, "depth"),
    (None, "names", {0: "a", 1: "b"}, "names"),
    ("neuron", "name", "plif", "neuron"),
])
def test_absurd_checkpoint_configs_fail_fast_and_small(tmp_path, tiny_weights, section, key, value, field):
    import time
    import tracemalloc

    ck = torch.load(tiny_weights, weights_only=True)
    cfg = ck["config"]
    (cfg if section is None else cfg[section])[key] = value
    p = tmp_path / "absurd.pt"
    torch.save(ck, p)
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=field):
        W.load_model(p)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert time.perf_counter() - t0 < 5 and peak < 50 * 2**20  # refused before building anything big


def test_checkpoint_missing_keys_is_one_line(tmp_path, tiny_weights):
    ck = torch.load(tiny_weights, weights_only=True)
    for drop in ("config", "state_dict"):
        bad = {k: v for k, v in ck.items() if k != drop}
        p = tmp_path / f"no_{drop}.pt"
        torch.save(bad, p)
        with pytest.raises(ValueError, match=drop if drop == "state_dict" else "config"):
            W.load_model(p)
    ck2 = dict(ck, config={k: v for k, v in ck["config"].items() if k != "neuron"})
    torch.save(ck2, tmp_path / "no_neuron.pt")
    line = one_line_error(run_tool(TOOLS / "detect.py", "--source", REPO / "images", "--weights", tmp_path / "no_neuron.pt"))
    assert "neuron" in line


@pytest.mark.parametrize("args,word", [
    (["--conf", "1.5"], "conf"),
    (["--iou", "-0.1"], "iou"),
    (["--imgsz", "0"], "imgsz"),
    (["--imgsz", "100"], "imgsz"),
    (["--max-det", "0"], "max_det"),
    (["--vid-stride", "-1"], "vid_stride"),
    (["--device", "7"], "device"),
    (["--device", "tpu"], "device"),
    (["--tile", "8"], "tile"),
    (["--overlap", "0.95"], "overlap"),
])
@pytest.mark.slow
def test_detect_options_are_checked_up_front(tmp_path, args, word):
    line = one_line_error(run_tool(TOOLS / "detect.py", "--source", REPO / "images", "--out", tmp_path / "o", *args))
    assert word in line
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.slow
def test_val_output_path_checked_before_evaluating(tmp_path, tiny_weights):
    ds = make_dataset(tmp_path / "ds")
    (tmp_path / "is_a_dir").mkdir()
    line = one_line_error(run_tool(TOOLS / "val.py", "--data", ds, "--weights", tiny_weights, "--json",
                                   tmp_path / "is_a_dir", "--imgsz", IMGSZ))
    assert "is a folder" in line
    line = one_line_error(run_tool(TOOLS / "val.py", "--data", ds, "--weights", tiny_weights, "--conf", "2"))
    assert "conf" in line


def test_true_positive_score_distribution_by_hand(tmp_path):
    """Two ships; predictions: a hit at 0.9, a duplicate of it at 0.8 (FP), a hit on the second ship at
    0.6, a miss at 0.3 (FP). TP scores 0.9, 0.6; FP 0.8, 0.3."""
    from detector.engine.validator import score_distribution

    gt = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20]}],
          "categories": [{"id": 1, "name": "ship"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    preds = [{"file_name": "a.png", "category_id": 1, "bbox": b, "score": s}
             for b, s in (([10, 10, 20, 20], 0.9), ([11, 10, 20, 20], 0.8), ([61, 61, 20, 19], 0.6), ([0, 80, 5, 5], 0.3))]
    d = score_distribution(tmp_path / "gt.json", preds)
    assert (d["true_positives"], d["false_positives"], d["ground_truth"]) == (2, 2, 2)
    assert d["tp_scores"]["max"] == 0.9 and d["tp_scores"]["p50"] == pytest.approx(0.75)
    assert d["tp_fraction_above"] == {"0.5": 1.0, "0.7": 0.5, "0.9": 0.0}


def test_convert_manifest_cannot_be_used_to_delete_outside(tmp_path):
    """An edited manifest, or a folder swapped for a link to elsewhere: --overwrite deletes nothing."""
    from detector.data.writer import MANIFEST, _manifest_files

    out = tmp_path / "out"
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "a.jpg").write_text("keep")
    out.mkdir()
    (out / "images").symlink_to(precious)
    (out / MANIFEST).write_text("images/a.jpg\n")
    with pytest.raises(ValueError, match="not a path inside"):
        _manifest_files(out)
    (out / MANIFEST).write_text("../precious/a.jpg\n")
    with pytest.raises(ValueError, match="not a path inside"):
        _manifest_files(out)
    assert (precious / "a.jpg").read_text() == "keep"

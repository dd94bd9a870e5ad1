"""The same-budget YOLOv8n baseline: built from its YAML (no download), trained with Ultralytics' own
trainer on the project's converted data, resumable with more epochs (as the SNN trainer is, so the
baseline can follow an SNN schedule extended by resuming), and evaluated per class."""

from __future__ import annotations

from pathlib import Path

import pytest

from _ssdd_subset import read_results_csv

pytestmark = pytest.mark.slow

QUIET = dict(workers=0, plots=False, seed=0, close_mosaic=0, mosaic=0.0, verbose=False, val=False)


def test_baseline_trains_resumes_with_more_epochs_and_evaluates(ssdd_subset: Path, tmp_path: Path):
    from detector.engine.baseline import evaluate_baseline, train_baseline

    t = train_baseline(ssdd_subset, epochs=1, imgsz=96, batch=8, project=tmp_path, name="b", **QUIET)
    assert str(t.model.yaml.get("yaml_file", "")).endswith("yolov8n.yaml") and t.model.yaml["nc"] == 1
    assert [int(float(r["epoch"])) for r in read_results_csv(t.csv)] == [1]
    t2 = train_baseline("", epochs=2, imgsz=96, resume=str(t.last))
    assert t2.save_dir == t.save_dir and t2.epochs == 2
    assert [int(float(r["epoch"])) for r in read_results_csv(t.csv)] == [1, 2]  # epoch 2 ran, epoch 1 not again
    rep = evaluate_baseline(t2.last, ssdd_subset, split="val", imgsz=96, batch=8, project=tmp_path)
    assert set(rep) >= {"map50", "map50_95", "per_class"} and 0.0 <= rep["map50_95"] <= rep["map50"] <= 1.0
    assert list(rep["per_class"]) in ([], ["ship"])
    # measured as the spiking model is: pycocotools on the same predictions, and the score distribution
    assert rep["pycocotools"]["images"] > 0 and rep["scores"]["ground_truth"] > 0

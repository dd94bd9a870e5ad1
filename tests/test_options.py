"""The entry points' options records (``detector.infer.options`` and its kin): checked once, at
construction; built by keyword; the tools' flags generated from their fields, with the records'
defaults when a flag is left out."""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

import detector  # noqa: F401
from detector.devices import Device
from detector.infer.options import DETECT, OVERLAP, DetectOptions, ValOptions, build

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def bootstrap(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    spec = importlib.util.spec_from_file_location("_bootstrap", TOOLS / "_bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("field,value,word", [("conf", 1.5, "conf"), ("iou", -0.1, "iou"), ("imgsz", 100, "imgsz"),
                                              ("max_det", 0, "max_det"), ("overlap", 0.95, "overlap"),
                                              ("tile", 8, "tile"), ("device", "cuda:7", "device")])
def test_a_bad_value_is_refused_at_construction(field, value, word):
    with pytest.raises(ValueError, match=word):
        DetectOptions(**{field: value})


def test_the_record_resolves_its_device_once_and_keeps_its_defaults():
    o = DetectOptions()
    assert o.device == Device("cpu") and (o.conf, o.iou, o.max_det, o.overlap) == (*vars(DETECT).values(), OVERLAP)
    assert replace(o, conf=0.1).device is o.device  # a resolved Device passes through as it is
    assert build(DetectOptions, None, conf=0.1, tile=None) == DetectOptions(conf=0.1)  # None: the default
    assert build(DetectOptions, o, iou=0.3) == replace(o, iou=0.3)
    with pytest.raises(TypeError, match="no option"):
        build(ValOptions, None, tile=256)


def test_tool_flags_come_from_the_record(monkeypatch):
    """Flags left out are absent from the namespace, so the record's own defaults apply; a flag given is
    parsed with the field's type; help shows the record's default."""
    b = bootstrap(monkeypatch)
    ap = argparse.ArgumentParser()
    b.add_options(ap, DetectOptions)
    assert b.options(DetectOptions, ap.parse_args([])) == DetectOptions()
    o = b.options(DetectOptions, ap.parse_args(["--conf", "0.5", "--tile", "auto", "--max-det", "7"]))
    assert (o.conf, o.tile, o.max_det) == (0.5, "auto", 7)
    assert f"(default {DETECT.conf})" in ap.format_help()
    with pytest.raises(SystemExit):  # outputs is mapped by the tool, not offered as a flag
        ap.parse_args(["--outputs", "image"])

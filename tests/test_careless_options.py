"""Careless options and broken installs (issue 32, item 3): each is one line before any work, never a
traceback, a hang or a silent substitute.

* one image-size check for every tool: ``train --imgsz 100`` (Ultralytics would train at 128),
  ``export`` / ``benchmark`` / ``energy --imgsz 0`` (0 used to mean "the default");
* ``--weights ''`` is refused, not read as the default model;
* a malformed or hostile installed ``weights/models.yaml`` (an alias bomb included) is one line, and
  ``--help`` still works; YAMLs from users go through the same door;
* a file with pickled objects is refused without torch's own warning before the line;
* Ctrl-C is one line saying what was kept.
(Resuming a finished run: ``tests/test_train_val_detect.py``; the tile-count refusal's suggestion:
``tests/test_tiling.py``.)
"""

from __future__ import annotations

import importlib.util
import pickle
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

import detector  # noqa: F401
from detector import checks, weights
from detector.files import read_yaml

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


def tool(name: str, monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    spec = importlib.util.spec_from_file_location(f"{name}_tool", TOOLS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_tool(name: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """A tool as the command line runs it (``_bootstrap.cli``): exit status and stderr."""
    mod = tool(name, monkeypatch)
    import _bootstrap

    rc = _bootstrap.cli(lambda: mod.main(argv))
    return rc, capsys.readouterr().err


def test_one_image_size_check():
    assert checks.image_size(None, 416) == 416 and checks.image_size(320, 416) == 320
    for bad in (0, 100, -32, 8224, 320.0, True):
        with pytest.raises(ValueError, match="imgsz must be a multiple of 32 between 32 and 8192"):
            checks.image_size(bad, 416)


@pytest.mark.parametrize("name, argv", [
    ("train", ["--data", "missing.yaml", "--imgsz", "100"]),
    ("export", ["--format", "onnx", "--out", "x.onnx", "--imgsz", "0"]),
    ("benchmark", ["--imgsz", "0", "--no-onnx", "--repeats", "1", "--warmup", "0"]),
    ("energy", ["--source", "images", "--imgsz", "0"]),
    ("detect", ["--source", "images", "--imgsz", "0"]),
])
def test_every_tool_refuses_a_bad_image_size_in_one_line(name, argv, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((64, 64, 3), np.uint8))
    t0 = time.perf_counter()
    rc, err = run_tool(name, argv, monkeypatch, capsys)
    assert rc == 2 and err.count("\n") == 1 and "imgsz must be a multiple of 32" in err, err
    assert list(tmp_path.iterdir()) == [tmp_path / "images"]  # nothing written
    assert time.perf_counter() - t0 < 60


def test_empty_weights_are_refused(monkeypatch, capsys, tmp_path):
    with pytest.raises(ValueError, match="--weights is empty"):
        weights.resolve_weights("")
    with pytest.raises(ValueError, match="--weights is empty"):
        weights.resolve_weights("  ")
    rc, err = run_tool("detect", ["--source", str(tmp_path), "--weights", ""], monkeypatch, capsys)
    assert rc == 2 and "--weights is empty" in err and err.count("\n") == 1


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(9)) + \
    "default: ssdd\nmodels: {ssdd: {file: x.pt, summary: *j}}\n"


@pytest.mark.parametrize("text, why", [
    ("default: ssdd\nmodels: [unclosed\n", "cannot parse"),
    ("default: ssdd\nmodels: 3\n", "unreadable"),
    (ALIAS_BOMB, "aliases"),
    ("x" * (2 << 20), "bytes"),
])
def test_a_broken_registry_is_one_line_and_help_still_works(text, why, tmp_path, monkeypatch, capsys):
    (tmp_path / "models.yaml").write_text(text)
    monkeypatch.setattr(weights, "shipped_dir", lambda: tmp_path)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=why):
        weights.shipped_models()
    for name in ("detect", "val", "heatmap", "energy", "train"):
        mod = tool(name, monkeypatch)
        with pytest.raises(SystemExit) as e:
            mod.main(["--help"])
        assert e.value.code == 0 and "usage:" in capsys.readouterr().out
    rc, err = run_tool("detect", ["--weights", "list"], monkeypatch, capsys)
    assert rc == 2 and err.count("\n") == 1 and str(tmp_path / "models.yaml") in err and why in err
    rc, err = run_tool("detect", ["--source", str(tmp_path)], monkeypatch, capsys)  # the default model
    assert rc == 2 and err.count("\n") == 1 and "models.yaml" in err
    assert time.perf_counter() - t0 < 60  # the alias bomb is never expanded


def test_user_yamls_go_through_the_same_door(tmp_path):
    bomb = tmp_path / "data.yaml"
    bomb.write_text(ALIAS_BOMB)
    with pytest.raises(ValueError, match="aliases"):
        read_yaml(bomb, "dataset YAML")
    from detector.io.dataset_yaml import check_dataset_yaml
    from detector.models.config import load_config

    with pytest.raises(ValueError, match="dataset YAML .* uses YAML aliases"):
        check_dataset_yaml(bomb)
    cfg = tmp_path / "model.yaml"
    cfg.write_text(ALIAS_BOMB)
    with pytest.raises(ValueError, match="model config .* uses YAML aliases"):
        load_config(cfg)


def test_a_pickle_is_refused_without_torchs_warning(tmp_path, capfd):
    class Evil:
        def __reduce__(self):
            return (print, ("RAN",))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": Evil()}, f, protocol=4)  # torch warns about protocol 4 before it refuses
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        with pytest.raises(weights.UnsafeCheckpointError, match="pickled Python objects"):
            weights.read_plain_file(path)
    out = capfd.readouterr()
    assert "RAN" not in out.out and "Warning" not in out.err


def test_ctrl_c_is_one_line_saying_what_was_kept(tmp_path, monkeypatch, capsys):
    """Ctrl-C on the second image: the first image's outputs are whole, and the line says so."""
    from _boxes import FixedBox

    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(src / name), np.full((64, 64, 3), 90, np.uint8))
    box = FixedBox((8.0, 8.0, 40.0, 40.0))
    calls = []

    def forward(x, **_):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return FixedBox.forward(box, x)

    monkeypatch.setattr(box, "forward", forward)
    from detector.infer import detect

    monkeypatch.syspath_prepend(str(TOOLS))
    import _bootstrap

    out = tmp_path / "out"
    rc = _bootstrap.cli(lambda: detect(src, out=out, model=box, imgsz=64, outputs=("json",), verbose=False))
    err = capsys.readouterr().err
    assert rc == 130 and err == f"interrupted (Ctrl-C): 1 image(s) done; their outputs are written whole in {out}\n"
    import json

    assert [r["file_name"] for r in json.loads((out / "predictions.json").read_text())] == ["a.png"]

"""tools/convert.py and the datasets/ folder: the shell calls the library, the YAMLs match its output."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from detector.data import NWPU_CLASSES, convert_coco, convert_nwpu, convert_ssdd
from detector.io.images import IMAGE_SUFFIXES
from _tools import tiny_coco, tiny_nwpu, tiny_voc

REPO = Path(__file__).resolve().parents[1]


def _load_tool():
    spec = importlib.util.spec_from_file_location("convert_tool", REPO / "tools" / "convert.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _without_path(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    data.pop("path")
    return data


def test_dataset_yamls_match_converter_output(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):  # the tiny COCO set has category id 0
        convert_coco(tiny_coco(tmp_path / "coco"), tmp_path / "o_coco")
    convert_nwpu(tiny_nwpu(tmp_path / "nwpu"), tmp_path / "o_nwpu")
    convert_ssdd(tiny_voc(tmp_path / "ssdd"), tmp_path / "o_ssdd")
    for shipped, out in (("nwpu-vhr10.yaml", "o_nwpu"), ("ssdd.yaml", "o_ssdd"), ("coco-template.yaml", "o_coco")):
        assert _without_path(REPO / "datasets" / shipped) == _without_path(tmp_path / out / "data.yaml"), shipped
        assert yaml.safe_load((REPO / "datasets" / shipped).read_text())["path"].startswith("/")
    assert list(yaml.safe_load((REPO / "datasets" / "nwpu-vhr10.yaml").read_text())["names"].values()) == list(NWPU_CLASSES)


def test_datasets_folder_is_not_a_package() -> None:
    assert not (REPO / "datasets" / "__init__.py").exists()
    assert (REPO / "datasets" / "README.md").is_file()
    # `import datasets` must reach the PyPI package when it is installed, never this folder.
    spec = importlib.util.find_spec("datasets")
    if spec is not None and spec.origin not in (None, "namespace"):
        assert Path(spec.origin).resolve().parent != (REPO / "datasets").resolve()


def test_image_suffixes_match_ultralytics() -> None:
    from ultralytics.data.utils import IMG_FORMATS

    assert IMAGE_SUFFIXES == frozenset(IMG_FORMATS)


def test_cli_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tool = _load_tool()
    root = tiny_nwpu(tmp_path / "nwpu")
    assert tool.main(["nwpu", "--root", str(root), "--out", str(tmp_path / "o"), "--negatives",
                      "--split-seed", "5", "--ratios", "0.8", "0.1", "0.1"]) == 0
    printed = capsys.readouterr().out
    assert "train      9 images       8 boxes (1 without boxes)" in printed and "report:" in printed
    rep = json.loads((tmp_path / "o" / "report.json").read_text())
    assert rep["options"] == {"ratios": [0.8, 0.1, 0.1], "seed": 5, "include_negatives": True, "link": "copy"}
    assert rep["total"]["images"] == 11 and rep["total"]["images_without_boxes"] == 1
    # Existing output: a clear error and exit status 2, no traceback.
    assert tool.main(["nwpu", "--root", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    # voc with the ssdd rule and a val fraction; coco with explicit split files.
    voc = tiny_voc(tmp_path / "voc")
    assert tool.main(["voc", "--root", str(voc), "--out", str(tmp_path / "v"), "--split", "ssdd",
                      "--val-fraction", "0.25"]) == 0
    rep = json.loads((tmp_path / "v" / "report.json").read_text())
    assert {s: v["images"] for s, v in rep["splits"].items()} == {"train": 6, "val": 2, "test": 2}
    coco = tiny_coco(tmp_path / "c")
    with pytest.warns(UserWarning):
        assert tool.main(["coco", "--root", str(coco), "--out", str(tmp_path / "co"),
                          "--ann", "train=annotations/valid.json", "--images", "train=val2017"]) == 0
    rep = json.loads((tmp_path / "co" / "report.json").read_text())
    assert list(rep["splits"]) == ["train"] and rep["splits"]["train"]["boxes"] == 1


def test_cli_subprocess(tmp_path: Path) -> None:
    root = tiny_voc(tmp_path / "ssdd")
    run = subprocess.run([sys.executable, str(REPO / "tools" / "convert.py"), "ssdd", "--root", str(root),
                          "--out", str(tmp_path / "out"), "--link", "hardlink"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "test       2 images       2 boxes" in run.stdout
    assert (tmp_path / "out" / "images" / "test" / "000001.jpg").stat().st_nlink == 2  # hard-linked
    assert (tmp_path / "out" / "labels" / "train" / "000002.txt").read_text() == "0 0.187500 0.354167 0.250000 0.541667\n"

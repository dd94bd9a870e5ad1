"""The package's layering, checked from the source: every import points down (or sideways within a
layer), no module grows past ~450 lines, and library code never sees argparse.

Layers, bottom to top (docs/design.md, "Layout"):

    settings, checks,  process settings, argument checks, device names, safe file writes
    devices, files
    nn                 spiking layers (neurons and their kernels, synapses, attention, blocks)
    models             the assembled detector and its configs
    weights            checkpoints, the shipped models by name
    io                 images, dataset YAMLs, letterbox, frames, tiles, scenes, writers
    data               dataset converters and dataset YAMLs
    infer              runtimes (table), prediction, sliced inference, the detection loop
    engine             training, distillation, validation, Ultralytics' predictor
    analysis, export,  energy, heatmaps, benchmarks; ONNX; archive surveys on Dask
    survey
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "detector"
LAYERS = {"settings": 0, "checks": 0, "devices": 0, "files": 0, "precision": 0, "nn": 1, "models": 2, "weights": 3, "io": 4, "data": 5, "infer": 6,
          "engine": 7, "analysis": 8, "export": 8, "demo": 8, "survey": 8, "__init__": 9}
MAX_LINES = 450


def unit(module: str) -> str:
    """'detector.nn.kernels' -> 'nn'; 'detector' -> '__init__'."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports(path: Path) -> list[tuple[str, int]]:
    """(imported detector module, line) for every import of the package's own modules in ``path``."""
    mod = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            else:
                names = [node.module] if node.module and node.module.startswith("detector") else []
            out += [(n, node.lineno) for n in names]
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("detector")]
    return out


def test_every_import_points_down():
    upward = []
    for path in sorted(PKG.rglob("*.py")):
        src = unit(".".join(path.relative_to(PKG.parent).with_suffix("").parts))
        for target, line in imports(path):
            dst = unit(target)
            if dst != src and LAYERS[dst] > LAYERS[src]:
                upward.append(f"{path.relative_to(PKG.parent)}:{line} ({src}) imports {target} ({dst})")
    assert upward == []


def test_no_module_over_the_size_limit():
    big = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert big == {}


def test_library_never_sees_argparse():
    users = [str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py") if "argparse" in p.read_text(encoding="utf-8")]
    assert users == []


def test_every_layer_is_known():
    units = {unit(".".join(p.relative_to(PKG.parent).with_suffix("").parts)) for p in PKG.rglob("*.py")}
    assert units <= set(LAYERS), units - set(LAYERS)


def test_no_test_module_imports_another():
    """Shared test code lives in conftest.py (fixtures) and helper modules (``tests/_*.py``); a test
    module imported by another would run its tests' module-level setup twice and tie the two together."""
    tests = Path(__file__).resolve().parent
    found = []
    for path in sorted(tests.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            found += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert found == []



def test_runtime_and_export_modules_never_see_their_tables():
    """The tables import their rows' modules (when a row is chosen); a row's module never imports its
    table back (Ultralytics' backend map: the map knows the classes, the classes do not know the map)."""
    from detector.export import EXPORTS
    from detector.infer.runtime import RUNTIMES

    back = []
    for table, rows in (("detector.infer.runtime", RUNTIMES.values()), ("detector.export", EXPORTS.values())):
        package = table if table == "detector.export" else table.rsplit(".", 1)[0]
        for row in rows:
            path = PKG.parent / (package.replace(".", "/") + "/" + row.impl.split(":")[0] + ".py")
            back += [f"{path.name}:{line} imports {t}" for t, line in imports(path)
                     if t == table or (table == "detector.export" and t == "detector.export.__init__")]
    assert back == []


def test_georeferencing_kinds_never_see_their_table():
    """``detector.io.georef.KINDS`` imports one class per kind; a kind's module never imports the table
    (the package's ``__init__``), so a new kind is its module plus one row."""
    import sys

    from detector.io.georef import KINDS

    table = ("detector.io.georef", "detector.io.georef.__init__", "detector.io.georef.KINDS",
             "detector.io.georef.georeference")
    back = []
    for cls in KINDS.values():
        path = Path(sys.modules[cls.__module__].__file__)
        back += [f"{path.name}:{line} imports {t}" for t, line in imports(path) if t in table]
    assert back == []


MAX_PARAMS = 10


def test_no_function_takes_more_than_ten_parameters():
    """Long signatures become an options record (detector/infer/options.py and its kin): every function
    and method of the package takes at most ``MAX_PARAMS`` parameters (``self`` / ``cls`` not counted;
    ``*args`` and ``**kwargs`` count one each)."""
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args]
                n = len(names) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
                n -= bool(names) and names[0] in ("self", "cls")
                if n > MAX_PARAMS:
                    long.append(f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name}() takes {n}")
    assert long == []


SHARED_FLAGS = ("--weights", "--imgsz", "--device", "--runtime", "--conf", "--iou", "--tile", "--overlap", "--batch",
                "--epochs", "--max-det")


def test_tools_take_shared_flags_from_the_options_records():
    """The flags several tools share are generated from the options records' fields
    (``tools/_bootstrap.add_options``), never declared by hand in a tool: one help text, one default."""
    tools = PKG.parent / "tools"
    by_hand = []
    for path in sorted(tools.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument"
                    and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value in SHARED_FLAGS):
                by_hand.append(f"{path.name}:{node.lineno} {node.args[0].value}")
    assert by_hand == []

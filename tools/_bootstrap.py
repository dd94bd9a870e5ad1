"""Make ``detector`` importable when a tool runs from a checkout without installation."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def list_weights() -> int:
    """``--weights list``: the shipped models with their one-line summaries."""
    from detector.weights import shipped_listing

    print(shipped_listing())
    return 0


def error_line(e: BaseException) -> str:
    """The one-line message of an expected failure; a full disk names the disk (``detector.files``)."""
    from detector.files import DISK_FULL, DiskFullError, disk_full_error

    if isinstance(e, OSError) and not isinstance(e, DiskFullError) and e.errno in DISK_FULL:
        e = disk_full_error(e, e.filename or os.getcwd())
    return " ".join(str(e).split())


def cli(main) -> int:
    """Run a tool's ``main``; expected failures (missing files, bad weights, bad input, a non-finite
    loss, a full disk or another file-system error) print one line naming the problem instead of a
    traceback, and Ctrl-C one line saying what was kept (the library's ``KeyboardInterrupt`` message).
    Set SNNVIT_TRACEBACK=1 to see the traceback."""
    expected: tuple[type[BaseException], ...] = (OSError, ValueError, FloatingPointError)
    try:
        from detector.weights import UnsafeCheckpointError

        expected += (UnsafeCheckpointError,)
    except ImportError:  # pragma: no cover - the package is broken; let the traceback show it
        pass
    try:
        return main()
    except expected as e:
        if os.environ.get("SNNVIT_TRACEBACK"):
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # the library says what it kept (the outputs are safe by then)
        if os.environ.get("SNNVIT_TRACEBACK"):
            raise
        kept = " ".join(str(e).split())
        print(f"interrupted (Ctrl-C){': ' + kept if kept else ''}", file=sys.stderr)
        return 130


def add_options(parser, record: type, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None,
                group=None) -> None:
    """A flag per field of the options record ``record`` (``detector.infer.options``: the field's
    metadata says how), except ``skip`` and fields marked ``cli=False`` (with ``only``: those fields
    alone, e.g. into a mutually exclusive ``group``). Flags the user leaves out are
    left out of the namespace (``argparse.SUPPRESS``), so the record's own defaults apply: written once."""
    import argparse
    from dataclasses import MISSING, fields

    for f in fields(record):
        meta = dict(f.metadata)
        if f.name in skip or (only is not None and f.name not in only) or not meta.pop("cli", True):
            continue
        help_ = meta.pop("help", "")
        if "action" not in meta and not any(f.default is v for v in (MISSING, None, False)) and f.default != ():
            shown = " ".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default
            help_ = f"{help_} (default {shown})"
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        (group or parser).add_argument(flag, dest=f.name, default=argparse.SUPPRESS, help=help_, **meta)


def options(record: type, args, **extra):
    """The options record ``record`` built by keyword from the flags given in ``args`` (an argparse
    namespace) and ``extra``; it checks its values once, here."""
    from dataclasses import fields

    given = {f.name: getattr(args, f.name) for f in fields(record) if hasattr(args, f.name)}
    for k in ("blocks", "timesteps", "sizes", "batches", "variants", "resources"):  # lists: tuples in a record
        if isinstance(given.get(k), list):
            given[k] = tuple(given[k])
    return record(**{**given, **extra})  # what the tool mapped by hand wins over a same-named flag

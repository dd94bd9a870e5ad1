"""Make ``detector`` importable when a tool runs from a checkout without installation."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


WEIGHTS_HELP = ("a shipped model's name (e.g. ssdd; 'list' shows them) or a checkpoint path "
                "(default: the default shipped model)")


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

"""Make ``detector`` importable when a tool runs from a checkout without installation."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cli(main) -> int:
    """Run a tool's ``main``; expected failures (missing files, bad weights, bad input, a non-finite
    loss) print one line naming the problem instead of a traceback. Set SNNVIT_TRACEBACK=1 to see it."""
    import os

    expected: tuple[type[BaseException], ...] = (FileNotFoundError, ValueError, FloatingPointError)
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
        print(f"error: {e}", file=sys.stderr)
        return 2

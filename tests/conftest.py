"""Shared test fixtures.

Real datasets live in ``../shared/data`` beside the checkout (never inside the repo). Locally a
missing dataset skips the tests that need it; in CI (``CI=true``) it fails them loudly, so a broken
data mount can never turn into a silently green run.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SNNVIT_SHARED_DATA", REPO.parent / "shared" / "data"))


def _require(path: Path) -> Path:
    if path.exists():
        return path
    msg = f"required test data not found: {path} (set SNNVIT_SHARED_DATA or place ../shared/data)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def ssdd_root(shared_data: Path) -> Path:
    return _require(shared_data / "ssdd")


@pytest.fixture(scope="session")
def nepu_root(shared_data: Path) -> Path:
    return _require(shared_data / "nepu-owod-coco")


@pytest.fixture(scope="session")
def nwpu_annotations_root(shared_data: Path) -> Path:
    return _require(shared_data / "nwpu-vhr10-annotations")


# -- the fast tier ----------------------------------------------------------------------------------
# ``python -m pytest tests`` runs the fast tier; tests marked ``slow`` (training runs, DDP, tools run
# as commands on real data: each module's slow tests were chosen by measured duration) run only with
# ``--runslow``, which CI passes (.ci/run), so CI runs every test.


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run the tests marked slow (the full suite, as CI runs it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (the full suite)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


# -- shared fixtures ----------------------------------------------------------------------------------
@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way to open a connection refused (OSError); returns the list of attempts, which a test
    expects to stay empty."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise OSError("network blocked by test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", lambda self, *a, **k: refuse(*a))
    return attempts


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of the one-class tiny model (``_tiny.tiny_ship_model``), trained at ``_tools.IMGSZ``
    by its record."""
    from detector import weights as W
    from _tiny import tiny_ship_model
    from _tools import IMGSZ

    return W.save_checkpoint(tmp_path_factory.mktemp("w") / "tiny.pt", tiny_ship_model(), train_args={"imgsz": IMGSZ})


@pytest.fixture(scope="session")
def tiny_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``_tiny.TINY_T1`` as a model YAML."""
    import yaml

    from _tiny import TINY_T1

    p = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY_T1, sort_keys=False))
    return p


# the end-to-end fixtures (a real SSDD subset, one short training run), shared by every module that names them
from _ssdd_subset import ssdd_subset, trained_run  # noqa: E402,F401

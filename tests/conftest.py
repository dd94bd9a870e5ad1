"""Shared test fixtures.

Real datasets live in ``../shared/data`` beside the checkout (never inside the repo). Locally a
missing dataset skips the tests that need it; in CI (``CI=true``) it fails them loudly, so a broken
data mount can never turn into a silently green run.
"""

from __future__ import annotations

import os
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

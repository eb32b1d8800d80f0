"""Test-wide settings: offline, deterministic, Qt offscreen, fixture root from the environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("STYLESTUDIO_RUNS_DIR", os.path.join(__import__("tempfile").gettempdir(), "stylestudio-test-runs"))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STYLESTUDIO_SHARED", REPO.parent / "shared"))
FIXTURES = Path(os.environ.get("STYLESTUDIO_FIXTURES", SHARED / "fixtures"))
DATA = SHARED / "data"


def fixture_dir(name: str) -> Path:
    """A fixture sub-directory; the test is skipped (not failed) when the fixture root lacks it."""
    d = FIXTURES / name
    if not d.is_dir():
        pytest.skip(f"fixture {name} not found under {FIXTURES} (set STYLESTUDIO_FIXTURES)")
    return d


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convolutions run fastest on one intra-op thread (two contend on a busy 2-core machine)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

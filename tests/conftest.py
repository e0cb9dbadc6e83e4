"""Shared test fixtures.

Real-audio fixtures live outside the repository (``../shared/fixtures`` beside the clone,
or the folder named by ``MIR_FIXTURES``); tests that need them skip with a reason when
they are absent, as in a user's clone.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _fixtures_root() -> Path | None:
    env = os.environ.get("MIR_FIXTURES")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "fixtures")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Root of the real-audio fixtures; skips the test when absent."""
    root = _fixtures_root()
    if root is None:
        pytest.skip("real-audio fixtures not found (set MIR_FIXTURES or add ../shared/fixtures)")
    return root

"""Shared fixtures: the real recordings beside the repository."""

from __future__ import annotations

import pytest

from edgebp.paths import shared_data_dir


@pytest.fixture(scope="session")
def shared_data():
    """Path of ``../shared/data`` (or ``$EDGEBP_DATA``); skips with a reason when absent."""
    path = shared_data_dir()
    if not (path / "challenge2015" / "RECORDS").exists():
        pytest.skip(f"real recordings not found at {path} (set EDGEBP_DATA)")
    return path

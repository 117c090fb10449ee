"""Shared test fixtures.  ``SHARED`` is the read-only ``shared/`` folder beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path of ``../shared`` (samples, schema, conformance data).  Fails loudly when absent."""
    assert SHARED.is_dir(), f"{SHARED} is missing: tests need the shared/ folder beside the repo"
    return SHARED


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return ROOT

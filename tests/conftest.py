"""Shared test fixtures.  ``DATA`` is ``tests/data/``: real sample reports, feeds, enrichment files and
IntelMQ conformance output, each with its licence (tests/data/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

#: Fixture modules (plugins): the metadata databases (SQLite and PostgreSQL), the web tests' cheap
#: password hashing, the delivery tests' GnuPG keys.
pytest_plugins = ["tests.db_fixtures", "tests.web_fixtures", "tests.deliver_support", "tests.feed_support"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Path of ``tests/data`` (samples, conformance data)."""
    assert DATA.is_dir(), f"{DATA} is missing"
    return DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return ROOT

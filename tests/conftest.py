"""Shared test fixtures.  ``DATA`` is ``tests/data/``: real sample reports, feeds, enrichment files and
IntelMQ conformance output, each with its licence (tests/data/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every machine and every run ("derandomize"), so a CI
# verdict never depends on luck; HYPOTHESIS_PROFILE=explore draws fresh random examples instead
# (run it locally to look for new failures).
settings.register_profile("herald", derandomize=True, database=None, deadline=None,
                          print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "herald"))

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"

#: Fixture modules (plugins): the metadata databases (SQLite and PostgreSQL), the web tests' cheap
#: password hashing, the delivery tests' GnuPG keys, the Spark tests' ``spark_ready``.
pytest_plugins = ["tests.db_fixtures", "tests.web_fixtures", "tests.deliver_support", "tests.feed_support",
                  "tests.spark_support", "tests.s3_support"]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Path of ``tests/data`` (samples, conformance data)."""
    assert DATA.is_dir(), f"{DATA} is missing"
    return DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root folder."""
    return ROOT

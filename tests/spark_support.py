"""Spark test support: ``spark_ready`` (a fixture) and ``SPARK``, the ``[spark]`` section of the
tests (``local[2]``, small memory).

A pytest plugin registered in ``tests/conftest.py``.  Spark needs ``pyspark``, ``pandas`` and
Java 17+: without them a test asking for ``spark_ready`` skips locally, with the reason, but FAILS
under CI (``CI=true``): ``scripts/test.sh`` installs them.
"""

from __future__ import annotations

import os
import shutil

import pytest

SPARK = {"master": "local[2]", "driver_memory": "1g", "shuffle_partitions": 4}


def spark_missing() -> str | None:
    """Why Spark cannot run here, or ``None``."""
    try:
        import pandas  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError as exc:
        return f"pyspark/pandas not installed ({exc}); pip install -e '.[spark]'"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "no Java (apt-get install openjdk-17-jre-headless)"
    return None


@pytest.fixture(scope="module")
def spark_ready():
    """Skip (locally) or fail (CI) when Spark cannot run."""
    why = spark_missing()
    if why:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Spark engine tests cannot run under CI: {why}")
        pytest.skip(why)

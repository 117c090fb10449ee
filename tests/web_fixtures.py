"""Fixtures shared by the web tests: a pytest plugin registered in ``tests/conftest.py``.

A module that hashes passwords asks for cheap costs with
``pytestmark = pytest.mark.usefixtures("cheap_argon2")``."""

from __future__ import annotations

import pytest

from herald.accounts import users


@pytest.fixture(scope="module")
def cheap_argon2():
    """Argon2id with small costs: the tests hash dozens of passwords on a busy 2-core machine.
    The production parameters are argon2-cffi's defaults (RFC 9106 low-memory profile)."""
    from argon2 import PasswordHasher

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))
        mp.setattr(users, "_dummy", [])
        yield

"""Attack finding, fixed: a login held the SQLite write lock for the length of a password hash.

On SQLite every session begins IMMEDIATE (takes the database write lock), and the login check kept
its session open across the Argon2id verification: every attempt - unauthenticated, unknown
e-mails included - blocked every other request (API, portal, pipeline) for a whole hash, and
waits beyond busy_timeout ended as 500s.  The check now verifies outside any session.
"""

from __future__ import annotations

import sqlite3

import pytest
from argon2.exceptions import VerifyMismatchError

from herald.accounts import users
from herald.web.testing import build_deployment
from tests.web_fixtures import cheap_argon2  # noqa: F401 - autouse fixture


class _ProbingHasher:
    """A password hasher that, while "verifying", checks whether another connection could take
    the SQLite write lock (timeout 0: no waiting)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.locked: list[bool] = []

    def verify(self, hashed: str, password: str) -> bool:
        """Probe the write lock, then refuse the password."""
        con = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            con.execute("BEGIN IMMEDIATE")
            con.execute("ROLLBACK")
            self.locked.append(False)
        except sqlite3.OperationalError:
            self.locked.append(True)
        finally:
            con.close()
        raise VerifyMismatchError()

    def hash(self, password: str) -> str:
        """Not used here."""
        raise AssertionError("unexpected hash")


def test_password_hash_runs_without_the_sqlite_write_lock(tmp_path, monkeypatch):
    path = tmp_path / "herald.db"
    dep = build_deployment(tmp_path, f"sqlite:///{path}")
    probe = _ProbingHasher(str(path))
    monkeypatch.setattr(users, "_hasher", probe)
    monkeypatch.setattr(users, "_dummy", ["$argon2id$dummy"])
    with pytest.raises(users.LoginError):
        users.authenticate(dep.db, dep.server_key, "nobody@example.org", "x" * 12)
    dep.db.dispose()
    assert probe.locked == [False]


def test_login_outcomes_after_the_split(tmp_path):
    """Right password logs in; wrong ones count to the lockout, which refuses even the right one."""
    dep = build_deployment(tmp_path, f"sqlite:///{tmp_path / 'herald.db'}")
    users.add_user(dep.db, "noc@cable-isp.example", "correct horse battery", "recipient", "t",
                   "Example Cable ISP")
    assert users.authenticate(dep.db, dep.server_key, "noc@cable-isp.example",
                              "correct horse battery").email == "noc@cable-isp.example"
    for _ in range(users.MAX_FAILURES):
        with pytest.raises(users.LoginError) as exc:
            users.authenticate(dep.db, dep.server_key, "noc@cable-isp.example", "wrong " * 3)
        assert exc.value.reason == "invalid"
    with pytest.raises(users.LoginError) as exc:
        users.authenticate(dep.db, dep.server_key, "noc@cable-isp.example",
                           "correct horse battery")
    assert exc.value.reason == "locked"
    dep.db.dispose()

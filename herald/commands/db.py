"""``herald db upgrade|status``: create or migrate the metadata database.

Also the helpers the other database commands share: their parsers with the ``--config`` and
``--actor`` options (:func:`add_action`), opening the configured database, and one audited change
with its refusal.
"""

from __future__ import annotations

import getpass
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sqlalchemy.exc import OperationalError

from herald.config import Settings, load_settings
from herald.errors import StoreError
from herald.store.db import HEAD_REVISION, Database, connect_db, open_db


def add_action(sub, name: str, func: Callable, *, actor: bool = False, help: str):
    """Add the (sub-)command ``name`` that runs ``func(args)``, with ``--config FILE`` (and
    ``--actor NAME`` for commands that change things); returns its parser, for the command's own
    arguments."""
    p = sub.add_parser(name, help=help)
    p.add_argument("--config", default="herald.toml",
                   help="configuration file (default: herald.toml)")
    if actor:
        p.add_argument("--actor", default=None,
                       help="who is acting, for the audit log (default: cli:<login name>)")
    p.set_defaults(func=func)
    return p


def actor_of(args) -> str:
    """The audit-log actor of a command: ``--actor``, else ``cli:<login name>``."""
    if getattr(args, "actor", None):
        return args.actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"cli:{user}"


def settings_of(args) -> Settings:
    """Settings from ``--config``.

    Raises:
        ConfigError: missing or invalid file.
    """
    return load_settings(args.config)


def open_from_args(args) -> tuple[Settings, Database]:
    """Settings and the open database (SQLite migrated on first use; PostgreSQL must be at the
    newest revision, else StoreError says to run ``herald db upgrade``)."""
    settings = settings_of(args)
    return settings, open_db(settings.database_url)


@contextmanager
def database(args) -> Iterator[tuple[Settings, Database]]:
    """:func:`open_from_args` for a ``with`` block; the database is disposed of at its end."""
    settings, db = open_from_args(args)
    try:
        yield settings, db
    finally:
        db.dispose()


def audited_change(args, change: Callable[[Database, str], Any], refused: type[Exception],
                   command: str, show: Callable[[Any], str]) -> int:
    """Make one audited change, ``change(db, actor)``, and print ``show(result)``.

    Returns:
        0, or 1 when the change raised ``refused`` (printed as ``herald: <command>: <error>``).
    """
    with database(args) as (_, db):
        try:
            done = change(db, actor_of(args))
        except refused as exc:
            print(f"herald: {command}: {exc}")
            return 1
    print(show(done))
    return 0


def register(sub) -> None:
    """Add ``herald db upgrade`` and ``herald db status``."""
    p = sub.add_parser("db", help="metadata database: migrate, show schema revision")
    dsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = add_action(dsub, "upgrade", run_upgrade,
                    help="create the database schema or migrate it to the newest revision")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    add_action(dsub, "status", run_status, help="show the database URL and its schema revision")


def _safe_url(db: Database) -> str:
    return db.engine.url.render_as_string(hide_password=True)


def run_upgrade(args) -> int:
    """Migrate the configured database; print the revision reached."""
    settings = settings_of(args)
    db = connect_db(settings.database_url)
    try:
        before = db.current_revision()
        db.upgrade(args.revision)
        after = db.current_revision()
    except OperationalError as exc:
        raise StoreError(f"cannot reach {_safe_url(db)}: {exc.orig}") from None
    finally:
        db.dispose()
    if before == after:
        print(f"{_safe_url(db)}: already at revision {after}")
    else:
        print(f"{_safe_url(db)}: migrated from {before or 'empty'} to {after}")
    return 0


def run_status(args) -> int:
    """Print URL, current and expected revision.  Exit 1 when the schema is not current."""
    settings = settings_of(args)
    db = connect_db(settings.database_url)
    try:
        current = db.current_revision()
    except OperationalError as exc:
        raise StoreError(f"cannot reach {_safe_url(db)}: {exc.orig}") from None
    finally:
        db.dispose()
    print(f"database: {_safe_url(db)}")
    print(f"revision: {current or 'empty'} (this Herald needs {HEAD_REVISION})")
    if current != HEAD_REVISION:
        print("run 'herald db upgrade' to migrate")
        return 1
    return 0

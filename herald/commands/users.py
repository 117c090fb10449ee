"""``herald users add EMAIL --role admin|recipient [--recipient NAME]`` and ``herald users list``.

The password is read from ``HERALD_USER_PASSWORD`` when set (scripts, CI), else prompted for twice
without echo.  It is stored as an Argon2id hash only.
"""

from __future__ import annotations

import getpass
import os
import sys

from herald.errors import ConfigError


def register(sub) -> None:
    """Add ``herald users``."""
    p = sub.add_parser("users", help="portal users (admins and recipient users)")
    s = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    a = s.add_parser("add", help="add a user")
    a.add_argument("email")
    a.add_argument("--role", choices=("admin", "recipient"), required=True)
    a.add_argument("--recipient", help="the recipient (name, slug or id) a recipient user acts for")
    a.add_argument("--config", default="herald.toml", help="configuration file")
    a.set_defaults(func=add)
    ls = s.add_parser("list", help="list users")
    ls.add_argument("--config", default="herald.toml", help="configuration file")
    ls.set_defaults(func=list_)


def actor() -> str:
    """``cli:<login name>`` for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


def _db(args):
    from herald.config import load_settings
    from herald.store.db import open_db

    return open_db(load_settings(args.config).database_url)


def _password() -> str:
    pw = os.environ.get("HERALD_USER_PASSWORD")
    if pw:
        return pw
    if not sys.stdin.isatty():
        raise ConfigError("set HERALD_USER_PASSWORD or run in a terminal to be asked for it")
    pw = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != pw:
        raise ConfigError("the passwords differ")
    return pw


def add(args) -> int:
    """Create the user; prints its id."""
    from herald.accounts.users import add_user

    if args.role == "admin" and args.recipient:
        raise ConfigError("an admin does not act for a recipient: drop --recipient")
    user = add_user(_db(args), args.email, _password(), args.role, actor(), args.recipient)
    print(f"user {user.id} {user.email} ({user.role}"
          f"{', ' + user.recipient if user.recipient else ''}) added")
    return 0


def list_(args) -> int:
    """Print every user."""
    from herald.accounts.users import list_users

    for u in list_users(_db(args)):
        print(f"{u.id:>5}  {u.email:<40} {u.role:<10} {u.recipient or '':<30} "
              f"{'totp ' if u.totp_enabled else ''}{'disabled' if u.disabled else ''}")
    return 0

"""``herald audit [--actor A] [--action X] [--since WHEN] [--object TYPE[:ID]]``: read the log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from herald.commands.db import add_action, open_from_args
from herald.errors import ConfigError
from herald.store import audit


def register(sub) -> None:
    """Add ``herald audit``."""
    p = add_action(sub, "audit", run, help="show the audit log (oldest first)")
    p.add_argument("--actor", help="exact actor, e.g. cli:alice or config")
    p.add_argument("--action", help="exact action, or a prefix ending in '.' or '*' (filter.)")
    p.add_argument("--since", help="YYYY-MM-DD, an ISO time (UTC unless it has an offset), "
                                   "or a duration like 7d / 12h")
    p.add_argument("--object", help="object type, optionally with :id (recipient:3)")
    p.add_argument("--limit", type=int, default=None, help="only the newest N entries")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since`` value to an aware UTC datetime.

    Raises:
        ConfigError: not a date, time or duration.
    """
    now = now or datetime.now(timezone.utc)
    t = text.strip()
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if len(t) > 1 and t[-1] in units and t[:-1].isdigit():
        return now - timedelta(**{units[t[-1]]: int(t[:-1])})
    try:
        value = datetime.fromisoformat(t)
    except ValueError:
        raise ConfigError(f"--since {text!r}: use YYYY-MM-DD, an ISO time or a duration (7d, 12h)") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def run(args) -> int:
    """Print matching entries."""
    _, db = open_from_args(args)
    object_type = object_id = None
    if args.object:
        object_type, _, oid = args.object.partition(":")
        object_id = oid or None
    entries = audit.query(db, actor=args.actor, action=args.action,
                          since=parse_since(args.since) if args.since else None,
                          object_type=object_type, object_id=object_id, limit=args.limit)
    for e in entries:
        if args.json:
            print(json.dumps({"id": e.id, "at": e.at.isoformat(), "actor": e.actor,
                              "action": e.action, "object_type": e.object_type,
                              "object_id": e.object_id, "reason": e.reason,
                              "details": e.details}, sort_keys=True, ensure_ascii=False))
            continue
        obj = f"{e.object_type}:{e.object_id}" if e.object_id is not None else e.object_type
        reason = f"\t{e.reason}" if e.reason else ""
        details = f"\t{json.dumps(e.details, sort_keys=True, ensure_ascii=False)}" if e.details else ""
        print(f"{e.id}\t{e.at.strftime('%Y-%m-%dT%H:%M:%SZ')}\t{e.actor}\t{e.action}\t{obj}"
              f"{reason}{details}")
    return 0

"""Bring the metadata database in line with the configuration file, and build the routing view.

The configuration's ``[[recipients]]`` and ``[[operations]]`` tables are authoritative for what
they list (see :func:`herald.constituency.bulk_import.import_recipients`); everything else
(portal requests, admin decisions, recipients added with ``herald recipients add``) lives only in
the database.  The daily run calls :func:`sync_config` and then :func:`routing_recipients`.

``[[operations]]`` form::

    [[operations]]
    name = "virut-takedown"
    families = ["virut"]            # malware families (``infection``/``family`` values)
    tags = []                       # ``tag`` values
    domains = ["c2.virut.example"]  # sinkholed domains
    start = "2026-11-01"
    end = "2026-12-31"              # optional
    partners = [{ recipient = "Operation Virut Task Force", countries = ["US", "BE", "PE"] }]
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

from herald.config import Settings
from herald.constituency import operations as ops
from herald.constituency.recipients import Recipient
from herald.constituency.bulk_import import import_recipients
from herald.constituency.repository import load_recipients
from herald.errors import ConfigError
from herald.fsutil import atomic_write
from herald.store.db import Database, NotFound

_OP_KEYS = {"name", "families", "tags", "domains", "start", "end", "description", "partners"}

#: Part of the unchanged-configuration check: raised when the import starts storing something it
#: did not store before, so that the first run after the upgrade imports an unchanged file again
#: (2: ``renotify_days``, migration c004).
IMPORT_FORMAT = 2


def sync_config(db: Database, settings: Settings, actor: str = "config") -> dict[str, Any]:
    """Import the configuration's recipients and operations into ``db`` (idempotent).

    The import is skipped when the configuration's tables are unchanged since the last import into
    the same database (a hash in ``<data>/.config-sync``, which includes :data:`IMPORT_FORMAT`).

    Returns:
        ``{"recipients": ImportResult or None when skipped, "operations_added": [names],
        "skipped": bool}``.

    Raises:
        ConfigError: an invalid table, naming the file and the entry; an operation whose stored
            definition differs from the file (operations are changed with ``herald operations``).
    """
    where = str(settings.path or "configuration")
    # Importing a large constituency (hundreds of thousands of CIDRs) takes minutes; when the
    # configuration's tables are unchanged since the last import into this database, skip it.
    # (An admin's later decision on a configuration filter then also stands until the file changes.)
    digest = hashlib.sha256(json.dumps(
        [str(db.engine.url), settings.recipients_spec, settings.operations_spec, IMPORT_FORMAT],
        sort_keys=True, default=str).encode()).hexdigest()
    marker = settings.paths.data / ".config-sync"
    if marker.exists() and marker.read_text().strip() == digest and _all_present(db, settings):
        return {"recipients": None, "operations_added": [], "skipped": True}
    for i, spec in enumerate(settings.recipients_spec):
        bad = {"operation", "families", "tags"} & set(spec)
        if bad:
            raise ConfigError(f"{where}: recipients[{i}] {spec.get('name')!r}: "
                              f"{', '.join(sorted(bad))} belong in an [[operations]] table "
                              f"(partners = [{{recipient = ..., countries = [...]}}])")
    result = import_recipients(db, settings.recipients_spec, actor=actor,
                               where=f"{where}: recipients")
    added = []
    for i, spec in enumerate(settings.operations_spec):
        label = f"{where}: operations[{i}]"
        if not isinstance(spec, dict) or not spec.get("name"):
            raise ConfigError(f"{label}: 'name' is required")
        unknown = set(spec) - _OP_KEYS
        if unknown:
            raise ConfigError(f"{label}: unknown keys {', '.join(sorted(unknown))}")
        name = str(spec["name"])
        try:
            current = ops.get_operation(db, name)
        except NotFound:
            current = None
        if current is None:
            if "start" not in spec:
                raise ConfigError(f"{label} {name!r}: 'start' (YYYY-MM-DD) is required")
            ops.add_operation(db, name, _date(spec["start"]), actor,
                              families=spec.get("families", []), tags=spec.get("tags", []),
                              sinkholed_domains=spec.get("domains", []),
                              end_date=_date(spec.get("end")), description=spec.get("description"),
                              reason="listed in the configuration")
            added.append(name)
        else:
            want = (tuple(sorted(str(f).lower() for f in spec.get("families", []))),
                    tuple(sorted(str(t).lower() for t in spec.get("tags", []))))
            if (tuple(current.families), tuple(current.tags)) != want:
                raise ConfigError(f"{label} {name!r}: families/tags differ from the stored operation "
                                  f"({list(current.families)}, {list(current.tags)}); change it with "
                                  f"'herald operations', not the file")
        for j, p in enumerate(spec.get("partners", [])):
            if not isinstance(p, dict) or "recipient" not in p or "countries" not in p:
                raise ConfigError(f"{label} partners[{j}]: needs 'recipient' and 'countries'")
            ops.add_partner(db, name, p["recipient"], p["countries"], actor,
                            reason="listed in the configuration")
    marker.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(marker, (digest + "\n").encode())
    return {"recipients": result, "operations_added": added, "skipped": False}


def _all_present(db: Database, settings: Settings) -> bool:
    """Every configured recipient and operation exists in ``db`` (a database recreated at the same
    URL must be imported again)."""
    import sqlalchemy as sa

    from herald.store.db import OperationRow, RecipientRow

    with db.session() as s:
        names = set(s.scalars(sa.select(RecipientRow.name)))
        ops_ = set(s.scalars(sa.select(OperationRow.name)))
    return ({str(r.get("name", "")).strip() for r in settings.recipients_spec} <= names
            and {str(o.get("name", "")) for o in settings.operations_spec} <= ops_)


def routing_recipients(db: Database, day: str | date) -> list[Recipient]:
    """Who may receive events on ``day``: network owners and national CERTs with their verified
    filters, plus one scoped share per (active operation, law-enforcement partner).

    A law-enforcement recipient never receives data through its own network or country filters,
    only through operations (its jurisdiction, the operation's families and tags), so that a
    partner sees nothing outside the operations it takes part in.  Automatic recipients (kind
    ``abuse_contact``, :mod:`herald.contacts.autorecipients`) are left out too: they have no
    filters and receive events only through the abuse-contact routing step of each run.
    """
    own = [r for r in load_recipients(db) if r.kind not in ("law_enforcement", "abuse_contact")]
    return own + ops.operation_recipients(db, day)


def _date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{value!r} is not a date (YYYY-MM-DD)") from None

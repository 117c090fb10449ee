"""Sinkholed domains from the law-enforcement operations of the metadata database.

With ``operations = true`` in ``[sinkhole]``, :func:`herald.sensors.config.load_sinkhole_domains`
adds the ``sinkholed_domains`` of every operation active today (UTC) after the TOML list.  SIGHUP
makes a running sensor read them again.

An operation lists families and tags, not one per domain, so a domain gets the operation's family
(and ``infection``) only when the operation has exactly one family, and likewise for the tag;
otherwise the column stays empty and a warning is logged.  A domain listed in the TOML file keeps
its TOML entry, which can name the family precisely.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timezone

from herald.config import Settings
from herald.sensors.domains import SinkholeDomain, normalize_name

log = logging.getLogger(__name__)


def operations_domains(settings: Settings, day: date | None = None) -> list[SinkholeDomain]:
    """Domains sinkholed by the operations active on ``day`` (default: today, UTC).

    Raises:
        StoreError: the metadata database cannot be opened or read.
    """
    # Imported here: the sensors do not need SQLAlchemy unless this source is enabled.
    from herald.constituency.operations import list_operations
    from herald.store.db import open_db

    day = day or datetime.now(timezone.utc).date()
    db = open_db(settings.database_url)
    try:
        ops = list_operations(db, active_on=day)
    finally:
        db.engine.dispose()
    out: list[SinkholeDomain] = []
    for op in ops:
        family = op.families[0] if len(op.families) == 1 else None
        tag = op.tags[0] if len(op.tags) == 1 else None
        if op.sinkholed_domains and (len(op.families) > 1 or len(op.tags) > 1):
            log.warning("operation %s has %d families and %d tags: its domains get family/tag only "
                        "from [[sinkhole.domains]] entries", op.name, len(op.families), len(op.tags))
        for name in op.sinkholed_domains:
            out.append(SinkholeDomain(name=normalize_name(name), family=family, tag=tag, operation=op.name,
                                      infection=family, source=f"operation {op.name}"))
    return out

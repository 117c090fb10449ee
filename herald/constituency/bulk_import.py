"""The configuration import: bring the database in line with ``[[recipients]]`` tables, in bulk.

A national constituency lists about a million CIDRs.  The import therefore never loads filters as
ORM objects: the configuration's filters go into a temporary table (``executemany`` in chunks; on
PostgreSQL ``COPY``), and the changes are computed and applied by the database as set differences
between that table and ``filters`` — a handful of ``INSERT ... SELECT`` and ``UPDATE`` statements,
whatever the number of filters.

Audit: one ``recipients.import`` entry per import that changed anything, with a summary (counts of
recipients added, changed, disabled; filters added, verified, removed) and the SHA-256 digest of
the import's canonical content (:func:`import_digest`); plus, as before, one ``recipient.add`` or
``recipient.update`` entry per recipient whose own fields changed (a few thousand at most, and the
portal shows a recipient's history from them).  Filter changes are not audited one by one any more
(a million entries per first import); the summary entry stands for them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from herald.constituency.networks import Networks
from herald.constituency.recipients import Recipient, recipients_from_specs
from herald.constituency.validation import check_tlp, normalize_filter
from herald.store.db import AuditRow, ContactRow, Database, FilterRow, RecipientRow, UTCDateTime, utcnow

#: Rows per ``executemany`` batch into the temporary table.
CHUNK_ROWS = 20_000

#: SQLite page cache of the importing connection during the import, in KiB.
SQLITE_CACHE_KB = 256 * 1024

#: The audit action of the per-import summary entry.
IMPORT_ACTION = "recipients.import"

_REASON_IMPORTED = "imported from configuration"
_REASON_LISTED = "listed in the configuration"
_REASON_DROPPED = "no longer in the configuration"

_filters = FilterRow.__table__
_recipients = RecipientRow.__table__
_contacts = ContactRow.__table__
_audit = AuditRow.__table__


@dataclass
class ImportResult:
    """What :func:`import_recipients` changed.

    Attributes:
        added / updated / unchanged: recipient names, in the order of the tables.  ``updated``
            holds recipients whose fields or filters changed.
        filters_added: filters created (stored ``verified``).
        filters_verified: filters that are now verified and were not before, the new ones
            included (so ``filters_added <= filters_verified``).
        filters_rejected: filters set to ``rejected``: earlier verified by the importing actor and
            no longer listed, or another actor's minimum severity superseded by the listed one.
        digest: ``sha256:<hex>`` of the canonical import content (:func:`import_digest`).
        audit_id: id of the ``recipients.import`` audit entry, ``None`` when nothing changed.
    """

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    filters_added: int = 0
    filters_verified: int = 0
    filters_rejected: int = 0
    digest: str = ""
    audit_id: int | None = None

    @property
    def changed(self) -> bool:
        """True when the import changed anything."""
        return bool(self.added or self.updated or self.filters_verified or self.filters_rejected)


@dataclass
class _Wanted:
    """One table, validated: the recipient's fields and its filters ``{kind: sorted values}``."""

    name: str
    slug: str
    kind: str
    email: str
    pgp_fingerprint: str | None
    tlp: str | None
    disabled: bool | None  # None: the table does not set it
    filters: dict[str, list[str]]
    renotify_days: int | None = None  # None: no window of its own

    def header(self) -> dict[str, Any]:
        """The canonical line's fields; ``renotify_days`` only when set (so that the digest of
        tables without it is what it was before the key was stored)."""
        out = {"name": self.name, "slug": self.slug, "kind": self.kind, "email": self.email,
               "pgp_fingerprint": self.pgp_fingerprint, "tlp": self.tlp, "disabled": self.disabled}
        if self.renotify_days is not None:
            out["renotify_days"] = self.renotify_days
        return out


def _wanted_all(parsed: list[Recipient], specs: list[dict[str, Any]]) -> list[_Wanted]:
    """Every table validated and normalized; the CIDR texts of all tables made in one vectorized
    pass (:meth:`Networks.texts`)."""
    nets = [r.cidrs if isinstance(r.cidrs, Networks) else Networks.from_networks(r.cidrs)
            for r in parsed]
    bounds = np.cumsum([0] + [len(n) for n in nets])
    texts = Networks(*(np.concatenate([getattr(n, a) for n in nets] or [np.zeros(0)])
                       for a in ("version", "hi", "lo", "plen"))).texts()
    return [_wanted(r, spec, texts[bounds[i]:bounds[i + 1]])
            for i, (r, spec) in enumerate(zip(parsed, specs))]


def _wanted(r: Recipient, spec: dict[str, Any], cidrs: list[str]) -> _Wanted:
    """Validate and normalize one parsed table (raises ConfigError like the old import)."""
    filters = {
        "asn": sorted({str(a) for a in r.asns}),
        "cidr": sorted(set(cidrs)),
        "country": sorted(set(r.countries)),
        "report_type": sorted({normalize_filter("report_type", t) for t in r.report_types}),
        "domain": sorted({normalize_filter("domain", d) for d in spec.get("domains", [])}),
        "min_severity": [r.min_severity] if r.min_severity != "info" else [],
    }
    disabled = bool(spec["disabled"]) if "disabled" in spec else None
    return _Wanted(r.name, r.slug, r.kind, r.email, r.pgp_fingerprint, check_tlp(r.tlp), disabled,
                   {k: v for k, v in filters.items() if v}, r.renotify_days)


def canonical_lines(wanted: Iterable[_Wanted]) -> Iterator[bytes]:
    """The canonical import content, line by line (UTF-8, each ending in ``\\n``).

    Recipients in slug order; for each, one line of JSON with sorted keys (``name``, ``slug``,
    ``kind``, ``email``, ``pgp_fingerprint``, ``tlp``, ``disabled`` — ``null`` when the table does
    not set it — and ``renotify_days`` when the table sets it), then one line ``\\t<kind>\\t<value>`` per filter, in (kind, value) order, values
    canonical (:func:`herald.constituency.validation.normalize_filter`), duplicates dropped.
    """
    for w in sorted(wanted, key=lambda x: x.slug):
        yield (json.dumps(w.header(), sort_keys=True, ensure_ascii=False) + "\n").encode()
        for kind in sorted(w.filters):
            yield "".join(f"\t{kind}\t{v}\n" for v in w.filters[kind]).encode()


def import_digest(specs: Iterable[dict[str, Any]]) -> str:
    """``sha256:<hex>`` of the canonical content of ``[[recipients]]`` tables (see
    :func:`canonical_lines`): equal for tables that import the same recipients and filters,
    whatever their order or the spelling of the values (``AS64496``/``64496``).

    Raises:
        ConfigError: an invalid table.
    """
    specs = list(specs)
    return _digest(_wanted_all(recipients_from_specs(specs), specs))


def _digest(wanted: list[_Wanted]) -> str:
    h = hashlib.sha256()
    for line in canonical_lines(wanted):
        h.update(line)
    return "sha256:" + h.hexdigest()


def import_recipients(db: Database, specs: Iterable[dict[str, Any]],
                      actor: str = "config", where: str = "recipients") -> ImportResult:
    """Bring the database in line with ``[[recipients]]`` tables; idempotent.

    For each table (matched to a stored recipient by file slug): the recipient is created, or its
    name, kind, TLP, e-mail, PGP fingerprint and re-notification window (``renotify_days``;
    absent: none) (and ``disabled``, when the table sets it) are updated; every filter it lists (``asns``, ``cidrs``, ``countries``, ``report_types``,
    ``domains``, ``min_severity`` other than ``info``) is stored ``verified`` with
    ``decided_by=actor`` — the configuration is authoritative for the claims it lists — and filters
    earlier verified by ``actor`` that the table no longer lists are ``rejected``.  A listed
    minimum severity supersedes (rejects) another verified one.  Filters from other actors (portal
    requests, admins) are otherwise left alone, as are recipients absent from ``specs``.  A new
    recipient whose table sets ``disabled = true`` is created disabled (the ORM import before
    issue 14 created it enabled and disabled it on the next import).

    All in one transaction.  Audit: one ``recipients.import`` entry (summary and digest) when
    anything changed, plus ``recipient.add`` / ``recipient.update`` per recipient whose fields
    changed; importing the same specs again changes nothing and writes no audit entry.

    Cost: a few statements whatever the number of filters; a million CIDRs take seconds (see
    ``bench/import_constituency.py``).

    ``where`` begins every error message (``"<file>: recipients"`` from the daily run: the error
    then names the file, ``recipients[i]`` counted from 0 as in the TOML array, and the key).

    Raises:
        ConfigError: an invalid table or duplicate names/slugs (nothing is imported).
    """
    specs = list(specs)
    parsed = recipients_from_specs(specs, where=where)
    wanted = _wanted_all(parsed, specs)
    result = ImportResult(digest=_digest(wanted))
    now = utcnow()
    with db.session() as s:
        conn = s.connection()
        ids, new_ids, changed_fields, disabled = _sync_recipients(conn, wanted, actor, now, result)
        touched, counts = _sync_filters(conn, wanted, ids, new_ids, actor, now)
        result.filters_added, result.filters_verified, result.filters_rejected = (
            counts["added"], counts["verified"], counts["rejected"])
        added = set(result.added)
        for w in wanted:
            if w.name in added:
                continue
            if w.slug in changed_fields or ids[w.slug] in touched:
                result.updated.append(w.name)
            else:
                result.unchanged.append(w.name)
        if result.changed:
            details = {
                "digest": result.digest,
                "recipients": {"listed": len(wanted), "added": len(result.added),
                               "changed": len(result.updated), "disabled": disabled,
                               "unchanged": len(result.unchanged)},
                "filters": {"listed": sum(len(v) for w in wanted for v in w.filters.values()),
                            "added": result.filters_added, "verified": result.filters_verified,
                            "removed": counts["removed"], "superseded": counts["superseded"]},
            }
            result.audit_id = conn.execute(sa.insert(_audit).returning(_audit.c.id), {
                "actor": actor, "action": IMPORT_ACTION, "object_type": "constituency",
                "object_id": result.digest, "reason": _REASON_IMPORTED, "details": details,
                "at": now}).scalar_one()
    return result


# --- recipients -----------------------------------------------------------------------------------

def _sync_recipients(conn: Connection, wanted: list[_Wanted], actor: str, now: datetime,
                     result: ImportResult) -> tuple[dict[str, int], set[int], set[str], int]:
    """Create and update the recipients and their primary contacts.

    Returns:
        ``(ids by slug, ids of the new recipients, slugs whose fields changed, number of
        recipients disabled)``; appends the
        new recipients' names to ``result.added``.
    """
    stored = {row.slug: row for row in conn.execute(sa.select(
        _recipients.c.id, _recipients.c.name, _recipients.c.slug, _recipients.c.kind,
        _recipients.c.tlp, _recipients.c.disabled, _recipients.c.renotify_days))}
    primary: dict[int, Any] = {}
    for row in conn.execute(sa.select(_contacts.c.id, _contacts.c.recipient_id, _contacts.c.email,
                                      _contacts.c.pgp_fingerprint)
                            .where(_contacts.c.is_primary == sa.true()).order_by(_contacts.c.id)):
        primary.setdefault(row.recipient_id, row)
    new = [w for w in wanted if w.slug not in stored]
    audit_rows: list[dict[str, Any]] = []
    disabled = 0
    if new:
        conn.execute(sa.insert(_recipients), [
            {"name": w.name, "slug": w.slug, "kind": w.kind, "tlp": w.tlp, "disabled": bool(w.disabled),
             "renotify_days": w.renotify_days, "created_at": now, "updated_at": now} for w in new])
        new_ids = _ids_by_slug(conn, [w.slug for w in new])
        conn.execute(sa.insert(_contacts), [
            {"recipient_id": new_ids[w.slug], "email": w.email, "pgp_fingerprint": w.pgp_fingerprint,
             "is_primary": True, "created_at": now} for w in new])
        for w in new:
            details = {"name": w.name, "slug": w.slug, "kind": w.kind, "email": w.email,
                       "tlp": w.tlp, "pgp_fingerprint": w.pgp_fingerprint,
                       "renotify_days": w.renotify_days}
            if w.disabled:
                details["disabled"] = True
                disabled += 1
            audit_rows.append(_audit_row(actor, "recipient.add", new_ids[w.slug], details, now))
            result.added.append(w.name)
    changed: set[str] = set()
    for w in wanted:
        row = stored.get(w.slug)
        if row is None:
            continue
        changes = _field_changes(row, primary.get(row.id), w)
        if not changes:
            continue
        changed.add(w.slug)
        rec = {k: v[1] for k, v in changes.items()
               if k in ("name", "kind", "tlp", "disabled", "renotify_days")}
        conn.execute(sa.update(_recipients).where(_recipients.c.id == row.id)
                     .values(updated_at=now, **rec))
        contact = primary.get(row.id)
        if contact is None:
            conn.execute(sa.insert(_contacts), {"recipient_id": row.id, "email": w.email,
                                                "pgp_fingerprint": w.pgp_fingerprint,
                                                "is_primary": True, "created_at": now})
        elif "email" in changes or "pgp_fingerprint" in changes:
            conn.execute(sa.update(_contacts).where(_contacts.c.id == contact.id)
                         .values(email=w.email, pgp_fingerprint=w.pgp_fingerprint))
        if changes.get("disabled", [None, False])[1] is True:
            disabled += 1
        audit_rows.append(_audit_row(actor, "recipient.update", row.id, changes, now))
    if audit_rows:
        conn.execute(sa.insert(_audit), audit_rows)
    ids = {slug: row.id for slug, row in stored.items()}
    if not new:
        return ids, set(), changed, disabled
    ids.update(new_ids)
    return ids, set(new_ids.values()), changed, disabled


def _ids_by_slug(conn: Connection, slugs: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in range(0, len(slugs), 500):
        out.update((slug, rid) for slug, rid in conn.execute(
            sa.select(_recipients.c.slug, _recipients.c.id)
            .where(_recipients.c.slug.in_(slugs[i:i + 500]))))
    return out


def _field_changes(row: Any, contact: Any, w: _Wanted) -> dict[str, list]:
    """``{field: [old, new]}`` for the table's scalar fields that differ from the stored ones."""
    changes: dict[str, list] = {}
    for attr, new in (("name", w.name), ("kind", w.kind), ("tlp", w.tlp),
                      ("renotify_days", w.renotify_days)):
        if getattr(row, attr) != new:
            changes[attr] = [getattr(row, attr), new]
    if w.disabled is not None and bool(row.disabled) != w.disabled:
        changes["disabled"] = [bool(row.disabled), w.disabled]
    if contact is None:
        changes["email"] = [None, w.email]
    else:
        if contact.email != w.email:
            changes["email"] = [contact.email, w.email]
        if contact.pgp_fingerprint != w.pgp_fingerprint:
            changes["pgp_fingerprint"] = [contact.pgp_fingerprint, w.pgp_fingerprint]
    return changes


def _audit_row(actor: str, action: str, object_id: int, details: dict, now: datetime) -> dict:
    return {"actor": actor, "action": action, "object_type": "recipient",
            "object_id": str(object_id), "reason": _REASON_IMPORTED, "details": details, "at": now}


# --- filters --------------------------------------------------------------------------------------

def _sync_filters(conn: Connection, wanted: list[_Wanted], ids: dict[str, int],
                  new_ids: set[int], actor: str, now: datetime) -> tuple[set[int], dict[str, int]]:
    """Store the new recipients' filters, and apply the set differences for the others
    (``new_ids``: recipients created by this import).

    Returns:
        ``(ids of recipients whose filters changed, counts)`` with counts ``added``, ``verified``
        (new ones included), ``rejected`` (= ``removed`` + ``superseded``), ``removed`` and
        ``superseded``.
    """
    md = sa.MetaData()
    # No key while filling (rows arrive one statement each); the index is built after, sorted.
    listed = sa.Table("herald_import_filters", md, sa.Column("recipient_id", sa.Integer),
                      sa.Column("kind", sa.String(16)), sa.Column("value", sa.String(255)),
                      prefixes=["TEMPORARY"])
    members = sa.Table("herald_import_recipients", md,
                       sa.Column("id", sa.Integer, primary_key=True), prefixes=["TEMPORARY"])
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        # A million index entries: with SQLite's default 2 MB page cache the pages spill to disk
        # mid-transaction; give this connection SQLITE_CACHE_KB for the import (restored after).
        raw = conn.connection.driver_connection
        cache_before = raw.execute("PRAGMA cache_size").fetchone()[0]
        raw.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KB}")
    try:
        new = [w for w in wanted if ids[w.slug] in new_ids]
        old = [w for w in wanted if ids[w.slug] not in new_ids]
        added = _insert_new(conn, _listed_rows(new, ids), actor, now) if new else 0
        if not old:
            return set(), {"added": added, "verified": added, "removed": 0, "superseded": 0,
                           "rejected": 0}
        md.drop_all(conn, checkfirst=True)
        md.create_all(conn)
        try:
            rids = sorted({ids[w.slug] for w in old})
            for i in range(0, len(rids), CHUNK_ROWS):
                conn.execute(sa.insert(members), [{"id": r} for r in rids[i:i + CHUNK_ROWS]])
            _copy(conn, listed, ("recipient_id", "kind", "value"), _listed_rows(old, ids))
            sa.Index("herald_import_filters_key", listed.c.recipient_id, listed.c.kind,
                     listed.c.value, unique=True).create(conn)
            touched, counts = _apply(conn, listed, members, actor, now)
        finally:
            md.drop_all(conn)
        counts["added"] += added
        counts["verified"] += added
        return touched, counts
    finally:
        if sqlite:
            raw.execute(f"PRAGMA cache_size = {cache_before}")


def _insert_new(conn: Connection, rows: Iterator[tuple[int, str, str]], actor: str,
                now: datetime) -> int:
    """Store ``(recipient_id, kind, value)`` rows as verified filters, without a set difference
    (for recipients that have no filters yet).  PostgreSQL: ``COPY`` into ``filters``.  SQLite:
    into a temporary table with the driver's ``executemany``, then one ``INSERT ... SELECT``
    (an ``executemany`` straight into ``filters`` costs about four times as much: each row is a
    statement with its own constraint checks and statement journal).

    Returns:
        The number of filters stored.
    """
    if conn.dialect.name == "postgresql":
        stamp = _db_value(conn, UTCDateTime(), now)
        return _copy(conn, _filters, _FILTER_COLUMNS, (
            (rid, kind, v, "verified", actor, stamp, actor, stamp, _REASON_LISTED)
            for rid, kind, v in rows))
    md = sa.MetaData()
    staged = sa.Table("herald_import_new", md, sa.Column("recipient_id", sa.Integer),
                      sa.Column("kind", sa.String(16)), sa.Column("value", sa.String(255)),
                      prefixes=["TEMPORARY"])
    md.drop_all(conn, checkfirst=True)
    md.create_all(conn)
    try:
        n = _copy(conn, staged, ("recipient_id", "kind", "value"), rows)
        ts = sa.bindparam("now", now, type_=UTCDateTime())
        conn.execute(sa.insert(_filters).from_select(list(_FILTER_COLUMNS), sa.select(
            staged.c.recipient_id, staged.c.kind, staged.c.value, sa.literal("verified", sa.String),
            sa.literal(actor, sa.String), ts, sa.literal(actor, sa.String), ts,
            sa.literal(_REASON_LISTED, sa.String))))
    finally:
        md.drop_all(conn)
    return n


_FILTER_COLUMNS = ("recipient_id", "kind", "value", "state", "requested_by", "requested_at",
                   "decided_by", "decided_at", "reason")


def _db_value(conn: Connection, type_: sa.types.TypeEngine, value: Any) -> Any:
    """``value`` as the driver receives it for a column of ``type_`` (e.g. SQLite's text for an
    aware datetime), for rows handed to the driver directly."""
    proc = type_.bind_processor(conn.dialect)
    return proc(value) if proc else value


def _listed_rows(wanted: list[_Wanted], ids: dict[str, int]) -> Iterator[tuple[int, str, str]]:
    seen: set[int] = set()
    for w in wanted:
        rid = ids[w.slug]
        if rid in seen:  # two tables cannot share a slug (recipients_from_specs refuses it)
            continue
        seen.add(rid)
        for kind, values in w.filters.items():
            for v in values:
                yield rid, kind, v


def _copy(conn: Connection, table: sa.Table, columns: tuple[str, ...],
          rows: Iterator[tuple]) -> int:
    """Rows (tuples of driver values for ``columns``) into ``table``: ``COPY`` on PostgreSQL
    (psycopg 3), the driver's ``executemany`` on SQLite, else SQLAlchemy ``executemany`` in chunks
    of :data:`CHUNK_ROWS`.

    Returns:
        The number of rows written.
    """
    names = ", ".join(columns)
    n = 0
    if conn.dialect.name == "postgresql":
        cur = conn.connection.driver_connection.cursor()
        with cur.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        return n
    if conn.dialect.name == "sqlite":
        # The driver's executemany takes the rows as they come, without SQLAlchemy's per-row
        # parameter processing (the values are already the driver's); its rowcount is the sum.
        cur = conn.connection.driver_connection.cursor()
        cur.executemany(
            f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)
        return max(cur.rowcount, 0)
    stmt = sa.insert(table)
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(dict(zip(columns, row)))
        if len(chunk) >= CHUNK_ROWS:
            conn.execute(stmt, chunk)
            n += len(chunk)
            chunk = []
    if chunk:
        conn.execute(stmt, chunk)
        n += len(chunk)
    return n


def _apply(conn: Connection, listed: sa.Table, members: sa.Table, actor: str,
           now: datetime) -> tuple[set[int], dict[str, int]]:
    f = _filters
    ts = sa.bindparam("now", now, type_=UTCDateTime())
    same = sa.and_(listed.c.recipient_id == f.c.recipient_id, listed.c.kind == f.c.kind,
                   listed.c.value == f.c.value)
    touched: set[int] = set()

    # 1. Remove: verified by this actor, no longer listed.  First, so that a new minimum severity
    #    may be verified (one verified per recipient).
    removed = conn.execute(
        sa.update(f).where(f.c.state == "verified", f.c.decided_by == actor,
                           f.c.recipient_id.in_(sa.select(members.c.id)),
                           ~sa.exists().where(same))
        .values(state="rejected", decided_by=actor, decided_at=ts, reason=_REASON_DROPPED)
        .returning(f.c.recipient_id)).scalars().all()
    touched.update(removed)

    # 2. A listed minimum severity supersedes another actor's verified one.
    superseded = 0
    listed_sev = sa.select(listed.c.recipient_id, listed.c.value).where(
        listed.c.kind == "min_severity").subquery()
    clashes = conn.execute(
        sa.select(f.c.id, f.c.recipient_id, listed_sev.c.value)
        .join(listed_sev, listed_sev.c.recipient_id == f.c.recipient_id)
        .where(f.c.kind == "min_severity", f.c.state == "verified",
               f.c.value != listed_sev.c.value)).all()
    added = 0
    for old_id, rid, value in clashes:
        new_id = conn.execute(sa.select(f.c.id).where(
            f.c.recipient_id == rid, f.c.kind == "min_severity", f.c.value == value)).scalar()
        if new_id is None:
            new_id = conn.execute(sa.insert(f).returning(f.c.id), {
                "recipient_id": rid, "kind": "min_severity", "value": value, "state": "pending",
                "requested_by": actor, "requested_at": now}).scalar_one()
            added += 1
        conn.execute(sa.update(f).where(f.c.id == old_id).values(
            state="rejected", decided_by=actor, decided_at=now,
            reason=f"superseded by filter {new_id}"))
        superseded += 1
        touched.add(rid)

    # 3. Add: listed, not stored — stored verified.
    before = conn.execute(sa.select(sa.func.coalesce(sa.func.max(f.c.id), 0))).scalar_one()
    missing = (sa.select(listed.c.recipient_id, listed.c.kind, listed.c.value,
                         sa.literal("verified", sa.String), sa.literal(actor, sa.String), ts,
                         sa.literal(actor, sa.String), ts, sa.literal(_REASON_LISTED, sa.String))
               .where(~sa.exists().where(same)))
    conn.execute(sa.insert(f).from_select(
        ["recipient_id", "kind", "value", "state", "requested_by", "requested_at", "decided_by",
         "decided_at", "reason"], missing))
    # (rowcount of INSERT ... SELECT is not reliable across drivers: count the new rows by id.)
    inserted = 0
    for rid, n in conn.execute(
            sa.select(f.c.recipient_id, sa.func.count()).where(
                f.c.id > before, f.c.requested_by == actor, f.c.requested_at == ts,
                f.c.reason == _REASON_LISTED).group_by(f.c.recipient_id)):
        inserted += n
        touched.add(rid)

    # 4. Verify: listed, stored, not verified (pending requests, rejected earlier).
    verified = conn.execute(
        sa.update(f).where(f.c.state != "verified", sa.exists().where(same))
        .values(state="verified", decided_by=actor, decided_at=ts, reason=_REASON_LISTED)
        .returning(f.c.recipient_id)).scalars().all()
    touched.update(verified)
    counts = {"added": inserted + added, "verified": inserted + len(verified),
              "removed": len(removed), "superseded": superseded,
              "rejected": len(removed) + superseded}
    return touched, counts

"""Law-enforcement operations: what a takedown covers, who takes part, and what it found.

An operation (a botnet takedown, a sinkholing) has malware families (``family`` / ``infection``
column values), ``tag`` values, the domains it sinkholed, and a start and optional end date.  Its
partners are law-enforcement recipients, each with a jurisdiction (country codes).  On a day within
the operation's dates, :func:`operation_recipients` gives each partner as a
:class:`~herald.constituency.recipients.Recipient` scoped to the operation: the router sends it only
events of the operation's families/tags located in its jurisdiction.

:func:`operation_stats` counts victims by country and ASN from the Parquet event store — counts
only: addresses never leave DuckDB.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from herald.constituency.recipients import Recipient
from herald.constituency.repository import (
    RecipientRef, find_recipient_row, normalize_filter, to_recipient,
)
from herald.errors import ConfigError, StoreError
from herald.eventstore import EventStore
from herald.store import audit
from herald.store.db import (
    Database, NotFound, OperationPartnerRow, OperationRow, RecipientRow,
)
from herald.store.events import store_column_names, store_columns, store_files, store_types

_CC_RE = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Partner:
    """A law-enforcement partner of an operation."""

    recipient_id: int
    recipient: str
    countries: tuple[str, ...]


@dataclass(frozen=True)
class OperationInfo:
    """An operation as stored; lists are sorted and lower case (countries upper case)."""

    id: int
    name: str
    description: str | None
    families: tuple[str, ...]
    tags: tuple[str, ...]
    sinkholed_domains: tuple[str, ...]
    start_date: date
    end_date: date | None
    partners: tuple[Partner, ...]
    created_at: datetime

    def active_on(self, day: date) -> bool:
        """True when ``day`` is within the operation's dates (both ends included)."""
        return self.start_date <= day and (self.end_date is None or day <= self.end_date)


def _info(row: OperationRow) -> OperationInfo:
    return OperationInfo(
        row.id, row.name, row.description, tuple(row.families), tuple(row.tags),
        tuple(row.sinkholed_domains), row.start_date, row.end_date,
        tuple(Partner(p.recipient_id, p.recipient.name, tuple(p.countries)) for p in row.partners),
        row.created_at)


def _words(values: Iterable[str], what: str) -> list[str]:
    out = sorted({str(v).strip().lower() for v in values if str(v).strip()})
    for v in out:
        if "," in v:
            raise ConfigError(f"operation {what}: {v!r} contains a comma")
    return out


def _countries(values: Iterable[str]) -> list[str]:
    out = sorted({str(c).strip().upper() for c in values if str(c).strip()})
    for cc in out:
        if not _CC_RE.match(cc):
            raise ConfigError(f"jurisdiction: {cc!r} is not an ISO 3166-1 alpha-2 code")
    return out


def _date(value: date | str | None, what: str) -> date | None:
    if value is None or value == "" or isinstance(value, date):
        return value or None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"operation {what}: {value!r} is not a date (YYYY-MM-DD)") from None


def add_operation(db: Database, name: str, start_date: date | str, actor: str,
                  families: Iterable[str] = (), tags: Iterable[str] = (),
                  sinkholed_domains: Iterable[str] = (), end_date: date | str | None = None,
                  description: str | None = None, reason: str | None = None) -> OperationInfo:
    """Create an operation.

    Raises:
        ConfigError: empty name, bad dates (end before start), invalid domain, or the name is
            taken.
    """
    if not name or not name.strip():
        raise ConfigError("operation name is required")
    start, end = _date(start_date, "start date"), _date(end_date, "end date")
    if start is None:
        raise ConfigError("operation start date is required")
    if end is not None and end < start:
        raise ConfigError(f"operation end date {end} is before its start date {start}")
    domains = sorted({normalize_filter("domain", d) for d in sinkholed_domains})
    row = OperationRow(name=name.strip(), description=description,
                       families=_words(families, "families"), tags=_words(tags, "tags"),
                       sinkholed_domains=domains, start_date=start, end_date=end)
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            audit.record(s, actor, "operation.add", "operation", row.id, reason,
                         {"name": row.name, "families": row.families, "tags": row.tags,
                          "sinkholed_domains": domains, "start_date": start, "end_date": end})
            return _info(row)
    except IntegrityError:
        raise ConfigError(f"operation {name.strip()!r} already exists") from None


def add_partner(db: Database, operation: str | int, recipient: RecipientRef,
                countries: Iterable[str], actor: str, reason: str | None = None) -> OperationInfo:
    """Add a law-enforcement recipient to an operation with its jurisdiction, or change the
    jurisdiction of an existing partner.

    Raises:
        NotFound: no such operation or recipient.
        ConfigError: the recipient is not ``law_enforcement``, or the jurisdiction is empty or
            has an invalid code.
    """
    ccs = _countries(countries)
    if not ccs:
        raise ConfigError("a partner needs a jurisdiction (one or more country codes)")
    with db.session() as s:
        op = _find_op(s, operation)
        rec = find_recipient_row(s, recipient)
        if rec.kind != "law_enforcement":
            raise ConfigError(f"recipient {rec.name!r} is {rec.kind}, not law_enforcement: only "
                              f"law-enforcement recipients can be operation partners")
        partner = next((p for p in op.partners if p.recipient_id == rec.id), None)
        before = list(partner.countries) if partner else None
        if partner is None:
            op.partners.append(OperationPartnerRow(recipient_id=rec.id, countries=ccs))
        elif before != ccs:
            partner.countries = ccs
        if before != ccs:
            s.flush()
            audit.record(s, actor, "operation.partner", "operation", op.id, reason,
                         {"operation": op.name, "recipient": rec.name, "countries": ccs,
                          "previous_countries": before})
        s.refresh(op)
        return _info(op)


def _find_op(s, ref: str | int) -> OperationRow:
    stmt = sa.select(OperationRow).options(
        selectinload(OperationRow.partners).selectinload(OperationPartnerRow.recipient))
    if isinstance(ref, int) or str(ref).isdigit():
        row = s.scalars(stmt.where(sa.or_(OperationRow.id == int(ref),
                                          OperationRow.name == str(ref)))).first()
    else:
        row = s.scalars(stmt.where(OperationRow.name == ref)).first()
    if row is None:
        raise NotFound(f"no operation {ref!r}")
    return row


def get_operation(db: Database, ref: str | int) -> OperationInfo:
    """One operation by name or id, with its partners.

    Raises:
        NotFound: no such operation.
    """
    with db.session() as s:
        return _info(_find_op(s, ref))


def list_operations(db: Database, active_on: date | None = None) -> list[OperationInfo]:
    """Every operation by start date then name, or only those active on ``active_on``."""
    stmt = (sa.select(OperationRow)
            .options(selectinload(OperationRow.partners).selectinload(OperationPartnerRow.recipient))
            .order_by(OperationRow.start_date, OperationRow.name))
    if active_on is not None:
        stmt = stmt.where(OperationRow.start_date <= active_on,
                          sa.or_(OperationRow.end_date.is_(None), OperationRow.end_date >= active_on))
    with db.session() as s:
        return [_info(r) for r in s.scalars(stmt)]


def operation_recipients(db: Database, day: date | str) -> list[Recipient]:
    """The law-enforcement shares of ``day``: one :class:`Recipient` per (active operation,
    enabled partner).

    Each has ``kind="law_enforcement"``, ``operation`` = the operation name, its ``families`` and
    ``tags``, and ``countries`` = the partner's jurisdiction.  ASN and CIDR filters of the partner
    are *not* included (a partner's share is defined by the operation, not by networks); its
    verified ``report_type`` and ``min_severity`` filters are.

    Returns:
        Recipients ordered by operation name then recipient id (stable across runs).
    """
    day = _date(day, "day")
    out: list[Recipient] = []
    with db.session() as s:
        stmt = (sa.select(OperationRow)
                .options(selectinload(OperationRow.partners)
                         .selectinload(OperationPartnerRow.recipient)
                         .selectinload(RecipientRow.filters),
                         selectinload(OperationRow.partners)
                         .selectinload(OperationPartnerRow.recipient)
                         .selectinload(RecipientRow.contacts))
                .where(OperationRow.start_date <= day,
                       sa.or_(OperationRow.end_date.is_(None), OperationRow.end_date >= day))
                .order_by(OperationRow.name))
        for op in s.scalars(stmt):
            for p in sorted(op.partners, key=lambda p: p.recipient_id):
                if p.recipient.disabled:
                    continue
                r = to_recipient(p.recipient, network_filters=False)
                r.countries = list(p.countries)
                r.operation = op.name
                r.families = list(op.families)
                r.tags = list(op.tags)
                out.append(r)
    return out


@dataclass(frozen=True)
class OperationStats:
    """Victim counts of an operation on one day (distinct source addresses; never the addresses).

    Attributes:
        total: distinct victims.
        by_country: ``[(country or "", count)]``, largest first.
        by_asn: ``[(asn or None, count)]``, largest first.
        files: Parquet files read.
    """

    operation: str
    day: date
    total: int
    by_country: list[tuple[str, int]]
    by_asn: list[tuple[int | None, int]]
    files: int


#: The columns :func:`operation_stats` may read.
_STATS_COLUMNS = ("src_ip", "ip", "src_geo", "geo", "src_asn", "asn", "family", "infection", "tag")


def _pick(columns: set[str], *names: str) -> str | None:
    present = [f'"{n}"' for n in names if n in columns]
    if not present:
        return None
    return present[0] if len(present) == 1 else f"coalesce({', '.join(present)})"


def operation_stats(db: Database, data_dir: str | Path, operation: str | int,
                    day: date | str, store: EventStore | None = None) -> OperationStats:
    """Count the operation's victims on ``day`` by country and ASN, from the event store.

    Reads ``date=<day>/type=*/*.parquet`` of ``store`` (``None``: ``<data_dir>/events``) with
    DuckDB (``read_parquet`` for a local store; for S3 the columns it needs, read by pyarrow,
    :func:`herald.store.events.store_columns`).  An event belongs to the
    operation when its ``family`` or ``infection`` is one of the operation's families, or its
    ``tag`` (a ``;`` / ``,`` separated list in Shadowserver data) contains one of its tags; an
    operation with neither matches every event.  A victim is a distinct ``src_ip`` (or ``ip``).

    Raises:
        NotFound: no such operation.
        StoreError: the event files cannot be read.
    """
    import duckdb
    import pyarrow as pa

    info = get_operation(db, operation)
    day = _date(day, "day")
    store = store or EventStore.local(data_dir)
    base = store.path(f"date={day}")
    files = [f for t in store_types(store, day) for f in store_files(store, day, t)]
    if not files:
        return OperationStats(info.name, day, 0, [], [], 0)
    con = duckdb.connect()
    try:
        if store.is_local:
            scan = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
            scan_params: list = [files]
            columns = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}",
                                                 [files]).fetchall()}
        else:
            columns = store_column_names(store, files) & set(_STATS_COLUMNS)
            con.register("_herald_event_rows",
                         store_columns(store, files, [c for c in _STATS_COLUMNS if c in columns]))
            scan, scan_params = "_herald_event_rows", []
        ip = _pick(columns, "src_ip", "ip")
        if ip is None:
            raise StoreError(f"{base}: no src_ip or ip column in the event files")
        geo = _pick(columns, "src_geo", "geo") or "NULL"
        asn = _pick(columns, "src_asn", "asn") or "NULL"
        conds, params = [], []
        if info.families:
            for col in ("family", "infection"):
                if col in columns:
                    conds.append(f'lower(CAST("{col}" AS VARCHAR)) IN (SELECT unnest(?))')
                    params.append(list(info.families))
        if info.tags and "tag" in columns:
            conds.append("list_has_any(string_split_regex(lower(CAST(tag AS VARCHAR)), '[;,]\\s*'), ?)")
            params.append(list(info.tags))
        if info.families or info.tags:
            where = " OR ".join(conds) if conds else "FALSE"
        else:
            where = "TRUE"
        # A temporary table, not a view: the addresses stay inside this DuckDB connection.
        con.execute(f"CREATE TEMP TABLE victims AS SELECT {ip} AS ip, CAST({geo} AS VARCHAR) AS geo,"
                    f" TRY_CAST({asn} AS BIGINT) AS asn FROM {scan} WHERE ({where}) AND {ip} IS NOT NULL",
                    [*scan_params, *params])
        total = con.execute("SELECT count(DISTINCT ip) FROM victims").fetchone()[0]
        by_cc = con.execute("SELECT coalesce(geo, ''), count(DISTINCT ip) AS n FROM victims "
                            "GROUP BY 1 ORDER BY n DESC, 1").fetchall()
        by_asn = con.execute("SELECT asn, count(DISTINCT ip) AS n FROM victims "
                             "GROUP BY 1 ORDER BY n DESC, 1 NULLS LAST").fetchall()
    except (duckdb.Error, OSError, pa.ArrowException) as exc:
        raise StoreError(f"{base}: cannot read events: {exc}") from None
    finally:
        con.close()
    return OperationStats(info.name, day, int(total), [(str(c), int(n)) for c, n in by_cc],
                          [(None if a is None else int(a), int(n)) for a, n in by_asn], len(files))

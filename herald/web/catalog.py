"""What a recipient may see: its report files and its events.

Reports come from the run summaries ``<data>/runs/<day>.json`` written by
:func:`herald.pipeline.run_day` (``reports: [{recipient, type, rows, path, sha256, ...}]``) and,
when the run ledger fills it, the ``reports`` table.  An entry belongs to a recipient only when its
``recipient`` is the recipient's name **and** its file lies in ``<reports>/<day>/<slug>/``; a file
outside that directory (a crafted path, a symlink out) is never served.

Events come from the Parquet store ``<data>/events/date=D/type=T/*.parquet`` through DuckDB, and
every row returned has passed :class:`herald.route.Router` built from the recipient's *verified*
filters alone: :func:`query_events` cannot return a row the daily run would not have sent to the
recipient.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import duckdb
import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from herald.config import Settings
from herald.constituency.recipients import Recipient
from herald.errors import HeraldError
from herald.route import Router
from herald.schema.registry import Registry, ReportType
from herald.store.db import Database, RecipientRow, ReportRow

DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}$")
_TYPE_RE = re.compile(r"^[A-Za-z0-9_]{1,100}$")
#: Largest date range a request may cover.
MAX_RANGE_DAYS = 366
#: Largest ``limit`` of ``reports/query`` (as Shadowserver's API).
MAX_QUERY_LIMIT = 10000


class RequestError(HeraldError):
    """A request the caller got wrong; :attr:`status` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ReportEntry:
    """One report file of a recipient."""

    day: str
    type: str
    recipient: str
    slug: str
    file: str
    path: Path
    rows: int
    sha256: str


def parse_dates(value: Any, default_days: list[str] | None = None) -> list[str]:
    """Days of a ``date`` field: ``YYYY-MM-DD`` or ``YYYY-MM-DD:YYYY-MM-DD`` (inclusive).

    Raises:
        RequestError: malformed, reversed, or longer than :data:`MAX_RANGE_DAYS`.
    """
    if value is None or value == "":
        return list(default_days or [])
    if not isinstance(value, str):
        raise RequestError("date must be a string YYYY-MM-DD or YYYY-MM-DD:YYYY-MM-DD")
    parts = value.split(":")
    if len(parts) > 2 or not all(DAY_RE.match(p) for p in parts):
        raise RequestError(f"date {value!r}: expected YYYY-MM-DD or YYYY-MM-DD:YYYY-MM-DD")
    try:
        start = date.fromisoformat(parts[0])
        end = date.fromisoformat(parts[-1])
    except ValueError:
        raise RequestError(f"date {value!r} is not a calendar date") from None
    if end < start:
        raise RequestError(f"date {value!r}: the range ends before it starts")
    n = (end - start).days + 1
    if n > MAX_RANGE_DAYS:
        raise RequestError(f"date {value!r}: at most {MAX_RANGE_DAYS} days")
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


def _dates(days) -> list[date]:
    out = []
    for d in days:
        try:
            out.append(date.fromisoformat(d))
        except (TypeError, ValueError):
            pass
    return out


def _as_list(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split(",") if v]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise RequestError(f"{field} must be a string or a list of strings")


class Catalog:
    """Read access to reports and events, always for one recipient at a time.

    Args:
        settings: paths of the data and report directories.
        db: the metadata database (recipients, verified filters, report ledger).
        registry: report types.
    """

    def __init__(self, settings: Settings, db: Database, registry: Registry) -> None:
        self.settings = settings
        self.db = db
        self.registry = registry
        self._duck: duckdb.DuckDBPyConnection | None = None
        self._runs_cache: dict[str, tuple[tuple[int, int], list[dict]]] = {}

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB cursor (one per call: cursors of one connection are thread-safe to use
        side by side; opening a connection per query costs ~80 ms)."""
        if self._duck is None:
            self._duck = duckdb.connect()
        return self._duck.cursor()

    # --- reports ------------------------------------------------------------------------------

    def run_days(self) -> list[str]:
        """Days that have a run summary, newest first."""
        d = self.settings.paths.data / "runs"
        if not d.is_dir():
            return []
        return sorted((p.stem for p in d.glob("*.json") if DAY_RE.match(p.stem)), reverse=True)

    def _run_reports(self, day: str) -> list[dict]:
        """The ``reports`` list of the run summary of ``day`` (cached while the file is
        unchanged); empty when there is none or it is unreadable."""
        if not DAY_RE.match(day):
            return []
        path = self.settings.paths.data / "runs" / f"{day}.json"
        try:
            st = path.stat()
        except OSError:
            return []
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._runs_cache.get(day)
        if hit and hit[0] == stamp:
            return hit[1]
        try:
            reports = json.loads(path.read_text()).get("reports", [])
        except (OSError, ValueError, AttributeError):
            return []
        self._runs_cache[day] = (stamp, reports)
        return reports

    def _own_path(self, slug: str, day: str, path: str | Path) -> Path | None:
        """``path`` resolved, if it is a file inside ``<reports>/<day>/<slug>/``; else ``None``."""
        base = (self.settings.paths.reports / day / slug).resolve()
        try:
            p = Path(path).resolve()
        except (OSError, RuntimeError):
            return None
        if p.parent != base or not _FILE_RE.match(p.name) or not p.is_file():
            return None
        return p

    def reports(self, recipient: RecipientRow | Any, days: list[str] | None = None,
                types: list[str] | None = None, file: str | None = None) -> list[ReportEntry]:
        """The recipient's report files, by day (newest first) then type.

        Args:
            recipient: an object with ``id``, ``name`` and ``slug``.
            days: only these days (default: every day with a run summary).
            types: only these report types.
            file: only the file of this name.
        """
        want_days = set(days) if days is not None else None
        want_types = set(types) if types else None
        found: dict[Path, ReportEntry] = {}
        for day in (sorted(want_days, reverse=True) if want_days is not None
                    else self.run_days()):
            for r in self._run_reports(day):
                if r.get("recipient") != recipient.name:
                    continue
                if want_types is not None and r.get("type") not in want_types:
                    continue
                if file is not None and Path(str(r.get("path", ""))).name != file:
                    continue
                p = self._own_path(recipient.slug, day, r.get("path", ""))
                if p is not None:
                    found[p] = ReportEntry(day, str(r.get("type")), recipient.name, recipient.slug,
                                           p.name, p, int(r.get("rows", 0)), str(r.get("sha256", "")))
        stmt = sa.select(ReportRow).where(ReportRow.recipient_id == recipient.id)
        if want_days is not None:
            stmt = stmt.where(ReportRow.day.in_(_dates(want_days)))
        with self.db.session() as s:
            for row in s.scalars(stmt):
                day = row.day.isoformat()
                if (want_days is not None and day not in want_days) or (
                        want_types is not None and row.report_type not in want_types):
                    continue
                p = self._own_path(recipient.slug, day, row.path)
                if p is not None and p not in found:
                    found[p] = ReportEntry(day, row.report_type, recipient.name, recipient.slug,
                                           p.name, p, int(row.rows), row.sha256)
        return sorted(found.values(), key=lambda e: (-int(e.day.replace("-", "")), e.type, e.file))

    def report_file(self, recipient: Any, day: str, file: str) -> ReportEntry | None:
        """The recipient's report ``file`` of ``day``, or ``None`` (never another's)."""
        if not DAY_RE.match(day or "") or not _FILE_RE.match(file or ""):
            return None
        for e in self.reports(recipient, days=[day], file=file):
            if e.file == file:
                return e
        return None

    # --- events -------------------------------------------------------------------------------

    def _partition(self, day: str, type_name: str) -> list[str]:
        d = self.settings.paths.data / "events" / f"date={day}" / f"type={type_name}"
        return sorted(str(p) for p in d.glob("*.parquet")) if d.is_dir() else []

    def event_types(self, day: str) -> list[str]:
        """Report types with stored events on ``day``."""
        d = self.settings.paths.data / "events" / f"date={day}"
        if not d.is_dir():
            return []
        return sorted(p.name.removeprefix("type=") for p in d.iterdir()
                      if p.name.startswith("type=") and p.name.removeprefix("type=") in self.registry)

    def own_events(self, shares: list[Recipient], day: str, type_name: str,
                   where: dict[str, list[Any]] | None = None) -> pa.Table | None:
        """One recipient's distinct events of one day and type: the rows
        :class:`herald.route.Router` built from its routing entries ``shares`` alone (its own
        filters; for law enforcement, one scoped share per operation) sends it, narrowed by
        ``where`` (column -> accepted values).  ``None`` when the type has no data or lacks a
        column of ``where``; an empty table when ``shares`` is empty."""
        files = self._partition(day, type_name)
        if not files:
            return None
        rtype = self.registry.get(type_name)
        conds, params = [], [files]
        for col, values in (where or {}).items():
            upper = col.startswith("upper:")
            col = col.removeprefix("upper:")
            if col not in rtype.columns:
                return None
            ref = f'upper("{col}")' if upper else f'"{col}"'
            conds.append(f'{ref} IN ({", ".join("?" for _ in values)})')
            params.extend(values)
        cols = ", ".join(f'"{c}"' for c in rtype.columns)
        sql = f"SELECT DISTINCT {cols} FROM read_parquet(?, union_by_name=true)"
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        sql += " ORDER BY ALL"
        con = self._cursor()
        try:
            try:
                rel = con.sql(sql, params=params)
            except TypeError:  # pragma: no cover - DuckDB without sql(params=)
                rel = con.execute(sql, params)
            table = _arrow(rel)
        except duckdb.Error as exc:
            raise RequestError(f"bad query value: {exc}") from None
        finally:
            con.close()
        table = table.cast(rtype.arrow_schema)
        if not shares:
            return table.slice(0, 0)
        return table.filter(pa.array(Router(shares).route(table, rtype).routed))


def _arrow(result) -> pa.Table:
    """The Arrow table of a DuckDB result (``to_arrow_table`` in DuckDB 2, older names before)."""
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        fn = getattr(result, name, None)
        if fn is not None:
            out = fn()
            return out if isinstance(out, pa.Table) else out.read_all()
    raise RuntimeError("DuckDB result has no Arrow export")  # pragma: no cover


# --- reports/query -------------------------------------------------------------------------------

#: Query fields that name a column by its scan-report name; event reports use ``src_`` names.
_ALIASES = {"ip": "address_column", "asn": "asn_column", "geo": "geo_column"}


def _union(shares: list[Recipient]) -> Recipient:
    """One recipient holding the ASNs, countries and networks of all ``shares``."""
    return Recipient(name="union", email="u@localhost",
                     asns=sorted({a for r in shares for a in r.asns}),
                     countries=sorted({c for r in shares for c in r.countries}),
                     cidrs=list({c for r in shares for c in r.cidrs}))


def _check_own(recipient: Recipient, query: dict[str, Any]) -> tuple[list, list, list]:
    """Validate the asn/geo/ip of a query against the recipient's verified filters.

    Returns:
        ``(asns, countries, networks)`` asked for.

    Raises:
        RequestError(403): none given, or one is not the recipient's.
    """
    asns, geos, nets = [], [], []
    for v in _scalars(query.get("asn")):
        try:
            asn = int(str(v).upper().removeprefix("AS"))
        except ValueError:
            raise RequestError(f"query asn {v!r} is not an AS number") from None
        if asn not in recipient.asns:
            raise RequestError(f"query asn {asn} is not one of your verified filters", 403)
        asns.append(asn)
    for v in _scalars(query.get("geo")):
        cc = str(v).upper()
        if cc not in recipient.countries:
            raise RequestError(f"query geo {cc!r} is not one of your verified filters", 403)
        geos.append(cc)
    for v in _scalars(query.get("ip")):
        try:
            net = ipaddress.ip_network(str(v), strict=False)
        except ValueError:
            raise RequestError(f"query ip {v!r} is not an address or network") from None
        if not any(net.version == c.version and net.subnet_of(c) for c in recipient.cidrs):
            raise RequestError(f"query ip {net} is not inside your verified networks", 403)
        nets.append(net)
    if not (asns or geos or nets):
        raise RequestError("the query must include one of your own asn, geo or ip filters", 403)
    return asns, geos, nets


def _scalars(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return v


def query_events(catalog: Catalog, shares_of: Callable[[str], list[Recipient]],
                 body: dict[str, Any]) -> Any:
    """``reports/query``: the recipient's events matching ``body["query"]``.

    ``query`` maps field names to a value or a list of values; ``asn``/``geo``/``ip`` match the
    type's address columns (``src_*`` on event reports) and at least one of them, each one of the
    recipient's own filters, is required.  ``date`` (default: the newest run day), ``type``
    (also accepted inside ``query``), ``sort`` (``field`` or ``-field`` / ``field desc``),
    ``limit`` (default 1000, at most 10000), ``page`` (from 1) and ``facet`` (a field: returns
    ``{value: count}``, largest first) as Shadowserver's API.  ``shares_of(day)`` gives the
    caller's routing entries of a day (what the daily run routes with).

    Raises:
        RequestError: invalid fields (400) or a filter that is not the recipient's (403).
    """
    query = body.get("query") or {}
    if not isinstance(query, dict):
        raise RequestError("query must be an object of field: value")
    query = dict(query)
    limit = body.get("limit", 1000)
    page = body.get("page", 1)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_QUERY_LIMIT:
        raise RequestError(f"limit must be an integer from 1 to {MAX_QUERY_LIMIT}")
    if not isinstance(page, int) or isinstance(page, bool) or page < 1:
        raise RequestError("page must be an integer from 1")
    types = _as_list(body.get("type") or query.pop("type", None), "type")
    for t in types:
        if not _TYPE_RE.match(t) or t not in catalog.registry:
            raise RequestError(f"unknown report type {t!r}", 404)
    days = parse_dates(body.get("date"), catalog.run_days()[:1])
    shares = {day: shares_of(day) for day in days}
    asns, geos, nets = _check_own(_union([r for v in shares.values() for r in v]), query)
    other = {}
    for k, v in query.items():
        if k in ("asn", "geo", "ip"):
            continue
        if not isinstance(k, str) or not re.match(r"^[a-z0-9_]{1,64}$", k):
            raise RequestError(f"query field {k!r} is not a column name")
        vals = _scalars(v)
        if not vals or not all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in vals):
            raise RequestError(f"query field {k!r}: values must be strings or integers")
        other[k] = vals
    narrow = Recipient(name="query", email="q@localhost", asns=asns, countries=geos, cidrs=nets)
    rows: list[dict[str, Any]] = []
    for day in days:
        for t in types or catalog.event_types(day):
            rtype = catalog.registry.get(t)
            where = dict(other)
            # Push the asked ASNs and countries down into DuckDB (only a pre-filter: the Router
            # below decides, with the same semantics).
            if asns and rtype.asn_column:
                where[rtype.asn_column] = asns
            if geos and rtype.geo_column:
                where[f"upper:{rtype.geo_column}"] = geos
            table = catalog.own_events(shares[day], day, t, where)
            if table is None or not table.num_rows:
                continue
            table = _narrow(table, rtype, narrow, asns, geos, nets)
            for rec in table.to_pylist():
                out = {k: _jsonable(v) for k, v in rec.items()}
                out.setdefault("type", t)
                rows.append(out)
    facet = body.get("facet")
    if facet:
        if not isinstance(facet, str):
            raise RequestError("facet must be a field name")
        counts: dict[str, int] = {}
        for r in rows:
            key = r.get(facet, r.get(f"src_{facet}"))
            counts[str(key)] = counts.get(str(key), 0) + 1
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return dict(ordered[(page - 1) * limit: page * limit])
    sort = body.get("sort")
    if sort:
        if not isinstance(sort, str):
            raise RequestError("sort must be a field name")
        field, _, direction = sort.strip().partition(" ")
        desc = direction.lower() == "desc" or field.startswith("-")
        field = field.lstrip("-")
        rows.sort(key=lambda r: (r.get(field) is None, str(r.get(field)) if not isinstance(
            r.get(field), int) else f"{r.get(field):020d}"), reverse=desc)
    return rows[(page - 1) * limit: page * limit]


def _narrow(table: pa.Table, rtype: ReportType, narrow: Recipient, asns, geos, nets) -> pa.Table:
    """Rows matching every asked asn / geo / ip condition (each an OR of its values)."""
    mask = np.ones(table.num_rows, dtype=bool)
    for kind, present in (("asns", asns), ("countries", geos), ("cidrs", nets)):
        if not present:
            continue
        one = Recipient(name="q", email="q@localhost", **{kind: getattr(narrow, kind)})
        hit = np.zeros(table.num_rows, dtype=bool)
        hit[Router([one]).route(table, rtype).event] = True
        mask &= hit
    return table.filter(pa.array(mask))

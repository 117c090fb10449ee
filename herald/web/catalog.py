"""What a recipient may see: its report files and its events.

Reports come from the run summaries ``<data>/runs/<day>.json`` written by
:func:`herald.pipeline.run_day` (``reports: [{recipient, type, rows, path, sha256, ...}]``) and,
when the run ledger fills it, the ``reports`` table.  An entry belongs to a recipient only when its
``recipient`` is the recipient's name **and** its file lies in ``<reports>/<day>/<slug>/``; a file
outside that directory (a crafted path, a symlink out) is never served.

Events (``reports/query``) come from the recipient's own report files of the day and type, read
back with the type's Arrow schema (:func:`herald.reports.read.read_report_csv`), and every row
returned has also passed :class:`herald.route.Router` built from the recipient's *verified*
filters alone: :meth:`Catalog.own_events` cannot return a row the daily run did not send to the
recipient, and it reads nothing of anyone else's (its work grows with the caller's rows, not with
the day's).  ``reports/query`` (:mod:`herald.web.query`) runs on its result only.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from herald.config import Settings
from herald.constituency.recipients import Recipient
from herald.errors import HeraldError
from herald.reports.read import read_report_csv
from herald.route import Router
from herald.schema.registry import Registry
from herald.store.db import Database, RecipientRow, ReportRow

DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,250}$")
#: Largest date range a request may cover (``reports/stats``, ``reports/types``).
MAX_RANGE_DAYS = 366
#: Largest date range of ``reports/list`` (each listed report costs a sealed id: ~92 days, a
#: quarter, keeps one answer to a few thousand entries for a recipient with many types).
MAX_LIST_DAYS = 92
#: Run summaries kept parsed in memory (the first parsed is dropped first).
MAX_CACHED_RUNS = 32
#: Largest ``limit`` of ``reports/query`` (as Shadowserver's API; used by :mod:`herald.web.query`).
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


def parse_dates(value: Any, default_days: list[str] | None = None,
                max_days: int = MAX_RANGE_DAYS) -> list[str]:
    """Days of a ``date`` field: ``YYYY-MM-DD`` or ``YYYY-MM-DD:YYYY-MM-DD`` (inclusive).

    Args:
        value: the field's JSON value (``None``/``""``: ``default_days``).
        default_days: the days of an absent ``date``.
        max_days: the longest range accepted (default :data:`MAX_RANGE_DAYS`).

    Returns:
        ``YYYY-MM-DD`` strings, oldest first.

    Raises:
        RequestError: 400, malformed, reversed, or longer than ``max_days`` (the message names
        the field ``date`` and never repeats the value).
    """
    if value is None or value == "":
        return list(default_days or [])
    if not isinstance(value, str):
        raise RequestError("date must be a string YYYY-MM-DD or YYYY-MM-DD:YYYY-MM-DD")
    parts = value.split(":")
    if len(parts) > 2 or not all(DAY_RE.match(p) for p in parts):
        raise RequestError("date: expected YYYY-MM-DD or YYYY-MM-DD:YYYY-MM-DD")
    try:
        start = date.fromisoformat(parts[0])
        end = date.fromisoformat(parts[-1])
    except ValueError:
        raise RequestError("date: not a calendar date") from None
    if end < start:
        raise RequestError("date: the range ends before it starts")
    n = (end - start).days + 1
    if n > max_days:
        raise RequestError(f"date: at most {max_days} days")
    return [(start + timedelta(days=i)).isoformat() for i in range(n)]


def _dates(days) -> list[date]:
    out = []
    for d in days:
        try:
            out.append(date.fromisoformat(d))
        except (TypeError, ValueError):
            pass
    return out


def as_list(value: Any, field: str) -> list[str]:
    """A request field as a list of strings: ``None`` is empty, a string is split on commas.

    Raises:
        RequestError: neither a string nor a list of strings.
    """
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
        self._runs_cache: dict[str, tuple[tuple[int, int], dict[str, list[dict]]]] = {}
        self._runs_lock = threading.Lock()

    def cursor(self) -> duckdb.DuckDBPyConnection:
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

    def _run_reports(self, day: str, name: str) -> list[dict]:
        """The entries of recipient ``name`` in the ``reports`` list of the run summary of
        ``day``; empty when there is none or it is unreadable.  The summary is parsed once while
        the file is unchanged and indexed by recipient (a day has an entry per recipient and
        type: tens of thousands), so a lookup costs the recipient's entries only."""
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
            return hit[1].get(name, [])
        try:
            reports = json.loads(path.read_text()).get("reports", [])
            by_name: dict[str, list[dict]] = {}
            for r in reports:
                by_name.setdefault(r.get("recipient"), []).append(r)
        except (OSError, ValueError, AttributeError, TypeError):
            return []
        with self._runs_lock:  # handlers run in a thread pool
            self._runs_cache.pop(day, None)
            self._runs_cache[day] = (stamp, by_name)
            while len(self._runs_cache) > MAX_CACHED_RUNS:
                self._runs_cache.pop(next(iter(self._runs_cache)))
        return by_name.get(name, [])

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
            for r in self._run_reports(day, recipient.name):
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

    def own_types(self, shares: list[Recipient], day: str) -> list[str]:
        """Registered report types the recipient of ``shares`` has report files of on ``day``
        (sorted; empty without ``shares``)."""
        owner = _owner(shares)
        if owner is None or not DAY_RE.match(day or ""):
            return []
        return sorted({e.type for e in self.reports(owner, days=[day])
                       if e.type in self.registry and e.file.endswith(".csv")})

    def own_events(self, shares: list[Recipient], day: str, type_name: str) -> pa.Table | None:
        """One recipient's distinct events of one day and type: the rows of its own report files
        of that day and type (one file; a law-enforcement partner: one per operation), kept only
        where :class:`herald.route.Router` built from its routing entries ``shares`` alone still
        sends them to it.

        This is the *scope* step of ``reports/query`` (:mod:`herald.web.query`): no value of a
        request takes part in it, and every later predicate, sort or facet runs on its result.
        Its work is bounded by the caller's rows, never the day's: only files listed by
        :meth:`reports` for the recipient (inside ``<reports>/<day>/<slug>/``) are read, never
        the Parquet store of all recipients.  Time and memory grow with the size of those files.

        Args:
            shares: the caller's routing entries of ``day`` (all of one recipient: same ``id``,
                ``name`` and ``slug``).
            day: ``YYYY-MM-DD``.
            type_name: a registered report type.

        Returns:
            a table with ``rtype.arrow_schema`` (distinct rows: the first occurrence of each,
            in file order, files in :meth:`reports` order; timestamps in whole seconds, as the
            reports hold them), ``None`` when the recipient has no report of the type that
            day; an empty table when ``shares`` is empty.

        Raises:
            duckdb.Error / pyarrow.ArrowException / OSError: a report file could not be read
            (callers answer a generic error).
        """
        rtype = self.registry.get(type_name)
        owner = _owner(shares)
        if owner is None:
            return rtype.arrow_schema.empty_table()
        files = [e.path for e in self.reports(owner, days=[day], types=[type_name])
                 if e.file.endswith(".csv")]
        if not files:
            return None
        tables = [read_report_csv(f, rtype) for f in files]
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        table = table.append_column("__i", pa.array(np.arange(table.num_rows, dtype=np.int64)))
        cols = [f'"{c}"' for c in rtype.columns]  # registry names, not request values
        # The first occurrence of each row (two 64-bit hashes of its cells, as the daily run
        # de-duplicates), in file order: cheaper than ORDER BY ALL, and as stable.
        sql = (f"SELECT {', '.join(cols)} FROM own WHERE __i IN (SELECT min(__i) FROM own "
               f"GROUP BY hash({', '.join(cols)}), hash({', '.join(reversed(cols))})) ORDER BY __i")
        con = self.cursor()
        try:
            con.register("own", table)
            table = _arrow(con.sql(sql))
        finally:
            con.close()
        table = table.cast(rtype.arrow_schema)
        # Defence in depth: the files are the caller's; the Router of its current routing
        # entries must still send each row to it.
        return table.filter(pa.array(Router(shares).route(table, rtype).routed))


def _owner(shares: list[Recipient]) -> Recipient | None:
    """The recipient whose routing entries ``shares`` are (``None`` when empty or when they are
    not all of one recipient with a database id)."""
    if not shares:
        return None
    first = shares[0]
    if first.id is None or any(r.id != first.id or r.name != first.name for r in shares):
        return None
    return first


def _arrow(result) -> pa.Table:
    """The Arrow table of a DuckDB result (``to_arrow_table`` in DuckDB 2, older names before)."""
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        fn = getattr(result, name, None)
        if fn is not None:
            out = fn()
            return out if isinstance(out, pa.Table) else out.read_all()
    raise RuntimeError("DuckDB result has no Arrow export")  # pragma: no cover


def union_shares(shares: list[Recipient]) -> Recipient:
    """One recipient holding the ASNs, countries and networks of all ``shares`` (the caller's
    routing entries of the days asked for)."""
    return Recipient(name="union", email="u@localhost",
                     asns=sorted({a for r in shares for a in r.asns}),
                     countries=sorted({c for r in shares for c in r.countries}),
                     cidrs=list({c for r in shares for c in r.cidrs}))


"""The public statistics dashboard (``GET /stats`` and ``GET /stats.json``): aggregates only.

What it shows, for the last :data:`DAYS` days of the event store: per day and report type the
number of distinct affected addresses, per country the total over the period, and the grand total.
It never shows an address, an ASN or a recipient (GDPR Art. 5(1)(c) data minimisation).

**Suppression rule** (docs/dashboard.md): the *base cells* are the distinct-address counts per
(day, report type, country).  A base cell below :data:`MIN_COUNT` is dropped from **every**
published figure; each published number (a day/type row, a country, the total) is the sum of the
base cells of at least :data:`MIN_COUNT` that it covers.  Any sum or difference of published
numbers, on one page or across snapshots of different days, is therefore a combination of base
cells of at least :data:`MIN_COUNT`: a small cell can never be recovered by subtraction.  A row
whose base cells are all small is shown as ``"<5"``; ``partial`` marks a day/type row some of
whose addresses were withheld (the country table and the total carry no such mark: it would
tell, from one snapshot to the next, that a country gained a few addresses).

Only ISO 3166-1 alpha-2 codes assigned today (the ``iso3166`` package) are published as
countries; any other ``geo`` value (an address, markup, ``ZZ``) is counted as an unknown country,
which the country table omits.

The numbers are computed with DuckDB straight from the Parquet partitions
``date=D/type=T/*.parquet`` of the event store (``[paths] events``: ``<data>/events`` by default,
another folder, or an S3 prefix, :mod:`herald.eventstore`) and cached per process for
:data:`CACHE_SECONDS`.
The enrichment data's attribution (CC BY 4.0) is shown on the page, as its licence requires.
"""

from __future__ import annotations

import re
import time
from datetime import date, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from iso3166 import countries_by_alpha2

from herald.eventstore import EventStore
from herald.schema import default_registry
from herald.store.events import store_columns, store_days, store_files, store_types
from herald.web.state import TEMPLATES_DIR, WebState

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

#: Days covered by the dashboard.
DAYS = 30
#: Smallest base cell counted in any published figure; rows below are shown as ``"<5"``.
MIN_COUNT = 5
#: Seconds a computed dashboard is reused.
CACHE_SECONDS = 300
#: ``Cache-Control`` of the dashboard: public aggregates, reused as long as the server's cache.
CACHE_CONTROL = f"public, max-age={CACHE_SECONDS}"

_cache: dict[tuple[str, str], tuple[float, dict]] = {}
_CC_RE = re.compile(r"[A-Z]{2}")

ATTRIBUTION = ("IP address data: ip-location-db (CC BY 4.0), built from RouteViews, RIR and DB-IP "
               "data.")


def valid_country(value: Any) -> str | None:
    """``value`` when it is an assigned ISO 3166-1 alpha-2 code (exactly two capitals), else
    ``None`` (an address, markup, lowercase, ``ZZ``, ``None``)."""
    if isinstance(value, str) and _CC_RE.fullmatch(value) and value in countries_by_alpha2:
        return value
    return None


def _published(n: int, withheld: bool) -> int | str:
    return f"<{MIN_COUNT}" if n == 0 and withheld else n


def _base_cells(store: EventStore, start: date, today: date) -> list[tuple[str, str, str | None, int]]:
    """``[(day, type, country or None, distinct addresses)]`` of the window (invalid geo: None)."""
    reg = default_registry()
    cells: dict[tuple[str, str, str | None], int] = {}
    con = duckdb.connect()
    try:
        for day in store_days(store):
            if not start <= day <= today:
                continue
            for name in store_types(store, day):
                if name not in reg:
                    continue
                rtype = reg.get(name)
                files = store_files(store, day, name)
                if not files or not rtype.address_column:
                    continue
                addr, geo = rtype.address_column, rtype.geo_column
                geo_expr = f'CAST("{geo}" AS VARCHAR)' if geo else "NULL"
                if store.is_local:
                    src = ("read_parquet([" + ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                           + "], union_by_name=true)")
                else:
                    con.register("_herald_dashboard_rows",
                                 store_columns(store, files, [addr] + ([geo] if geo else [])))
                    src = "_herald_dashboard_rows"
                try:
                    rows = con.sql(f'SELECT {geo_expr} AS cc, count(DISTINCT "{addr}") AS n '
                                   f'FROM {src} WHERE "{addr}" IS NOT NULL GROUP BY 1').fetchall()
                finally:
                    if not store.is_local:
                        con.unregister("_herald_dashboard_rows")
                for raw, n in rows:
                    cc = valid_country(raw.strip().upper() if isinstance(raw, str) else None)
                    key = (day.isoformat(), name, cc)
                    cells[key] = cells.get(key, 0) + int(n)
    finally:
        con.close()
    return [(d, t, cc, n) for (d, t, cc), n in sorted(cells.items(), key=lambda x: str(x[0]))]


def compute(events: Path | EventStore, today: date) -> dict[str, Any]:
    """Aggregates of the :data:`DAYS` days ending ``today`` (a UTC date), under the suppression
    rule of the module docstring.

    Args:
        events: the event store, or a data folder (its default store ``<data>/events``).

    Returns:
        ``{"days": [{"day", "type", "victims", "partial"}], "countries": [{"country", "victims"}],
        "totals": {"victims", "types"}, "from", "to", "min_count", "attribution"}``;
        ``victims`` is an ``int`` (a sum of base cells of at least :data:`MIN_COUNT`) or ``"<5"``
        when every base cell of the row is smaller.  ``country`` is an ISO 3166-1 alpha-2 code.
    """
    start = today - timedelta(days=DAYS - 1)
    rows: dict[tuple[str, str], list] = {}
    by_cc: dict[str, int] = {}
    total = 0
    store = events if isinstance(events, EventStore) else EventStore.local(events)
    for day, name, cc, n in _base_cells(store, start, today):
        keep = n >= MIN_COUNT
        row = rows.setdefault((day, name), [0, False])
        row[0] += n if keep else 0
        row[1] |= not keep
        total += n if keep else 0
        if cc is not None:
            by_cc[cc] = by_cc.get(cc, 0) + (n if keep else 0)
    per_day = [{"day": d, "type": t, "victims": _published(n, w), "partial": w}
               for (d, t), (n, w) in sorted(rows.items())]
    # A country only with small cells is left out: its row would say nothing but "present".
    countries = [{"country": cc, "victims": n}
                 for cc, n in sorted(by_cc.items(), key=lambda x: (-x[1], x[0])) if n]
    return {"from": start.isoformat(), "to": today.isoformat(), "min_count": MIN_COUNT,
            "days": per_day, "countries": countries,
            "totals": {"victims": total, "types": len({t for _, t in rows})},
            "attribution": ATTRIBUTION}


def clear_cache() -> None:
    """Forget the cached figures (the next request computes them afresh)."""
    _cache.clear()


def _cached(state: WebState) -> dict:
    today = state.clock().astimezone(timezone.utc).date()
    store = state.settings.event_store
    key = (store.root, today.isoformat())
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    value = compute(store, today)
    if len(_cache) > 16:  # one entry per data directory and day: keep memory bounded
        _cache.clear()
    _cache[key] = (time.monotonic(), value)
    return value


@router.get("/stats.json")
def stats_json(request: Request) -> JSONResponse:
    """The dashboard's numbers as JSON (no login)."""
    return JSONResponse(_cached(request.app.state.herald),
                        headers={"Cache-Control": CACHE_CONTROL})


@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request) -> HTMLResponse:
    """The dashboard page (no login)."""
    data = _cached(request.app.state.herald)
    return templates.TemplateResponse(request, "stats.html", {"data": data, "user": None},
                                      headers={"Cache-Control": CACHE_CONTROL})

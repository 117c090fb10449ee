"""The public statistics dashboard (``GET /stats`` and ``GET /stats.json``): aggregates only.

What it shows, for the last :data:`DAYS` days of the event store: per day and report type the
number of distinct affected addresses, and per country the total over the period.  It never shows
an address, an ASN or a recipient; and a count below :data:`MIN_COUNT` is published as ``"<5"``
(small cells can single out a network), in the spirit of GDPR Art. 5(1)(c) data minimisation.
The enrichment data's attribution (CC BY 4.0) is shown on the page, as its licence requires.

The numbers are computed with DuckDB straight from the Parquet partitions
``<data>/events/date=D/type=T/*.parquet`` and cached per process for :data:`CACHE_SECONDS`.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates

from herald.schema import default_registry
from herald.web.app import TEMPLATES_DIR, WebState

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

#: Days covered by the dashboard.
DAYS = 30
#: Smallest count published as a number; smaller ones become ``"<5"``.
MIN_COUNT = 5
#: Seconds a computed dashboard is reused.
CACHE_SECONDS = 300

_cache: dict[str, tuple[float, dict]] = {}

ATTRIBUTION = ("IP address data: ip-location-db (CC BY 4.0), built from RouteViews, RIR and DB-IP "
               "data.")


def _shown(n: int) -> int | str:
    return n if n >= MIN_COUNT else f"<{MIN_COUNT}"


def compute(data_dir: Path, today: date | None = None) -> dict[str, Any]:
    """Aggregates of the last :data:`DAYS` days.

    Returns:
        ``{"days": [{"day", "type", "victims"}], "countries": [{"country", "victims"}],
        "totals": {"victims", "types"}, "from", "to", "min_count"}`` where ``victims`` are counts of
        distinct addresses (``int``) or ``"<5"``.
    """
    today = today or datetime.now(timezone.utc).date()
    start = today - timedelta(days=DAYS - 1)
    reg = default_registry()
    per_day: list[dict] = []
    by_cc: dict[str, int] = {}
    total = 0
    con = duckdb.connect()
    base = Path(data_dir) / "events"
    for ddir in sorted(base.glob("date=*")) if base.is_dir() else []:
        try:
            day = date.fromisoformat(ddir.name.removeprefix("date="))
        except ValueError:
            continue
        if not start <= day <= today:
            continue
        for tdir in sorted(ddir.glob("type=*")):
            name = tdir.name.removeprefix("type=")
            if name not in reg:
                continue
            rtype = reg.get(name)
            files = sorted(str(p) for p in tdir.glob("[!.]*.parquet"))
            if not files or not rtype.address_column:
                continue
            addr, geo = rtype.address_column, rtype.geo_column
            src = "[" + ", ".join("'" + f.replace("'", "''") + "'" for f in files) + "]"
            geo_expr = f'upper("{geo}")' if geo else "NULL"
            rows = con.sql(f'SELECT {geo_expr} AS cc, count(DISTINCT "{addr}") AS n '
                           f'FROM read_parquet({src}, union_by_name=true) '
                           f'WHERE "{addr}" IS NOT NULL GROUP BY 1').fetchall()
            n = sum(r[1] for r in rows)
            total += n
            per_day.append({"day": day.isoformat(), "type": name, "victims": _shown(n)})
            for cc, k in rows:
                by_cc[cc or "??"] = by_cc.get(cc or "??", 0) + k
    con.close()
    countries = [{"country": cc, "victims": _shown(k)}
                 for cc, k in sorted(by_cc.items(), key=lambda x: (-x[1], x[0]))]
    return {"from": start.isoformat(), "to": today.isoformat(), "min_count": MIN_COUNT,
            "days": per_day, "countries": countries,
            "totals": {"victims": _shown(total), "types": len({d["type"] for d in per_day})},
            "attribution": ATTRIBUTION}


def _cached(state: WebState) -> dict:
    key = str(state.settings.paths.data)
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    value = compute(state.settings.paths.data)
    _cache[key] = (time.monotonic(), value)
    return value


@router.get("/stats.json")
def stats_json(request: Request) -> JSONResponse:
    """The dashboard's numbers as JSON (no login)."""
    return JSONResponse(_cached(request.app.state.herald))


@router.get("/stats", response_class=HTMLResponse)
def stats_page(request: Request) -> HTMLResponse:
    """The dashboard page (no login)."""
    data = _cached(request.app.state.herald)
    return templates.TemplateResponse(request, "stats.html", {"data": data, "user": None})

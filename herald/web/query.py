"""The ``reports/query`` engine: a caller's own events, filtered, sorted, faceted and paged.

Isolation comes first, by construction:

1. **Scope first.**  For every (day, type) asked for, :meth:`herald.web.catalog.Catalog.own_events`
   reads the caller's own report files of that day and type (nobody else's rows are read: the
   work grows with the caller's rows, not with the day) and keeps only the rows
   :class:`herald.route.Router`, built from the caller's own routing entries, sends to the caller.  No user-supplied value takes part in that
   step, and every later step (asn/geo/ip narrowing, field filters, sort, facet, paging) only sees
   this already-scoped Arrow table: a wrong value can fail or match only on the caller's rows.
2. **Typed filters.**  Every filter value is checked and converted in Python against the column's
   Arrow type (:func:`convert_values`) before it is used: ``int64`` columns take integers in the
   64-bit range (not booleans, not floats; decimal strings accepted), the ``timestamp`` column
   takes ISO 8601 strings (UTC when no offset is given), address columns
   (:data:`herald.schema.registry.IP_COLUMNS`) take addresses or CIDR networks, every other column
   takes strings.  A bad value is a 400 naming the field, never echoing the value or any data.
3. **Generic errors.**  Errors of the engines (DuckDB, Arrow) and of reading a report file
   (``OSError``) are logged server-side by class name only and answered with a fixed message: no
   engine text, which could quote data, reaches a client.
4. **Bounded work.**  ``limit`` (at most :data:`MAX_QUERY_LIMIT`) and ``page`` become
   ``LIMIT``/``OFFSET`` of the DuckDB statement that orders (or counts, with ``facet``) the scoped
   rows (``page`` at most :data:`MAX_QUERY_PAGE`); a date range covers at most
   :data:`MAX_QUERY_DAYS` days; a repeated ``type`` is read once; without ``type``, only the types
   the caller has reports of are read.

The request format is Shadowserver's ``reports/query`` (https://github.com/The-Shadowserver-Foundation/api_utils/wiki/API:-Reports-Query).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from datetime import datetime, timezone
from typing import Any, Callable

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.constituency.recipients import Recipient
from herald.ipaddr import parse_ips
from herald.route import Router
from herald.schema.registry import IP_COLUMNS, ReportType
from herald.web.catalog import (
    MAX_QUERY_LIMIT, Catalog, RequestError, parse_dates, union_shares,
)

log = logging.getLogger(__name__)

#: Largest number of days one query may cover.
MAX_QUERY_DAYS = 31
#: Largest ``page`` (the OFFSET stays a 64-bit integer: 10**9 pages of 10,000 rows).
MAX_QUERY_PAGE = 10 ** 9
#: Largest number of field filters in one query, and of values per field.
MAX_FIELDS = 32
MAX_VALUES = 1000
#: Longest string value accepted in a filter.
MAX_STRING = 2048
#: The answer to any failure of the query engines (never their own text).
GENERIC_ERROR = "the query could not be evaluated"

_FIELD_RE = re.compile(r"^[a-z0-9_]{1,64}$")
_TYPE_RE = re.compile(r"^[A-Za-z0-9_]{1,100}$")
_INT_RE = re.compile(r"^[+-]?\d{1,20}$")
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_SCOPE_FIELDS = ("asn", "geo", "ip")


def _scalars(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _type_names(value: Any) -> list[str]:
    """Distinct report type names (order kept) of a ``type`` field: a string, a comma-separated
    string or a list of strings.  Raises :class:`RequestError` 400/404 (without echoing)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        names = [v for v in value.split(",") if v]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = value
    else:
        raise RequestError("type must be a string or a list of strings")
    if len(names) > 200:
        raise RequestError("type: too many report types")
    return list(dict.fromkeys(names))


def check_own(recipient: Recipient, query: dict[str, Any]) -> tuple[list[int], list[str], list]:
    """Validate the ``asn``/``geo``/``ip`` of a query against the caller's verified filters.

    Args:
        recipient: the union of the caller's routing entries (:func:`union_shares`).
        query: the ``query`` object of the request.

    Returns:
        ``(asns, countries, networks)`` asked for (``int``, upper-case ``str``,
        :class:`ipaddress.IPv4Network`/``IPv6Network``).

    Raises:
        RequestError: 400 for a malformed value, 403 when none is given or one is not the
        caller's.  Messages name the field, never the value.
    """
    asns, geos, nets = [], [], []
    for v in _scalars(query.get("asn")):
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise RequestError("query asn: expected an AS number")
        text = str(v).upper().removeprefix("AS") if isinstance(v, str) else None
        if text is not None and not _INT_RE.match(text):
            raise RequestError("query asn: expected an AS number")
        asn = int(text) if text is not None else v
        if asn not in recipient.asns:
            raise RequestError("query asn: not one of your verified filters", 403)
        asns.append(asn)
    for v in _scalars(query.get("geo")):
        if not isinstance(v, str) or not re.match(r"^[A-Za-z]{2}$", v):
            raise RequestError("query geo: expected a two-letter country code")
        if v.upper() not in recipient.countries:
            raise RequestError("query geo: not one of your verified filters", 403)
        geos.append(v.upper())
    for v in _scalars(query.get("ip")):
        net = _network(v)
        if net is None:
            raise RequestError("query ip: expected an address or network")
        if not any(net.version == c.version and net.subnet_of(c) for c in recipient.cidrs):
            raise RequestError("query ip: not inside your verified networks", 403)
        nets.append(net)
    if not (asns or geos or nets):
        raise RequestError("the query must include one of your own asn, geo or ip filters", 403)
    return asns, geos, nets


def _network(v: Any):
    """An address or CIDR string as a network, else ``None``."""
    if not isinstance(v, str) or len(v) > 100:
        return None
    try:
        return ipaddress.ip_network(v.strip(), strict=False)
    except ValueError:
        return None


def convert_values(field: str, arrow_type: pa.DataType, values: list[Any]) -> list[Any]:
    """Check and convert the filter values of one column.

    Args:
        field: the column name (only used in error messages).
        arrow_type: the column's type: ``int64``, ``timestamp[us, UTC]`` or ``string``; for
            address columns pass ``None``.
        values: the JSON values asked for (any JSON kind).

    Returns:
        ``int`` values for ``int64``; aware UTC :class:`datetime` for timestamps; networks
        (``ipaddress``) for address columns; ``str`` otherwise.

    Raises:
        RequestError(400): a value of the wrong kind or out of range; the message names the field
        and the expected kind, never the value.
    """
    if not values:
        raise RequestError(f"query field {field!r}: give a value or a non-empty list of values")
    if len(values) > MAX_VALUES:
        raise RequestError(f"query field {field!r}: at most {MAX_VALUES} values")
    out: list[Any] = []
    for v in values:
        if arrow_type is None:
            net = _network(v)
            if net is None:
                raise RequestError(f"query field {field!r}: expected an IP address or network")
            out.append(net)
        elif pa.types.is_integer(arrow_type):
            if isinstance(v, str) and _INT_RE.match(v.strip()):
                v = int(v.strip())
            if isinstance(v, bool) or not isinstance(v, int) or not _INT64[0] <= v <= _INT64[1]:
                raise RequestError(f"query field {field!r}: expected a 64-bit integer")
            out.append(v)
        elif pa.types.is_timestamp(arrow_type):
            out.append(_timestamp(field, v))
        else:
            if not isinstance(v, str) or len(v) > MAX_STRING:
                raise RequestError(f"query field {field!r}: expected a string "
                                   f"(at most {MAX_STRING} characters)")
            out.append(v)
    return out


def _timestamp(field: str, v: Any) -> datetime:
    """An ISO 8601 date-time string as an aware UTC datetime (naive means UTC)."""
    if isinstance(v, str) and 10 <= len(v) <= 40:
        try:
            t = datetime.fromisoformat(v.strip())
        except ValueError:
            t = None
        if t is not None:
            return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)
    raise RequestError(f"query field {field!r}: expected a date-time YYYY-MM-DD HH:MM:SS (UTC)")


def _ip_mask(column: pa.ChunkedArray, nets: list) -> np.ndarray:
    """``bool[N]``: rows whose address lies in any of ``nets``."""
    ips = parse_ips(column.cast(pa.string()))
    mask = np.zeros(len(ips), dtype=bool)
    for net in nets:
        if net.version == 4:
            lo, hi = int(net.network_address), int(net.broadcast_address)
            mask |= (ips.version == 4) & (ips.v4 >= lo) & (ips.v4 <= hi)
        else:
            lo, hi = int(net.network_address), int(net.broadcast_address)
            lh, ll = np.uint64(lo >> 64), np.uint64(lo & (2 ** 64 - 1))
            hh, hl = np.uint64(hi >> 64), np.uint64(hi & (2 ** 64 - 1))
            ge = (ips.v6_hi > lh) | ((ips.v6_hi == lh) & (ips.v6_lo >= ll))
            le = (ips.v6_hi < hh) | ((ips.v6_hi == hh) & (ips.v6_lo <= hl))
            mask |= (ips.version == 6) & ge & le
    return mask


def _field_mask(table: pa.Table, field: str, values: list[Any], arrow_type) -> np.ndarray:
    """``bool[N]``: rows of the (scoped) ``table`` whose ``field`` is one of ``values``."""
    if arrow_type is None:
        return _ip_mask(table.column(field), values)
    col = table.column(field)
    value_set = pa.array(values, type=col.type)
    return pc.fill_null(pc.is_in(col, value_set=value_set), False).to_numpy(zero_copy_only=False)


def _narrow(table: pa.Table, rtype: ReportType, asns, geos, nets) -> pa.Table:
    """Rows of the scoped ``table`` matching every asked asn / geo / ip (each an OR of its values),
    with the Router's semantics."""
    mask = np.ones(table.num_rows, dtype=bool)
    for kind, present in (("asns", asns), ("countries", geos), ("cidrs", nets)):
        if not present:
            continue
        one = Recipient(name="q", email="q@localhost", **{kind: list(present)})
        hit = np.zeros(table.num_rows, dtype=bool)
        hit[Router([one]).route(table, rtype).event] = True
        mask &= hit
    return table.filter(pa.array(mask))


def _jsonable(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return v


def _with_type(table: pa.Table, t: str) -> pa.Table:
    if "type" in table.column_names:
        return table
    return table.append_column("type", pa.array([t] * table.num_rows, pa.string()))


def _key_column(table: pa.Table, field: str, fallback: bool) -> pa.ChunkedArray | None:
    """The column ``field`` of ``table`` (or ``src_<field>`` when ``fallback`` and it is absent)."""
    if field in table.column_names:
        return table.column(field)
    if fallback and f"src_{field}" in table.column_names:
        return table.column(f"src_{field}")
    return None


def _facet_text(col: pa.ChunkedArray | None, n: int) -> pa.Array:
    """A facet key column as text, as the rows are answered (``"None"`` for a missing value)."""
    if col is None:
        return pa.array(["None"] * n, pa.string())
    if pa.types.is_timestamp(col.type):
        col = pc.strftime(col, format="%Y-%m-%d %H:%M:%S")
    return pc.fill_null(col.cast(pa.string()), "None")


def _parse_sort(sort: Any) -> tuple[str, bool] | None:
    if sort is None or sort == "":
        return None
    if not isinstance(sort, str) or len(sort) > 80:
        raise RequestError("sort must be a field name, -field or 'field desc'")
    field, _, direction = sort.strip().partition(" ")
    desc = field.startswith("-") or direction.strip().lower() == "desc"
    field = field.lstrip("-")
    if not _FIELD_RE.match(field) or direction.strip().lower() not in ("", "asc", "desc"):
        raise RequestError("sort must be a field name, -field or 'field desc'")
    return field, desc


def query_events(catalog: Catalog, shares_of: Callable[[str], list[Recipient]],
                 body: dict[str, Any]) -> Any:
    """``reports/query``: the caller's events matching ``body["query"]``.

    ``query`` maps field names to a value or a list of values; ``asn``/``geo``/``ip`` match the
    type's address columns (``src_*`` on event reports) and at least one of them, each one of the
    caller's own filters, is required.  Other fields are column names matched for equality (a
    list: any of), their values typed as :func:`convert_values` says.  ``date`` (default: the
    newest run day; a range covers at most :data:`MAX_QUERY_DAYS` days), ``type`` (also accepted
    inside ``query``; repeats ignored), ``sort`` (``field``, ``-field`` or ``field desc``; nulls
    last), ``limit`` (default 1000, at most :data:`MAX_QUERY_LIMIT`), ``page`` (from 1 to
    :data:`MAX_QUERY_PAGE`) and
    ``facet`` (a field: ``{value: count}``, largest first) as Shadowserver's API.
    ``shares_of(day)`` gives the caller's routing entries of a day (what the daily run routes
    with).

    Returns:
        a list of row objects (``type`` added; timestamps ``YYYY-MM-DD HH:MM:SS`` UTC) or, with
        ``facet``, a dict ``{value as text: count}``.

    Raises:
        RequestError: invalid fields (400), a filter that is not the caller's (403), an unknown
        type (404), or :data:`GENERIC_ERROR` (400) when an engine fails.
    """
    query = body.get("query") or {}
    if not isinstance(query, dict):
        raise RequestError("query must be an object of field: value")
    query = dict(query)
    limit = body.get("limit", 1000)
    page = body.get("page", 1)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= MAX_QUERY_LIMIT:
        raise RequestError(f"limit must be an integer from 1 to {MAX_QUERY_LIMIT}")
    if not isinstance(page, int) or isinstance(page, bool) or not 0 < page <= MAX_QUERY_PAGE:
        raise RequestError(f"page must be an integer from 1 to {MAX_QUERY_PAGE}")
    types = _type_names(body.get("type") or query.pop("type", None))
    query.pop("type", None)
    for t in types:
        if not _TYPE_RE.match(t) or t not in catalog.registry:
            raise RequestError("unknown report type", 404)
    days = parse_dates(body.get("date"), catalog.run_days()[:1])
    if len(days) > MAX_QUERY_DAYS:
        raise RequestError(f"date: a query covers at most {MAX_QUERY_DAYS} days")
    shares = {day: shares_of(day) for day in days}
    asns, geos, nets = check_own(union_shares([r for v in shares.values() for r in v]), query)
    fields = {k: _scalars(v) for k, v in query.items() if k not in _SCOPE_FIELDS}
    if len(fields) > MAX_FIELDS:
        raise RequestError(f"query: at most {MAX_FIELDS} fields")
    for k in fields:
        if not isinstance(k, str) or not _FIELD_RE.match(k):
            raise RequestError("query field names must be column names [a-z0-9_]")
    sort = _parse_sort(body.get("sort"))
    facet = body.get("facet")
    if facet is not None and facet != "" and (not isinstance(facet, str)
                                               or not _FIELD_RE.match(facet)):
        raise RequestError("facet must be a field name")
    # Fields, sort and facet are checked against the registry (every known type), never
    # against what is stored: the answer to a bad request does not depend on anyone's data.
    known = list(catalog.registry)
    converted = _convert_fields(fields, known)
    for name, what in ((sort[0] if sort else None, "sort"), (facet or None, "facet")):
        if name and name != "type" and not any(
                name in r.columns or (what == "facet" and f"src_{name}" in r.columns)
                for r in known):
            raise RequestError(f"{what}: not a column of any report type")
    parts = [(day, t) for day in days for t in (types or catalog.own_types(shares[day], day))]
    rtypes = {t: catalog.registry.get(t) for _, t in parts}
    try:
        return _run(catalog, shares, parts, rtypes, (asns, geos, nets), converted, sort,
                    facet or None, limit, page)
    except (duckdb.Error, pa.ArrowException, OSError) as exc:  # OSError: a file went away
        log.warning("reports/query failed in the engine: %s", type(exc).__name__)
        raise RequestError(GENERIC_ERROR) from None


def _convert_fields(fields: dict[str, list[Any]], known: list[ReportType]
                    ) -> dict[str, tuple[Any, list[Any]]]:
    """``field -> (arrow type or None for addresses, converted values)``, typed by the column in
    the ``known`` report types; a field that is a column of none of them matches nothing
    (``(False, [])``)."""
    out: dict[str, tuple[Any, list[Any]]] = {}
    for k, vals in fields.items():
        kinds = {r.column_types[k] for r in known if k in r.columns}
        if not kinds:
            # Validate the shape anyway; no stored column: no row can match.
            if not vals or len(vals) > MAX_VALUES or not all(
                    isinstance(v, (str, int)) and not isinstance(v, bool) for v in vals):
                raise RequestError(f"query field {k!r}: values must be strings or integers")
            out[k] = (False, [])
            continue
        arrow_type = None if k in IP_COLUMNS else (kinds.pop() if len(kinds) == 1 else pa.string())
        out[k] = (arrow_type, convert_values(k, arrow_type, vals))
    return out


def _run(catalog, shares, parts, rtypes, scope, converted, sort, facet, limit, page):
    """Scope, narrow and filter each (day, type) in Arrow, then order/count and page in DuckDB."""
    asns, geos, nets = scope
    tables: list[pa.Table] = []
    keys: list[pa.Table] = []
    for day, t in parts:
        rtype = rtypes[t]
        if any(arrow_type is False for arrow_type, _ in converted.values()) or any(
                k not in rtype.columns for k in converted):
            continue  # a field this type lacks: none of its rows match (as an equality would)
        table = catalog.own_events(shares[day], day, t)  # scope first: the caller's rows only
        if table is None or not table.num_rows:
            continue
        table = _narrow(table, rtype, asns, geos, nets)
        mask = np.ones(table.num_rows, dtype=bool)
        for k, (arrow_type, values) in converted.items():
            mask &= _field_mask(table, k, values, arrow_type)
        table = _with_type(table.filter(pa.array(mask)), t)
        if not table.num_rows:
            continue
        n = table.num_rows
        cols = {"__part": pa.array(np.full(n, len(tables), dtype=np.int32)),
                "__row": pa.array(np.arange(n, dtype=np.int64))}
        if facet:
            cols["__key"] = _facet_text(_key_column(table, facet, True), n)
        elif sort:
            key = _key_column(table, sort[0], False)
            cols["__key"] = key if key is not None else pa.nulls(n)
        tables.append(table)
        keys.append(pa.table(cols))
    if not tables:
        return {} if facet else []
    if sort and not facet:
        keys = _unify_key(keys)
    index = pa.concat_tables(keys)
    con = catalog.cursor()
    try:
        con.register("scoped", index)
        if facet:
            res = con.execute("SELECT __key, count(*) AS n FROM scoped GROUP BY __key "
                              "ORDER BY n DESC, __key LIMIT ? OFFSET ?",
                              [limit, (page - 1) * limit]).fetchall()
            return {k: int(n) for k, n in res}
        order = "__part, __row"
        if sort:
            order = f"__key {'DESC' if sort[1] else 'ASC'} NULLS LAST, " + order
        res = con.execute(f"SELECT __part, __row FROM scoped ORDER BY {order} LIMIT ? OFFSET ?",
                          [limit, (page - 1) * limit]).fetchall()
    finally:
        con.close()
    wanted: dict[int, list[int]] = {}
    for p, r in res:
        wanted.setdefault(p, []).append(r)
    picked = {p: iter(tables[p].take(pa.array(rs, pa.int64())).to_pylist())
              for p, rs in wanted.items()}
    return [{k: _jsonable(v) for k, v in next(picked[p]).items()} for p, _ in res]


def _unify_key(keys: list[pa.Table]) -> list[pa.Table]:
    """Give every partition's sort key one type (its own when all agree, else text; a partition
    lacking the column gets nulls)."""
    kinds = {k.column("__key").type for k in keys} - {pa.null()}
    target = kinds.pop() if len(kinds) == 1 else pa.string()
    out = []
    for k in keys:
        col = k.column("__key")
        if pa.types.is_null(col.type):
            col = pa.nulls(k.num_rows, target)
        elif col.type != target:
            col = col.cast(pa.string())
        out.append(k.set_column(k.column_names.index("__key"), "__key", col))
    return out

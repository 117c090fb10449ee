"""The Reports API: Shadowserver's ``/api2/`` methods, and report downloads at ``/dl/<id>``.

Every method is an HTTP POST of a JSON object carrying ``apikey``; the ``HMAC2`` header is the
lowercase hex HMAC-SHA256 of the exact body bytes keyed with the key's secret (as Shadowserver's
``call-api.py``).  Order of checks: per-address rate limit, body size and JSON, key and signature
(401), replay protection for keys that opted in (401), per-key rate limit (429), then the method.
A caller only ever sees its own recipient's reports and events (:mod:`herald.web.catalog`).

Report ids are Fernet tokens (encrypted and authenticated with the server key, see
:mod:`herald.crypto`) naming recipient, day, file, the listing API key and the fingerprint of
the secret that signed the listing; they expire after ``download_ttl`` seconds, cannot be forged or
altered, are useless to another recipient's key, and die when that secret is rotated out.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import timedelta, timezone
from typing import Any, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from herald.accounts.apikeys import (
    Caller, current_fingerprint, key_active, remember_nonce, verify_request,
)
from herald.constituency.recipients import Recipient
from herald.web.catalog import (
    MAX_LIST_DAYS, MAX_QUERY_LIMIT, MAX_RANGE_DAYS, RequestError, ReportEntry, as_list,
    parse_dates,
)
from herald.crypto import InvalidToken
from herald.web.common import ApiError, check_ip_rate, csv_file, recipient_row
from herald.web.query import MAX_QUERY_PAGE, query_events
from herald.web.state import WebState, dumps, state_of

router = APIRouter()

#: Largest request body accepted (also enforced while streaming by
#: :class:`herald.web.limits.BodyLimitMiddleware`, ``[web] max_body``).
MAX_BODY = 64 * 1024
#: Deepest nesting of arrays and objects accepted in a request body.
MAX_DEPTH = 32
#: A download id: URL-safe base64 (RFC 4648 §5) of a Fernet token, padding included.
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{40,1024}={0,2}")
_DL_LABEL = "download"
_NONCE_RE = re.compile(r"^[A-Za-z0-9_.:-]{8,128}$")


def _error(message: str, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _authenticate(request: Request, body: bytes) -> tuple[Caller, dict[str, Any]]:
    st = state_of(request)
    check_ip_rate(request)
    if len(body) > MAX_BODY:
        raise ApiError("request body too large", 413)
    doc = parse_body(body)
    if not isinstance(doc, dict):
        raise ApiError("request body must be a JSON object")
    key_id = doc.get("apikey")
    if not isinstance(key_id, str) or not key_id:
        raise ApiError("apikey is required", 401)
    caller = verify_request(st.db, st.server_key, key_id, body, request.headers.get("HMAC2", ""))
    if caller is None:
        raise ApiError("invalid apikey or HMAC2 signature", 401)
    if caller.replay_protection:
        _check_replay(st, caller, doc)
    if not st.key_limiter.allow(caller.key_id):
        raise ApiError("rate limit exceeded for this apikey", 429,
                       {"Retry-After": str(st.key_limiter.retry_after(caller.key_id))})
    return caller, doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    """``True`` when ``value`` nests arrays/objects at most ``limit`` deep (iterative walk)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > limit:
                return False
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return True


def parse_body(body: bytes) -> dict[str, Any]:
    """The JSON object of a request body (RFC 8259; an empty body is ``{}``).

    Refused with :class:`ApiError` 400: invalid UTF-8 or JSON, ``NaN``/``Infinity`` (not JSON),
    numbers too large for a float, nesting deeper than :data:`MAX_DEPTH` or too deep for the
    parser, anything but an object at the top.
    """
    try:
        doc = json.loads(body or b"{}", parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError("request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise ApiError("request body must be a JSON object")
    if not _depth_ok(doc):
        raise ApiError(f"request body nests deeper than {MAX_DEPTH} levels")
    return doc


def _check_replay(st: WebState, caller: Caller, doc: dict[str, Any]) -> None:
    ts, nonce = doc.get("timestamp"), doc.get("nonce")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise ApiError("this apikey requires a numeric 'timestamp' (Unix seconds) in the body", 401)
    try:
        ts = float(ts)
    except OverflowError:
        ts = math.inf
    now = st.clock().timestamp()
    if not math.isfinite(ts) or abs(now - ts) > st.config.replay_window:
        raise ApiError(f"timestamp outside the accepted window of {st.config.replay_window} s", 401)
    if not isinstance(nonce, str) or not _NONCE_RE.match(nonce):
        raise ApiError("this apikey requires a 'nonce' of 8-128 characters [A-Za-z0-9_.:-]", 401)
    keep = timedelta(seconds=2 * st.config.replay_window)
    if not remember_nonce(st.db, caller.key_id, nonce, keep):
        raise ApiError("nonce already used", 401)


def _shares(st: WebState, caller: Caller):
    """``day -> [Recipient]``: the caller's routing entries of a day, exactly as the daily run
    builds them (verified filters; a law-enforcement partner gets only its operations' scoped
    shares, never its own network filters)."""
    from herald.constituency.sync import routing_recipients

    def shares(day: str) -> list[Recipient]:
        return [r for r in routing_recipients(st.db, day) if r.id == caller.recipient_id]

    return shares


def download_token(st: WebState, entry: ReportEntry, recipient_id: int, key_id: str,
                   secret_fp: str | None = None) -> str:
    """An opaque, expiring report id for ``entry``, bound to the API key ``key_id`` that listed it
    and to the secret that signed the listing (``secret_fp``, :func:`herald.accounts.apikeys.fingerprint`;
    ``None``: the key's current secret).  The id dies with the key and when that secret is
    rotated out (:func:`resolve_token`)."""
    if secret_fp is None:
        secret_fp = current_fingerprint(st.db, key_id) or ""
    payload = json.dumps({"r": recipient_id, "d": entry.day, "f": entry.file, "k": key_id,
                          "s": secret_fp}, separators=(",", ":"))
    f = st.server_key.fernet(_DL_LABEL)
    return f.encrypt_at_time(payload.encode(), int(st.clock().timestamp())).decode("ascii")


def _canonical_token(token: Any) -> bool:
    """``True`` when ``token`` is exactly the URL-safe base64 text of its bytes: no trailing or
    embedded bytes (``<id>%00``, ``<id>x``), which a lenient base64 decoder would drop."""
    if not isinstance(token, str) or not _TOKEN_RE.fullmatch(token):
        return False
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, ValueError):
        return False
    return base64.urlsafe_b64encode(raw).decode("ascii") == token


def resolve_token(st: WebState, token: str) -> tuple[int, str, str] | None:
    """``(recipient_id, day, file)`` of a valid, unexpired report id whose API key is still
    active (not revoked or expired), whose listing secret is still the key's current one or its
    previous one within the rotation grace period, and whose recipient is enabled, else ``None``
    (ids without a secret fingerprint, issued by older versions, too).

    The id must be canonical (:func:`_canonical_token`); its age is measured on the app clock.
    """
    if not _canonical_token(token):
        return None
    try:
        f = st.server_key.fernet(_DL_LABEL)
        now = int(st.clock().timestamp())
        doc = json.loads(f.decrypt_at_time(token.encode("ascii"), st.config.download_ttl, now))
        found = int(doc["r"]), str(doc["d"]), str(doc["f"])
        key_id, secret_fp = str(doc["k"]), str(doc["s"])
    except (InvalidToken, ValueError, KeyError, TypeError, UnicodeError):
        return None
    if not key_active(st.db, key_id, found[0], secret_fp):
        return None
    return found


def serve_report(st: WebState, token: str, recipient_id: int | None = None) -> Response:
    """The CSV of report id ``token``; 404 when invalid, expired, or (with ``recipient_id``)
    another recipient's."""
    found = resolve_token(st, token)
    if found is None or (recipient_id is not None and found[0] != recipient_id):
        return _error("no such report (unknown or expired id)", 404)
    row = recipient_row(st, found[0])
    entry = st.catalog.report_file(row, found[1], found[2]) if row else None
    if entry is None:
        return _error("no such report (unknown or expired id)", 404)
    return csv_file(entry)


# --- methods -------------------------------------------------------------------------------------

def _body_schema(fields: dict[str, Any]) -> dict:
    props = {"apikey": {"type": "string", "description": "your API key"}}
    props.update(fields)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["apikey"], "properties": props}}}},
        "parameters": [{"name": "HMAC2", "in": "header", "required": True,
                        "schema": {"type": "string"},
                        "description": "hex HMAC-SHA256 of the body with the key's secret"}]}


_DATE = {"type": "string", "description": "YYYY-MM-DD or YYYY-MM-DD:YYYY-MM-DD"}
_STRS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}


def method(path: str, summary: str, fields: dict[str, Any] | None = None):
    """Register an API method at ``/api2/<path>``: the handler gets ``(request, state, caller,
    body)`` after authentication and returns a JSON-able value or a Response."""

    def deco(fn: Callable) -> Callable:
        async def endpoint(request: Request):
            raw = await request.body()
            # Database, crypto and file work run in the thread pool, not on the event loop.
            return await run_in_threadpool(_handle, request, raw)

        def _handle(request: Request, raw: bytes):
            try:
                caller, body = _authenticate(request, raw)
                result = fn(request, state_of(request), caller, body)
            except ApiError as exc:
                return _error(exc.message, exc.status, exc.headers)
            except RequestError as exc:
                return _error(str(exc), exc.status)
            if isinstance(result, Response):
                return result
            return Response(dumps(result), media_type="application/json")

        endpoint.__name__ = fn.__name__
        endpoint.__doc__ = fn.__doc__
        router.add_api_route(f"/api2/{path}", endpoint, methods=["POST"], summary=summary,
                             tags=["Reports API"], openapi_extra=_body_schema(fields or {}))
        return fn

    return deco


@method("test/ping", "Check connectivity and credentials")
def ping(request, st, caller, body):
    """``{"pong": "YYYY-MM-DD HH:MM:SS"}`` (UTC)."""
    return {"pong": st.clock().astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")}


@method("key/info", "Information about the calling key")
def key_info(request, st, caller, body):
    """The key id, its recipient, subscribed report names, expiry and replay protection."""
    return {"apikey": caller.key_id, "recipient": caller.recipient, "reports": [caller.slug],
            "expires": caller.expires_at.strftime("%Y-%m-%d %H:%M:%S") if caller.expires_at
            else None, "replay_protection": caller.replay_protection,
            "rate_limit_per_minute": st.config.rate_per_key}


@method("reports/subscribed", "Report names (subscriptions) of the caller")
def subscribed(request, st, caller, body):
    """``[<report name>]``: Herald has one per recipient, its slug."""
    return [caller.slug]


def _entries(st: WebState, caller: Caller, body: dict[str, Any],
             max_days: int = MAX_RANGE_DAYS, default_days: list[str] | None = None
             ) -> list[ReportEntry]:
    """The caller's report entries selected by ``reports``/``report``, ``date`` (at most
    ``max_days`` days, else a 400 naming ``date``; absent: ``default_days``, or every day when
    that is ``None``) and ``type``."""
    names = as_list(body.get("reports", body.get("report")), "reports")
    if names and caller.slug not in names:
        return []
    days = parse_dates(body.get("date"), None, max_days) if body.get("date") else default_days
    types = as_list(body.get("type"), "type")
    row = recipient_row(st, caller.recipient_id)
    return st.catalog.reports(row, days, types or None) if row else []


@method("reports/types", "Report types the caller has reports of",
        {"date": _DATE, "detail": {"type": "boolean"}})
def types(request, st, caller, body):
    """Sorted type names; with ``detail``, objects ``{type, title, taxonomy, url}``."""
    names = sorted({e.type for e in _entries(st, caller, body)})
    if not body.get("detail"):
        return names
    out = []
    for n in names:
        t = st.registry.get(n) if n in st.registry else None
        out.append({"type": n, "title": t.title if t else n, "taxonomy": t.taxonomy if t else None,
                    "url": t.url if t else None})
    return out


@method("reports/list", f"Reports that can be downloaded (date: at most {MAX_LIST_DAYS} days)",
        {"reports": _STRS, "date": _DATE, "type": _STRS, "limit": {"type": "integer"}})
def list_reports(request, st, caller, body):
    """``[{id, file, type, report, timestamp, url}]``, newest first; ``id`` expires; ``date``
    covers at most :data:`MAX_LIST_DAYS` days (longer: 400 naming ``date``)."""
    limit = body.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ApiError("limit must be a positive integer")
    base = str(request.base_url)
    out = []
    for e in _entries(st, caller, body, MAX_LIST_DAYS)[:limit]:
        token = download_token(st, e, caller.recipient_id, caller.key_id, caller.secret_fp)
        out.append({"id": token, "file": e.file, "type": e.type, "report": e.slug,
                    "timestamp": e.day, "url": f"{base}dl/{token}"})
    return out


@method("reports/download", "Download one report (CSV) by id", {"id": {"type": "string"}})
def download(request, st, caller, body):
    """The report's CSV bytes; 404 for an unknown, expired or foreign id."""
    token = body.get("id")
    if not isinstance(token, str) or not token:
        raise ApiError("id is required")
    return serve_report(st, token, caller.recipient_id)


@method("reports/query", "Query the caller's own events", {
    "query": {"type": "object", "description": "field: value; must include one of your own "
                                               "asn, geo or ip"},
    "date": _DATE, "type": _STRS, "facet": {"type": "string"},
    "sort": {"type": "string"}, "limit": {"type": "integer", "maximum": MAX_QUERY_LIMIT},
    "page": {"type": "integer", "minimum": 1, "maximum": MAX_QUERY_PAGE}})
def query(request, st, caller, body):
    """Events as objects, or ``{value: count}`` with ``facet``."""
    return query_events(st.catalog, _shares(st, caller), body)


@method("reports/stats", "Row counts of the caller's reports",
        {"date": _DATE, "report": _STRS, "type": _STRS})
def stats(request, st, caller, body):
    """``[{date, report, type, value}]``: rows per day and type (default: the last 7 run days;
    ``date`` covers at most :data:`MAX_RANGE_DAYS` days)."""
    days = None
    if not body.get("date"):
        runs = st.catalog.run_days()[:7]
        # every day from the 7th newest run day to the newest (at most MAX_RANGE_DAYS of them)
        days = parse_dates(f"{runs[-1]}:{runs[0]}", None, 10 ** 6)[-MAX_RANGE_DAYS:] if runs else []
    entries = [] if days == [] else _entries(st, caller, body, MAX_RANGE_DAYS, days)
    out = [{"date": e.day, "report": e.slug, "type": e.type, "value": e.rows} for e in entries]
    return sorted(out, key=lambda r: (r["date"], r["type"]))


@method("reports/schema", "JSON schema of a report type", {"type": {"type": "string"}})
def schema(request, st, caller, body):
    """A JSON Schema object describing one row of the type (column order kept)."""
    name = body.get("type")
    if not isinstance(name, str) or name not in st.registry:
        raise ApiError(f"unknown report type {name!r}", 404)
    return type_schema(st.registry.get(name))


def type_schema(rtype) -> dict:
    """JSON Schema (draft 2020-12) of one row of ``rtype``."""
    import pyarrow as pa

    props = {}
    for col, typ in rtype.column_types.items():
        if pa.types.is_timestamp(typ):
            props[col] = {"type": "string", "format": "date-time"}
        elif pa.types.is_integer(typ):
            props[col] = {"type": ["integer", "null"]}
        else:
            props[col] = {"type": ["string", "null"]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": rtype.title,
            "description": f"{rtype.name}: {rtype.taxonomy} / {rtype.classification_type}",
            "type": "object", "properties": props, "x-column-order": list(rtype.columns)}


@router.get("/dl/{token}", tags=["Reports API"], summary="Download a report by id (no apikey)")
def dl(token: str, request: Request):
    """Plain GET download: the id itself is the (expiring, unguessable) credential."""
    try:
        check_ip_rate(request)
    except ApiError as exc:
        return _error(exc.message, exc.status, exc.headers)
    return serve_report(state_of(request), token)


@router.post("/api2/{path:path}", include_in_schema=False)
def unknown_method(path: str):
    """Any other method: 404."""
    return _error(f"unknown method {path!r}", 404)

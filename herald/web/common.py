"""Request helpers shared by the web routers: API errors, the client address and its rate
limit, a recipient's database row, report downloads."""

from __future__ import annotations

import ipaddress

from fastapi import Request
from fastapi.responses import FileResponse

from herald.store.db import RecipientRow
from herald.web.catalog import ReportEntry
from herald.web.state import WebState, state_of


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400, headers: dict | None = None) -> None:
        super().__init__(message)
        self.message, self.status, self.headers = message, status, headers


def client_ip(request: Request) -> str:
    """The client's address: the socket peer, or, when that is one of ``[web] trusted_proxies``,
    the forwarded client (set by the proxy-headers middleware, :mod:`herald.web.app`)."""
    return request.client.host if request.client else "unknown"


def rate_bucket(ip: str) -> str:
    """The per-address rate-limit bucket of a client address: an IPv6 client counts by its /64
    (one subscriber's prefix: every address in it is the same client to a limiter), an IPv4
    client by its address; anything else as given."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 4:
        return str(addr)
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(ipaddress.IPv6Network(((int(addr) >> 64) << 64, 64)))


def check_ip_rate(request: Request) -> None:
    """Raise :class:`ApiError` 429 when the client address (its /64 for IPv6) is over its rate."""
    st = state_of(request)
    ip = rate_bucket(client_ip(request))
    if not st.ip_limiter.allow(ip):
        raise ApiError("rate limit exceeded for your address", 429,
                       {"Retry-After": str(st.ip_limiter.retry_after(ip))})


def recipient_row(st: WebState, recipient_id: int) -> RecipientRow | None:
    """The enabled recipient ``recipient_id`` (detached from its session), or ``None``."""
    with st.db.session() as s:
        row = s.get(RecipientRow, recipient_id)
        if row is None or row.disabled:
            return None
        s.expunge(row)
        return row


def csv_file(entry: ReportEntry) -> FileResponse:
    """A streamed download of a report file (reports can be large: never read whole)."""
    return FileResponse(entry.path, media_type="text/csv; charset=utf-8", filename=entry.file,
                        headers={"Cache-Control": "no-store"})

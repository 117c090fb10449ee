"""The web application: Reports API (``/api2/``), downloads (``/dl/``), portal and admin console.

:func:`create_app` builds one FastAPI application from the settings.  ``herald serve`` runs it
with uvicorn.  The ``[web]`` table of the configuration file tunes it (all optional)::

    [web]
    rate_per_key = 120        # API requests per minute and key (token bucket; 0: no limit)
    rate_per_ip = 300         # API and login requests per minute and client address
    download_ttl = 86400      # seconds a report id (download token) stays valid
    session_max_age = 28800   # seconds a portal session lasts without a request (idle)
    session_absolute = 43200  # seconds a portal session lasts at most, however active
    max_body = 65536          # bytes: largest request body (413 above, checked while streaming)
    secure_cookies = false    # true behind HTTPS: session cookie only over TLS
    replay_window = 300       # seconds: oldest accepted timestamp of replay-protected keys
    rotation_grace_days = 7   # how long a rotated API secret stays valid
    trusted_proxies = []      # addresses/CIDRs of reverse proxies whose X-Forwarded-For counts

Behind a reverse proxy every request comes from the proxy's address.  When the socket peer is in
``trusted_proxies``, the client is instead the right-most ``X-Forwarded-For`` address that is not
itself a trusted proxy (uvicorn's :class:`~uvicorn.middleware.proxy_headers.ProxyHeadersMiddleware`,
which also takes ``X-Forwarded-Proto``); from any other peer the forwarding headers are ignored,
so a client cannot choose its own address (rate limits, login records).  Default: trust nobody.

Secrets are not configured here: see :mod:`herald.web.crypto` for the server key.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from herald.config import Settings
from herald.errors import ConfigError
from herald.schema.registry import Registry, default_registry
from herald.store.db import Database, open_db
from herald.web.catalog import Catalog
from herald.web.crypto import ServerKey
from herald.web.headers import SecurityHeadersMiddleware
from herald.web.limits import BodyLimitMiddleware, BodyTooLarge
from herald.web.ratelimit import RateLimiter

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@dataclass
class WebConfig:
    """The ``[web]`` settings (see the module docstring)."""

    rate_per_key: float = 120
    rate_per_ip: float = 300
    download_ttl: int = 86400
    session_max_age: int = 8 * 3600
    session_absolute: int = 12 * 3600
    max_body: int = 64 * 1024
    secure_cookies: bool = False
    replay_window: int = 300
    rotation_grace_days: float = 7
    #: networks of trusted reverse proxies, normalised by :func:`proxy_networks`
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.trusted_proxies = proxy_networks(self.trusted_proxies)

    @classmethod
    def from_settings(cls, settings: Settings) -> "WebConfig":
        """Read ``settings.raw["web"]``; unknown keys are ignored.

        Raises:
            ConfigError: ``trusted_proxies`` is not a list of addresses or networks.
        """
        raw = settings.raw.get("web", {}) if isinstance(settings.raw, dict) else {}
        kwargs = {k: v if k == "trusted_proxies" else type(getattr(cls, k))(v)
                  for k, v in raw.items() if hasattr(cls, k)}
        return cls(**kwargs)


def proxy_networks(value: Any) -> tuple[str, ...]:
    """``[web] trusted_proxies`` as network texts: each entry an IP address or a CIDR network
    without host bits; an IPv4 network also yields its IPv4-mapped IPv6 form (a dual-stack
    listener sees ``::ffff:10.0.0.1``).

    Raises:
        ConfigError: not a list of strings, or an entry that is no address or network (``*``
            included: trusting every peer would let any client choose its address).
    """
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError("[web] trusted_proxies must be a list of addresses or CIDR networks")
    out: list[str] = []
    for item in value:
        try:
            net = ipaddress.ip_network(item.strip() if isinstance(item, str) else None)
        except (ValueError, TypeError):
            raise ConfigError(f"[web] trusted_proxies: {item!r} is not an IP address or a "
                              "CIDR network (without host bits)") from None
        nets = [net]
        if net.version == 4:
            nets.append(ipaddress.ip_network(
                f"::ffff:{net.network_address}/{96 + net.prefixlen}"))
        out.extend(str(n) for n in nets if str(n) not in out)
    return tuple(out)


@dataclass
class WebState:
    """Everything a request handler needs, stored on ``app.state.herald``."""

    settings: Settings
    db: Database
    server_key: ServerKey
    registry: Registry
    config: WebConfig
    catalog: Catalog
    key_limiter: RateLimiter
    ip_limiter: RateLimiter
    extra: dict[str, Any] = field(default_factory=dict)
    #: the time now, timezone-aware UTC; tests install a fixed clock
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))


def create_app(settings: Settings, db: Database | None = None, server_key: ServerKey | None = None,
               registry: Registry | None = None, config: WebConfig | None = None,
               clock: Callable[[], datetime] | None = None) -> FastAPI:
    """The Herald web application.

    Args:
        settings: configuration (paths, database URL, ``[web]``).
        db: an open metadata database (default: ``open_db(settings.database_url)``).
        server_key: default :meth:`ServerKey.load` from the environment or the data directory.
        registry: report types (default: bundled).
        config: override ``[web]``.
        clock: returns the time now as an aware UTC datetime (default: the system clock).

    Raises:
        StoreError / ConfigError: the database or the server key cannot be opened.
    """
    from herald.web import admin, api, dashboard, portal

    db = db or open_db(settings.database_url)
    server_key = server_key or ServerKey.load(settings.paths.data)
    registry = registry or default_registry()
    config = config or WebConfig.from_settings(settings)
    state = WebState(settings, db, server_key, registry, config, Catalog(settings, db, registry),
                     RateLimiter(config.rate_per_key), RateLimiter(config.rate_per_ip))
    if clock is not None:
        state.clock = clock
    app = FastAPI(
        title="Herald Reports API",
        version="1.0",
        description=(
            "Shadowserver-compatible Reports API. Every call is an HTTP POST of a JSON object "
            "with an `apikey` field; the `HMAC2` header carries the lowercase hex "
            "HMAC-SHA256 of the exact request body bytes keyed with the key's secret. "
            "Errors are `{\"error\": \"...\"}` with a 4xx/5xx status. See docs/api.md."),
        docs_url=None, redoc_url=None,
    )
    app.state.herald = state
    app.add_middleware(SessionMiddleware, secret_key=server_key.subkey("session").hex(),
                       session_cookie="herald_session", max_age=config.session_max_age,
                       same_site="strict", https_only=config.secure_cookies)
    app.add_middleware(SecurityHeadersMiddleware)
    # Outermost of ours: an oversized body is refused before any other code reads it.
    app.add_middleware(BodyLimitMiddleware, max_body=config.max_body)
    if config.trusted_proxies:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        # Outermost: every handler and limiter sees the forwarded client of a trusted proxy.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(config.trusted_proxies))

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, exc):  # noqa: ANN001
        return JSONResponse({"error": "request body too large"}, status_code=413)

    @app.exception_handler(Exception)
    async def _internal(request, exc):  # noqa: ANN001 - never the engine's text to a client
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc):  # noqa: ANN001 - FastAPI signature
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, exc):  # noqa: ANN001
        return JSONResponse({"error": "invalid request"}, status_code=400)

    app.include_router(api.router)
    app.include_router(portal.router)
    app.include_router(admin.router)
    app.include_router(dashboard.router)
    return app


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes of an API response."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode()

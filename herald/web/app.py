"""The web application: Reports API (``/api2/``), downloads (``/dl/``), portal and admin console.

:func:`create_app` builds one FastAPI application from the settings.  ``herald serve`` runs it
with uvicorn.  The ``[web]`` table of the configuration file tunes it: see
:mod:`herald.web.state`.

Secrets are not configured here: see :mod:`herald.crypto` for the server key.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from herald.config import Settings
from herald.crypto import ServerKey
from herald.ratelimit import RateLimiter
from herald.schema.registry import Registry, default_registry
from herald.store.db import Database, open_db
from herald.web import admin, api, dashboard, portal
from herald.web.catalog import Catalog
from herald.web.headers import SecurityHeadersMiddleware
from herald.web.limits import BodyLimitMiddleware, BodyTooLarge
from herald.web.state import TEMPLATES_DIR, WebConfig, WebState, dumps

__all__ = ["TEMPLATES_DIR", "WebConfig", "WebState", "create_app", "dumps"]


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

"""Shared state of the web application: the ``[web]`` settings, the per-app state handlers read,
the templates folder and the JSON encoder of API answers.

The routers (:mod:`herald.web.api`, :mod:`herald.web.portal`, :mod:`herald.web.admin`,
:mod:`herald.web.dashboard`) import from here; :mod:`herald.web.app` imports the routers.
The ``[web]`` table (all optional)::

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
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from starlette.requests import Request

from herald.config import Settings, check_section
from herald.crypto import ServerKey
from herald.errors import ConfigError
from herald.ratelimit import RateLimiter
from herald.schema.registry import Registry
from herald.store.db import Database
from herald.web.catalog import Catalog

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
        """Parse the ``[web]`` table of ``settings``.

        Raises:
            ConfigError: an unknown key (naming the section and key) or a value of the wrong type.
        """
        table = check_section(settings, "web", {f.name for f in fields(cls)})
        try:
            kwargs = {k: v if k == "trusted_proxies" else type(getattr(cls, k))(v)
                      for k, v in table.items()}
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{settings.where}: [web]: bad value: {exc}") from None
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


def state_of(request: Request) -> WebState:
    """The :class:`WebState` of the application serving ``request``."""
    return request.app.state.herald


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes of an API response."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str).encode()

"""Sinkhole configuration: the ``[sinkhole]`` section of the TOML file and the sinkholed domains.

Example (every key is optional except at least one listener of the sensor you run)::

    [sinkhole]
    sensor_name = "sh1"                   # file-name part; letters, digits, '_' and '.'
    dns_listen = "127.0.0.1:5353"         # or a list; "[::1]:5353" for IPv6
    http_listen = ["127.0.0.1:8080"]
    https_listen = ["127.0.0.1:8443"]
    tls_cert = "sinkhole.crt"             # PEM, relative to the TOML file
    tls_key = "sinkhole.key"
    answer_ipv4 = ["192.0.2.10"]          # A answers for sinkholed names
    answer_ipv6 = ["2001:db8::10"]        # AAAA answers
    ttl = 300                             # seconds, TTL of sinkhole answers
    batch_rows = 1000                     # rows buffered before a Parquet file is written
    batch_seconds = 5                     # ... or age of the oldest buffered row, seconds
    rate_per_client = 20                  # DNS queries per second per client address
    rate_burst = 40                       # bucket size; default 2 * rate_per_client
    http_rate_per_client = 10             # HTTP requests per second per client address (else 429)
    http_rate_burst = 20                  # bucket size; default 2 * http_rate_per_client
    operations = false                    # also sinkhole the domains of active operations (database)

    [[sinkhole.domains]]
    name = "evil-c2.example"              # the domain and all its subdomains
    family = "emotet"
    tag = "takedown-x"
    operation = "op-x"
    infection = "emotet"                  # optional; default: family
    addresses = ["192.0.2.10"]            # optional: HTTP requests to these local addresses
                                          # with no known Host/SNI count for this domain

Domains come from :func:`load_sinkhole_domains`: the TOML list, then (with ``operations = true``)
the sinkholed domains of the law-enforcement operations active today in the metadata database
(:mod:`herald.sensors.operations`), then every provider registered with
:func:`register_domain_provider` ``(settings) -> iterable of SinkholeDomain`` for other sources.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from herald.config import Settings, check_section
from herald.errors import ConfigError
from herald.sensors.domains import SinkholeDomain, normalize_name

log = logging.getLogger(__name__)

_SENSOR_RE = re.compile(r"^[A-Za-z0-9_.]{1,64}$")


#: Callables ``(settings) -> Iterable[SinkholeDomain]`` consulted by :func:`load_sinkhole_domains`.
DOMAIN_PROVIDERS: list[Callable[[Settings], Iterable[SinkholeDomain]]] = []


def register_domain_provider(provider: Callable[[Settings], Iterable[SinkholeDomain]]) -> None:
    """Add a source of sinkholed domains (for example the operations table of the metadata database).

    ``provider(settings)`` is called each time the domains are loaded; it returns SinkholeDomain
    objects and raises :class:`~herald.errors.HeraldError` on failure.  A domain already given by the
    TOML file or by an earlier provider keeps its first definition (a warning is logged).
    """
    if provider not in DOMAIN_PROVIDERS:
        DOMAIN_PROVIDERS.append(provider)


def load_sinkhole_domains(settings: Settings) -> list[SinkholeDomain]:
    """Every sinkholed domain: ``[[sinkhole.domains]]`` of the TOML file, then the domains of the
    operations active today when ``[sinkhole] operations = true`` (see
    :mod:`herald.sensors.operations`), then the registered providers.

    Raises:
        StoreError: the operations could not be read from the metadata database.
        ConfigError: an entry without ``name``, a name that is not a DNS name, a duplicate name in the
            TOML list, a bad ``addresses`` value.
    """
    where = settings.where
    section = settings.section("sinkhole")
    entries = section.get("domains", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: sinkhole.domains must be an array of tables ([[sinkhole.domains]])")
    out: dict[str, SinkholeDomain] = {}
    for i, item in enumerate(entries):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConfigError(f"{where}: sinkhole.domains[{i}] needs a 'name' string")
        name = normalize_name(item["name"])
        if not name or len(name) > 253 or any(not 0 < len(lab) <= 63 for lab in name.split(".")):
            raise ConfigError(f"{where}: sinkhole.domains[{i}]: {item['name']!r} is not a DNS name")
        if name in out:
            raise ConfigError(f"{where}: sinkhole.domains[{i}]: {name!r} is listed twice")
        addrs = item.get("addresses", [])
        if isinstance(addrs, str):
            addrs = [addrs]
        try:
            addresses = tuple(str(ipaddress.ip_address(a)) for a in addrs)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: sinkhole.domains[{i}].addresses: {exc}") from None

        def _opt(key: str) -> str | None:
            v = item.get(key)
            return None if v is None else str(v)

        out[name] = SinkholeDomain(
            name=name, family=_opt("family"), tag=_opt("tag"), operation=_opt("operation"),
            infection=_opt("infection") or _opt("family"), addresses=addresses, source="toml",
        )
    providers = list(DOMAIN_PROVIDERS)
    if section.get("operations", False) is True:
        from herald.sensors.operations import operations_domains

        providers.insert(0, operations_domains)
    for provider in providers:
        pname = getattr(provider, "__qualname__", repr(provider))
        for d in provider(settings):
            if d.name in out:
                log.warning("sinkhole domain %s from %s ignored: already defined by %s",
                            d.name, pname, out[d.name].source)
                continue
            out[d.name] = d
    return list(out.values())


def parse_listen(value: str, where: str) -> tuple[str, int]:
    """Split ``"host:port"`` or ``"[v6]:port"`` into ``(host, port)``.

    Raises:
        ConfigError: missing port, port outside 0..65535, host not an IP address.
    """
    v = value.strip()
    if v.startswith("["):
        host, sep, port = v[1:].partition("]:")
    else:
        host, sep, port = v.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"{where}: listen address {value!r} must be host:port or [v6]:port")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"{where}: listen host {host!r} must be an IP address") from None
    return host, int(port)


@dataclass
class SinkholeConfig:
    """Validated ``[sinkhole]`` settings (see the module docstring for the TOML keys).

    Durations are in seconds, sizes in bytes, rates in queries per second.
    """

    inbox: Path
    sensor_name: str
    domains: list[SinkholeDomain]
    dns_listen: list[tuple[str, int]] = field(default_factory=list)
    http_listen: list[tuple[str, int]] = field(default_factory=list)
    https_listen: list[tuple[str, int]] = field(default_factory=list)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    answer_ipv4: list[str] = field(default_factory=list)
    answer_ipv6: list[str] = field(default_factory=list)
    ttl: int = 300
    batch_rows: int = 1000
    batch_seconds: float = 5.0
    rate_per_client: float = 20.0
    rate_burst: float = 40.0
    rate_table_size: int = 100_000
    http_rate_per_client: float = 10.0
    http_rate_burst: float = 20.0
    tcp_idle_timeout: float = 10.0
    max_connections: int = 10_000
    max_connections_per_client: int = 64
    http_status: int = 200
    http_body: bytes = b""
    http_content_type: str = "text/plain"
    max_header_bytes: int = 16_384
    header_timeout: float = 10.0
    idle_timeout: float = 15.0
    max_body_bytes: int = 1_048_576
    body_timeout: float = 30.0
    max_requests_per_connection: int = 1000
    max_field_chars: int = 4096


#: Keys of ``[sinkhole]``: the fields of :class:`SinkholeConfig` read from the file, the
#: ``[[sinkhole.domains]]`` list and the ``operations`` switch (see :func:`load_sinkhole_domains`).
SINKHOLE_KEYS = frozenset(
    {f for f in SinkholeConfig.__dataclass_fields__ if f not in ("inbox", "domains")}
    | {"domains", "operations"})


def _default_sensor_name() -> str:
    host = socket.gethostname().split(".")[0] or "sinkhole"
    return re.sub(r"[^A-Za-z0-9_]", "_", host)[:48]


def load_sinkhole_config(settings: Settings) -> SinkholeConfig:
    """Read and check the ``[sinkhole]`` section; domains come from :func:`load_sinkhole_domains`.

    Relative ``tls_cert``/``tls_key`` paths are taken from the TOML file's folder.

    Raises:
        ConfigError: an unknown key (naming the section and key), wrong types, bad addresses, non-positive batch sizes or rates, a missing
            certificate file, a sensor name with characters other than letters, digits, ``_``, ``.``
            (the name is a part of file names that are split on ``-``).
    """
    where = settings.where
    s: dict[str, Any] = check_section(settings, "sinkhole", SINKHOLE_KEYS)
    base = settings.path.parent if settings.path else Path.cwd()

    def _listen(key: str) -> list[tuple[str, int]]:
        v = s.get(key, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{where}: sinkhole.{key} must be a string or a list of strings")
        return [parse_listen(x, f"{where}: sinkhole.{key}") for x in v]

    def _addrs(key: str, version: int) -> list[str]:
        v = s.get(key, [])
        if isinstance(v, str):
            v = [v]
        out = []
        for a in v:
            try:
                ip = ipaddress.ip_address(a)
            except (ValueError, TypeError):
                raise ConfigError(f"{where}: sinkhole.{key}: {a!r} is not an IP address") from None
            if ip.version != version:
                raise ConfigError(f"{where}: sinkhole.{key}: {a} is not IPv{version}")
            out.append(str(ip))
        return out

    def _num(key: str, default: float, kind: type = float, minimum: float = 0, strict: bool = True):
        v = s.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{where}: sinkhole.{key} must be a number")
        if v < minimum or (strict and v == minimum):
            raise ConfigError(f"{where}: sinkhole.{key} must be {'>' if strict else '>='} {minimum}")
        return kind(v)

    def _path(key: str) -> Path | None:
        v = s.get(key)
        if v is None:
            return None
        p = (base / str(v)).resolve()
        if not p.is_file():
            raise ConfigError(f"{where}: sinkhole.{key}: {p} not found")
        return p

    name = str(s.get("sensor_name") or _default_sensor_name())
    if not _SENSOR_RE.match(name):
        raise ConfigError(f"{where}: sinkhole.sensor_name {name!r}: use 1-64 letters, digits, '_' or '.'")
    rate = _num("rate_per_client", 20.0)
    http_rate = _num("http_rate_per_client", 10.0)
    body = s.get("http_body", "")
    if not isinstance(body, str):
        raise ConfigError(f"{where}: sinkhole.http_body must be a string")
    cfg = SinkholeConfig(
        inbox=settings.paths.inbox,
        sensor_name=name,
        domains=load_sinkhole_domains(settings),
        dns_listen=_listen("dns_listen"),
        http_listen=_listen("http_listen"),
        https_listen=_listen("https_listen"),
        tls_cert=_path("tls_cert"),
        tls_key=_path("tls_key"),
        answer_ipv4=_addrs("answer_ipv4", 4),
        answer_ipv6=_addrs("answer_ipv6", 6),
        ttl=_num("ttl", 300, int, 0, strict=False),
        batch_rows=_num("batch_rows", 1000, int, 1, strict=False),
        batch_seconds=_num("batch_seconds", 5.0),
        rate_per_client=rate,
        rate_burst=_num("rate_burst", max(1.0, 2 * rate), float, 1, strict=False),
        rate_table_size=_num("rate_table_size", 100_000, int),
        http_rate_per_client=http_rate,
        http_rate_burst=_num("http_rate_burst", max(1.0, 2 * http_rate), float, 1, strict=False),
        tcp_idle_timeout=_num("tcp_idle_timeout", 10.0),
        max_connections=_num("max_connections", 10_000, int),
        max_connections_per_client=_num("max_connections_per_client", 64, int),
        http_status=_num("http_status", 200, int, 100, strict=False),
        http_body=body.encode("utf-8"),
        http_content_type=str(s.get("http_content_type", "text/plain")),
        max_header_bytes=_num("max_header_bytes", 16_384, int, 256, strict=False),
        header_timeout=_num("header_timeout", 10.0),
        idle_timeout=_num("idle_timeout", 15.0),
        max_body_bytes=_num("max_body_bytes", 1_048_576, int, 0, strict=False),
        body_timeout=_num("body_timeout", 30.0),
        max_requests_per_connection=_num("max_requests_per_connection", 1000, int),
        max_field_chars=_num("max_field_chars", 4096, int),
    )
    if cfg.http_status > 599:
        raise ConfigError(f"{where}: sinkhole.http_status must be 100..599")
    if cfg.https_listen and not (cfg.tls_cert and cfg.tls_key):
        raise ConfigError(f"{where}: sinkhole.https_listen needs tls_cert and tls_key")
    return cfg

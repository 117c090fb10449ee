"""HTTP(S) sinkhole: accepts any request on the configured ports and records it (asyncio streams).

Every HTTP/1.x request with a well-formed header becomes an ``event4_sinkhole_http`` row
(``event6_sinkhole_http`` for IPv6 clients), recorded when the header is complete (before the body is
read and before the response), and gets a small fixed response (default: empty ``200 OK``).  Message syntax follows
RFC 9112 (HTTP/1.1, formerly RFC 7230): request line, header fields, ``Content-Length`` or chunked
bodies (read and discarded), persistent connections.  Bare LF line ends are accepted (RFC 9112
section 2.2 allows it) because bots send them.

Family, tag and infection come from the sinkholed domain of, in order: the ``Host`` header, the TLS
SNI name, the local (destination) address (``addresses`` of a domain entry).  A request that matches
none is still recorded, with those columns empty.

Defences (the server faces the Internet and hostile bots):

* request line plus header fields are at most ``max_header_bytes`` bytes (else ``431``, close);
* the whole header must arrive within ``header_timeout`` seconds of the connection (or of the end of
  the previous request: ``idle_timeout``), which defeats slowloris; the TLS handshake has the same
  limit;
* bodies are read in 64 KiB pieces and discarded, at most ``max_body_bytes`` (else ``413``, close)
  within ``body_timeout`` seconds;
* at most ``max_connections`` connections and ``max_connections_per_client`` per client address;
  at most ``max_requests_per_connection`` requests per connection;
* a token bucket per client address (``http_rate_per_client`` requests per second,
  ``http_rate_burst``; :class:`herald.ratelimit.TokenBucketLimiter`, as the DNS sensor's):
  a request over the limit is answered ``429 Too Many Requests`` with ``Retry-After: 1`` and the
  connection is closed; it is **not** recorded (a flood must not fill the disk);
* ``Content-Length`` must be ASCII digits (RFC 9110 section 8.6, ``1*DIGIT``), else ``400``;
* stored strings are cut to ``max_field_chars`` characters.

Columns written: ``timestamp``, ``protocol`` (``tcp``), ``src_ip``, ``src_port``, ``severity`` (type
default), ``dst_ip``, ``dst_port``, ``infection``, ``family``, ``tag``, ``application`` (``http`` or
``https``), ``version`` (``HTTP/1.1``...), ``http_url`` (request target as sent), ``http_host`` (Host
without port, lower case), ``http_agent``, ``http_referer``, ``forwarded_by`` (``X-Forwarded-For``),
``ssl_cipher`` and ``ssl_servername`` (SNI) for HTTPS.  The request method has no column in the
Shadowserver schema: it is stored as the extra column ``http_method`` (see
:data:`herald.sensors.batch.EXTRA_COLUMNS`), kept in the event store and the IntelMQ export
(``extra.http_method``), not in the CSV report.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
import ssl
from typing import Any

from herald.errors import ConfigError
from herald.ratelimit import TokenBucketLimiter
from herald.schema.registry import Registry, default_registry
from herald.sensors.batch import EventBatcher, now_us
from herald.sensors.config import SinkholeConfig
from herald.sensors.domains import DomainTable
from herald.sensors.runtime import canonical_ip, event_type, truncate

log = logging.getLogger(__name__)


class _Reject(Exception):
    """A request the server answers with an error status and then closes."""

    def __init__(self, status: int, extra: str = "") -> None:
        super().__init__(status)
        self.status = status
        self.extra = extra  # further header lines, CRLF-terminated


#: ``Content-Length`` value (RFC 9110 section 8.6: ``1*DIGIT``, ASCII only).
_DIGITS = re.compile(r"[0-9]+")


def content_length(value: str | None, limit: int) -> int | None:
    """The body length a ``Content-Length`` field value announces, or ``None`` without one.

    Args:
        value: the field value (white space around it already stripped), or ``None``.
        limit: the largest body accepted, in bytes.

    Raises:
        _Reject: 400 when the value is not ASCII digits (``-1``, ``1e3``, ``²``, ``1, 1``);
            413 when it is larger than ``limit``.
    """
    if value is None:
        return None
    if not _DIGITS.fullmatch(value):
        raise _Reject(400)
    value = value.lstrip("0") or "0"
    if len(value) > len(str(limit)):  # also keeps int() below its digit limit
        raise _Reject(413)
    n = int(value)
    if n > limit:
        raise _Reject(413)
    return n


def _status_line(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Status"
    return f"HTTP/1.1 {status} {phrase}\r\n"


def make_tls_context(cert: str, key: str) -> ssl.SSLContext:
    """Server TLS context from PEM certificate and key files; SNI names are recorded per connection.

    TLS 1.2 or later; the client certificate is not requested.

    Raises:
        ssl.SSLError / OSError: unreadable or mismatched certificate and key.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)

    def sni(ssl_obj: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        # Called during the handshake; the name is kept on the connection's SSLObject.
        ssl_obj.herald_sni = server_name
        return None

    ctx.sni_callback = sni
    return ctx


class HttpSinkhole:
    """Serves and records HTTP and HTTPS requests on the configured addresses.

    Args:
        config: validated settings (listeners, TLS files, response, limits, domains).
        batcher: where rows go.
        registry: report types (default: the bundled registry).
        tls_context: overrides the context built from ``tls_cert``/``tls_key``.

    Raises:
        ConfigError: the certificate or key cannot be loaded (or do not match).

    Attributes:
        stats: counters ``requests`` (recorded), ``rejected`` (400/413/431), ``rate_limited``
            (429, not recorded), ``timeouts``, ``refused_connections`` (over a connection limit).
        limiter: the per-client request rate limit.
    """

    def __init__(self, config: SinkholeConfig, batcher: EventBatcher, registry: Registry | None = None,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.batcher = batcher
        self.registry = registry or default_registry()
        self.domains = DomainTable(config.domains)
        self.tls_context = tls_context
        if self.tls_context is None and config.https_listen:
            try:
                self.tls_context = make_tls_context(str(config.tls_cert), str(config.tls_key))
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f"sinkhole: cannot load tls_cert {config.tls_cert} / tls_key "
                                  f"{config.tls_key}: {exc}") from exc
        self.stats = {"requests": 0, "rejected": 0, "rate_limited": 0, "timeouts": 0,
                      "refused_connections": 0}
        self.limiter = TokenBucketLimiter(config.http_rate_per_client, config.http_rate_burst,
                                          config.rate_table_size)
        self._servers: list[asyncio.AbstractServer] = []
        self._conns: set[asyncio.Task] = set()
        self._idle: set[asyncio.Task] = set()  # connections waiting for a request head
        self._per_client: dict[str, int] = {}
        body = config.http_body
        head = (f"{_status_line(config.http_status)}Content-Type: {config.http_content_type}\r\n"
                f"Content-Length: {len(body)}\r\n")
        self._resp_keep = (head + "\r\n").encode("latin-1")
        self._resp_close = (head + "Connection: close\r\n\r\n").encode("latin-1")
        self._body = body

    def set_domains(self, domains) -> None:
        """Replace the sinkholed domains (SIGHUP reload); open connections use them from their
        next request."""
        self.domains = DomainTable(domains)

    async def start(self) -> list[tuple[str, str, int]]:
        """Listen on ``http_listen`` and ``https_listen``; returns ``("http"|"https", host, port)``.

        Raises:
            OSError: an address cannot be bound.
        """
        bound = []
        for scheme, addrs in (("http", self.config.http_listen), ("https", self.config.https_listen)):
            for host, port in addrs:
                tls = self.tls_context if scheme == "https" else None
                server = await asyncio.start_server(
                    lambda r, w, s=scheme: self._client(r, w, s), host, port,
                    limit=self.config.max_header_bytes, ssl=tls,
                    ssl_handshake_timeout=self.config.header_timeout if tls else None,
                )
                self._servers.append(server)
                real = server.sockets[0].getsockname()[1]
                bound.append((scheme, host, real))
                log.info("HTTP sinkhole listening on %s port %d (%s)", host, real, scheme)
        return bound

    async def close(self) -> None:
        """Stop listening; open connections get 2 seconds to finish, then are cancelled."""
        for s in self._servers:
            s.close()
        # Connections waiting for a request are cancelled at once; those inside a request get
        # 2 seconds to finish it (its row is recorded before the response is sent).
        for t in list(self._idle):
            t.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=2.0)
            for t in list(self._conns):
                t.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)

    # -- connection -----------------------------------------------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, scheme: str) -> None:
        peer = writer.get_extra_info("peername")
        src_ip = canonical_ip(peer[0])
        n = self._per_client.get(src_ip, 0)
        if len(self._conns) >= self.config.max_connections or n >= self.config.max_connections_per_client:
            self.stats["refused_connections"] += 1
            writer.close()
            return
        task = asyncio.current_task()
        self._conns.add(task)
        self._per_client[src_ip] = n + 1
        try:
            await self._serve_connection(reader, writer, scheme, src_ip, peer[1])
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError):
            pass  # peer went away, or shutdown
        except TimeoutError:
            self.stats["timeouts"] += 1
        except Exception:
            log.exception("HTTP sinkhole: connection from %s failed", src_ip)
        finally:
            self._conns.discard(task)
            left = self._per_client.get(src_ip, 1) - 1
            if left > 0:
                self._per_client[src_ip] = left
            else:
                self._per_client.pop(src_ip, None)
            writer.close()

    async def _serve_connection(self, reader, writer, scheme: str, src_ip: str, src_port: int) -> None:
        cfg = self.config
        sock = writer.get_extra_info("sockname")
        dst_ip, dst_port = canonical_ip(sock[0]), sock[1]
        sni = cipher = None
        if scheme == "https":
            ssl_obj = writer.get_extra_info("ssl_object")
            sni = getattr(ssl_obj, "herald_sni", None)
            c = writer.get_extra_info("cipher")
            cipher = c[0] if c else None
        for i in range(cfg.max_requests_per_connection):
            try:
                task = asyncio.current_task()
                self._idle.add(task)
                try:
                    async with asyncio.timeout(cfg.header_timeout if i == 0 else cfg.idle_timeout):
                        head = await self._read_head(reader)
                finally:
                    self._idle.discard(task)
                if head is None:
                    return  # clean end of the connection between requests
                method, target, version, headers = head
                if not self.limiter.allow(src_ip):
                    self.stats["rate_limited"] += 1
                    raise _Reject(429, "Retry-After: 1\r\n")
                # Recorded as soon as the header is complete: a bot whose body is too large, malformed
                # or too slow has still called in.  Always before the response is sent.
                self._record(scheme, src_ip, src_port, dst_ip, dst_port, sni, cipher, target, version, headers,
                             method)
                keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
                length = None if "transfer-encoding" in headers else \
                    content_length(headers.get("content-length"), cfg.max_body_bytes)
                if (version == "HTTP/1.1" and headers.get("expect", "").lower() == "100-continue"
                        and ("transfer-encoding" in headers or length)):
                    # The client waits for this before sending the body (RFC 9110 section 10.1.1).
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                async with asyncio.timeout(cfg.body_timeout):
                    await self._discard_body(reader, headers)
            except _Reject as rej:
                if rej.status != 429:
                    self.stats["rejected"] += 1
                writer.write(f"{_status_line(rej.status)}{rej.extra}Content-Length: 0\r\n"
                             "Connection: close\r\n\r\n".encode("latin-1"))
                await writer.drain()
                return
            last = not keep or i == cfg.max_requests_per_connection - 1
            writer.write(self._resp_close if last else self._resp_keep)
            if method != "HEAD" and self._body:
                writer.write(self._body)
            await writer.drain()
            if last:
                return

    async def _read_head(self, reader: asyncio.StreamReader):
        """Read the request line and header fields; ``None`` on EOF before any byte.

        Returns ``(method, target, version, headers)`` with lower-case header names (first value
        kept; ``x-forwarded-for`` values joined with ``, ``).

        Raises:
            _Reject: 400 (bad syntax), 431 (more than ``max_header_bytes``).
        """
        limit = self.config.max_header_bytes
        total = 0
        lines: list[bytes] = []
        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise _Reject(431) from None
            except asyncio.IncompleteReadError as exc:
                if total == 0 and not exc.partial:
                    return None
                raise
            total += len(line)
            if total > limit:
                raise _Reject(431)
            line = line.rstrip(b"\r\n")
            if not lines and not line:
                continue  # RFC 9112 section 2.2: ignore empty lines before the request line
            if not line:
                break
            lines.append(line)
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[0] or not parts[1]:
            raise _Reject(400)
        method = parts[0].decode("latin-1")
        target = parts[1].decode("utf-8", "replace")
        version = parts[2].decode("latin-1")
        headers: dict[str, str] = {}
        last_name = None
        for raw in lines[1:]:
            if raw[:1] in (b" ", b"\t") and last_name:
                # obs-fold (RFC 9112 section 5.2): replace with a space.
                headers[last_name] += " " + raw.strip().decode("utf-8", "replace")
                continue
            name, sep, value = raw.partition(b":")
            if not sep or not name or name != name.strip():
                raise _Reject(400)
            key = name.decode("latin-1").lower()
            val = value.strip().decode("utf-8", "replace")
            if key in headers:
                if key == "x-forwarded-for":
                    headers[key] += ", " + val
                elif key in ("content-length", "transfer-encoding") and headers[key] != val:
                    raise _Reject(400)  # conflicting framing (RFC 9112 section 6.3)
                continue
            headers[key] = val
            last_name = key
        return method, target, version, headers

    async def _discard_body(self, reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
        """Read and drop the message body (RFC 9112 section 6.3).

        Raises:
            _Reject: 400 (bad length or chunk syntax), 413 (body over ``max_body_bytes``).
        """
        limit = self.config.max_body_bytes
        te = headers.get("transfer-encoding")
        if te is not None:
            if te.lower().replace(" ", "").split(",")[-1] != "chunked":
                raise _Reject(400)
            total = 0
            while True:
                try:
                    line = await reader.readuntil(b"\n")
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except (asyncio.LimitOverrunError, ValueError):
                    raise _Reject(400) from None
                if size == 0:
                    break
                total += size
                if total > limit:
                    raise _Reject(413)
                await self._skip(reader, size)
                await reader.readuntil(b"\n")
            for _ in range(100):  # trailer fields up to the empty line
                try:
                    if not (await reader.readuntil(b"\n")).strip():
                        return
                except asyncio.LimitOverrunError:
                    raise _Reject(400) from None
            raise _Reject(400)
        length = content_length(headers.get("content-length"), limit)
        if length:
            await self._skip(reader, length)

    @staticmethod
    async def _skip(reader: asyncio.StreamReader, n: int) -> None:
        while n > 0:
            chunk = await reader.read(min(n, 65_536))
            if not chunk:
                raise asyncio.IncompleteReadError(b"", n)
            n -= len(chunk)

    def _record(self, scheme: str, src_ip: str, src_port: int, dst_ip: str, dst_port: int,
                sni: str | None, cipher: str | None, target: str, version: str, headers: dict[str, str],
                method: str | None = None) -> None:
        host = headers.get("host")
        host_name = None
        if host:
            h = host.strip().lower()
            if h.startswith("["):  # IPv6 literal [::1]:80
                h = h[1:].split("]", 1)[0]
            elif h.count(":") == 1:
                h = h.split(":", 1)[0]
            host_name = h.rstrip(".") or None
        domain = (self.domains.lookup(host_name) or self.domains.lookup(sni)
                  or self.domains.by_address(dst_ip))
        rtype = event_type(self.registry, "sinkhole_http", src_ip)
        lim = self.config.max_field_chars
        self.batcher.add(rtype, {
            "timestamp": now_us(),
            "protocol": "tcp",
            "src_ip": src_ip,
            "src_port": src_port,
            "severity": rtype.default_severity,
            "dst_ip": dst_ip,
            "dst_port": dst_port,
            "infection": domain.infection if domain else None,
            "family": domain.family if domain else None,
            "tag": domain.tag if domain else None,
            "application": scheme,
            "version": version,
            "http_url": truncate(target, lim),
            "http_host": truncate(host_name, lim),
            "http_agent": truncate(headers.get("user-agent"), lim),
            "http_referer": truncate(headers.get("referer"), lim),
            "forwarded_by": truncate(headers.get("x-forwarded-for"), lim),
            "ssl_cipher": cipher,
            "ssl_servername": truncate(sni, lim),
            "http_method": truncate(method, 16),
        })
        self.stats["requests"] += 1

"""DNS sinkhole: an authoritative-only name server for seized botnet domains (UDP and TCP, asyncio).

For a name at or below a sinkholed domain it answers A and AAAA with the sinkhole's addresses
(authoritative answer, AA set), and every such query becomes an ``event4_sinkhole_dns`` row.  Other
names get REFUSED and are not logged.  Wire format: RFC 1035 via dnspython; TCP framing: RFC 1035
section 4.2.2 (two-byte length prefix), RFC 7766.

Anti-abuse measures (the server faces the whole Internet and spoofed sources):

* no recursion: RA is never set and only configured names are answered (RFC 1035 section 4.3.1);
* UDP answers are at most 512 bytes whatever EDNS buffer size the client offers; a larger answer is
  cut at an RRset boundary with TC set, so the client retries over TCP (RFC 1035 section 4.2.1,
  RFC 7766 section 5).  The response is then never much larger than the query;
* ANY (QTYPE 255) gets one record, the first A (or AAAA) record, or else a synthesized HINFO
  (RFC 8482 section 4.1/4.2), never all records;
* a token bucket per client address (``rate_per_client`` queries per second, ``rate_burst``) drops
  excess queries without an answer and without a row (response rate limiting);
* messages with QR set (responses), malformed messages and messages with other than one question are
  dropped or answered FORMERR without data; opcodes other than QUERY get NOTIMP.

Row columns (``event4_sinkhole_dns`` of the Shadowserver schema): ``timestamp`` (receive time, UTC),
``protocol`` (``udp``/``tcp``), ``src_ip``, ``src_port``, ``severity`` (the type's default),
``infection``, ``family``, ``tag`` (from the domain entry), ``query_type`` (``A``, ``AAAA``...),
``query`` (lower-case name without the final dot), ``count`` (1: one row per query).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from herald.ratelimit import TokenBucketLimiter
from herald.schema.registry import Registry, default_registry
from herald.sensors.batch import EventBatcher, now_us
from herald.sensors.config import SinkholeConfig
from herald.sensors.domains import DomainTable, SinkholeDomain
from herald.sensors.runtime import canonical_ip, event_type

log = logging.getLogger(__name__)

#: Largest UDP response, bytes (RFC 1035 section 2.3.4).  Kept even when EDNS offers more: a
#: sinkhole answer never needs more, and a small cap limits reflection.
UDP_MAX = 512
#: Largest TCP message, bytes (two-byte length prefix, RFC 1035 section 4.2.2).
TCP_MAX = 65_535
#: Longest query (bytes) whose response is cached; real queries are far shorter.
CACHE_MAX_QUERY = 512
_IN = dns.rdataclass.IN


class DnsSinkhole:
    """Answers DNS messages for sinkholed domains and records each query.

    Args:
        config: validated settings (listen addresses, answers, TTL, rate limit, domains).
        batcher: where rows go.
        registry: report types (default: the bundled registry).

    Attributes:
        stats: counters ``answered``, ``refused``, ``rate_limited``, ``dropped`` (malformed or not a
            query), ``truncated``.
    """

    def __init__(self, config: SinkholeConfig, batcher: EventBatcher, registry: Registry | None = None) -> None:
        self.config = config
        self.batcher = batcher
        self.registry = registry or default_registry()
        self.domains = DomainTable(config.domains)
        self.limiter = TokenBucketLimiter(config.rate_per_client, config.rate_burst, config.rate_table_size)
        self._a = [dns.rdata.from_text(_IN, dns.rdatatype.A, a) for a in config.answer_ipv4]
        self._aaaa = [dns.rdata.from_text(_IN, dns.rdatatype.AAAA, a) for a in config.answer_ipv6]
        self._soa: dict[str, dns.rdata.Rdata] = {}
        self._hinfo = dns.rdata.from_text(_IN, dns.rdatatype.HINFO, '"RFC8482" ""')
        self.stats = {"answered": 0, "refused": 0, "rate_limited": 0, "dropped": 0, "truncated": 0}
        self.cache_size = 16_384
        self._cache: dict[tuple[str, bytes], tuple[bytes, int, str, SinkholeDomain | None, bool]] = {}
        self._transports: list[Any] = []
        self._tcp_servers: list[asyncio.AbstractServer] = []
        self._tcp_conns: set[asyncio.Task] = set()

    def set_domains(self, domains: list[SinkholeDomain]) -> None:
        """Replace the sinkholed domains (SIGHUP reload); cached responses are dropped."""
        self.domains = DomainTable(domains)
        self._cache.clear()
        self._soa.clear()

    # -- message handling ---------------------------------------------------------------------

    def _soa_for(self, zone: str) -> dns.rdata.Rdata:
        soa = self._soa.get(zone)
        if soa is None:
            # Synthesized SOA for negative answers (RFC 2308 section 3); minimum = TTL of answers.
            soa = dns.rdata.from_text(_IN, dns.rdatatype.SOA,
                                      f"ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 {self.config.ttl}")
            self._soa[zone] = soa
        return soa

    def handle(self, wire: bytes, src_ip: str, src_port: int, protocol: str) -> bytes | None:
        """The response to one DNS message, or ``None`` to send nothing.

        Args:
            wire: the query message (without TCP length prefix).
            src_ip: client address (canonical text); src_port: client port.
            protocol: ``"udp"`` (responses limited to 512 bytes, TC when cut) or ``"tcp"``.
        """
        if not self.limiter.allow(src_ip):
            self.stats["rate_limited"] += 1
            return None
        # The response depends only on the query bytes after the ID and on the configuration, so
        # rendered responses are cached by those bytes (bots repeat the same few questions; dnspython
        # parsing and rendering cost about 0.4 ms per message).
        key = (protocol, wire[2:])
        hit = self._cache.get(key)
        if hit is not None:
            tail, rdtype, qname_text, domain, truncated = hit
            if domain is None:
                self.stats["refused"] += 1
            else:
                self._record(src_ip, src_port, protocol, rdtype, qname_text, domain)
                self.stats["answered"] += 1
                self.stats["truncated"] += truncated
            return wire[:2] + tail
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError, IndexError):
            self.stats["dropped"] += 1
            return None
        if query.flags & dns.flags.QR:
            self.stats["dropped"] += 1  # a response: never answer it (avoids reflection loops)
            return None
        response = dns.message.make_response(query, recursion_available=False, our_payload=UDP_MAX)
        max_size = UDP_MAX if protocol == "udp" else TCP_MAX
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire(max_size=max_size)
        if query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)  # RFC 6891 section 6.1.3
            return response.to_wire(max_size=max_size)
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire(max_size=max_size)
        q = query.question[0]
        qname_text = q.name.to_text(omit_final_dot=True).lower()
        domain = self.domains.lookup(qname_text) if q.rdclass in (_IN, dns.rdataclass.ANY) else None
        if domain is None:
            self.stats["refused"] += 1
            response.set_rcode(dns.rcode.REFUSED)
            out = response.to_wire(max_size=max_size)
            self._remember(key, out, q.rdtype, qname_text, None, False)
            return out
        response.flags |= dns.flags.AA
        self._answer(response, q.name, q.rdtype, qname_text, domain)
        self._record(src_ip, src_port, protocol, q.rdtype, qname_text, domain)
        self.stats["answered"] += 1
        out = response.to_wire(max_size=max_size, prefer_truncation=True)
        truncated = bool(out[2] & 0x02)  # TC bit of the header (RFC 1035 section 4.1.1)
        self.stats["truncated"] += truncated
        self._remember(key, out, q.rdtype, qname_text, domain, truncated)
        return out

    def _remember(self, key: tuple[str, bytes], out: bytes, rdtype: int, qname_text: str,
                  domain: SinkholeDomain | None, truncated: bool) -> None:
        if len(key[1]) > CACHE_MAX_QUERY or len(out) > UDP_MAX:
            return  # keeps the cache under cache_size * ~1 KB whatever clients send over TCP
        if len(self._cache) >= self.cache_size:
            del self._cache[next(iter(self._cache))]  # oldest first
        self._cache[key] = (out[2:], rdtype, qname_text, domain, truncated)

    def _answer(self, response: dns.message.Message, qname: dns.name.Name, rdtype: int,
                qname_text: str, domain: SinkholeDomain) -> None:
        ttl = self.config.ttl
        rdatas: list[dns.rdata.Rdata] = []
        if rdtype == dns.rdatatype.A:
            rdatas = self._a
        elif rdtype == dns.rdatatype.AAAA:
            rdatas = self._aaaa
        elif rdtype == dns.rdatatype.ANY:
            # RFC 8482: answer ANY with one small RRset instead of everything.
            rdatas = self._a[:1] or self._aaaa[:1] or [self._hinfo]
        elif rdtype == dns.rdatatype.SOA and qname_text == domain.name:
            rdatas = [self._soa_for(domain.name)]
        if rdatas:
            response.answer.append(dns.rrset.from_rdata_list(qname, ttl, rdatas))
        else:
            # NODATA: empty answer, SOA of the sinkholed zone in the authority section (RFC 2308).
            zone = dns.name.from_text(domain.name)
            response.authority.append(dns.rrset.from_rdata_list(zone, ttl, [self._soa_for(domain.name)]))

    def _record(self, src_ip: str, src_port: int, protocol: str, rdtype: int, qname: str,
                domain: SinkholeDomain) -> None:
        rtype = event_type(self.registry, "sinkhole_dns", src_ip)
        self.batcher.add(rtype, {
            "timestamp": now_us(),
            "protocol": protocol,
            "src_ip": src_ip,
            "src_port": src_port,
            "severity": rtype.default_severity,
            "infection": domain.infection,
            "family": domain.family,
            "tag": domain.tag,
            "query_type": dns.rdatatype.to_text(rdtype),
            "query": qname[: self.config.max_field_chars],
            "count": 1,  # int64 or string depending on the registry's type; the batcher converts
        })

    # -- transports ---------------------------------------------------------------------------

    async def start(self) -> list[tuple[str, str, int]]:
        """Listen on every ``dns_listen`` address, UDP and TCP on the same port.

        Returns ``("dns-udp", host, port)`` and ``("dns-tcp", host, port)`` per address.  With port 0
        the TCP listener takes the port the UDP socket got.

        Raises:
            OSError: an address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        bound = []
        for host, want in self.config.dns_listen:
            # With port 0 the UDP port is chosen by the system and TCP must get the same number;
            # another process may hold it for TCP, so try a few ports.
            for attempt in range(1 if want else 20):
                transport, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self),
                                                                   local_addr=(host, want))
                port = transport.get_extra_info("sockname")[1]
                try:
                    server = await asyncio.start_server(self._tcp_client, host, port, limit=TCP_MAX + 2)
                except OSError:
                    transport.close()
                    if want or attempt == 19:
                        raise
                    continue
                break
            self._transports.append(transport)
            self._tcp_servers.append(server)
            bound += [("dns-udp", host, port), ("dns-tcp", host, port)]
            log.info("DNS sinkhole listening on %s port %d (UDP, TCP)", host, port)
        return bound

    async def close(self) -> None:
        """Stop listening, drop TCP connections after at most 2 seconds."""
        for t in self._transports:
            t.close()
        for s in self._tcp_servers:
            s.close()
        # Queries are answered synchronously, so a TCP connection task only ever waits for input
        # or for a send: cancelling it loses no recorded row.
        for task in list(self._tcp_conns):
            task.cancel()
        if self._tcp_conns:
            await asyncio.wait(list(self._tcp_conns), timeout=2.0)
        for s in self._tcp_servers:
            await s.wait_closed()

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._tcp_conns) >= self.config.max_connections:
            writer.close()
            return
        self._tcp_conns.add(task)
        peer = writer.get_extra_info("peername")
        src_ip, src_port = canonical_ip(peer[0]), peer[1]
        try:
            # RFC 7766 section 6.2.3: idle connections are closed after a timeout.
            for _ in range(1000):
                async with asyncio.timeout(self.config.tcp_idle_timeout):
                    (length,) = struct.unpack("!H", await reader.readexactly(2))
                    wire = await reader.readexactly(length)
                try:
                    out = self.handle(wire, src_ip, src_port, "tcp")
                except Exception:  # logged; the connection is closed, the server goes on
                    log.exception("DNS sinkhole: TCP query from %s failed", src_ip)
                    break
                if out is not None:
                    writer.write(struct.pack("!H", len(out)) + out)
                    await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._tcp_conns.discard(task)
            writer.close()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, sinkhole: DnsSinkhole) -> None:
        self.sinkhole = sinkhole
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # noqa: D401 - asyncio callback
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            out = self.sinkhole.handle(data, canonical_ip(addr[0]), addr[1], "udp")
        except Exception:  # one bad query must not stop the server (a StoreError is logged here)
            log.exception("DNS sinkhole: query from %s failed", addr[0])
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("DNS sinkhole UDP error: %s", exc)

"""What the DNS and HTTP sinkholes share: address helpers, the flush timer, graceful shutdown and a
background-thread runner for tests, benchmarks and embedding.

A *sensor server* is any object with ``async start() -> list[tuple[str, str, int]]`` (returns the
bound ``(protocol, host, port)`` triples, so port 0 in the configuration works) and
``async close()``; both sinkholes follow that shape.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
import threading
from functools import lru_cache
from typing import Any, Callable, Protocol, Sequence

from herald.errors import HeraldError, StoreError
from herald.schema.registry import Registry, ReportType
from herald.sensors.batch import EventBatcher

log = logging.getLogger(__name__)


class SensorServer(Protocol):
    """The interface :func:`serve` drives (implemented by the DNS and HTTP sinkholes)."""

    async def start(self) -> list[tuple[str, str, int]]:
        """Bind and start serving; return the ``(protocol, host, port)`` actually bound."""

    async def close(self) -> None:
        """Stop accepting, let in-flight requests finish (bounded), release the sockets."""


@lru_cache(maxsize=65_536)
def canonical_ip(host: str) -> str:
    """Canonical text of a socket address host: IPv4-mapped IPv6 (``::ffff:192.0.2.1``) becomes
    the IPv4 address, IPv6 is compressed (RFC 5952) and a zone index (``%eth0``) is dropped."""
    host = host.split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def event_type(registry: Registry, base: str, ip: str) -> ReportType:
    """The report type for a client address: ``event6_<base>`` for IPv6 clients when the registry has
    it, else ``event4_<base>``.  (The Shadowserver schema has no ``event6_sinkhole_dns``; IPv6 DNS
    clients go to ``event4_sinkhole_dns`` until such a type is registered.)

    Raises:
        UnknownReportType: ``event4_<base>`` is not registered.
    """
    if ":" in ip:
        name6 = f"event6_{base}"
        if name6 in registry:
            return registry.get(name6)
    return registry.get(f"event4_{base}")


def truncate(value: str | None, limit: int) -> str | None:
    """``value`` cut to ``limit`` characters (bounds what an attacker can make us store)."""
    if value is None or len(value) <= limit:
        return value
    return value[:limit]


async def _flush_timer(batcher: EventBatcher, period: float) -> None:
    while True:
        await asyncio.sleep(period)
        try:
            batcher.tick()
        except StoreError as exc:
            log.error("%s", exc)


async def serve(servers: Sequence[SensorServer], batcher: EventBatcher, stop: asyncio.Event,
                on_ready: Callable[[list[tuple[str, str, int]]], Any] | None = None) -> None:
    """Run ``servers`` until ``stop`` is set, then close them and flush every buffered row.

    ``on_ready`` is called with all bound ``(protocol, host, port)`` triples once listening.  The
    batcher's time limit is checked every ``min(1, batch_seconds / 4)`` seconds.

    Raises:
        OSError: a listener could not bind (servers already started are closed first).
        StoreError: the final flush failed.
    """
    bound: list[tuple[str, str, int]] = []
    started: list[SensorServer] = []
    timer = None
    try:
        for s in servers:
            bound += await s.start()
            started.append(s)
        timer = asyncio.create_task(_flush_timer(batcher, min(1.0, batcher.batch_seconds / 4)))
        if on_ready:
            on_ready(bound)
        await stop.wait()
    finally:
        if timer:
            timer.cancel()
        for s in started:
            try:
                await s.close()
            except Exception:  # a failed close must not prevent the final flush
                log.exception("closing sensor server")
        batcher.close()


def run_forever(servers: Sequence[SensorServer], batcher: EventBatcher,
                on_ready: Callable[[list[tuple[str, str, int]]], Any] | None = None,
                on_reload: Callable[[], Any] | None = None) -> None:
    """Serve in the current thread until SIGTERM or SIGINT, then flush everything and return.

    SIGHUP calls ``on_reload()`` on the loop (the sinkhole command reloads the domains); an error
    it raises is logged and the old state kept.

    Raises:
        OSError: a listener could not bind.
        StoreError: the final flush failed.
    """

    def reload() -> None:
        try:
            on_reload()
        except Exception:  # a bad edit of the configuration must not stop the sensor
            log.exception("reload failed; keeping the previous configuration")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if on_reload is not None:
            loop.add_signal_handler(signal.SIGHUP, reload)
        await serve(servers, batcher, stop, on_ready)

    asyncio.run(main())


class BackgroundSensor:
    """Runs sensor servers on an asyncio loop in a daemon thread (tests, benchmarks, embedding).

    Use as a context manager: entering starts the servers and waits until they listen (or raises
    their start-up error); leaving stops them and flushes the batcher.

    Attributes:
        bound: the ``(protocol, host, port)`` triples bound.
    """

    def __init__(self, servers: Sequence[SensorServer], batcher: EventBatcher, timeout: float = 10.0) -> None:
        self.servers = list(servers)
        self.batcher = batcher
        self.timeout = timeout
        self.bound: list[tuple[str, str, int]] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="herald-sensor", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()

            def ready(bound):
                self.bound = bound
                self._ready.set()

            await serve(self.servers, self.batcher, self._stop, ready)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the caller of start()/stop()
            self._error = exc
        finally:
            self._ready.set()

    def port(self, protocol: str) -> int:
        """The first bound port of ``protocol`` (``dns-udp``, ``dns-tcp``, ``http``, ``https``).

        Raises:
            KeyError: no listener of that protocol.
        """
        for p, _, port in self.bound:
            if p == protocol:
                return port
        raise KeyError(protocol)

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func()`` on the sensor's loop thread and return its result (e.g. to read the batcher
        safely)."""
        assert self._loop is not None
        fut: Any = asyncio.run_coroutine_threadsafe(self._acall(func), self._loop)
        return fut.result(self.timeout)

    @staticmethod
    async def _acall(func: Callable[[], Any]) -> Any:
        return func()

    def start(self) -> "BackgroundSensor":
        """Start and wait until listening.

        Raises:
            HeraldError: start-up did not finish within ``timeout`` seconds.
            OSError / HeraldError: the start-up error of the servers.
        """
        self._thread.start()
        if not self._ready.wait(self.timeout):
            raise HeraldError("sensor did not start in time")
        if self._error:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop the servers, flush the batcher and join the thread.

        Raises:
            the error that ended the serving thread, if any (for example StoreError).
        """
        if self._loop and self._stop and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self.timeout)
        if self._error:
            raise self._error

    def __enter__(self) -> "BackgroundSensor":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Load test of the sinkhole sensors on loopback: many concurrent clients for a fixed time.

Starts ``herald sinkhole dns`` and ``herald sinkhole http`` as separate processes on 127.0.0.1
(ephemeral ports, temporary inbox), runs asyncio clients against each for ``--seconds`` (one phase per
sensor), stops the sensor with SIGTERM and reports requests/s, p50/p99 latency and whether every
request sent is a stored row.

    .venv/bin/python bench/sinkhole_load.py --seconds 10 --clients 64

Every loop is bounded by the phase deadline; each request has a 2-second timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from herald.sensors.testing import count_rows, read_inbox  # noqa: E402

LO = "127.0.0.1"
TIMEOUT = 2.0


def _config(tmp: Path, batch_rows: int) -> Path:
    toml = tmp / "herald.toml"
    toml.write_text(
        f'[paths]\ninbox = "inbox"\n[sinkhole]\nsensor_name = "bench"\ndns_listen = "{LO}:0"\n'
        f'http_listen = ["{LO}:0"]\nanswer_ipv4 = ["192.0.2.10"]\nanswer_ipv6 = ["2001:db8::10"]\n'
        # All load comes from one address: lift the per-client limits for the benchmark.
        f'rate_per_client = 10000000\nmax_connections_per_client = 100000\n'
        f'batch_rows = {batch_rows}\nbatch_seconds = 5\n'
        '[[sinkhole.domains]]\nname = "evil-c2.example"\nfamily = "emotet"\ntag = "bench"\n'
    )
    return toml


def _spawn(kind: str, toml: Path) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "herald.cli", "sinkhole", kind, "--config", str(toml)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if not line.startswith("listening"):
        proc.kill()
        raise SystemExit(f"{kind} sensor did not start: {line}{proc.stderr.read()}")
    return proc, int(line.split()[-1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _stop(proc: subprocess.Popen) -> tuple[float, str]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"sensor exited {proc.returncode}: {err}")
    return time.monotonic() - t0, out.strip().splitlines()[-1]


class _Dns(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.waiter: asyncio.Future | None = None

    def datagram_received(self, data, addr) -> None:
        if self.waiter and not self.waiter.done():
            self.waiter.set_result(data)


def query_wire(qid: int, name: str, qtype: int) -> bytes:
    """A standard query (RFC 1035 section 4.1) built by hand: dnspython's make_query costs ~0.15 ms,
    which would make the client, not the server, the bottleneck."""
    qname = b"".join(bytes([len(lab)]) + lab.encode() for lab in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


#: Names asked in the default (pool) mode: like infected machines, which repeat a few C2 names.
POOL = [query_wire(0, f"host{i}.evil-c2.example", 1 if i % 4 else 28) for i in range(2000)]


async def dns_client(port: int, deadline: float, lat: list[float], counts: dict, k: int,
                     unique: bool = False) -> None:
    """One UDP client: query, wait for the answer (``TIMEOUT`` s), repeat until ``deadline``.
    Appends latencies (seconds) to ``lat`` and counts to ``counts``."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(_Dns, remote_addr=(LO, port))
    try:
        i = 0
        while time.monotonic() < deadline:
            qid = (k * 7919 + i) & 0xFFFF
            if unique:  # every name new: the server's response cache never hits
                wire = query_wire(qid, f"c{k}-{i}.evil-c2.example", 1 if i % 4 else 28)
            else:
                wire = struct.pack("!H", qid) + POOL[(k * 131 + i) % len(POOL)][2:]
            i += 1
            proto.waiter = loop.create_future()
            t0 = time.perf_counter()
            transport.sendto(wire)
            counts["sent"] += 1
            try:
                data = await asyncio.wait_for(proto.waiter, TIMEOUT)
            except TimeoutError:
                counts["timeouts"] += 1
                continue
            lat.append(time.perf_counter() - t0)
            if data[:2] == wire[:2] and data[3] & 0x0F == 0:  # same ID, RCODE NOERROR
                counts["answered"] += 1
    finally:
        transport.close()


async def http_client(port: int, deadline: float, lat: list[float], counts: dict, k: int) -> None:
    """One keep-alive HTTP/1.1 client: request, read the response header, repeat until ``deadline``."""
    reader, writer = await asyncio.open_connection(LO, port)
    try:
        i = 0
        while time.monotonic() < deadline:
            req = (f"GET /gate.php?c={k}&i={i} HTTP/1.1\r\nHost: evil-c2.example\r\n"
                   f"User-Agent: bench/{k}\r\n\r\n").encode()
            i += 1
            t0 = time.perf_counter()
            writer.write(req)
            counts["sent"] += 1
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
            except (TimeoutError, asyncio.IncompleteReadError):
                counts["timeouts"] += 1
                return
            lat.append(time.perf_counter() - t0)
            if head.startswith(b"HTTP/1.1 200"):
                counts["answered"] += 1
    finally:
        writer.close()


async def _phase(kind: str, port: int, clients: int, seconds: float) -> tuple[dict, list[float], float]:
    counts = {"sent": 0, "answered": 0, "timeouts": 0}
    lat: list[float] = []
    t0 = time.monotonic()
    deadline = t0 + seconds
    if kind == "http":
        coros = [http_client(port, deadline, lat, counts, k) for k in range(clients)]
    else:
        coros = [dns_client(port, deadline, lat, counts, k, kind == "dns-unique") for k in range(clients)]
    await asyncio.gather(*coros)
    return counts, lat, time.monotonic() - t0


def run(kind: str, clients: int, seconds: float, batch_rows: int) -> dict:
    """One phase: start the sensor, load it, stop it, count rows.  Returns the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="herald-bench-") as d:
        tmp = Path(d)
        proc, port = _spawn("http" if kind == "http" else "dns", _config(tmp, batch_rows))
        try:
            cpu0 = _cpu_seconds(proc.pid)
            counts, lat, elapsed = asyncio.run(_phase(kind, port, clients, seconds))
            cpu = _cpu_seconds(proc.pid) - cpu0
        finally:
            stop_s, summary = _stop(proc)
        rows = count_rows(tmp / "inbox")
        files = len(list((tmp / "inbox").glob("*/*.parquet")))
        rtype = "event4_sinkhole_http" if kind == "http" else "event4_sinkhole_dns"
        read_inbox(tmp / "inbox", rtype)  # validates names and schema of every file
    lat.sort()
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    return {
        "sensor": kind, "clients": clients, "seconds": round(elapsed, 2),
        "sent": counts["sent"], "answered": counts["answered"], "timeouts": counts["timeouts"],
        "rows_stored": rows, "files": files, "sent_equals_rows": rows == counts["sent"],
        "req_per_s": round(counts["answered"] / elapsed), "p50_ms": round(q[49] * 1000, 3),
        "p99_ms": round(q[98] * 1000, 3),
        "server_cpu_us_per_req": round(cpu / max(counts["sent"], 1) * 1e6, 1), "shutdown_s": round(stop_s, 2), "server_summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the DNS and/or HTTP phase and print a Markdown table (or JSON with ``--json``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each phase (max 120)")
    ap.add_argument("--clients", type=int, default=64, help="concurrent clients per phase")
    ap.add_argument("--batch-rows", type=int, default=1000)
    ap.add_argument("--only", choices=("dns", "dns-unique", "http"),
                    help="one phase; dns-unique asks a new name every time (no response-cache hits)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    seconds = min(max(args.seconds, 0.5), 120.0)
    kinds = [args.only] if args.only else ["dns", "dns-unique", "http"]
    results = [run(k, args.clients, seconds, args.batch_rows) for k in kinds]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"host: {socket.gethostname()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
        print("| sensor | clients | s | sent | answered | rows stored | sent == rows | req/s | p50 ms | p99 ms "
              "| server CPU µs/req |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['sensor']} | {r['clients']} | {r['seconds']} | {r['sent']} | {r['answered']} | "
                  f"{r['rows_stored']} | {r['sent_equals_rows']} | {r['req_per_s']} | {r['p50_ms']} | "
                  f"{r['p99_ms']} | {r['server_cpu_us_per_req']} |")
    return 0 if all(r["sent_equals_rows"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Time composing report messages (``herald.deliver.eml.compose_report``, the daily run's builder
herald.deliver.report_message with explicit options), per report size.

Usage::

    .venv/bin/python bench/compose_bench.py [--scale 1.0] [--cidrs 20000]

For each size class it composes N messages of a synthetic Shadowserver-like CSV report (random
addresses and ports, so ZIP sees realistic entropy) for three recipients — one with two
filters, one network owner with ``--cidrs`` networks as ``ipaddress`` objects and the same owner
with its networks as text, as the daily run passes them — and prints the CPU time per message
(microseconds) and the throughput over the CSV bytes (MB/s, 10**6 bytes).  Nothing is written to
disk; the message bytes are built exactly as the daily run builds them (``.as_bytes()``).
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import random
import time

from herald.constituency.recipients import Recipient
from herald.deliver.eml import compose_report
from herald.schema.registry import default_registry

#: (CSV size in bytes, messages per recipient) at --scale 1.
SIZES = [(1_000, 1000), (10_000, 400), (100_000, 100), (1_000_000, 20), (5_000_000, 4)]


def synthetic_csv(size: int, seed: int) -> bytes:
    """About ``size`` bytes of a ``scan_http``-like CSV (header plus rows of ~90 bytes)."""
    rnd = random.Random(seed)
    lines = ['"timestamp","ip","protocol","port","hostname","tag","asn","geo","region","city"']
    n = 0
    while n < size:
        line = (f'"2026-11-30 {rnd.randrange(24):02d}:{rnd.randrange(60):02d}:{rnd.randrange(60):02d}",'
                f'"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(256)}",'
                f'"tcp",{rnd.choice((80, 443, 8080, 8443))},"",'
                f'"{rnd.choice(("http", "https", "http;apache"))}",{rnd.randrange(1, 400000)},"AT","WIEN","VIENNA"')
        lines.append(line)
        n += len(line) + 1
    return ("\n".join(lines) + "\n").encode()[:max(size, 1)]


def main() -> None:
    """Run the benchmark and print one line per recipient and size class."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the message counts")
    ap.add_argument("--cidrs", type=int, default=20000, help="networks of the large network owner")
    args = ap.parse_args()
    rtype = default_registry().get("scan_http")
    small = Recipient(name="CERT Example", email="cert@example.at", kind="national_cert",
                      countries=["AT"], asns=[64496])
    base = int(ipaddress.IPv4Address("10.0.0.0"))
    big = Recipient(name="Big ISP", email="abuse@big.example", asns=list(range(64496, 64596)),
                    cidrs=[ipaddress.IPv4Network((base + 256 * i, 24)) for i in range(args.cidrs)])
    # The same owner with its networks as text (the daily run composes with its recipients as it
    # routed them: herald.deliver.messages.write_message).
    big_text = Recipient(name="Big ISP text", email="abuse@big.example", asns=big.asns,
                         cidrs=[str(n) for n in big.cidrs])
    total_cpu, total_n = 0.0, 0
    print(f"{'recipient':<14}{'csv bytes':>11}{'msgs':>6}{'us/msg':>11}{'MB/s':>9}{'msg bytes':>12}")
    for rcpt in (small, big, big_text):
        for size, count in SIZES:
            count = max(1, int(count * args.scale))
            data = synthetic_csv(size, size)
            digest = hashlib.sha256(data).hexdigest()
            name = f"2026-11-30-scan_http-{rcpt.slug}-x.csv"
            out = b""
            t0 = time.process_time()
            for _ in range(count):
                out = compose_report(rcpt, rtype, "2026-11-30", 1000, name, data, digest,
                                     "reports@cert.example", "AMBER").as_bytes()
            cpu = time.process_time() - t0
            total_cpu += cpu
            total_n += count
            print(f"{rcpt.slug:<14}{size:>11}{count:>6}{cpu / count * 1e6:>11.0f}"
                  f"{size * count / cpu / 1e6:>9.1f}{len(out):>12}")
    print(f"all: {total_n} messages, {total_cpu:.2f} s CPU, {total_cpu / total_n * 1e6:.0f} us/msg")


if __name__ == "__main__":
    main()

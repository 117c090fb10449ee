"""Generate a synthetic day of Shadowserver-format reports and a recipients file, for benchmarks.

    python bench/generate.py --events 10000000 --out var/bench/10m \\
        [--types event4_sinkhole_http,event4_sinkhole_dns,scan_dns,scan_ssl,blocklist] \\
        [--recipients 10000] [--cidrs 1000000] [--seed 1] [--day 2026-11-30]

Writes::

    OUT/inbox/DAY/DAY-<type>-bench-<n>.csv   the reports (real column sets from the registry)
    OUT/herald.toml                          [paths] and [[recipients]]
    OUT/manifest.json                        what was generated (counts, bytes, seconds)

What the data looks like, and why:

- Columns: exactly the report type's columns (``herald.schema.default_registry()``), in schema
  order, as Shadowserver writes them.
- Source addresses come from the real announced ranges of the embedded IP data
  (``herald/enrich/data/ipdata.npz``), so enrichment and routing hit real ranges.  The share of
  events per ASN is heavy-tailed (Zipf, exponent 1.1 over a seeded permutation of the ASNs): a few
  networks carry most infections, as in real sinkhole data.  About 4 % of addresses are IPv6
  (drawn from a pool of announced IPv6 ranges); ``blocklist`` has some CIDRs in ``ip``, as the
  real feed does (they cannot be routed by address).
- The ASN and country columns are filled with the true values (from the IP data) except in a share
  of rows (``--empty-share``, default 0.3), where they are left empty so enrichment has work.
- About 1 % of rows are exact duplicates of other rows of the same file (deduplication has work).
- Recipients: national CERTs for every country of the IP data (routed by country), and network
  owners holding the heaviest ASNs first (routed by ASN) plus CIDRs: about ``--cidrs`` prefixes in
  total, drawn inside announced ranges, spread heavy-tailed over the owners; a quarter of the
  owners have CIDRs only.

Deterministic for a given ``--seed`` (and the same embedded IP data).  CSV is written with
``pyarrow.csv.CSVWriter`` from generated columns, one block of ``--block`` rows at a time; no
Python loop over rows.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from herald.enrich.ipdata import IPData  # noqa: E402
from herald.schema.registry import TIMESTAMP_TYPE, ReportType, default_registry  # noqa: E402

DEFAULT_TYPES = ("event4_sinkhole_http", "event4_sinkhole_dns", "scan_dns", "scan_ssl", "blocklist")
#: Share of events per type (others get an equal share of what is left).
TYPE_WEIGHTS = {"event4_sinkhole_http": 0.30, "event4_sinkhole_dns": 0.25, "scan_dns": 0.15,
                "scan_ssl": 0.10, "blocklist": 0.20}
FAMILIES = ["andromeda", "avalanche-andromeda", "conficker", "necurs", "ramnit", "virut", "sality",
            "gamarue", "emotet", "qakbot", "mirai", "gozi", "nymaim", "tinba", "zeus", "pushdo",
            "matsnu", "downadup", "dorkbot", "bamital", "ranbyus", "suppobox", "murofet", "vawtrak"]
TAGS = ["botnet", "c2", "sinkhole", "openresolver", "ssl-poodle", "ssl-freak", "spam", "scanner",
        "bruteforce", "exploit", "phishing"]
V6_SHARE = 0.04
DUP_SHARE = 0.01


# ------------------------------------------------------------------------------------------------
class AddressSource:
    """Draw source addresses from the announced ranges of the embedded IP data, heavy-tailed by ASN.

    Attributes:
        asns: ``int64[A]`` the ASNs with IPv4 ranges, in seeded heavy-tail order (index 0 heaviest).
        weights: ``float64[A]`` each ASN's share of events (sums to 1).
    """

    def __init__(self, ipdata: IPData, seed: int) -> None:
        rng = np.random.default_rng(seed)
        rt = ipdata.asn_ranges
        self.ipdata = ipdata
        pay = rt.v4_payload
        asn_of_range = ipdata.asns[pay]
        ok = asn_of_range > 0
        self.r_start = rt.v4_start[ok].astype(np.uint64)
        self.r_size = (rt.v4_end[ok].astype(np.uint64) - self.r_start + 1)
        r_asn = asn_of_range[ok]
        uniq, inv = np.unique(r_asn, return_inverse=True)
        order = rng.permutation(len(uniq))  # heavy-tail rank of each ASN
        rank = np.empty(len(uniq), np.int64)
        rank[order] = np.arange(len(uniq))
        w_asn = 1.0 / (rank + 1.0) ** 1.1
        w_asn /= w_asn.sum()
        self.asns = uniq[order]
        self.weights = w_asn[order]
        # Weight of a range: its ASN's weight split over the ASN's ranges by size (sqrt, so small
        # prefixes of big networks still appear).
        sz = np.sqrt(self.r_size.astype(np.float64))
        tot = np.bincount(inv, weights=sz)
        w = w_asn[inv] * sz / tot[inv]
        self.r_cum = np.cumsum(w)
        self.r_cum /= self.r_cum[-1]
        self.r_asn = r_asn
        # IPv6: a pool of addresses inside announced IPv6 ranges (heavy-tailed by the same ranks).
        p6 = rt.v6_payload
        a6 = ipdata.asns[p6]
        ok6 = np.flatnonzero(a6 > 0)
        pick = rng.choice(ok6, size=min(20000, len(ok6)), replace=False)
        hi = rt.v6_start_hi[pick]
        lo = rt.v6_start_lo[pick] + rng.integers(1, 1 << 16, len(pick)).astype(np.uint64)
        lo = np.where(lo < rt.v6_start_lo[pick], rt.v6_start_lo[pick], lo)  # no wrap
        ok_in = (hi < rt.v6_end_hi[pick]) | (lo <= rt.v6_end_lo[pick])
        lo = np.where(ok_in, lo, rt.v6_start_lo[pick])
        self.v6_text = pa.array([str(ipaddress.IPv6Address((int(h) << 64) | int(l)))
                                 for h, l in zip(hi.tolist(), lo.tolist())], pa.string())
        self.v6_asn = a6[pick]
        cc6 = ipdata.lookup(self.v6_text, columns=["cc"]).column("cc").combine_chunks()
        self.v6_cc = cc6
        w6 = 1.0 / (np.arange(len(pick)) + 1.0) ** 0.9
        self.v6_cum = np.cumsum(w6) / w6.sum()

    def draw(self, rng: np.random.Generator, n: int) -> tuple[pa.Array, pa.Array, pa.Array]:
        """``n`` addresses: ``(text string[n], asn int64[n], cc string[n])`` (true values)."""
        is6 = rng.random(n) < V6_SHARE
        n6 = int(is6.sum())
        n4 = n - n6
        ri = np.searchsorted(self.r_cum, rng.random(n4), "right")
        ri = np.minimum(ri, len(self.r_cum) - 1)
        off = (rng.random(n4) * self.r_size[ri]).astype(np.uint64)
        v4 = (self.r_start[ri] + off).astype(np.uint32)
        octs = [pc.cast(pa.array(((v4 >> s) & 0xFF).astype(np.uint8)), pa.string()) for s in (24, 16, 8, 0)]
        text4 = pc.binary_join_element_wise(*octs, ".")
        asn4 = self.r_asn[ri]
        cc4 = self.ipdata.cc_ranges.lookup_v4(v4)
        cc4 = self.ipdata.ccs.take(pa.array(cc4, mask=cc4 < 0))
        j6 = np.minimum(np.searchsorted(self.v6_cum, rng.random(n6), "right"), len(self.v6_cum) - 1)
        # Interleave v4 and v6 rows by the is6 mask.
        pos = np.empty(n, np.int64)
        pos[~is6] = np.arange(n4)
        pos[is6] = n4 + np.arange(n6)
        text = pa.concat_arrays([text4, self.v6_text.take(pa.array(j6))]).take(pa.array(pos))
        asn = pa.array(np.concatenate([asn4, self.v6_asn[j6]]).astype(np.int64)).take(pa.array(pos))
        cc = pa.concat_arrays([cc4.cast(pa.string()), self.v6_cc.take(pa.array(j6))]).take(pa.array(pos))
        return text, asn, cc


def _pool(rng: np.random.Generator, values: list[str], n: int, null_share: float, zipf: float = 1.0
          ) -> pa.Array:
    """``n`` values drawn heavy-tailed from ``values``; ``null_share`` of them null (empty)."""
    w = 1.0 / (np.arange(len(values)) + 1.0) ** zipf
    cum = np.cumsum(w) / w.sum()
    idx = np.minimum(np.searchsorted(cum, rng.random(n), "right"), len(values) - 1)
    return pa.array(values, pa.string()).take(pa.array(idx, mask=rng.random(n) < null_share))


def _ints(rng: np.random.Generator, n: int, lo: int, hi: int, null_share: float) -> pa.Array:
    return pa.array(rng.integers(lo, hi, n), pa.int64(), mask=rng.random(n) < null_share)


def gen_block(rtype: ReportType, src: AddressSource, rng: np.random.Generator, n: int, day_epoch: int,
              empty_share: float) -> pa.Table:
    """One block of ``n`` rows of ``rtype`` (all columns; nulls are written as empty fields)."""
    cols: dict[str, pa.Array] = {}
    text, asn, cc = src.draw(rng, n)
    addr, asn_c, geo_c = rtype.address_column, rtype.asn_column, rtype.geo_column
    if rtype.name == "blocklist":
        # The real feed lists some networks as CIDRs.
        cidr = rng.random(n) < 0.02
        text = pc.if_else(pa.array(cidr), pc.binary_join_element_wise(text, pa.scalar("/32"), ""), text)
    blank = rng.random(n) < empty_share
    for name, typ in rtype.column_types.items():
        if typ == TIMESTAMP_TYPE:
            secs = day_epoch + np.sort(rng.integers(0, 86400, n))
            ts = pa.array(secs * 1_000_000, pa.timestamp("us", tz="UTC"))
            cols[name] = pc.strftime(pc.cast(ts, pa.timestamp("s", tz="UTC")), format="%Y-%m-%d %H:%M:%S")
        elif name == addr:
            cols[name] = text
        elif name == asn_c:
            cols[name] = pc.if_else(pa.array(blank), pa.nulls(n, pa.int64()), asn)
        elif name == geo_c:
            cols[name] = pc.if_else(pa.array(blank), pa.nulls(n, pa.string()), cc)
        elif name == "severity":
            cols[name] = _pool(rng, [rtype.default_severity, "high", "medium", "low", "info", "critical"],
                               n, 0.0, 2.0)
        elif name == "protocol":
            cols[name] = _pool(rng, ["tcp", "udp"], n, 0.0)
        elif name in ("infection", "family"):
            cols[name] = _pool(rng, FAMILIES, n, 0.05 if name == "infection" else 0.5)
        elif name == "tag":
            cols[name] = _pool(rng, TAGS, n, 0.3)
        elif name.endswith("port"):
            cols[name] = _ints(rng, n, 1024, 65536, 0.0) if name.startswith("src") \
                else _pool(rng, ["80", "443", "53", "8080"], n, 0.0).cast(pa.int64())
        elif name == "dst_ip":
            cols[name] = _pool(rng, [f"198.51.100.{i}" for i in range(1, 20)], n, 0.0)
        elif name == "public_source":
            cols[name] = _pool(rng, ["CAIDA", "SISSDEN", "ShadowserverSinkhole"], n, 0.0)
        elif name in ("http_url", "query", "http_host", "hostname", "src_hostname"):
            vocab = [f"{f}-{i:04d}.example.{'com' if i % 3 else 'net'}" for i, f in
                     zip(range(500), FAMILIES * 30)]
            if name == "http_url":
                vocab = [f"/{v}/gate.php?id={i}" for i, v in enumerate(vocab)]
            cols[name] = _pool(rng, vocab, n, 0.2 if name != "hostname" else 0.6, 0.8)
        elif name == "http_agent":
            cols[name] = _pool(rng, ["Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1)",
                                     "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "curl/7.81.0", "-"], n, 0.1)
        elif pa.types.is_integer(typ):
            cols[name] = _ints(rng, n, 1, 100000, 0.6)
        elif name.endswith("_geo"):  # other country columns (dst_geo, ...): ISO 3166-1 codes
            cols[name] = _pool(rng, ["US", "DE", "NL", "GB", "FR", "RU", "CN", "BR", "JP", "AT"],
                               n, 0.5, 1.2)
        elif name.endswith("fingerprint"):
            cols[name] = _pool(rng, [f"{i:040x}" for i in range(1000)], n, 0.2, 0.5)
        else:
            cols[name] = _pool(rng, [f"{name}-{i}" for i in range(40)], n, 0.75, 1.2)
    table = pa.table(cols)
    # ~1 % exact duplicates of other rows of the block.
    take = np.arange(n)
    dup = np.flatnonzero(rng.random(n) < DUP_SHARE)
    take[dup] = rng.integers(0, n, len(dup))
    return table.take(pa.array(take))


def write_type(rtype: ReportType, src: AddressSource, n: int, path: Path, seed: int, day: str,
               empty_share: float, block: int) -> int:
    """Write ``n`` events of ``rtype`` to ``path`` (CSV with header); returns bytes written."""
    day_epoch = int(np.datetime64(day, "s").astype(np.int64))
    tmp = path.with_name(f".{path.name}.tmp")
    opts = pacsv.WriteOptions(include_header=True, quoting_style="needed")
    with pacsv.CSVWriter(tmp, schema=_schema(rtype), write_options=opts) as w:
        done, k = 0, 0
        while done < n:
            m = min(block, n - done)
            rng = np.random.default_rng([seed, _stable(rtype.name), k])
            w.write_table(gen_block(rtype, src, rng, m, day_epoch, empty_share).cast(_schema(rtype)))
            done += m
            k += 1
    os.replace(tmp, path)
    return path.stat().st_size


def _schema(rtype: ReportType) -> pa.Schema:
    return pa.schema([(c, pa.int64() if pa.types.is_integer(t) else pa.string())
                      for c, t in rtype.column_types.items()])


def _stable(name: str) -> int:
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") % (1 << 31)


# ------------------------------------------------------------------------------------------------
def make_recipients(src: AddressSource, n_recipients: int, n_cidrs: int, seed: int) -> list[dict]:
    """Recipient tables: national CERTs by country, network owners by ASN and CIDR.

    Network owner ``i`` (``i = 0, 1, ...``) gets the ``i``-th heaviest ASN (three quarters of the
    owners; the rest have CIDRs only) and a heavy-tailed share of ``n_cidrs`` prefixes drawn inside
    announced IPv4 ranges (``/24`` to ``/16``, aligned; some ``/32``) and IPv6 ranges (``/48``).
    """
    rng = np.random.default_rng([seed, 7])
    ccs = [c for c in src.ipdata.ccs.to_pylist() if c and len(c) == 2 and c.isalpha()]
    out: list[dict] = []
    for cc in ccs:
        out.append({"name": f"CERT {cc}", "email": f"cert@{cc.lower()}.cert.example",
                    "kind": "national_cert", "countries": [cc], "min_severity": "low"})
    n_owners = max(n_recipients - len(out), 1)
    # CIDRs per owner: heavy-tailed, total n_cidrs.
    w = 1.0 / (np.arange(n_owners) + 1.0) ** 0.5
    counts = np.floor(w / w.sum() * n_cidrs).astype(np.int64)
    counts[: n_cidrs - int(counts.sum())] += 1
    total = int(counts.sum())
    # Prefixes: owner i holds the ranges of the i-th heaviest ASN (whether or not it lists the
    # ASN); its CIDRs are random prefixes inside those ranges (never wider than the range), as a
    # network owner registers its own networks.  Owners therefore rarely overlap.
    owner = np.repeat(np.arange(n_owners), counts)
    home = src.asns[np.minimum(owner, len(src.asns) - 1)]
    order = np.argsort(src.r_asn, kind="stable")
    r_sorted = src.r_asn[order]
    lo = np.searchsorted(r_sorted, home, "left")
    hi = np.searchsorted(r_sorted, home, "right")
    ri = order[lo + (rng.random(total) * (hi - lo)).astype(np.int64)]
    addr = (src.r_start[ri] + (rng.random(total) * src.r_size[ri]).astype(np.uint64)).astype(np.uint32)
    plen = rng.choice(np.array([22, 24, 24, 26, 28, 30, 32, 32], np.uint32), total)
    fit = 32 - np.floor(np.log2(src.r_size[ri].astype(np.float64))).astype(np.uint32)
    plen = np.maximum(plen, fit)
    mask = ((np.uint64(0xFFFFFFFF) << (32 - plen).astype(np.uint64)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    net = addr & mask
    octs = [pc.cast(pa.array(((net >> s) & 0xFF).astype(np.uint8)), pa.string()) for s in (24, 16, 8, 0)]
    text = pc.binary_join_element_wise(pc.binary_join_element_wise(*octs, "."),
                                       pc.cast(pa.array(plen), pa.string()), "/").to_pylist()
    # A few IPv6 /48s (5 % of the CIDRs).
    v6 = src.v6_text.to_pylist()
    is6 = rng.random(total) < 0.05
    v6_pick = rng.integers(0, len(v6), int(is6.sum()))
    v6_nets = [str(ipaddress.IPv6Network(f"{v6[j]}/48", strict=False)) for j in v6_pick.tolist()]
    it6 = iter(v6_nets)
    text = [next(it6) if s else t for t, s in zip(text, is6.tolist())]
    bounds = np.concatenate(([0], np.cumsum(counts)))
    asns = src.asns.tolist()
    for i in range(n_owners):
        rec = {"name": f"Network {i:06d}", "email": f"abuse@net{i:06d}.example", "kind": "network_owner"}
        if i % 4 != 3 and i < len(asns):
            rec["asns"] = [int(asns[i])]
        nets = sorted(set(text[bounds[i]:bounds[i + 1]]))
        if nets:
            rec["cidrs"] = nets
        if i % 50 == 7:
            rec["min_severity"] = "medium"
        if i % 97 == 11:
            rec["report_types"] = ["event4_sinkhole_http", "event4_sinkhole_dns"]
        out.append(rec)
    return out


def write_toml(path: Path, out_dir: Path, recipients: list[dict]) -> None:
    """``herald.toml`` with ``[paths]`` under ``out_dir`` and the ``[[recipients]]`` tables."""
    lines = ["# Generated by bench/generate.py: a benchmark constituency.", "",
             "[paths]", 'inbox = "inbox"', 'data = "data"', 'reports = "reports"', 'outbox = "outbox"', "",
             "[report]", 'tlp = "AMBER"', 'sender = "reports@herald.example"', ""]
    for r in recipients:
        lines.append("[[recipients]]")
        for k, v in r.items():
            lines.append(f"{k} = {json.dumps(v)}")
        lines.append("")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, required=True, help="events in the day (all types)")
    ap.add_argument("--types", default=",".join(DEFAULT_TYPES), help="comma-separated report types")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--recipients", type=int, default=10000, help="recipients (default 10000)")
    ap.add_argument("--cidrs", type=int, default=1_700_000,
                    help="CIDRs drawn over all recipients before de-duplication (default 1.7M: about 1M distinct)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--day", default="2026-11-30")
    ap.add_argument("--empty-share", type=float, default=0.3, help="rows with asn/geo left empty")
    ap.add_argument("--rows-per-file", type=int, default=5_000_000, help="split a type's day into files")
    ap.add_argument("--only-recipients", action="store_true", help="rewrite herald.toml only")
    ap.add_argument("--block", type=int, default=500_000, help="rows generated per block")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    reg = default_registry()
    types = [reg.get(t) for t in args.types.split(",") if t]
    src = AddressSource(IPData.default(), args.seed)
    inbox = args.out / "inbox" / args.day
    inbox.mkdir(parents=True, exist_ok=True)
    for old in ([] if args.only_recipients else inbox.glob("*.csv")):
        old.unlink()
    w = np.array([TYPE_WEIGHTS.get(t.name, 0.1) for t in types])
    per_type = np.floor(w / w.sum() * args.events).astype(np.int64)
    per_type[0] += args.events - int(per_type.sum())
    files = []
    for rtype, n in zip(types, per_type.tolist() if not args.only_recipients else []):
        parts = max(1, -(-n // args.rows_per_file))
        for k in range(parts):
            m = n // parts + (1 if k < n % parts else 0)
            path = inbox / f"{args.day}-{rtype.name}-bench-{k}.csv"
            size = write_type(rtype, src, m, path, args.seed * 1000 + k, args.day, args.empty_share, args.block)
            files.append({"path": str(path), "type": rtype.name, "rows": m, "bytes": size})
            print(f"{path.name}: {m} rows, {size / 1e6:.1f} MB", file=sys.stderr)
    recipients = make_recipients(src, args.recipients, args.cidrs, args.seed)
    write_toml(args.out / "herald.toml", args.out, recipients)
    if args.only_recipients and (args.out / "manifest.json").exists():
        files = json.loads((args.out / "manifest.json").read_text())["files"]
    manifest = {"events": sum(f["rows"] for f in files), "types": [t.name for t in types],
                "seed": args.seed, "day": args.day,
                "recipients": len(recipients), "cidrs": sum(len(r.get("cidrs", [])) for r in recipients),
                "files": files, "bytes": sum(f["bytes"] for f in files),
                "seconds": round(time.monotonic() - t0, 1)}
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({k: v for k, v in manifest.items() if k != "files"}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

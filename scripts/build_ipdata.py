#!/usr/bin/env python3
"""Build Herald's bundled IP -> ASN / AS name / country table from ip-location-db.

Usage::

    .venv/bin/python scripts/build_ipdata.py [--version 2.3.2026061719] [--out herald/enrich/data/ipdata.npz]
    .venv/bin/python scripts/build_ipdata.py --from-dir DIR   # already unpacked packages (offline)

Steps: ``npm pack @ip-location-db/asn@VERSION`` and ``npm pack @ip-location-db/asn-country@VERSION``
in a temporary directory (npm checks the tarballs' registry integrity), unpack them, read
``asn-ipv4.csv``, ``asn-ipv6.csv`` (``ip_range_start,ip_range_end,autonomous_system_number,
autonomous_system_organization``, inclusive ranges) and ``asn-country-ipv4.csv``,
``asn-country-ipv6.csv`` (``ip_range_start,ip_range_end,country_code``), as the packages' README
documents them, and write ``ipdata.npz`` + ``ipdata.json`` (atomically) and ``ATTRIBUTION.md``.

The data is CC BY 4.0 (RouteViews, NRO/RIR statistics, DB-IP); ``ATTRIBUTION.md`` keeps the
attribution and the licence texts the packages ship.  Overlapping rows (the 2026-06-17 IPv4 file
has one) are resolved by :func:`herald.enrich.ranges.flatten_ranges`: the smaller range wins.
The output is byte-identical for identical input.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from herald.enrich.iprange import RangeTable, unique_inverse  # noqa: E402
from herald.enrich.ipdata import IPData  # noqa: E402
from herald.fsutil import atomic_write  # noqa: E402
from herald.ipaddr import parse_ips  # noqa: E402

DEFAULT_VERSION = "2.3.2026061719"
PACKAGES = ("@ip-location-db/asn", "@ip-location-db/asn-country")
LICENCE_FILES = ("ROUTEVIEWS-LICENSE", "NRO_LICENSE", "DBIP-LICENSE", "MODIFICATIONS")


def fetch(version: str, workdir: Path) -> dict[str, dict]:
    """``npm pack`` both packages into ``workdir`` and unpack them.

    Returns:
        ``{package: {"dir": Path, "shasum": sha1 hex, "integrity": sha512 SRI, "sha256": hex}}``.

    Raises:
        SystemExit: npm failed.
    """
    out = {}
    for pkg in PACKAGES:
        spec = f"{pkg}@{version}"
        res = subprocess.run(["npm", "pack", spec, "--json", "--pack-destination", str(workdir)],
                             cwd=workdir, capture_output=True, text=True)
        if res.returncode != 0:
            raise SystemExit(f"npm pack {spec} failed:\n{res.stderr}")
        info = json.loads(res.stdout)[0]
        tgz = workdir / info["filename"]
        dest = workdir / pkg.split("/")[-1]
        dest.mkdir()
        with tarfile.open(tgz) as tf:
            tf.extractall(dest, filter="data")
        out[pkg] = {"dir": dest / "package", "shasum": info.get("shasum"), "integrity": info.get("integrity"),
                    "sha256": hashlib.sha256(tgz.read_bytes()).hexdigest(), "file": info["filename"]}
    return out


def read_ranges(path: Path, names: list[str]) -> pa.Table:
    """Read a headerless ip-location-db CSV with the given column names, all as strings."""
    return pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=names),
                          convert_options=pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                               strings_can_be_null=False))


def bounds(table: pa.Table, path: Path) -> tuple:
    """Parsed start/end columns: ``(v4 start, v4 end, v6 start hi, lo, v6 end hi, lo, is_v6)``."""
    s = parse_ips(table["start"])
    e = parse_ips(table["end"])
    bad = (s.version <= 0) | (e.version != s.version)
    if bad.any():
        i = int(np.argmax(bad))
        raise SystemExit(f"{path}:{i + 1}: not an address range: {table.slice(i, 1).to_pylist()}")
    return s, e


def build(dirs: dict[str, Path]) -> IPData:
    """The :class:`IPData` of the unpacked packages ``{package: directory}``."""
    asn_dir, cc_dir = dirs[PACKAGES[0]], dirs[PACKAGES[1]]
    asn_tabs = [read_ranges(asn_dir / f"asn-ipv{v}.csv", ["start", "end", "asn", "name"]) for v in (4, 6)]
    cc_tabs = [read_ranges(cc_dir / f"asn-country-ipv{v}.csv", ["start", "end", "cc"]) for v in (4, 6)]

    asn_all = pa.concat_tables(asn_tabs)
    asn_num = pc.cast(asn_all["asn"], pa.int64()).to_numpy()
    asns, payload = unique_inverse(asn_num)
    # One name per AS number (the 2026-06-17 data has exactly one); take the last row's.
    last = np.zeros(len(asns), dtype=np.int64)
    last[payload] = np.arange(len(payload))
    names = pc.if_else(pc.equal(asn_all["name"].take(pa.array(last)), ""), None,
                       asn_all["name"].take(pa.array(last)))
    asn_ranges = _table(asn_tabs, payload, asn_dir)

    cc_all = pa.concat_tables(cc_tabs)
    cc_txt = np.asarray(pc.utf8_upper(cc_all["cc"]).to_pylist(), dtype=str)
    ccs, cc_payload = np.unique(cc_txt, return_inverse=True)
    if not all(len(c) == 2 and c.isalpha() for c in ccs):
        raise SystemExit(f"unexpected country codes: {[c for c in ccs if len(c) != 2 or not c.isalpha()]}")
    cc_ranges = _table(cc_tabs, cc_payload, cc_dir)
    return IPData(asn_ranges, asns, names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names,
                  cc_ranges, pa.array(ccs.tolist(), pa.string()), {})


def _table(tabs: list[pa.Table], payload: np.ndarray, where: Path) -> RangeTable:
    s4, e4 = bounds(tabs[0], where)
    s6, e6 = bounds(tabs[1], where)
    if (s4.version != 4).any() or (s6.version != 6).any():
        raise SystemExit(f"{where}: an IPv4 file holds IPv6 rows or the reverse")
    n4 = tabs[0].num_rows
    return RangeTable.from_ranges(s4.v4, e4.v4, payload[:n4], s6.v6_hi, s6.v6_lo, e6.v6_hi, e6.v6_lo,
                                  payload[n4:])


ATTRIBUTION = """\
# Attribution of the bundled IP data

Herald's built-in IP -> ASN, AS name and country table (`ipdata.npz`, `ipdata.json`) is derived
from **ip-location-db** by sapics (https://github.com/sapics/ip-location-db), npm packages
`@ip-location-db/asn@{version}` and `@ip-location-db/asn-country@{version}` (data of {date}).

Licence: **Creative Commons Attribution 4.0 International (CC BY 4.0)**,
https://creativecommons.org/licenses/by/4.0/ . The data was converted (ranges re-encoded into
sorted NumPy arrays; one overlapping IPv4 row resolved in favour of the smaller range) by
`scripts/build_ipdata.py`; no values were changed otherwise.

The underlying sources, which must be credited wherever Herald's ASN, AS name or country
answers are shown or published:

- **RouteViews** (University of Oregon Route Views Project), https://www.routeviews.org/ :
  IP to AS number, CC BY 4.0.
- **NRO / the five RIRs** (AFRINIC, APNIC, ARIN, LACNIC, RIPE NCC) statistics,
  https://www.nro.net/ : IP to AS number and country, CC BY 4.0.
- **DB-IP**, https://db-ip.com/ : IP to ASN Lite (AS numbers and most AS organisation names),
  CC BY 4.0. Web pages that show or use results from this data must link to DB-IP:
  `<a href='https://db-ip.com'>IP Geolocation by DB-IP</a>`.

Package integrity (npm): {integrity}

Note: the packages' README (this version) warns that the data published to npm "contains bugs
resulting in incorrect data" and that npm updates are deprecated in favour of the project's GitHub
releases. Operators who need better data should add their own (`[enrich] ipdata`, see
docs/enrichment.md).

## Licence and notice texts shipped with the packages
{licences}
"""


def main(argv: list[str] | None = None) -> int:
    """Build the table; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--version", default=DEFAULT_VERSION, help="ip-location-db npm version")
    ap.add_argument("--out", type=Path, default=ROOT / "herald" / "enrich" / "data" / "ipdata.npz")
    ap.add_argument("--from-dir", type=Path, help="directory with asn/package and asn-country/package "
                    "already unpacked (skips npm)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.from_dir:
            fetched = {p: {"dir": args.from_dir / p.split("/")[-1] / "package"} for p in PACKAGES}
        else:
            fetched = fetch(args.version, Path(tmp))
        dirs = {p: f["dir"] for p, f in fetched.items()}
        for p, d in dirs.items():
            got = json.loads((d / "package.json").read_text())["version"]
            if got != args.version:
                raise SystemExit(f"{p}: package version {got}, expected {args.version}")
        data = build(dirs)
        stamp = args.version.rsplit(".", 1)[-1]  # 2026061719 = YYYYMMDDHH
        date = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}"
        meta = {
            "source": "ip-location-db (npm @ip-location-db/asn + @ip-location-db/asn-country)",
            "version": args.version,
            "date": date,
            "licence": "CC BY 4.0 (RouteViews, NRO/RIR statistics, DB-IP); see ATTRIBUTION.md",
            "url": "https://github.com/sapics/ip-location-db",
            "packages": {p: {k: v for k, v in f.items() if k != "dir"} for p, f in fetched.items()},
        }
        data = IPData(data.asn_ranges, data.asns, data.as_names, data.cc_ranges, data.ccs, meta)
        data.save(args.out)
        lic = []
        for p, d in dirs.items():
            for name in LICENCE_FILES:
                f = d / name
                if f.is_file():
                    lic.append(f"\n### {p}: {name}\n\n```\n{f.read_text(encoding='utf-8').strip()}\n```\n")
        integ = "; ".join(f"{p} {f.get('integrity', 'n/a')}" for p, f in fetched.items())
        text = ATTRIBUTION.format(version=args.version, date=date, integrity=integ, licences="".join(lic))
        atomic_write(args.out.parent / "ATTRIBUTION.md", text.encode("utf-8"))
    info = IPData.load(args.out).info()
    print(json.dumps({k: v for k, v in info.items() if k != "components"}, indent=2))
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

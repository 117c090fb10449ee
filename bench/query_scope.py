"""Benchmark the scope step of ``reports/query``: a ``limit: 1`` query of one recipient on a
generated day, before (whole-day Parquet scan) and after (the caller's own report files).

    python bench/query_scope.py [--events 500000] [--root var/bench/qs500k] [--repeats 3]
                                [--type event4_sinkhole_http] [--json out.json]

Uses ``ROOT`` (generated with ``bench/generate.py --events N --seed 1`` and run once with
:func:`herald.pipeline.run_day`, recipients from its ``herald.toml``, when missing).  Then, for two
callers -- a *small* recipient (the fewest rows, at least 5, among the reports of ``--type``) and
the *largest* one of that type -- each of these runs in a fresh child process per repeat:

- ``baseline``: :func:`herald.reports.read.read_report_csv` of the caller's report file (the floor:
  a plain read of the rows the caller may see);
- ``before``: :func:`herald.web.query.query_events` with ``limit: 1`` and the scope step as it was
  (``SELECT DISTINCT`` of every column of the whole day's Parquet of the type, ``ORDER BY ALL``,
  then :class:`herald.route.Router` over every row: :func:`_old_own_events`);
- ``after``: the same query with :meth:`herald.web.catalog.Catalog.own_events` as it is now.

Each child loads the same configuration (10,000 recipients, ~1M CIDRs: most of a child's
memory), reads the day's run summary and opens DuckDB (as a running server has, cached) before
it measures; it reports the seconds of the measured call, the memory of the call (peak RSS
during it, reset with Linux ``/proc/self/clear_refs``, minus the RSS before it) and the
process's peak RSS (``ru_maxrss`` from ``os.wait4``).  Printed: medians, and the ratio of each to ``baseline`` of the same caller in
the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.run import DAY, machine  # noqa: E402

MODES = ("baseline", "before", "after")


# ------------------------------------------------------------------------------------------------
# Child side

def _world(d: Path):
    """Settings, catalog and the recipients (with ids: their index + 1) of the generated day."""
    from herald.config import load_settings
    from herald.constituency.recipients import recipients_from_specs
    from herald.schema import default_registry
    from herald.store.db import open_db
    from herald.web.catalog import Catalog

    settings = load_settings(d / "herald.toml")
    recipients = recipients_from_specs(settings.recipients_spec)
    for i, r in enumerate(recipients):
        r.id = i + 1
    catalog = Catalog(settings, open_db(settings.database_url), default_registry())
    return settings, catalog, recipients


def _old_own_events(catalog, shares, day: str, type_name: str):
    """The scope step before this change: every recipient's events of the day, routed in Python."""
    import pyarrow as pa

    from herald.route import Router
    from herald.store.events import type_dir

    base = type_dir(catalog.settings.paths.data, day, type_name)
    files = sorted(str(p) for p in base.glob("*.parquet"))
    if not files:
        return None
    rtype = catalog.registry.get(type_name)
    cols = ", ".join(f'"{c}"' for c in rtype.columns)
    con = catalog.cursor()
    try:
        table = con.sql(f"SELECT DISTINCT {cols} FROM read_parquet(?, union_by_name=true) "
                        f"ORDER BY ALL", params=[files]).to_arrow_table()
    finally:
        con.close()
    table = table.cast(rtype.arrow_schema)
    return table.filter(pa.array(Router(shares).route(table, rtype).routed))


def _scope_query(r) -> dict:
    """A ``query`` naming one of the recipient's own filters."""
    if r.asns:
        return {"asn": int(r.asns[0])}
    if r.countries:
        return {"geo": r.countries[0]}
    return {"ip": str(next(iter(r.cidrs)))}


def _child(mode: str, d: Path, name: str, type_name: str) -> dict:
    import pyarrow  # noqa: F401  (same imports in every mode)

    from herald.reports.read import read_report_csv
    from herald.web import query as query_mod

    settings, catalog, recipients = _world(d)
    me = next(r for r in recipients if r.name == name)
    rtype = catalog.registry.get(type_name)
    body = {"query": _scope_query(me), "date": DAY, "type": type_name, "limit": 1}
    if mode == "before":
        catalog.own_events = lambda shares, day, t: _old_own_events(catalog, shares, day, t)
    # A running server has parsed the day's run summary already (Catalog caches it).
    files = [e.path for e in catalog.reports(me, days=[DAY], types=[type_name])]
    catalog.cursor().close()  # ... and holds its DuckDB connection
    rss0 = _reset_peak()
    t = time.monotonic()
    if mode == "baseline":
        rows = sum(read_report_csv(f, rtype).num_rows for f in files)
    else:
        rows = len(query_mod.query_events(catalog, lambda day: [me], body))
    seconds = time.monotonic() - t
    peak = _peak_kb()
    return {"seconds": seconds, "rows": rows,
            "call_peak_mb": (peak - rss0) / 1024 if rss0 is not None and peak else None}


def _status_kb(field: str) -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> int | None:
    """Reset this process's peak RSS (Linux ``clear_refs`` 5) and return its RSS in kB, or
    ``None`` when the peak cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _peak_kb() -> int | None:
    return _status_kb("VmHWM")


# ------------------------------------------------------------------------------------------------
# Parent side

def spawn(cmd: list[str]) -> dict:
    """Run ``cmd`` in a child process: its last stdout line as JSON, plus ``peak_rss_mb`` (the
    child's ``ru_maxrss``) and ``wall`` (seconds); ``{"error": ...}`` when it printed none."""
    t = time.monotonic()
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, cwd=ROOT)
        out = proc.stdout.read()
        _, _status, ru = os.wait4(proc.pid, 0)
        errf.seek(0)
        err = errf.read()[-4000:].decode(errors="replace")
    try:
        res = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"error": err or out.decode()[-2000:]}
    res["wall"] = time.monotonic() - t
    res["peak_rss_mb"] = ru.ru_maxrss / 1024  # Linux: kilobytes
    return res


def _setup(d: Path, events: int) -> None:
    if not (d / "manifest.json").exists():
        subprocess.run([sys.executable, str(ROOT / "bench/generate.py"), "--events", str(events),
                        "--out", str(d), "--seed", "1"], check=True)
    if not (d / "data" / "runs" / f"{DAY}.json").exists():
        res = spawn([sys.executable, str(ROOT / "bench/run.py"), "--child", "run", str(d)])
        print(f"run_day: {res.get('seconds', res)} s, peak RSS {res['peak_rss_mb']:.0f} MB",
              file=sys.stderr, flush=True)


def _callers(d: Path, type_name: str) -> dict[str, tuple[str, int]]:
    """``{"small": (name, rows), "large": (name, rows)}`` among the reports of ``type_name``."""
    reports = json.loads((d / "data" / "runs" / f"{DAY}.json").read_text())["reports"]
    mine = [(r["rows"], r["recipient"]) for r in reports if r["type"] == type_name]
    small = min((x for x in mine if x[0] >= 5), default=min(mine))
    large = max(mine)
    return {"small": (small[1], small[0]), "large": (large[1], large[0])}


def _med(xs):
    return statistics.median(xs) if xs else float("nan")


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--root", type=Path, default=ROOT / "var/bench/qs500k")
    ap.add_argument("--type", default="event4_sinkhole_http")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", nargs=4, metavar=("MODE", "DIR", "NAME", "TYPE"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        mode, d, name, t = args.child
        print(json.dumps(_child(mode, Path(d), name, t)))
        return 0
    info = machine()
    print(json.dumps(info), flush=True)
    _setup(args.root, args.events)
    from herald.store.events import type_dir

    store = sum(p.stat().st_size for p in type_dir(args.root / "data", DAY, args.type).glob("*.parquet"))
    print(f"day: {args.events:,} events; {args.type} Parquet {store / 1e6:.1f} MB", flush=True)
    results: dict = {"machine": info, "callers": {}}
    for label, (name, nrows) in _callers(args.root, args.type).items():
        runs: dict[str, list[dict]] = {m: [] for m in MODES}
        for _ in range(args.repeats):
            for m in MODES:
                res = spawn([sys.executable, str(Path(__file__).resolve()), "--child", m,
                              str(args.root), name, args.type])
                if "seconds" not in res:
                    raise SystemExit(f"{m} failed: {res.get('error')}")
                runs[m].append(res)
        med = {m: {k: _med([r[k] for r in runs[m] if r.get(k) is not None])
                   for k in ("seconds", "peak_rss_mb", "call_peak_mb")} for m in MODES}
        base = med["baseline"]
        line = [f"{label} caller {name!r} ({nrows:,} rows in its report):"]
        for m in MODES:
            line.append(f"{m} {med[m]['seconds'] * 1000:.1f} ms "
                        f"(x{med[m]['seconds'] / base['seconds']:.1f}), "
                        f"memory of the call {med[m]['call_peak_mb']:.1f} MB, "
                        f"process peak RSS {med[m]['peak_rss_mb']:.0f} MB "
                        f"(x{med[m]['peak_rss_mb'] / base['peak_rss_mb']:.2f})")
        print(" ".join(line[:1]) + "\n  " + "\n  ".join(line[1:]), flush=True)
        results["callers"][label] = {"rows": nrows, "median": med, "runs": runs}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark the daily job on generated days: whole run, stages, peak memory, files and bytes.

    python bench/run.py [--sizes 1m,10m,50m] [--repeats 3] [--root var/bench] [--json out.json]
                        [--cli] [--stages-only]

For each size ``S`` it uses ``ROOT/S`` (generated with ``bench/generate.py`` when missing) and runs
:func:`herald.pipeline.run_day` in a fresh child process per repeat, on empty ``data``/``reports``/
``outbox`` directories, with the recipients of the generated ``herald.toml`` passed in (the
configuration's import into the metadata database is a separate, one-off cost; ``--cli`` also
times the full ``herald run`` command, database sync included, once).  Peak RSS is the child's
``ru_maxrss`` (``os.wait4``).  It also times, in the same way:

- ``arrow_csv``: a plain ``pyarrow.csv.read_csv`` of the same inputs (the floor: how fast can the
  bytes be read at all here);
- ``enrich_route``: :func:`herald.enrich.enrich` plus :meth:`herald.route.Router.route` alone, on the
  parsed inputs in batches of 1M rows (the asn/geo left empty by the generator are filled); the
  router's build and the IP data's :meth:`~herald.enrich.ipdata.IPData.prepare` are set-up, timed
  apart (``router_build``, ``ipdata_prepare``), as the run does both before forking its workers.

One line per size is printed with medians over the repeats; ``--json`` writes every measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-30"
SIZES = {"100k": 100_000, "1m": 1_000_000, "10m": 10_000_000, "50m": 50_000_000}


# ------------------------------------------------------------------------------------------------
# Child side: one measurement, printed as JSON on stdout.

def _child(mode: str, d: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    import pyarrow as pa
    import pyarrow.csv as pacsv

    inputs = sorted((d / "inbox" / DAY).glob("*.csv"))
    bytes_in = sum(p.stat().st_size for p in inputs)
    if mode == "arrow_csv":
        t = time.monotonic()
        rows = 0
        for p in inputs:
            rows += pacsv.read_csv(p).num_rows
        return {"seconds": time.monotonic() - t, "events": rows, "bytes_in": bytes_in}

    from herald.config import load_settings
    from herald.constituency.recipients import recipients_from_specs

    t = time.monotonic()
    settings = load_settings(d / "herald.toml")
    recipients = recipients_from_specs(settings.recipients_spec)
    t_rcpt = time.monotonic() - t
    if mode == "enrich_route":
        from herald.enrich import enrich
        from herald.enrich.ipdata import IPData
        from herald.route import Router
        from herald.schema import default_registry
        from herald.sources.shadowserver_csv import iter_file

        reg = default_registry()
        ipdata = IPData.default()
        t = time.monotonic()
        router = Router(recipients).prepare()
        t_router = time.monotonic() - t
        # The run builds the IP data's joined table before it forks its workers, after the
        # router (herald.pipeline): it is set-up, timed apart like the router's build.
        t = time.monotonic()
        ipdata.prepare()
        t_ipdata = time.monotonic() - t
        t_enrich = t_route = 0.0
        rows = pairs = 0
        for p in inputs:
            it = iter_file(p, registry=reg, block_size=64 << 20)
            meta = next(it)
            for b in it:
                table = pa.Table.from_batches([b])
                t = time.monotonic()
                table = enrich(table, meta.report_type, ipdata)
                t_enrich += time.monotonic() - t
                t = time.monotonic()
                a = router.route(table, meta.report_type)
                t_route += time.monotonic() - t
                rows += table.num_rows
                pairs += len(a.event)
        return {"seconds": t_enrich + t_route, "enrich": t_enrich, "route": t_route,
                "router_build": t_router, "ipdata_prepare": t_ipdata, "events": rows, "pairs": pairs,
                "bytes_in": bytes_in}

    from herald.pipeline import run_day
    for sub in ("data", "reports", "outbox"):
        shutil.rmtree(d / sub, ignore_errors=True)
    t = time.monotonic()
    s = run_day(settings, DAY, recipients=recipients)
    wall = time.monotonic() - t
    out = s.to_dict()
    files = bytes_out = 0
    for sub in ("reports", "outbox"):
        for p in (d / sub).rglob("*"):
            if p.is_file():
                files += 1
                bytes_out += p.stat().st_size
    store = sum(p.stat().st_size for p in (d / "data" / "events").rglob("*.parquet"))
    return {"seconds": wall, "load_recipients": t_rcpt, "events": out["rows_in"],
            "stages": out["stages_seconds"], "reports": len(out["reports"]), "files": files,
            "bytes_in": bytes_in, "bytes_out": bytes_out, "bytes_store": store,
            "reconciles": out["reconciles"], "rows_reported": out["rows_reported"],
            "rows_duplicate": out["rows_duplicate"], "errors": out["errors"]}


def _run_child(mode: str, d: Path) -> dict:
    """One child process measurement with its peak RSS (``ru_maxrss`` of that child only)."""
    return _spawn([sys.executable, str(Path(__file__).resolve()), "--child", mode, str(d)])


def _spawn(cmd: list[str]) -> dict:
    """Run ``cmd``; its last stdout line parsed as JSON, plus ``peak_rss_mb``, ``wall`` and
    ``returncode``."""
    t = time.monotonic()
    import tempfile
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, cwd=ROOT)
        out = proc.stdout.read()
        _, status, ru = os.wait4(proc.pid, 0)
        errf.seek(0)
        err = errf.read()[-4000:].decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    try:
        res = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        res = {"error": err or out.decode()[-2000:]}
    res["wall"] = time.monotonic() - t
    res["peak_rss_mb"] = ru.ru_maxrss / 1024  # Linux: kilobytes
    res["returncode"] = proc.returncode
    return res


# ------------------------------------------------------------------------------------------------
def machine() -> dict:
    """CPU model, cores, memory, Python and library versions."""
    import pyarrow
    import numpy
    import duckdb
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem, 1),
            "python": platform.python_version(), "pyarrow": pyarrow.__version__,
            "numpy": numpy.__version__, "duckdb": duckdb.__version__, "load": os.getloadavg()}


def _ensure(root: Path, size: str) -> Path:
    d = root / size
    if not (d / "manifest.json").exists():
        subprocess.run([sys.executable, str(ROOT / "bench/generate.py"), "--events", str(SIZES[size]),
                        "--out", str(d), "--seed", "1"], check=True)
    return d


def _med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(size: str, runs: list[dict], arrow: list[dict], er: list[dict]) -> str:
    """One line: medians of events/s (whole run and stages), peak RSS, files, bytes."""
    ok = [r for r in runs if "seconds" in r]
    if not ok:
        return f"{size}: failed: {runs[0].get('error', '')[-300:]}"
    n = ok[0]["events"]
    eps = _med([n / r["seconds"] for r in ok])
    st = {}
    for k in ok[0]["stages"]:
        v = _med([r["stages"].get(k) for r in ok])
        st[k] = v
    stage_txt = " ".join(f"{k}={v:.1f}s" for k, v in st.items())
    ing = n / st["ingest"] if st.get("ingest") else 0
    rr = n / st["route_report"] if st.get("route_report") else 0
    a_eps = _med([a["events"] / a["seconds"] for a in arrow if "seconds" in a])
    e_eps = _med([e["events"] / e["seconds"] for e in er if "seconds" in e])
    line = (f"{size}: {n:,} events in {_med([r['seconds'] for r in ok]):.1f}s = {eps:,.0f} events/s "
            f"(ingest {ing:,.0f}/s, route+report {rr:,.0f}/s; {stage_txt}); "
            f"peak RSS {max(r['peak_rss_mb'] for r in ok):,.0f} MB; {ok[0]['files']:,} files "
            f"({ok[0]['reports']:,} reports); in {ok[0]['bytes_in'] / 1e6:,.0f} MB, "
            f"out {ok[0]['bytes_out'] / 1e6:,.0f} MB + store {ok[0]['bytes_store'] / 1e6:,.0f} MB; "
            f"recipients load {_med([r['load_recipients'] for r in ok]):.1f}s (not in the run)")
    if a_eps:
        line += f"; arrow read_csv {a_eps:,.0f} events/s"
    if e_eps:
        line += f"; enrich+route alone {e_eps:,.0f} events/s"
    line += f"; n={len(ok)}"
    return line


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1m,10m,50m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--root", type=Path, default=ROOT / "var/bench")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cli", action="store_true", help="also time `herald run` (with DB sync) once")
    ap.add_argument("--stages-only", action="store_true", help="only arrow_csv and enrich_route")
    ap.add_argument("--no-stages", action="store_true", help="only the run (no arrow_csv, enrich_route)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], Path(args.child[1]))))
        return 0
    info = machine()
    print(json.dumps(info), flush=True)
    results = {"machine": info, "sizes": {}}
    for size in args.sizes.split(","):
        d = _ensure(args.root, size)
        runs, arrow, er = [], [], []
        for i in range(args.repeats):
            if not args.no_stages:
                arrow.append(_run_child("arrow_csv", d))
                er.append(_run_child("enrich_route", d))
            if not args.stages_only:
                runs.append(_run_child("run", d))
            print(f"  {size} repeat {i + 1}: run {runs[-1].get('seconds') if runs else '-'}s "
                  f"arrow {arrow[-1].get('seconds') if arrow else '-'}s "
                  f"enrich+route {er[-1].get('seconds') if er else '-'}s",
                  file=sys.stderr, flush=True)
        res = {"run": runs, "arrow_csv": arrow, "enrich_route": er}
        if args.cli:
            for sub in ("data", "reports", "outbox"):
                shutil.rmtree(d / sub, ignore_errors=True)
            res["cli"] = _spawn([sys.executable, "-m", "herald.cli", "run", "--config",
                                 str(d / "herald.toml"), "--date", DAY])
            print(f"{size}: herald run (CLI, database sync included): {res['cli']['wall']:.1f}s, "
                  f"peak RSS {res['cli']['peak_rss_mb']:,.0f} MB, exit {res['cli']['returncode']}", flush=True)
        results["sizes"][size] = res
        if runs:
            print(summarize(size, runs, arrow, er), flush=True)
        else:
            print(f"{size}: arrow read_csv {_med([a['events'] / a['seconds'] for a in arrow]):,.0f} events/s; "
                  f"enrich+route {_med([e['events'] / e['seconds'] for e in er]):,.0f} events/s", flush=True)
        if args.json:
            args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

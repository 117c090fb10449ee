"""Issue 14: the daily run's CPU-bound stages on one core and on two, as a ratio.

    python bench/cores.py [--events 1000000] [--root var/bench] [--repeats 3]

Uses ``ROOT/<events>`` (generated with ``bench/generate.py --seed 1`` when missing: five report
types of 30/25/20/15/10 % of the events, 10k recipients).  Each measurement is a fresh child
process on empty ``data``/``reports`` folders that times the two stages :mod:`herald.parallel`
runs in worker processes, with the library's own functions:

- ``ingest``: parse, enrich and store every input (:func:`herald.store.ingest.ingest_input`);
- ``route_write``: de-duplicate, route and write each type's reports
  (:func:`herald.reports.write.route_and_write`).

``*_cpu``: the phase's critical path in CPU seconds, which a loaded machine does not stretch: with
one core the process's CPU time (all its threads); with two cores the busiest worker's CPU time
in the phase (``/proc``) plus the driver's.  Their ratio is the speed-up on an idle two-core
machine, when I/O does not wait; the wall-clock ratio is what this machine gave at the time.

``cpu`` is the CPU time of the whole child (setup included, workers included): with two cores it
should not grow much (parallel overhead), whatever the machine's load.

``1 core``: ``taskset -c 0``, one process (``workers = 1``: the loop of the run as it was).
``2 cores``: ``taskset -c 0,1``, :class:`herald.parallel.StagePool` with two workers.  The two
alternate (1, 2, 1, 2, ...) and the ratio is taken pair by pair, so a machine whose load drifts
still gives comparable pairs; the median ratio is printed.  Each child also checks that its reports
have the same SHA-256 as the other mode's.  Messages, the ledger and the setup (IP data and router
loading, the same in both) are not part of it; ``peak_rss_mb`` is the largest single process
(the child or one worker: ``RUSAGE_CHILDREN`` covers the workers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-30"


def _child(d: Path, workers: int, work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from herald.config import load_settings
    from herald.constituency.recipients import recipients_from_specs
    from herald.enrich.ipdata import IPData
    from herald.parallel import StageContext, StagePool
    from herald.reports.write import route_and_write
    from herald.route import Router
    from herald.schema.registry import default_registry
    from herald.sources.inputs import file_sha256, find_inputs
    from herald.store.dedup import duckdb_connection
    from herald.store.ingest import ingest_input

    settings = load_settings(d / "herald.toml")
    for sub in ("data", "reports"):
        shutil.rmtree(work / sub, ignore_errors=True)
    settings.paths.data, settings.paths.reports = work / "data", work / "reports"
    registry = default_registry()
    router = Router(recipients_from_specs(settings.recipients_spec)).prepare()
    ipdata = IPData.from_specs(settings.ipdata)
    jobs = [(str(p), file_sha256(p)) for p in find_inputs(settings.paths.inbox, DAY)]
    out: dict = {"workers": workers, "cpus": sorted(os.sched_getaffinity(0))}
    if workers == 1:
        t = time.monotonic()
        stored, out["ingest_cpu"], _ = _cpu_phase(lambda: [
            ingest_input(Path(p), h, day=DAY, data_dir=settings.paths.data, registry=registry,
                         ipdata=ipdata) for p, h in jobs])
        out["ingest"] = time.monotonic() - t
        types = _types(stored)
        t = time.monotonic()
        con = duckdb_connection(settings.paths.data / "tmp" / "duckdb")
        done, out["route_write_cpu"], _ = _cpu_phase(lambda: [
            route_and_write(con, settings.paths.reports, DAY, registry.get(n), files, router)
            for n, files in types])
        con.close()
        out["route_write"] = time.monotonic() - t
    else:
        with StagePool(StageContext(settings, DAY, registry, ipdata, router, False, workers)) as pool:
            t = time.monotonic()
            stored, own, out["ingest_cpu"] = _cpu_phase(lambda: [f.result() for f in pool.ingest(jobs)])
            out["ingest"] = time.monotonic() - t
            out["ingest_driver_cpu"] = own
            out["ingest_cpu"] += own  # the busiest worker plus this process (results, fork)
            types = _types(stored)
            t = time.monotonic()
            done, own, out["route_write_cpu"] = _cpu_phase(lambda: [f.result().reports for f in pool.route(types)])
            out["route_write"] = time.monotonic() - t
            out["route_write_driver_cpu"] = own
            out["route_write_cpu"] += own
    out["total"] = out["ingest"] + out["route_write"]
    out["total_cpu"] = out["ingest_cpu"] + out["route_write_cpu"]
    out["events"] = sum(s.rows_in for s in stored)
    out["reports"] = sum(len(x.reports) for x in done)
    digest = hashlib.sha256()
    for x in done:
        for r in x.reports:
            digest.update(f"{r.path.relative_to(work)} {r.sha256}\n".encode())
    out["digest"] = digest.hexdigest()[:16]
    me, ch = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the whole child (setup included), workers included once they are reaped
    out["cpu"] = me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime
    kids = ch.ru_maxrss
    out["peak_rss_mb"] = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, kids) / 1024
    return out


def _children_cpu() -> dict[int, float]:
    """CPU seconds (user + system) of each live child process of this one (``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in kids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            out[int(pid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_phase(fn):
    """Run ``fn``; returns ``(result, this process's CPU seconds, the busiest child's CPU seconds)``
    -- the busiest worker's CPU time is the phase's critical path on an idle machine."""
    c0, k0 = time.process_time(), _children_cpu()
    res = fn()
    c1, k1 = time.process_time(), _children_cpu()
    busiest = max((v - k0.get(pid, 0.0) for pid, v in k1.items()), default=0.0)
    return res, c1 - c0, busiest


def _types(stored) -> list[tuple[str, list[str]]]:
    by_type: dict[str, list[str]] = {}
    for s in stored:
        if s.parquet and not s.error:
            by_type.setdefault(s.report_type, []).append(s.parquet)
    return [(n, by_type[n]) for n in sorted(by_type)]


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "nproc": os.cpu_count(), "load": [round(x, 2) for x in os.getloadavg()]}


def _measure(d: Path, workers: int, work: Path) -> dict:
    cpus = "0" if workers == 1 else "0,1"
    cmd = ["taskset", "-c", cpus, sys.executable, str(Path(__file__).resolve()), "--child",
           str(workers), str(d), str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        raise SystemExit(f"child failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--root", type=Path, default=ROOT / "var" / "bench")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(Path(args.child[1]), int(args.child[0]), Path(args.child[2]))))
        return 0
    name = f"{args.events // 1000}k" if args.events % 1_000_000 else f"{args.events // 1_000_000}m"
    d = args.root / name
    if not (d / "manifest.json").exists():
        subprocess.run([sys.executable, str(ROOT / "bench/generate.py"), "--events", str(args.events),
                        "--out", str(d), "--seed", "1"], check=True)
    print(json.dumps({"machine_before": machine()}))
    pairs = []
    for _ in range(args.repeats):
        one = _measure(d, 1, args.root / f"{name}-cores-work")
        two = _measure(d, 2, args.root / f"{name}-cores-work")
        if one["digest"] != two["digest"]:
            raise SystemExit(f"reports differ: {one['digest']} != {two['digest']}")
        pairs.append((one, two))
        print(json.dumps({"1core": one, "2cores": two}))
    print(json.dumps({"machine_after": machine()}))
    for key in ("ingest", "route_write", "total", "ingest_cpu", "route_write_cpu", "total_cpu"):
        ratios = [a[key] / b[key] for a, b in pairs]
        print(f"{key:12s} 1 core {statistics.median(a[key] for a, _ in pairs):7.2f} s   "
              f"2 cores {statistics.median(b[key] for _, b in pairs):7.2f} s   "
              f"ratio median {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, "
              f"max {max(ratios):.2f})")
    print(f"cpu seconds (whole child, setup included) 1 core "
          f"{statistics.median(a['cpu'] for a, _ in pairs):.1f}, 2 cores "
          f"{statistics.median(b['cpu'] for _, b in pairs):.1f}")
    print(f"peak RSS (largest process) 1 core {max(a['peak_rss_mb'] for a, _ in pairs):.0f} MB, "
          f"2 cores {max(b['peak_rss_mb'] for _, b in pairs):.0f} MB; events {pairs[0][0]['events']}, "
          f"reports {pairs[0][0]['reports']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Local engine vs Spark engine on generated days: wall time and byte identity.

    python bench/spark_vs_local.py --events 100000 [--events 1000000] [--masters local[1],local[2]]
        [--work var/bench/spark]

For each size: generate the day once (``bench/generate.py``, 200 recipients, 2,000 CIDRs), then
run ``herald run`` in a fresh process per engine (``--engine local``; ``--engine spark`` with
``SPARK_MASTER`` = each master, so each Spark run pays its JVM start), each into its own
data/reports/outbox folders.  Prints one JSON line per run: wall seconds, the summary's stage
times, and whether reports/ and outbox/ are byte-identical to the local run's (SHA-256 of every
file).  Figures: bench/README.md ("Spark engine").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-30"


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root``, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(gen: Path, out: Path, engine: str, master: str | None) -> dict:
    """One ``herald run`` in a fresh process; returns its figures."""
    env = {**os.environ, "HERALD_DATA_DIR": str(out / "data"), "HERALD_REPORTS_DIR": str(out / "reports"),
           "HERALD_OUTBOX_DIR": str(out / "outbox"), "HERALD_DATABASE_URL": f"sqlite:///{out / 'herald.db'}"}
    if master:
        env["SPARK_MASTER"] = master
    summary = out / "summary.json"
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "herald.cli", "run", "--config", str(gen / "herald.toml"),
                    "--date", DAY, "--engine", engine, "--summary-json", str(summary)],
                   env=env, check=True, capture_output=True)
    wall = time.monotonic() - t
    data = json.loads(summary.read_text())
    return {"engine": engine, "master": master, "wall_s": round(wall, 1),
            "stages": {k: round(v, 1) for k, v in data["stages_seconds"].items()},
            "rows_in": data["rows_in"], "rows_reported": data["rows_reported"],
            "reports": len(data["reports"])}


class _Value:
    """Stands for a Spark broadcast (``.value``) when the task functions run in this process."""

    def __init__(self, value) -> None:
        self.value = value


def task_costs(gen: Path, work: Path) -> dict:
    """Run the Spark task functions of a day serially in this process, on one core, without Spark:
    the compute an executor core does per event (the 1B-events estimate in docs/spark.md starts
    from it).  The shuffles in between are done with numpy here; their network cost is not in it.

    Returns:
        seconds per step and events.
    """
    import numpy as np
    import pyarrow as pa

    from herald.config import load_settings
    from herald.constituency.sync import routing_recipients, sync_config
    from herald.engines import spark_tasks as st
    from herald.schema.registry import default_registry
    from herald.sources.inputs import file_sha256, find_inputs
    from herald.store.db import open_db
    from herald.store.dedup import batch_rows_for

    os.environ.update({"HERALD_DATA_DIR": str(work / "data"), "HERALD_REPORTS_DIR": str(work / "reports"),
                       "HERALD_OUTBOX_DIR": str(work / "outbox"),
                       "HERALD_DATABASE_URL": f"sqlite:///{work / 'herald.db'}"})
    settings = load_settings(gen / "herald.toml")
    settings.paths.data.mkdir(parents=True, exist_ok=True)
    db = open_db(settings.database_url)
    sync_config(db, settings)
    rcpts = _Value(routing_recipients(db, DAY))
    reg = default_registry()
    out: dict = {}
    t = time.monotonic()
    stored = [st.ingest_task((str(p), file_sha256(p)), day=DAY, data_dir=str(settings.paths.data),
                             registry=reg, ipdata_path=None, overwrite=False)
              for p in find_inputs(settings.paths.inbox, DAY)]
    out["ingest"] = time.monotonic() - t
    out["events"] = sum(s.rows_in for s in stored)
    names = sorted({s.report_type for s in stored})
    rtypes = [reg.get(n) for n in names]
    files = [(names.index(s.report_type), s.parquet) for s in stored]
    t = time.monotonic()
    batch = pa.record_batch({"t": pa.array([f[0] for f in files], pa.int32()),
                             "fidx": pa.array(range(len(files)), pa.int32()),
                             "path": pa.array([f[1] for f in files])})
    h = pa.Table.from_batches(list(st.row_hashes(iter([batch]), [list(r.columns) for r in rtypes])))
    out["hash"] = time.monotonic() - t
    t = time.monotonic()
    cols = {c: h.column(c).to_numpy() for c in ("t", "k", "h1", "h2")}
    order = np.lexsort((cols["k"], cols["h2"], cols["h1"], cols["t"]))
    # order[i] starts a new (t, h1, h2) group: its smallest k, the first occurrence.
    key = np.stack([cols["t"][order].astype(np.int64), cols["h1"][order], cols["h2"][order]])
    first = np.concatenate(([True], (key[:, 1:] != key[:, :-1]).any(axis=0)))
    kept = np.sort(cols["k"][order][first])
    out["dedup_numpy"] = time.monotonic() - t
    t = time.monotonic()
    parts = []
    fidx = kept >> st.ROW_BITS
    for f in np.unique(fidx).tolist():
        mine = kept[fidx == f]
        size = batch_rows_for(rtypes[files[f][0]])
        chunk = (mine & ((1 << st.ROW_BITS) - 1)) // size
        for c in np.unique(chunk).tolist():
            parts.append(st.route_chunk(pa.table({"k": mine[chunk == c]}), files=[p for _, p in files],
                                        file_type=[x for x, _ in files], rtypes=rtypes,
                                        recipients_bc=rcpts, token="bench", intelmq=False))
    out["route_render"] = time.monotonic() - t
    t = time.monotonic()
    lines = pa.concat_tables(parts)
    lines = lines.take(np.lexsort((lines.column("k").to_numpy(), lines.column("rid").to_numpy(),
                                   lines.column("t").to_numpy())))
    list(st.write_reports(iter(lines.to_batches(max_chunksize=65_536)),
                          reports_dir=str(settings.paths.reports), day=DAY, rtypes=rtypes,
                          recipients_bc=rcpts))
    out["write"] = time.monotonic() - t
    db.engine.dispose()
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    """Run the comparison (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, action="append", help="events per day (repeatable)")
    ap.add_argument("--masters", default="local[1],local[2]")
    ap.add_argument("--work", type=Path, default=ROOT / "var/bench/spark")
    ap.add_argument("--tasks-only", action="store_true",
                    help="only time the Spark task functions serially in this process (per-core cost)")
    args = ap.parse_args()
    if args.tasks_only:
        for n in args.events or [100_000]:
            base = args.work / f"tasks-{n}"
            subprocess.run(["rm", "-rf", str(base)], check=True)
            print(json.dumps({"events": n, "tasks_serial_s": task_costs(args.work / f"gen-{n}", base)}))
        return
    for n in args.events or [100_000]:
        gen = args.work / f"gen-{n}"
        if not (gen / "herald.toml").exists():
            subprocess.run([sys.executable, str(ROOT / "bench/generate.py"), "--events", str(n),
                            "--out", str(gen), "--recipients", "200", "--cidrs", "2000", "--day", DAY],
                           check=True, capture_output=True)
        base = args.work / f"run-{n}"
        subprocess.run(["rm", "-rf", str(base)], check=True)
        local = run(gen, base / "local", "local", None)
        ref = (digests(base / "local/reports"), digests(base / "local/outbox"))
        print(json.dumps({"events": n, **local}), flush=True)
        for master in args.masters.split(","):
            out = base / master.replace("[", "-").replace("]", "").replace("*", "all")
            res = run(gen, out, "spark", master)
            res["identical"] = (digests(out / "reports"), digests(out / "outbox")) == ref
            print(json.dumps({"events": n, **res}), flush=True)


if __name__ == "__main__":
    main()

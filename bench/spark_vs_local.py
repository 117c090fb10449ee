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


def main() -> None:
    """Run the comparison (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, action="append", help="events per day (repeatable)")
    ap.add_argument("--masters", default="local[1],local[2]")
    ap.add_argument("--work", type=Path, default=ROOT / "var/bench/spark")
    args = ap.parse_args()
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

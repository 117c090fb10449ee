"""Two versions of Herald on the same generated day, in alternating pairs: "no slower" as a ratio.

    .venv/bin/python bench/before_after.py --before /tmp/before/.venv/bin/herald \\
        --after .venv/bin/herald --day-dir var/bench/1m --pairs 3 [--json FILE]

``--before``/``--after`` are the ``herald`` executables of two checkouts (each installed in its own
venv: ``git worktree add /tmp/before <commit>`` and ``pip install -e``).  For each, a working
folder ``<day-dir>/<label>/`` gets a copy of the day's ``herald.toml`` whose inbox is the shared
``<day-dir>/inbox`` and whose data, reports and outbox are its own.  A first run (the
constituency import into a new SQLite database) is made when that folder has no database yet
(and no ``--no-first``: the folder's own ``herald.toml`` names a data folder that has one) and is
not timed; then ``--pairs`` pairs of steady runs (``herald run --force``), *after* then
*before*, each a fresh process.  Per run: wall seconds (``time.monotonic`` around the child) and
peak RSS (``ru_maxrss`` of ``os.wait4``: the largest process, message workers included).  The
ratio after/before is taken pair by pair (a drifting machine slows both runs of a pair alike)
and its median printed.  Every pair's report files (CSV under ``reports/``) are compared by
SHA-256: they must be byte-identical between the two versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

DAY = "2026-11-30"


def workdir(day_dir: Path, label: str) -> Path:
    """``<day_dir>/<label>`` with a ``herald.toml`` reading the shared inbox (made once)."""
    d = day_dir / label
    d.mkdir(exist_ok=True)
    cfg = d / "herald.toml"
    if not cfg.exists():
        text = (day_dir / "herald.toml").read_text()
        cfg.write_text(text.replace('inbox = "inbox"', f'inbox = "{(day_dir / "inbox").resolve()}"', 1))
    return d


def run(exe: str, d: Path, force: bool) -> tuple[float, int]:
    """``(wall seconds, peak RSS bytes)`` of one ``herald run`` in ``d``.

    Raises:
        RuntimeError: the run exited non-zero (its log is ``d/run.log``).
    """
    cmd = [exe, "run", "--config", str(d / "herald.toml"), "--date", DAY,
           "--summary-json", str(d / "summary.json")] + (["--force"] if force else [])
    with open(d / "run.log", "wb") as log:
        t = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd} failed: see {d / 'run.log'}")
    return wall, usage.ru_maxrss * 1024


def digests(d: Path) -> dict[str, str]:
    """SHA-256 of every report file under ``d/reports``, by relative path."""
    root = d / "reports"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--day-dir", type=Path, required=True)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-first", action="store_true",
                    help="no first run: the folders' herald.toml use a data folder that has one")
    args = ap.parse_args()
    dirs = {"before": workdir(args.day_dir, "before"), "after": workdir(args.day_dir, "after")}
    exes = {"before": args.before, "after": args.after}
    for label, d in dirs.items():
        if not args.no_first and not (d / "data" / "herald.db").exists():
            print(f"{label}: first run (not timed)", flush=True)
            run(exes[label], d, force=False)
    runs: dict[str, list[tuple[float, int]]] = {"before": [], "after": []}
    ratios, identical = [], []
    for i in range(args.pairs):
        for label in ("after", "before"):
            runs[label].append(run(exes[label], dirs[label], force=True))
        ratios.append(runs["after"][-1][0] / runs["before"][-1][0])
        identical.append(digests(dirs["after"]) == digests(dirs["before"]))
        print(f"pair {i + 1}: after {runs['after'][-1][0]:.1f} s, before {runs['before'][-1][0]:.1f} s, "
              f"ratio {ratios[-1]:.2f}, reports identical: {identical[-1]}", flush=True)
    counts = {k: json.loads((d / "summary.json").read_text()) for k, d in dirs.items()}
    res = {
        "day_dir": str(args.day_dir), "pairs": args.pairs,
        "wall": {k: [round(w, 2) for w, _ in v] for k, v in runs.items()},
        "median_wall": {k: round(statistics.median(w for w, _ in v), 2) for k, v in runs.items()},
        "peak_rss_mb": {k: round(max(r for _, r in v) / 2**20) for k, v in runs.items()},
        "ratio_after_before": [round(r, 3) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
        "reports_identical": all(identical),
        "rows": {k: {f: c.get(f) for f in ("rows_in", "rows_reported", "rows_unrouted", "rows_duplicate")}
                 for k, c in counts.items()},
        "stages": {k: c.get("stages_seconds") for k, c in counts.items()},
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(),
                    "load": [round(x, 1) for x in os.getloadavg()]},
    }
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

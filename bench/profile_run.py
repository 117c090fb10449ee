"""Profile one daily run of a generated day with pyinstrument (or just time it).

    python bench/profile_run.py DIR [--day 2026-11-30] [--html out.html] [--no-profile]

Runs :func:`herald.pipeline.run_day` on ``DIR/herald.toml`` with the recipients read from the file
(``recipients=`` override: the database sync of the configuration is timed separately by
``bench/run.py``), into fresh ``data``/``reports``/``outbox`` directories, and prints the stage
timings and the profile.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from herald.config import load_settings  # noqa: E402
from herald.constituency.recipients import recipients_from_specs  # noqa: E402
from herald.pipeline import run_day  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir", type=Path)
    ap.add_argument("--day", default="2026-11-30")
    ap.add_argument("--html", type=Path)
    ap.add_argument("--no-profile", action="store_true")
    args = ap.parse_args()
    for sub in ("data", "reports", "outbox"):
        shutil.rmtree(args.dir / sub, ignore_errors=True)
    settings = load_settings(args.dir / "herald.toml")
    t0 = time.monotonic()
    recipients = recipients_from_specs(settings.recipients_spec)
    t_rcpt = time.monotonic() - t0
    prof = None
    if not args.no_profile:
        from pyinstrument import Profiler
        prof = Profiler(interval=0.005)
        prof.start()
    t0 = time.monotonic()
    s = run_day(settings, args.day, recipients=recipients)
    wall = time.monotonic() - t0
    if prof:
        prof.stop()
    d = s.to_dict()
    print(json.dumps({"wall": round(wall, 2), "load_recipients": round(t_rcpt, 2), "rows_in": d["rows_in"],
                      "reports": len(d["reports"]), "reconciles": d["reconciles"],
                      "stages": d["stages_seconds"], "eps": round(d["rows_in"] / wall)}))
    if prof:
        if args.html:
            args.html.write_text(prof.output_html())
        print(prof.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

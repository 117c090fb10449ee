"""The floor ratio: ``herald run`` as a user runs it, against the least work that gives its output.

    .venv/bin/python bench/floor.py [--events 100000] [--recipients 2000] [--cidrs 340000]
        [--root var/bench] [--repeats 1] [--json FILE] [--no-attach]

On a generated day (``bench/generate.py``; made once under ``ROOT/floor-<events>-<recipients>``
when missing), in one invocation:

1. **first run**: ``herald run --config herald.toml --date DAY`` as a subprocess on fresh
   ``data``/``reports``/``outbox`` directories — a new SQLite metadata database, the constituency
   import, the day;
2. **steady run**: the same command with ``--force`` (database and constituency in place);
3. **floor** = *read* + *write*:
   - *read*: a bare :func:`pyarrow.csv.read_csv` of each of the day's input files;
   - *write*: as many files, with the same bytes, as the run wrote under ``reports/`` and
     ``outbox/`` (the reports and their ``.eml`` messages), created in a fresh temporary directory
     with the same sub-directories: the bytes are read into memory beforehand (untimed, 512 MB at
     a time), so this is the pure cost of creating and writing the files (no ``fsync``).

Printed (and written with ``--json``): seconds of each part, the ratios ``first / floor`` and
``steady / floor``, and the bytes the steady run left on disk by kind (reports, outbox ``.eml``,
the mail spool ``data/mail``, Parquet under ``data/events``, the rest of ``data``).  Wall seconds
are ``time.monotonic``; a run's seconds include the interpreter's start and imports, the floor's
do not.  With ``--repeats N`` the three parts are measured N times, in turn, and medians taken;
``ratio_*_best`` divide the least of each run by the least read plus the least write (the floor is
the best the machine does: on a disk that stalls, the median of a few writes is mostly the stalls).
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAY = "2026-11-30"
BATCH_BYTES = 512 << 20


def ensure_day(root: Path, events: int, recipients: int, cidrs: int) -> Path:
    """The generated day's directory, generated when missing."""
    d = root / f"floor-{events}-{recipients}-{cidrs}"
    if not (d / "manifest.json").exists():
        subprocess.run([sys.executable, str(ROOT / "bench/generate.py"), "--events", str(events),
                        "--recipients", str(recipients), "--cidrs", str(cidrs), "--day", DAY,
                        "--out", str(d)], check=True, cwd=ROOT)
    return d


def herald_run(d: Path, force: bool, config: str = "herald.toml") -> float:
    """Wall seconds of ``herald run`` on ``d`` with ``d/config`` (raises CalledProcessError when
    it fails)."""
    exe = Path(sys.executable).parent / "herald"
    cmd = [str(exe), "run", "--config", str(d / config), "--date", DAY]
    if force:
        cmd.append("--force")
    t = time.monotonic()
    subprocess.run(cmd, check=True, cwd=d, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def no_attach_config(d: Path) -> str:
    """``herald-noattach.toml`` beside ``d/herald.toml``: the same with ``[mail] attach = false``
    (reports named in their messages, not attached).  Returns its file name."""
    text = (d / "herald.toml").read_text()
    (d / "herald-noattach.toml").write_text("[mail]\nattach = false\n\n" + text)
    return "herald-noattach.toml"


def fresh(d: Path) -> None:
    """Remove what a run leaves (data, reports, outbox)."""
    for sub in ("data", "reports", "outbox"):
        shutil.rmtree(d / sub, ignore_errors=True)


def floor_read(d: Path) -> tuple[float, int]:
    """Seconds of a bare ``pyarrow.csv.read_csv`` of every input file, and the rows read."""
    import pyarrow.csv as pacsv

    inputs = sorted((d / "inbox" / DAY).glob("*.csv"))
    t = time.monotonic()
    rows = sum(pacsv.read_csv(p).num_rows for p in inputs)
    return time.monotonic() - t, rows


def output_files(d: Path) -> list[Path]:
    """The files the run wrote under ``reports/`` and ``outbox/``."""
    return sorted(p for sub in ("reports", "outbox") for p in (d / sub).rglob("*") if p.is_file())


def floor_write(d: Path, files: list[Path]) -> float:
    """Seconds to create ``files`` again (same relative paths, same bytes) in a temporary
    directory; the bytes are read beforehand, untimed, in batches of ``BATCH_BYTES``."""
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="herald-floor-", dir=d) as tmp:
        i = 0
        while i < len(files):
            batch, size = [], 0
            while i < len(files) and (not batch or size < BATCH_BYTES):
                data = files[i].read_bytes()
                batch.append((Path(tmp) / files[i].relative_to(d), data))
                size += len(data)
                i += 1
            t = time.monotonic()
            for path, data in batch:
                path.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            total += time.monotonic() - t
    return total


def bytes_by_kind(d: Path) -> dict[str, dict[str, int]]:
    """``{kind: {"files": n, "bytes": b}}`` of what a run left under ``d``."""
    kinds: dict[str, dict[str, int]] = {}

    def add(kind: str, p: Path) -> None:
        k = kinds.setdefault(kind, {"files": 0, "bytes": 0})
        k["files"] += 1
        k["bytes"] += p.stat().st_size

    for p in (d / "reports").rglob("*"):
        if p.is_file():
            add("reports", p)
    for p in (d / "outbox").rglob("*"):
        if p.is_file():
            add("outbox_eml" if p.suffix == ".eml" else "outbox_other", p)
    for p in (d / "data").rglob("*"):
        if not p.is_file():
            continue
        rel = p.relative_to(d / "data").parts
        if rel[0] == "mail":
            add("mail_spool", p)
        elif p.suffix == ".parquet":
            add("parquet", p)
        else:
            add("data_other", p)
    return kinds


def machine() -> dict:
    """CPU model, cores, memory, load, Python."""
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem, 1),
            "python": platform.python_version(), "load": [round(x, 1) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--recipients", type=int, default=2000)
    ap.add_argument("--cidrs", type=int, default=340_000,
                    help="CIDRs drawn before de-duplication (generate.py; 340k give about 200k)")
    ap.add_argument("--root", type=Path, default=ROOT / "var/bench")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--no-attach", action="store_true",
                    help="run with [mail] attach = false (messages name their reports)")
    args = ap.parse_args(argv)
    d = ensure_day(args.root, args.events, args.recipients, args.cidrs)
    config = no_attach_config(d) if args.no_attach else "herald.toml"
    manifest = json.loads((d / "manifest.json").read_text())
    m = {"first": [], "steady": [], "read": [], "write": []}
    files: list[Path] = []
    for _ in range(args.repeats):
        fresh(d)
        m["first"].append(herald_run(d, force=False, config=config))
        m["steady"].append(herald_run(d, force=True, config=config))
        files = output_files(d)
        t, rows = floor_read(d)
        m["read"].append(t)
        m["write"].append(floor_write(d, files))
    med = {k: statistics.median(v) for k, v in m.items()}
    floor = med["read"] + med["write"]
    best_floor = min(m["read"]) + min(m["write"])
    out = {
        "day": {"events": manifest["events"], "input_bytes": manifest["bytes"],
                "recipients": manifest["recipients"], "cidrs": manifest["cidrs"], "rows_read": rows},
        "config": config,
        "seconds": {k: round(v, 2) for k, v in med.items()} | {"floor": round(floor, 2)},
        "runs": {k: [round(x, 2) for x in v] for k, v in m.items()},
        "output_files": len(files), "output_bytes": sum(p.stat().st_size for p in files),
        "ratio_first": round(med["first"] / floor, 1), "ratio_steady": round(med["steady"] / floor, 1),
        # Best of the repeats on both sides: on a disk whose stalls swing the floor's write part
        # several-fold between repeats, the least each side took.
        "ratio_first_best": round(min(m["first"]) / best_floor, 1),
        "ratio_steady_best": round(min(m["steady"]) / best_floor, 1),
        "bytes_written_steady": bytes_by_kind(d),
        "machine": machine(),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

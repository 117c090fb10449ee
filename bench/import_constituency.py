"""Time the constituency import (``import_recipients``) of a large ``[[recipients]]`` list.

    .venv/bin/python bench/import_constituency.py [--recipients 10000] [--per 100]
        [--legacy-recipients 100] [--url sqlite:///...] [--json FILE]

Builds ``--recipients`` network owners with ``--per`` CIDRs each (distinct IPv4 prefixes, one in
twenty an IPv6 /48) and an ASN, and times, on a fresh database (a SQLite file in a temporary
directory unless ``--url``):

1. the first import (everything new), the way the first ``herald run`` does it;
2. the same import again (nothing changes: the idempotent path);
3. an import with 1 % of the CIDRs replaced (set differences on both sides).

Baseline in the same run: the old ORM import (``tests/legacy_import.py``, one flush and audit
entry per filter) and the bulk import on the first ``--legacy-recipients`` recipients only (the
old path takes about 15 minutes for a million filters), each on a fresh database; the ratio of
their filters per second is printed.  Seconds are wall-clock (``time.perf_counter``); peak RSS is
``ru_maxrss`` of this process; ``cpu_s`` the CPU seconds of this process per step
(``time.process_time``: on a busy machine closer to the cost than the wall time).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from herald.constituency.bulk_import import import_recipients  # noqa: E402
from herald.store.db import open_db  # noqa: E402
from tests.legacy_import import legacy_import_recipients  # noqa: E402


def make_specs(n: int, per: int) -> list[dict]:
    """``n`` recipient tables with ``per`` distinct CIDRs each (``n * per`` in all)."""
    specs = []
    k = 0
    for i in range(n):
        cidrs = []
        for _ in range(per):
            if k % 20 == 19:
                cidrs.append(f"2001:db8:{k >> 16:x}:{k & 0xFFFF:x}::/64")
            else:
                a = 0x0B000000 + k * 256  # 11.0.0.0 upwards, /24s
                cidrs.append(f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.0/24")
            k += 1
        specs.append({"name": f"Network {i:06d}", "email": f"abuse@net{i:06d}.example",
                      "asns": [64512 + i], "cidrs": cidrs,
                      **({"min_severity": "medium"} if i % 50 == 7 else {})})
    return specs


def changed(specs: list[dict], share: float = 0.01) -> list[dict]:
    """A copy with ``share`` of each recipient's CIDRs replaced by new ones."""
    out = []
    for i, s in enumerate(specs):
        m = max(1, int(len(s["cidrs"]) * share))
        new = [f"100.{64 + (i >> 16) % 64}.{(i >> 8) & 255}.{i & 255}/32"] + \
              [f"2001:db8:ffff:{i:x}:{j:x}::/80" for j in range(m - 1)]
        out.append(dict(s, cidrs=s["cidrs"][m:] + new))
    return out


CPU: dict[str, float] = {}


def timed(fn, *args, label: str = ""):
    """``(wall seconds, result)``; the CPU seconds of this process go to ``CPU[label]``."""
    t, c = time.perf_counter(), time.process_time()
    r = fn(*args)
    if label:
        CPU[label] = round(time.process_time() - c, 2)
    return time.perf_counter() - t, r


def fresh_db(tmp: Path, name: str, url: str | None):
    return open_db(url or f"sqlite:///{tmp / name}.sqlite", upgrade=True)


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipients", type=int, default=10_000)
    ap.add_argument("--per", type=int, default=100, help="CIDRs per recipient")
    ap.add_argument("--legacy-recipients", type=int, default=100,
                    help="recipients for the old-path baseline (0: skip it)")
    ap.add_argument("--url", help="database URL (an empty database; default a SQLite file)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    specs = make_specs(args.recipients, args.per)
    n = args.recipients * args.per
    out: dict = {"recipients": args.recipients, "filters": n}
    with tempfile.TemporaryDirectory(prefix="herald-import-") as tmp:
        tmp = Path(tmp)
        db = fresh_db(tmp, "bulk", args.url)
        out["first_s"], r1 = timed(import_recipients, db, specs, label="first")
        assert r1.filters_added == n + len(specs) + sum(1 for s in specs if "min_severity" in s), r1
        out["again_s"], r2 = timed(import_recipients, db, specs, label="again")
        assert not r2.changed
        moved = changed(specs)
        out["changed_s"], r3 = timed(import_recipients, db, moved, label="changed")
        out["changed_filters"] = {"added": r3.filters_added, "rejected": r3.filters_rejected}
        db.engine.dispose()
        if args.legacy_recipients:
            sub = specs[:args.legacy_recipients]
            m = args.legacy_recipients * args.per
            old_db, new_db = fresh_db(tmp, "legacy", None), fresh_db(tmp, "small", None)
            out["baseline_filters"] = m
            out["legacy_s"], _ = timed(legacy_import_recipients, old_db, sub, label="legacy")
            out["bulk_small_s"], _ = timed(import_recipients, new_db, sub, label="bulk_small")
            out["legacy_filters_per_s"] = round(m / out["legacy_s"])
            out["speedup_same_filters"] = round(out["legacy_s"] / out["bulk_small_s"], 1)
            out["legacy_estimate_s"] = round(n / out["legacy_filters_per_s"])
    out["filters_per_s"] = round(n / out["first_s"])
    out["cpu_s"] = CPU
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    for k in ("first_s", "again_s", "changed_s", "legacy_s", "bulk_small_s"):
        if k in out:
            out[k] = round(out[k], 2)
    print(json.dumps(out))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

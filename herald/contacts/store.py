"""The stored abuse-contact data under ``<data>/contacts/``: range tables, rows and a manifest.

Layout::

    <data>/contacts/manifest.json          which generation is current, its sources and dates
    <data>/contacts/<generation>/ranges.npz     two RangeTables (herald.enrich.iprange)
    <data>/contacts/<generation>/networks.parquet   one row per inetnum/inet6num
    <data>/contacts/<generation>/autnums.parquet    one row per aut-num

Two range tables, both built with :meth:`herald.enrich.iprange.RangeTable.from_bounds`
("most specific wins", :func:`herald.enrich.iprange.flatten_ranges`), payload = row of
``networks.parquet``:

- ``net_``: every network object: the most specific ``inetnum``/``inet6num`` holding an address.
- ``ans_``: only the network objects that have an abuse mailbox: the most specific object *with an
  answer*.  Where the most specific object has none, this is its closest less specific parent
  that has one: RIPE's documented inheritance of ``abuse-c`` from the parent ``inetnum``
  (RIPE Database documentation, "Abuse-c Information": "the abuse-c of the less specific object
  is used").

Atomic writes: a new generation is written into its own directory and made durable, then
``manifest.json`` is replaced (:func:`herald.fsutil.atomic_write`), then older generations are
removed.  A reader that loaded the old manifest a moment earlier may find its files gone; it then
retries.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from herald.contacts.importer import PLACEHOLDER_NETNAMES, ImportedData
from herald.enrich.iprange import V4_MAX, RangeTable, flatten_ranges
from herald.errors import HeraldError
from herald.fsutil import atomic_write, fsync_path

#: Data older than this many days makes ``herald contacts info`` warn (as ``herald ipdata info``).
MAX_AGE_DAYS = 90
MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ContactDataError(HeraldError):
    """No contact data imported yet, or the stored files are damaged."""


def contacts_dir(data_dir: str | Path) -> Path:
    """``<data>/contacts``."""
    return Path(data_dir) / "contacts"


@dataclass
class ContactData:
    """Loaded abuse-contact data.

    Attributes:
        networks: table of network rows (see :class:`herald.contacts.importer.ImportedData`).
        autnums: aut-num rows, ``asn`` sorted ascending.
        net_table: :class:`RangeTable`, payload = row of ``networks``: most specific network.
        answer_table: :class:`RangeTable`, payload = row of ``networks``: most specific network
            that has an abuse mailbox.
        manifest: the manifest dict (``generation``, ``imported_at``, ``sources``, counts).
    """

    networks: pa.Table
    autnums: pa.Table
    net_table: RangeTable
    answer_table: RangeTable
    manifest: dict[str, Any]

    def info(self, today: dt.date | None = None) -> dict[str, Any]:
        """Age and provenance, for ``herald contacts info``.

        Args:
            today: the UTC day to measure the age from (default: today, UTC; tests pass a fixed day).

        Returns:
            The manifest's ``imported_at``, ``sources`` and counts, plus ``date`` (the oldest
            source's date), ``age_days`` and, when older than :data:`MAX_AGE_DAYS` days,
            ``warning``.
        """
        today = today or dt.datetime.now(dt.timezone.utc).date()
        out = dict(self.manifest)
        dates = [s["date"] for s in self.manifest.get("sources", []) if s.get("date")]
        out["date"] = min(dates) if dates else None
        out["age_days"] = (today - dt.date.fromisoformat(out["date"])).days if out["date"] else None
        if out["age_days"] is not None and out["age_days"] > MAX_AGE_DAYS:
            out["warning"] = (f"abuse-contact data of {out['date']} is {out['age_days']} days old "
                              f"(more than {MAX_AGE_DAYS}); download the dumps again and run "
                              f"'herald contacts import'")
        return out


#: IPv4 ranges per block of :func:`build_tables` (bounds the memory of the flattening).
BUILD_BLOCK = 1 << 18


def _flatten_v4_blocks(start: np.ndarray, end: np.ndarray, rows: np.ndarray, block: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IPv4 ranges flattened block by block of the address space.

    :func:`flatten_ranges` needs about 300 bytes per range at once; cutting the space into blocks
    of about ``block`` range starts bounds that.  A range crossing a cut is clipped into each
    block it touches, and every range gets a unique *tier* that encodes the global order
    (smaller original size wins, then the later input row), so the clipped pieces win exactly
    where the whole range would have; pieces that meet at a cut with the same payload are merged
    again, so the result equals one global flatten.

    Returns:
        ``(start uint32[R], end uint32[R], payload int64[R])``, sorted, non-overlapping.
    """
    if len(rows) == 0:
        return np.zeros(0, np.uint32), np.zeros(0, np.uint32), np.zeros(0, np.int64)
    tier = ((np.int64(V4_MAX) - (end - start).astype(np.int64)) << np.int64(31)) | rows.astype(np.int64)
    cuts = np.unique(np.sort(start)[::block])
    hi_b = np.append(cuts[1:] - np.uint64(1), np.uint64(V4_MAX))
    parts = []
    for lo, hi in zip(cuts, hi_b):
        m = np.flatnonzero((start <= hi) & (end >= lo))
        if not len(m):
            continue
        z = np.zeros(len(m), np.uint64)
        _, a, _, b, p = flatten_ranges(z, np.maximum(start[m], lo), z, np.minimum(end[m], hi),
                                       rows[m], tier[m])
        parts.append((a.astype(np.uint32), b.astype(np.uint32), p))
        del m, z
    del tier
    a, b, p = (np.concatenate(x) for x in zip(*parts))
    del parts
    # Merge pieces that meet at a cut with the same payload.
    new = np.ones(len(p), dtype=bool)
    new[1:] = (a[1:].astype(np.int64) != b[:-1].astype(np.int64) + 1) | (p[1:] != p[:-1])
    last = np.append(new[1:], True)
    return a[new], b[last], p[new]


def build_table(networks: pa.Table, answers_only: bool, block: int = BUILD_BLOCK) -> RangeTable:
    """One range table of a networks table (see the module docstring), payload = row.

    Args:
        networks: rows as in :class:`ImportedData`.  Placeholder objects
            (:data:`herald.contacts.importer.PLACEHOLDER_NETNAMES`) are left out.
        answers_only: only the rows that have an abuse mailbox (the answer table), else all (the
            network table).
        block: IPv4 ranges per flattening block (bounds memory; the result does not depend on it).
    """
    fam = networks.column("family").to_numpy().astype(np.int8)
    placeholder = pc.fill_null(pc.is_in(networks.column("netname"),
                                        value_set=pa.array(sorted(PLACEHOLDER_NETNAMES))), False)
    keep = ~np.asarray(placeholder.to_numpy(zero_copy_only=False), dtype=bool)
    if answers_only:
        keep &= pc.is_valid(networks.column("mailbox")).to_numpy(zero_copy_only=False).astype(bool)
    m4 = np.flatnonzero(keep & (fam == 4))
    m6 = np.flatnonzero(keep & (fam == 6))
    del keep, fam

    def col(name: str, idx: np.ndarray) -> np.ndarray:
        return networks.column(name).take(pa.array(idx)).to_numpy()

    v4 = _flatten_v4_blocks(col("first_lo", m4), col("last_lo", m4), m4, block)
    v6 = RangeTable.from_ranges(v6_start_hi=col("first_hi", m6), v6_start_lo=col("first_lo", m6),
                                v6_end_hi=col("last_hi", m6), v6_end_lo=col("last_lo", m6), v6_payload=m6)
    return RangeTable(*v4, v6.v6_start_hi, v6.v6_start_lo, v6.v6_end_hi, v6.v6_end_lo, v6.v6_payload)


def build_tables(networks: pa.Table, block: int = BUILD_BLOCK) -> tuple[RangeTable, RangeTable]:
    """``(net_table, answer_table)``: :func:`build_table` of all rows and of rows with an answer."""
    return build_table(networks, False, block), build_table(networks, True, block)


def write_contacts(data_dir: str | Path, data: ImportedData, now: dt.datetime | None = None
                   ) -> dict[str, Any]:
    """Store imported data as a new generation and make it current (atomically).

    Args:
        data_dir: the ``[paths] data`` directory.
        data: from :func:`herald.contacts.importer.import_dumps`.
        now: import time (UTC; default now).

    Returns:
        The new manifest.

    Raises:
        OSError: the directory cannot be written.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    root = contacts_dir(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    gen_dir = Path(tempfile.mkdtemp(prefix=now.strftime("g%Y%m%dT%H%M%S-"), dir=root))
    arrays: dict[str, np.ndarray] = {}
    counts = {}
    for prefix, answers_only in (("net_", False), ("ans_", True)):
        table = build_table(data.networks, answers_only)  # one at a time: bounded memory
        arrays.update(table.to_arrays(prefix))
        counts[prefix] = (table.n_v4, table.n_v6)
        del table
        pa.default_memory_pool().release_unused()
    np.savez(gen_dir / "ranges.npz", **arrays)
    del arrays
    pq.write_table(data.networks, gen_dir / "networks.parquet", compression="zstd")
    pq.write_table(data.autnums, gen_dir / "autnums.parquet", compression="zstd")
    has = pc.is_valid(data.networks.column("mailbox"))
    manifest = {
        "format": FORMAT_VERSION,
        "generation": gen_dir.name,
        "imported_at": now.astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": [s.to_dict() for s in data.sources],
        "networks": data.networks.num_rows,
        "networks_with_mailbox": int(pc.sum(has).as_py() or 0),
        "autnums": data.autnums.num_rows,
        "autnums_with_mailbox": int(pc.sum(pc.is_valid(data.autnums.column("mailbox"))).as_py() or 0),
        "ranges_v4": counts["net_"][0], "ranges_v6": counts["net_"][1],
    }
    for f in gen_dir.iterdir():
        fsync_path(f)
    fsync_path(gen_dir)
    atomic_write(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8"),
                 sync_dir=True)
    for old in root.iterdir():
        if old.is_dir() and old.name != gen_dir.name and old.name.startswith("g"):
            shutil.rmtree(old, ignore_errors=True)
    return manifest


def load_contacts(data_dir: str | Path, generation: str | None = None) -> ContactData:
    """Load the current generation, or the named ``generation`` (the one a run's driver loaded:
    a Spark executor must route with the same data, docs/spark.md).

    Raises:
        ContactDataError: nothing imported yet, or the files are missing or damaged; with
            ``generation``, also when that generation is gone (a newer import replaced it).
    """
    root = contacts_dir(data_dir)
    for _attempt in range(3):
        try:
            manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ContactDataError(f"no abuse-contact data in {root}: run 'herald contacts import'") from None
        except (OSError, ValueError) as exc:
            raise ContactDataError(f"cannot read {root / MANIFEST}: {exc}") from None
        if generation is not None and manifest["generation"] != generation:
            raise ContactDataError(f"abuse-contact data {root / generation} was replaced by "
                                   f"{manifest['generation']} (a newer import) during the run")
        gen = root / manifest["generation"]
        try:
            with np.load(gen / "ranges.npz") as z:
                net = RangeTable.from_arrays(z, "net_")
                ans = RangeTable.from_arrays(z, "ans_")
            # One chunk per column, so that per-lookup ``take`` never concatenates chunks.
            networks = pq.read_table(gen / "networks.parquet").combine_chunks()
            autnums = pq.read_table(gen / "autnums.parquet")
        except FileNotFoundError:
            continue  # replaced by a concurrent import between reading the manifest and the files
        except (OSError, KeyError, ValueError) as exc:
            raise ContactDataError(f"damaged abuse-contact data in {gen}: {exc}") from None
        return ContactData(networks, autnums, net, ans, manifest)
    raise ContactDataError(f"abuse-contact data in {root} keeps changing; try again")

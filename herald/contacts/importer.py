"""Import RPSL database dumps into the abuse-contact tables (``herald contacts import``).

Reads the dumps as the operator downloads them (RIPE's split files ``ripe.db.inetnum[.gz]``,
``ripe.db.inet6num``, ``ripe.db.aut-num``, ``ripe.db.organisation``, ``ripe.db.role``; APNIC,
AFRINIC and LACNIC whole dumps with every class in one file), in any order, plain or gzipped.

Streaming and bounded memory: objects are parsed one at a time (:func:`herald.contacts.rpsl.iter_objects`,
keeping only the attributes used here); ``inetnum``/``inet6num`` objects are accumulated in
column chunks of :data:`CHUNK` rows that are turned into NumPy / Arrow arrays as they fill (about
60 bytes per object instead of a Python object each); ``role``, ``organisation`` and ``aut-num``
objects (a few hundred thousand in RIPE) are kept in dicts of their handle and the one value used.
References (``abuse-c`` -> ``role``, ``org`` -> ``organisation``) are resolved once at the end with
Arrow's vectorized ``index_in``/``take``, because a whole dump lists classes in any order.

Resolution per ``inetnum``/``inet6num`` (RIPE Database documentation, "Abuse-c Information"): its
own ``abuse-c`` role's ``abuse-mailbox``; else its ``org`` organisation's ``abuse-c`` role's
``abuse-mailbox``.  A reference to a missing role or one without ``abuse-mailbox`` counts as no
answer.  ``aut-num`` objects resolve the same way and answer by ASN.  Walking up to less
specific objects is done at lookup time by the range table (see :mod:`herald.contacts.store`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.contacts.rpsl import iter_objects, text_stream
from herald.contacts.values import handle, parse_asn, parse_mailboxes, parse_range
from herald.errors import HeraldError

log = logging.getLogger(__name__)

#: Rows per column chunk of the accumulated inetnum/inet6num objects.
CHUNK = 1 << 16

#: Attributes read (besides each object's class attribute).
KEEP = frozenset({"netname", "org", "abuse-c", "nic-hdl", "abuse-mailbox", "organisation"})
#: Object classes read; others (person, route, mntner, domain, ...) are skipped unparsed.
CLASSES = frozenset({"inetnum", "inet6num", "aut-num", "organisation", "role"})
#: ``netname`` values of placeholder objects that are not networks (RIPE's whole-space and
#: "managed by another RIR" objects): they never answer a lookup.
PLACEHOLDER_NETNAMES = frozenset({"IANA-BLK", "NON-RIPE-NCC-MANAGED-ADDRESS-BLOCK",
                                  "EU-ZZ-2001", "ERX-NETBLOCK"})

_DATE_RE = re.compile(r"(?i)(?:date|generated|serial|created|as of)\D{0,20}"
                      r"((?:19|20)\d\d)-?([01]\d)-?([0-3]\d)")


class ContactImportError(HeraldError):
    """A dump cannot be read (missing file, not RPSL)."""


class _HashingReader(io.RawIOBase):
    """A raw binary reader that computes the SHA-256 and size of what it reads."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        """Always true."""
        return True

    def readinto(self, b) -> int:
        """Read into ``b``, hashing and counting what was read."""
        n = self._fh.readinto(b)
        if n:
            self.sha.update(memoryview(b)[:n])
            self.size += n
        return n or 0

    def close(self) -> None:
        """Close the underlying file."""
        self._fh.close()
        super().close()


@dataclass
class SourceFile:
    """Provenance of one imported dump (one entry of the manifest).

    Attributes:
        name: the file's base name; sha256: hex digest of its bytes as stored (compressed or not);
        size: bytes; date: ISO date of the dump (UTC), from a dated header line or else the file's
        modification time; date_from: ``"header"`` or ``"mtime"``; objects: count per class read.
    """

    name: str
    sha256: str
    size: int
    date: str
    date_from: str
    objects: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"name": self.name, "sha256": self.sha256, "size": self.size, "date": self.date,
                "date_from": self.date_from, "objects": dict(sorted(self.objects.items()))}


@dataclass
class ImportedData:
    """The resolved tables, ready for :func:`herald.contacts.store.write_contacts`.

    Attributes:
        networks: Arrow table, one row per ``inetnum``/``inet6num`` in input order: ``family``
            int8 (4/6), ``first_hi``, ``first_lo``, ``last_hi``, ``last_lo`` uint64 (inclusive
            bounds; IPv4 in ``*_lo``), ``netname``, ``org``, ``abuse_c`` strings, and the answer:
            ``mailbox`` (comma-separated addresses, null when none), ``role`` (the ``role``
            handle it came from), ``via`` (``"abuse-c"`` or ``"org"``).
        autnums: Arrow table: ``asn`` uint32 (sorted, distinct), ``mailbox``, ``role``, ``via``.
        sources: one :class:`SourceFile` per input.
    """

    networks: pa.Table
    autnums: pa.Table
    sources: list[SourceFile]


class _Columns:
    """Column chunks of inetnum/inet6num rows."""

    def __init__(self) -> None:
        self.chunks: list[pa.RecordBatch] = []
        self._reset()

    def _reset(self) -> None:
        self.family: list[int] = []
        self.first: list[int] = []
        self.last: list[int] = []
        self.netname: list[str | None] = []
        self.org: list[str | None] = []
        self.abuse_c: list[str | None] = []

    def add(self, family: int, first: int, last: int, netname, org, abuse_c) -> None:
        """Append one network (bounds as Python ints); flushes a full chunk."""
        self.family.append(family)
        self.first.append(first)
        self.last.append(last)
        self.netname.append(netname)
        self.org.append(org)
        self.abuse_c.append(abuse_c)
        if len(self.family) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        """Turn the pending rows into one Arrow record batch."""
        if not self.family:
            return
        m64 = (1 << 64) - 1
        first_hi = np.fromiter((x >> 64 for x in self.first), np.uint64, len(self.first))
        first_lo = np.fromiter((x & m64 for x in self.first), np.uint64, len(self.first))
        last_hi = np.fromiter((x >> 64 for x in self.last), np.uint64, len(self.last))
        last_lo = np.fromiter((x & m64 for x in self.last), np.uint64, len(self.last))
        self.chunks.append(pa.record_batch({
            "family": pa.array(np.asarray(self.family, np.int8)),
            "first_hi": first_hi, "first_lo": first_lo, "last_hi": last_hi, "last_lo": last_lo,
            "netname": pa.array(self.netname, pa.string()),
            "org": pa.array(self.org, pa.string()),
            "abuse_c": pa.array(self.abuse_c, pa.string()),
        }))
        self._reset()

    def table(self) -> pa.Table:
        """All rows as one Arrow table."""
        self.flush()
        schema = pa.schema([("family", pa.int8()), ("first_hi", pa.uint64()), ("first_lo", pa.uint64()),
                            ("last_hi", pa.uint64()), ("last_lo", pa.uint64()), ("netname", pa.string()),
                            ("org", pa.string()), ("abuse_c", pa.string())])
        return pa.Table.from_batches(self.chunks, schema=schema)


def dump_date(header: Iterable[str], mtime: float) -> tuple[str, str]:
    """The date of a dump: from a header line that names one, else ``mtime`` (UTC).

    Args:
        header: the dump's leading comment lines.
        mtime: the file's modification time, seconds since the epoch.

    Returns:
        ``(iso_date, "header" | "mtime")``.
    """
    for line in header:
        m = _DATE_RE.search(line)
        if m:
            try:
                return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))).isoformat(), "header"
            except ValueError:
                continue
    return dt.datetime.fromtimestamp(mtime, dt.timezone.utc).date().isoformat(), "mtime"


def _lookup(keys: dict[str, Any], values: pa.Array) -> pa.Array:
    """``dict`` lookup of every value of a string array, vectorized (nulls where missing)."""
    if not keys:
        return pa.nulls(len(values), pa.string())
    idx = pc.index_in(values, value_set=pa.array(list(keys.keys()), pa.string()))
    return pa.array(list(keys.values()), pa.string()).take(idx)


def _resolve(abuse_c: pa.Array, org: pa.Array, roles: dict[str, str], orgs: dict[str, str]
             ) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``(mailbox, role, via)`` arrays: own abuse-c first, else the organisation's."""
    direct = _lookup(roles, abuse_c)
    org_role = _lookup(orgs, org)
    via_org = _lookup(roles, org_role)
    has_direct = pc.is_valid(direct)
    mailbox = pc.coalesce(direct, via_org)
    role = pc.if_else(has_direct, abuse_c, pc.if_else(pc.is_valid(via_org), org_role, None))
    via = pc.if_else(has_direct, "abuse-c", pc.if_else(pc.is_valid(via_org), "org", None))
    return mailbox, role, via


def _combine(a) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def import_dumps(paths: Iterable[str | Path], progress: Callable[[str, int], None] | None = None
                 ) -> ImportedData:
    """Read RPSL dumps and resolve every network's and AS's abuse mailbox.

    Args:
        paths: dump files (plain or gzip), any mix of split and whole dumps, in any order.  When
            an object's key occurs twice, the later one wins for ``role``/``organisation``/
            ``aut-num``; for networks the later duplicate wins at lookup time.
        progress: optional callback ``(file name, objects read so far)`` every 100,000 objects.

    Returns:
        :class:`ImportedData`.

    Raises:
        ContactImportError: a file is missing or unreadable.
    """
    cols = _Columns()
    roles: dict[str, str] = {}
    orgs: dict[str, str] = {}
    autnum: dict[int, tuple[str | None, str | None]] = {}
    sources: list[SourceFile] = []
    for path in paths:
        path = Path(path)
        counts: dict[str, int] = {}
        header: list[str] = []
        try:
            raw = open(path, "rb")
        except OSError as exc:
            raise ContactImportError(f"cannot read dump {path}: {exc.strerror}") from None
        reader = _HashingReader(raw)
        text = text_stream(io.BufferedReader(reader, 1 << 20))

        def lines(text=text, header=header):
            """The file's lines, collecting its leading comment lines into ``header``."""
            in_header = True
            for line in text:
                if in_header:
                    if line[:1] in ("%", "#"):
                        header.append(line)
                    elif line.strip():
                        in_header = False
                yield line

        seen = 0
        try:
            for obj in iter_objects(lines(), keep=KEEP, classes=CLASSES):
                cls = obj.object_class
                counts[cls] = counts.get(cls, 0) + 1
                seen += 1
                if progress and seen % 100_000 == 0:
                    progress(path.name, seen)
                if cls == "inetnum" or cls == "inet6num":
                    fam = 4 if cls == "inetnum" else 6
                    try:
                        first, last = parse_range(obj.key, fam)
                    except ValueError as exc:
                        log.warning("%s line %d: %s; object skipped", path.name, obj.line, exc)
                        continue
                    cols.add(fam, first, last, obj.first("netname"), handle(obj.first("org")),
                             handle(obj.first("abuse-c")))
                elif cls == "role":
                    nic = handle(obj.first("nic-hdl"))
                    boxes: list[str] = []
                    for v in obj.all("abuse-mailbox"):
                        boxes.extend(b for b in parse_mailboxes(v) if b not in boxes)
                    if nic and boxes:
                        roles[nic] = ", ".join(boxes)
                elif cls == "organisation":
                    key, ac = handle(obj.key), handle(obj.first("abuse-c"))
                    if key and ac:
                        orgs[key] = ac
                elif cls == "aut-num":
                    asn = parse_asn(obj.key)
                    if asn is not None:
                        autnum[asn] = (handle(obj.first("abuse-c")), handle(obj.first("org")))
            # Drain what the parser did not need, so the digest covers the whole file.
            while text.buffer.read(1 << 20):
                pass
        except (OSError, EOFError) as exc:
            raise ContactImportError(f"cannot read dump {path}: {exc}") from None
        finally:
            text.close()
        date, date_from = dump_date(header, os.stat(path).st_mtime)
        sources.append(SourceFile(path.name, reader.sha.hexdigest(), reader.size, date, date_from,
                                  counts))
        log.info("%s: %s", path.name, counts)

    nets = cols.table()
    abuse_c = _combine(nets.column("abuse_c"))
    org = _combine(nets.column("org"))
    mailbox, role, via = _resolve(abuse_c, org, roles, orgs)
    placeholder = pc.fill_null(pc.is_in(_combine(nets.column("netname")),
                                        value_set=pa.array(sorted(PLACEHOLDER_NETNAMES))), False)
    mailbox, role, via = (pc.if_else(placeholder, None, a) for a in (mailbox, role, via))
    nets = nets.append_column("mailbox", mailbox).append_column("role", role).append_column("via", via)

    asns = np.array(sorted(autnum), dtype=np.uint32)
    a_abuse = pa.array([autnum[int(a)][0] for a in asns], pa.string())
    a_org = pa.array([autnum[int(a)][1] for a in asns], pa.string())
    a_mail, a_role, a_via = _resolve(a_abuse, a_org, roles, orgs)
    autnums = pa.table({"asn": pa.array(asns, pa.uint32()), "mailbox": a_mail, "role": a_role,
                        "via": a_via})
    pa.default_memory_pool().release_unused()  # the resolution's temporaries
    return ImportedData(nets, autnums, sources)

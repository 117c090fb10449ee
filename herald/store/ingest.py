"""Ingest one input: parse, enrich and store its events (steps 1-3 of the daily run).

:func:`ingest_input` is a stage: it takes an input's path and SHA-256 and returns a
:class:`StoredInput` (counts, the Parquet file written, or the error); it touches nothing but the
event store, the day's quarantine folder and the input's marker file, so it can run in another
process.  A marker (``<data>/events/date=D/_inputs/<sha[:32]>.json``) records a stored input, so a
resumed run does not parse it again.

With an S3 event store (:mod:`herald.eventstore`) the Parquet files and the markers are
objects under the store's prefix (``<root>/date=D/...``); the quarantine stays in the local
``<data>/quarantine/`` folder.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv

from herald.enrich import enrich
from herald.enrich.ipdata import IPData
from herald.errors import InputError
from herald.eventstore import EventStore
from herald.fsutil import atomic_write
from herald.schema.registry import Registry
from herald.sources.inputs import open_input
from herald.sources.shadowserver_csv import Quarantine
from herald.store.events import day_dir, write_events

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredInput:
    """What happened to one input file.

    Attributes:
        path: the input's path.
        sha256: hex SHA-256 of its bytes.
        report_type: its report type, once known.
        format: the format it was read as.
        rows_in: data rows read.
        rows_stored: events written to the store.
        rows_quarantined: rows that could not be read (quarantined with their reasons).
        rows_failed: data rows of an input that could not be read at all
            (:func:`herald.sources.rowcount.physical_rows`; then ``rows_in`` too).
        error: why the input could not be read at all, else ``None``.
        parquet: the Parquet file written, or ``None`` (no rows, or an error).
        warnings: what the run should say about this input (not in :meth:`to_dict`).
    """

    path: str
    sha256: str
    report_type: str | None = None
    format: str | None = None
    rows_in: int = 0
    rows_stored: int = 0
    rows_quarantined: int = 0
    rows_failed: int = 0
    error: str | None = None
    parquet: str | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """The run summary's entry: every attribute but ``parquet`` and ``warnings``."""
        d = asdict(self)
        d.pop("parquet")
        d.pop("warnings")
        return d


def marker_path(data_dir: Path, day: str, sha256: str) -> Path:
    """The marker file of a stored input: ``<data>/events/date=<day>/_inputs/<sha[:32]>.json``."""
    return day_dir(data_dir, day) / "_inputs" / f"{sha256[:32]}.json"


def marker_location(data_dir: Path, day: str, sha256: str, store: EventStore | None) -> str:
    """:func:`marker_path` in ``store`` (``None``: the local ``<data_dir>/events``): a path or an
    ``s3://`` URI."""
    if store is None:
        return str(marker_path(data_dir, day, sha256))
    return store.path(f"date={day}", "_inputs", f"{sha256[:32]}.json")


def resumed_input(data_dir: Path, day: str, path: str, sha256: str, *,
                  store: EventStore | None = None) -> StoredInput | None:
    """The :class:`StoredInput` an earlier, interrupted run of ``day`` recorded for this input
    (its marker in ``store``, default the local ``<data_dir>/events``), or ``None`` when it was
    not stored.

    Raises:
        OSError: the store cannot be read (S3: unreachable, access denied).
    """
    marker = marker_location(data_dir, day, sha256, store)
    st = store or EventStore.local(data_dir)
    try:
        text = st.read_bytes(marker).decode()
    except FileNotFoundError:
        return None
    prior = json.loads(text)
    parquet = prior.pop("_parquet", None)
    fields = {k: v for k, v in prior.items() if k in StoredInput.__dataclass_fields__}
    return StoredInput(**{"path": path, "sha256": sha256, **fields,
                          "parquet": parquet if prior.get("rows_stored") else None})


def ingest_input(path: Path, sha256: str, *, day: str, data_dir: Path, registry: Registry,
                 ipdata: IPData, overwrite_enrichment: bool = False,
                 store: EventStore | None = None) -> StoredInput:
    """Parse, enrich and store one input of ``day``.

    The events stream batch by batch (memory bounded by a batch) through :func:`herald.enrich.enrich`
    into ``<data>/events/date=<day>/type=<type>/<sha[:32]>.parquet``.  Unreadable rows are written
    to ``<data>/quarantine/<day>/<name[:120]>.<sha[:12]>.quarantine.csv``.  Then the input's marker
    is written (see :func:`resumed_input`).  ``store``: the event store
    (:class:`~herald.eventstore.EventStore`); ``None``: the local ``<data_dir>/events``.

    Returns:
        the :class:`StoredInput`; an input that cannot be read at all has ``error`` set (the
        error is not raised: the other inputs go on), its data rows counted as ``rows_in`` and
        ``rows_failed``, and nothing of it stays in the store.
    """
    path = Path(path)
    known: dict = {}  # report type and format, once known (kept in an error's result)
    out = None
    try:
        opened = open_input(path, registry)
        rtype = opened.report_type
        known = {"report_type": rtype.name, "format": opened.format}
        enriched = (enrich(pa.Table.from_batches([b]), rtype, ipdata,
                           overwrite=overwrite_enrichment).to_batches()
                    for b in opened.batches)
        flat = (b for group in enriched for b in group)
        first = next(flat, None)
        out, stored = None, 0
        if first is not None:
            out, stored = write_events(data_dir, day, rtype.name, sha256, _chain(first, flat),
                                       first.schema, store=store)
        quarantine = opened.quarantine
        result = StoredInput(path=str(path), sha256=sha256, report_type=rtype.name,
                             format=opened.format, rows_in=opened.rows_in(), rows_stored=stored,
                             rows_quarantined=len(quarantine), parquet=str(out) if out else None)
        if len(quarantine):
            # Named by the input's name and content hash: two inputs with the same name (in
            # different folders) never share a quarantine file; long names are cut.
            qdir = Path(data_dir) / "quarantine" / day
            write_quarantine(qdir / f"{path.name[:120]}.{sha256[:12]}.quarantine.csv", quarantine)
        marker = {**result.to_dict(), "_parquet": result.parquet}
        text = (json.dumps(marker, indent=2, sort_keys=True) + "\n").encode()
        if store is None:
            atomic_write(marker_path(data_dir, day, sha256), text)
        else:
            store.write_bytes(marker_location(data_dir, day, sha256, store), text)
        return result
    except Exception as exc:  # noqa: BLE001 - reported with its type, the run goes on
        # Whatever goes wrong with one input must not stop the others; its rows are counted as
        # failed (and none of them as stored).
        if not isinstance(exc, InputError):
            log.debug("input %s failed", path, exc_info=True)
        return _failed(path, sha256, exc, out, known, store)


def _failed(path: Path, sha256: str, exc: Exception, out: Path | str | None, known: dict,
            store: EventStore | None = None) -> StoredInput:
    """The result of an input that cannot be read: events already stored from it (it failed after
    the store) are removed; its data rows are ``rows_in`` and ``rows_failed``."""
    from herald.sources.rowcount import physical_rows

    error = str(exc) if isinstance(exc, InputError) else \
        f"{path}: cannot be read: {type(exc).__name__}: {exc}"
    if out is not None:
        if store is None:
            Path(out).unlink(missing_ok=True)
        else:
            store.delete_file(str(out))
    warnings: tuple[str, ...] = ()
    try:
        n = physical_rows(path)
    except OSError as err:
        n = 0
        warnings = (f"{path}: rows of the failed input not counted: {err}",)
    return StoredInput(path=str(path), sha256=sha256, rows_in=n, rows_failed=n, error=error,
                       warnings=warnings, **known)


def write_quarantine(path: Path, quarantine: Quarantine) -> None:
    """Write the quarantined rows (file, line, field, reason, value, raw) as CSV, atomically."""
    buf = io.BytesIO()
    pacsv.write_csv(quarantine.to_table(), buf)
    atomic_write(path, buf.getvalue())


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def remove_partial(data_dir: Path, day: str, *, store: EventStore | None = None) -> None:
    """Remove the temporary files of ``day``'s event store, markers and quarantine that writes cut
    short by a crash left behind (``.<name>...tmp``; ``.tmp-*.parquet`` of earlier versions).  A
    resumed run calls it under the day's lock, before it ingests: with several ingest workers
    (:mod:`herald.parallel`) a crash can interrupt several writes at once.  ``store``: the event
    store (``None``: the local ``<data_dir>/events``); an S3 store has no temporary objects (an
    upload a crash cut short never becomes an object), so only the quarantine is cleaned then."""
    roots = [Path(data_dir) / "quarantine" / day]
    if store is None:
        roots.insert(0, Path(data_dir) / "events" / f"date={day}")
    elif store.is_local:
        roots.insert(0, Path(store.path(f"date={day}")))
    for root in roots:
        if not root.is_dir():
            continue
        for p in root.rglob(".*"):
            if p.is_file() and (p.name.startswith(".tmp-") or p.name.endswith(".tmp")):
                p.unlink(missing_ok=True)

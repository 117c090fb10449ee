"""The daily run's messages: one composed message per report, written to the outbox folder.

For every :class:`~herald.reports.write.ReportFile` the message is composed exactly once, with the
delivery builder (:func:`herald.deliver.report_message.compose_report_message`: templates, ZIP and
attachment thresholds, X-ARF and language per recipient), and written as
``<outbox>/<day>/<slug>/<report file name>.eml``.  That file is the message: when an SMTP relay is
configured, :func:`herald.deliver.outbox.enqueue_reports` queues these bytes (protecting them with
OpenPGP where configured) instead of composing again.

:func:`write_messages` does it in this process (the file writes on threads);
:class:`MessageWorkers` in forked worker processes, for types with many reports.  Both return the
run summary's report entries (``[{recipient, kind, type, rows, path, sha256, message, message_id,
subject, message_header_bytes, tlp, operation, email[, intelmq_path]}]``) and the paths written.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from herald import faults
from herald.config import Settings
from herald.constituency.recipients import Recipient
from herald.deliver.compose import Templates, recipient_texts
from herald.deliver.report_message import compose_report_message
from herald.deliver.settings import DeliverySettings, delivery_settings
from herald.fsutil import write_parts
from herald.parentdeath import ForkedPool, check_parent, inherited
from herald.reports.render import ParallelWrites
from herald.reports.write import ReportFile
from herald.schema.registry import Registry, ReportType

#: Reports of one type from which messages are composed in worker processes.
PARALLEL_MESSAGES = 256
#: At most this many message-composing processes.
MESSAGE_WORKERS = 4


@dataclass(frozen=True)
class MessageContext:
    """What composing a day's messages needs, read once per run (workers inherit it by fork).

    Attributes:
        settings: the configuration (outbox folder, sender, default TLP).
        day: ``YYYY-MM-DD``.
        registry: the report types.
        recipients: the run's recipients (a :class:`ReportFile` names one by index).
        delivery: the ``[mail]`` (and per-recipient) delivery settings.
        templates: the message templates.
        folders: recipient name -> its outbox folder of the day (:meth:`folder`).
    """

    settings: Settings
    day: str
    registry: Registry
    recipients: list[Recipient]
    delivery: DeliverySettings
    templates: Templates
    folders: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def folder(self, recipient: Recipient) -> str:
        """``<outbox>/<day>/<slug>`` of ``recipient``, joined once per recipient name (the slug
        and the ``pathlib`` joins cost about 15 us per message on the 1M-event bench day)."""
        path = self.folders.get(recipient.name)
        if path is None:
            path = self.folders[recipient.name] = str(
                self.settings.paths.outbox / self.day / recipient.slug)
        return path

    @classmethod
    def for_run(cls, settings: Settings, day: str, registry: Registry,
                recipients: list[Recipient]) -> "MessageContext":
        """The context of one run: delivery settings and templates read once.

        Raises:
            ConfigError: invalid ``[mail]`` configuration.
        """
        ds = delivery_settings(settings)
        return cls(settings, day, registry, recipients, ds, Templates(ds.mail.templates))


def read_report(path: Path, size: int) -> bytes:
    """The bytes of a report file of ``size`` bytes (its :class:`ReportFile` size), read with one
    ``os.read`` (``Path.read_bytes`` goes through a buffered file object and grows its buffer);
    a file that turns out longer is read to its end.

    Raises:
        OSError: the file cannot be read.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            while len(data) < size:  # a short read (not seen on regular files)
                more = os.read(fd, size - len(data))
                if not more:
                    break
                data += more
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def write_message(ctx: MessageContext, rtype: ReportType, report: ReportFile,
                  writer: ParallelWrites | None = None) -> tuple[dict, set[Path]]:
    """Compose the message of one written report and write it to the outbox folder.

    The report is read back only when it is attached (not above ``[mail] attach_max``, and not
    for a recipient with ``attach = false``).  With
    ``writer`` the ``.eml`` is written on its threads (the caller closes it before relying on the
    file); files are not ``fsync``-ed (the run syncs them all at once).

    Returns:
        ``(summary entry, paths written)``.

    Raises:
        herald.deliver.xarf.XarfError: an X-ARF document did not validate.
    """
    settings, day = ctx.settings, ctx.day
    rcpt = ctx.recipients[report.recipient]
    rpath = report.path
    tlp = (rcpt.tlp or settings.tlp).upper().removeprefix("TLP:")
    attach = ctx.delivery.attaches(rcpt, report.size)
    data = read_report(rpath, report.size) if attach else b""
    composed = compose_report_message(ctx.delivery, ctx.templates, rcpt, rtype, day, tlp,
                                      filename=rpath.name, data=data, sha256=report.sha256,
                                      rows=report.rows, size=report.size)
    epath_s = f"{ctx.folder(rcpt)}/{rpath.name}.eml"
    epath = Path(epath_s)
    # The file is composed.as_bytes(), written from its two parts (write_parts).
    parts = (composed.headers, composed.entity)
    if writer is not None:
        writer.submit(write_parts, epath_s, parts, durable=False)
    else:
        write_parts(epath_s, parts, durable=False)
    out = {rpath, epath}
    entry = {"recipient": rcpt.name, "kind": rcpt.kind, "type": rtype.name,
             "rows": report.rows, "path": str(rpath), "sha256": report.sha256,
             "message": epath_s, "message_id": composed.message_id, "subject": composed.subject,
             "message_header_bytes": len(composed.headers),
             "tlp": tlp, "operation": rcpt.operation, "email": rcpt.email}
    if report.intelmq is not None:
        entry["intelmq_path"] = str(report.intelmq)
        out.add(report.intelmq)
    return entry, out


def write_messages(ctx: MessageContext, rtype: ReportType, reports: list[ReportFile], *,
                   first: int | None = 0) -> tuple[list[dict], set[Path]]:
    """:func:`write_message` for each of ``reports``, in this process (writes on threads).

    Fault point ``report:<n>`` after the n-th message of the run is handed to the writer (``n``
    counts from ``first``; ``first=None``: no fault points, as in a worker process, whose caller
    passes them in run order).

    Returns:
        ``(summary entries, paths written)``.
    """
    entries: list[dict] = []
    out: set[Path] = set()
    with ParallelWrites() as writer:
        for i, report in enumerate(reports, start=(first or 0) + 1):
            entry, paths = write_message(ctx, rtype, report, writer)
            entries.append(entry)
            out |= paths
            if first is not None:
                faults.hit(f"report:{i}")
    return entries, out


def warm(ctx: MessageContext) -> None:
    """Compute each recipient's area and filter texts once, in this process, before worker
    processes are forked: they inherit them instead of each computing them again."""
    for r in ctx.recipients:
        recipient_texts(r)


def _compose_chunk(job: tuple[str, list[ReportFile]]) -> tuple[list[dict], set[Path]]:
    """Worker: the messages of one chunk ``(type name, reports)``; fault point ``compose``."""
    check_parent()  # the parent died (where the kernel does not signal): stop
    faults.hit("compose")
    type_name, reports = job
    ctx: MessageContext = inherited()
    return write_messages(ctx, ctx.registry.get(type_name), reports, first=None)


class MessageWorkers(ForkedPool):
    """Message-composing processes shared by the run's report types (forked once, on first use,
    one per core up to :data:`MESSAGE_WORKERS`): a :class:`herald.parentdeath.ForkedPool`.

    Workers inherit the :class:`MessageContext` from the fork; a job names the report type and
    carries :class:`ReportFile` s.  The parent's objects are frozen while the workers are forked,
    and the workers die with the parent (:mod:`herald.parentdeath`).  A worker that dies makes
    :meth:`messages` raise ``BrokenProcessPool`` instead of waiting for ever.  Use as a context
    manager (or call :meth:`close`).
    """

    def __init__(self, ctx: MessageContext) -> None:
        super().__init__(ctx, min(os.cpu_count() or 1, MESSAGE_WORKERS))

    def available(self) -> bool:
        """More than one core and the ``fork`` start method."""
        return self.workers > 1 and "fork" in mp.get_all_start_methods()

    def messages(self, rtype: ReportType, reports: list[ReportFile], *,
                 first: int = 0) -> tuple[list[dict], set[Path]]:
        """The messages of ``reports`` (of ``rtype``): composed in the workers when there are
        :data:`PARALLEL_MESSAGES` or more and workers are available, else in this process
        (:func:`write_messages`, ``first`` as there).  This process waits for them (on two cores
        overlapping with routing the next type was slower).

        Returns:
            ``(summary entries, paths written)``.

        Raises:
            the first worker error; ``concurrent.futures.process.BrokenProcessPool`` when a worker
            died.
        """
        if len(reports) < PARALLEL_MESSAGES or not self.available():
            return write_messages(self.ctx, rtype, reports, first=first)
        if self.pool is not None and any(r.kind == "abuse_contact" for r in self.ctx.recipients):
            # Automatic recipients (herald.contacts.routing) are added, and gain reasons, while
            # the run routes: fork again so that the workers see them.
            self.close()
        n = self.workers * 4
        chunks = [(rtype.name, reports[i::n]) for i in range(n) if reports[i::n]]
        pending = self._submit(chunks)
        entries: list[dict] = []
        out: set[Path] = set()
        for fut in pending:
            e, p = fut.result()
            entries += e
            out |= p
        return entries, out

    def _submit(self, chunks: list) -> list[Future]:
        if self.pool is None:
            warm(self.ctx)
        return self.submit_all(_compose_chunk, chunks)

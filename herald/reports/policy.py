"""The notification policy applied to each routed batch, after :meth:`herald.route.Router.route`.

:meth:`RoutingPolicy.apply` takes a batch's :class:`~herald.route.Assignment` and returns the one
to report, in three steps (docs/abuse-contacts.md, "Routing in the run"):

1. **abuse contacts** (``[abuse_contacts] enabled``): unclaimed in-scope events get their abuse
   mailbox as an automatic recipient (:class:`herald.contacts.routing.AbuseContactRouter`);
2. **inhibitions** (:func:`herald.constituency.inhibitions.inhibited_mask`): a pair (event,
   recipient) is removed when an inhibition in force for everyone, or for that recipient,
   matches the event; counted in :attr:`RoutingPolicy.inhibited` (pairs);
3. **re-notification windows** (:mod:`herald.reports.renotify`): a pair is removed when the event
   was reported to that recipient within its window; counted in :attr:`RoutingPolicy.suppressed`
   (pairs).

Accounting: ``routed`` is recomputed from the pairs left, so an event whose every pair was removed
counts as ``rows_unrouted`` and ``rows_in = rows_reported + rows_unrouted + rows_quarantined +
rows_duplicate + rows_failed`` still holds; ``rows_inhibited`` and ``rows_renotify_suppressed`` are
informational counts of removed (event, recipient) pairs.

One policy per run, one job per report type (issue 14): :meth:`RoutingPolicy.for_type` gives a
type's job (:func:`herald.reports.write.route_and_write`, in this process or a worker of
:mod:`herald.parallel`) a copy of the run's state that it may change: its own list of recipients
and abuse-contact state, its own counters.  The job returns, with its reports, the automatic
recipients it met as :class:`TypeContact` values; :meth:`RoutingPolicy.merge` then adds them to the
run's recipients in type order (the order a one-process run discovers them in) and renumbers the
type's reports.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa

from herald.config import AbuseContactSettings
from herald.constituency.inhibitions import Inhibition, inhibited_mask
from herald.contacts.routing import KIND, AbuseContactRouter
from herald.reports.renotify import RenotifyWindow, event_keys
from herald.route import Assignment, Router
from herald.schema.registry import ReportType


@dataclass(frozen=True)
class TypeContact:
    """An automatic recipient (abuse mailbox) a type's job created or sent events to.

    Attributes:
        index: its index in the job's recipients (``ReportFile.recipient``); at or above the
            job's ``start``: created by the job.
        mailbox: the mailbox text (the key that identifies it across jobs).
        name: the name the job gave it (``mailbox``, or with the hash suffix).
        slug: its file-name slug (from ``name``).
        reasons: the type's sorted ``(network, source)`` pairs (see
            :class:`herald.contacts.routing.AbuseContact`).
    """

    index: int
    mailbox: str
    name: str
    slug: str
    reasons: tuple[tuple[str, str], ...] = ()


def no_window(recipient, type_name: str) -> int:
    """The default ``window_of``: no re-notification window (0 days) for anyone."""
    return 0


@dataclass(frozen=True)
class RecipientWindows:
    """The run's ``window_of`` (:func:`policy_for_run`): a recipient's re-notification window in
    days for a report type.  A value, not a closure, so that the policy can be pickled (the Spark
    engine broadcasts it to its executors).

    The recipient's own window is its :attr:`~herald.constituency.recipients.Recipient.
    renotify_days`, stored with it (``recipients.renotify_days``): so every recipient the run
    loaded has it, whether it came from a ``[[recipients]]`` table or only lives in the database.

    Attributes:
        settings: ``[abuse_contacts]`` (the automatic recipients' windows per type).
    """

    settings: AbuseContactSettings

    def __call__(self, recipient, type_name: str) -> int:
        """Days (0: no window): the recipient's own ``renotify_days``, else for an automatic
        recipient ``renotify_types[type_name]`` / ``renotify_days``, else 0."""
        if recipient.renotify_days is not None:
            return recipient.renotify_days
        return self.settings.window(type_name) if recipient.kind == KIND else 0


class RoutingPolicy:
    """The run's policy (one per run; :meth:`start_type` / :meth:`finish_type` per report type).

    Args:
        router: the run's router.
        day: ``YYYY-MM-DD``.
        data_dir: ``[paths] data`` (re-notification records).
        abuse: the abuse-contact step, or ``None`` when disabled.
        inhibitions: the inhibitions (those not in force on ``day`` are ignored).
        window_of: ``(recipient, type name) -> days`` (0: no window).
        key_columns: type name -> event key columns (``[abuse_contacts] renotify_keys``).
    """

    def __init__(self, router: Router, day: str, data_dir: Path, *,
                 abuse: AbuseContactRouter | None = None, inhibitions: list[Inhibition] = (),
                 window_of: Callable[[object, str], int] | None = None,
                 key_columns: dict[str, tuple[str, ...]] | None = None, max_window: int = 0) -> None:
        self.router, self.day, self.data_dir = router, day, Path(data_dir)
        self.abuse = abuse
        self.inhibitions = [i for i in inhibitions if i.in_force(day)]
        self.window_of = window_of or no_window
        self.key_columns = key_columns or {}
        self.max_window = max_window
        self.inhibited = 0
        self.suppressed = 0
        self.start = len(router.recipients)  # recipients when the (type's) policy began
        self._window: RenotifyWindow | None = None
        # A law-enforcement partner has one entry per operation: a name may have several.
        self._rids_by_name: dict[str, list[int]] = {}
        for i, r in enumerate(router.recipients):
            self._rids_by_name.setdefault(r.name, []).append(i)

    @property
    def inert(self) -> bool:
        """True when the policy changes nothing: no abuse-contact routing, no inhibition in force
        and no re-notification window."""
        return self.abuse is None and not self.inhibitions and self.max_window <= 0

    def for_type(self) -> "RoutingPolicy":
        """A copy for one report type's job: a router over a copy of the current recipients, the
        abuse-contact step forked onto it (:meth:`AbuseContactRouter.fork`), counters at 0.  The
        job may run in another process; nothing it does changes this policy."""
        p = copy.copy(self)
        p.router = copy.copy(self.router)
        p.router.recipients = list(self.router.recipients)
        p.abuse = self.abuse.fork(p.router) if self.abuse is not None else None
        p.inhibited = p.suppressed = 0
        p.start = len(p.router.recipients)
        p._window = None
        return p

    def contacts(self, type_name: str) -> tuple[TypeContact, ...]:
        """The automatic recipients of a type's job (see :meth:`for_type`): each one it created,
        and each older one that got events of ``type_name``, by index."""
        if self.abuse is None:
            return ()
        out = []
        for mailbox, rid in self.abuse.mailboxes().items():
            r = self.router.recipients[rid]
            reasons = getattr(r, "reasons", {}).get(type_name)
            if rid >= self.start or reasons:
                out.append(TypeContact(rid, mailbox, r.name, r.slug, tuple(reasons or ())))
        return tuple(sorted(out, key=lambda c: c.index))

    def merge(self, done):
        """Take a type's job result into the run: its new automatic recipients not known yet are
        appended in the job's order (named by this policy's abuse-contact step), reasons set, the
        reports' recipient indexes renumbered, the pair counts added.

        Args:
            done: the job's :class:`herald.reports.write.TypeReports`; its recipients began with
                this policy's first ``done.start`` recipients (a job forked earlier in the run).

        Returns:
            the :class:`~herald.reports.write.TypeReports` with run-wide indexes, or ``None`` when
            the job named a new recipient otherwise than a run in type order does (a mailbox
            whose slug an automatic recipient of an earlier type took): then nothing was changed
            and the type must be routed again from this policy (:meth:`for_type`).
        """
        remap: dict[int, int] = {}
        if done.contacts:
            probe = self.for_type()  # check the names first: a conflict changes nothing
            for c in done.contacts:
                if c.index >= done.start and probe.router.recipients[
                        probe.abuse.recipient_index(c.mailbox)].name != c.name:
                    return None
            for c in done.contacts:
                rid = c.index if c.index < done.start else self.abuse.recipient_index(c.mailbox)
                rcpt = self.router.recipients[rid]
                assert rcpt.name == c.name, (rcpt.name, c.name)
                if c.reasons:
                    rcpt.reasons[done.report_type] = list(c.reasons)
                remap[c.index] = rid
        self.inhibited += done.inhibited
        self.suppressed += done.renotify_suppressed
        reports = tuple(dataclasses.replace(r, recipient=remap.get(r.recipient, r.recipient))
                        for r in done.reports)
        return dataclasses.replace(done, reports=reports, contacts=(), start=len(self.router.recipients))

    def start_type(self, rtype: ReportType) -> None:
        """Load the earlier days' records of ``rtype`` (when any recipient may have a window)."""
        self._window = None
        if self.max_window > 0:
            by_slug: dict = {}

            def window(slug: str) -> int:
                if slug not in by_slug:  # automatic recipients are added while routing
                    by_slug.update({r.slug: r for r in self.router.recipients})
                return self.window_of(by_slug[slug], rtype.name)

            self._window = RenotifyWindow(self.data_dir, self.day, rtype.name, self.max_window, window)

    def finish_type(self) -> None:
        """Write the type's re-notification record of the day."""
        if self._window is not None:
            self._window.finish()
            self._window = None

    def apply(self, table: pa.Table, rtype: ReportType, a: Assignment) -> Assignment:
        """The pairs of one batch to report (see the module docstring)."""
        if self.abuse is not None:
            a = self.abuse.extend(table, rtype, a)
        drop = np.zeros(len(a.event), dtype=bool)
        if self.inhibitions and len(a.event):
            everyone = inhibited_mask(table, self.inhibitions, self.day, rtype.name, None)
            drop |= everyone[a.event]
            # Recipient-specific inhibitions: one mask per named recipient present in the batch.
            for name in sorted({i.recipient for i in self.inhibitions if i.recipient is not None}):
                rids = self._rids_by_name.get(name)
                sel = np.isin(a.recipient, rids) if rids is not None else None
                if sel is not None and sel.any():
                    m = inhibited_mask(table, self.inhibitions, self.day, rtype.name, name)
                    drop[sel] |= m[a.event[sel]]
            self.inhibited += int(drop.sum())
        if self._window is not None and len(a.event):
            keep = np.flatnonzero(~drop)
            rids, inv = np.unique(a.recipient[keep], return_inverse=True)
            slugs = [self.router.recipients[r].slug for r in rids.tolist()]
            keys = event_keys(table, rtype.address_column, self.key_columns.get(rtype.name))
            sup = self._window.apply(keys[a.event[keep]], inv.astype(np.int64), slugs)
            drop[keep[sup]] = True
            self.suppressed += int(sup.sum())
        if not drop.any():
            return a
        ev, rid = a.event[~drop], a.recipient[~drop]
        routed = np.zeros(len(a.routed), dtype=bool)
        routed[ev] = True
        return Assignment(ev, rid, routed)


def policy_for_run(settings, day: str, router: Router, db) -> tuple[RoutingPolicy, list[str]]:
    """The run's :class:`RoutingPolicy` from the configuration, the database and the recipients
    the run loaded (``router.recipients``).

    - ``[abuse_contacts]`` (:func:`herald.config.abuse_contact_settings`); with
      ``enabled`` the imported contact data is loaded once and the overrides listed (no data
      imported: a warning, and no abuse-contact routing);
    - the inhibitions in force on ``day``;
    - windows: a recipient's own ``renotify_days`` (:attr:`Recipient.renotify_days
      <herald.constituency.recipients.Recipient.renotify_days>`: stored with the recipient,
      whether it came from a ``[[recipients]]`` table or only lives in the database; read from
      the recipients already loaded, not queried again), else for automatic recipients
      ``[abuse_contacts] renotify_types`` / ``renotify_days``, else none.

    Returns:
        ``(policy, warnings)``.

    Raises:
        ConfigError: invalid ``[abuse_contacts]`` values.
    """
    from herald.config import abuse_contact_settings
    from herald.constituency.inhibitions import list_inhibitions
    from herald.contacts.autorecipients import stored_names
    from herald.contacts.overrides import list_overrides
    from herald.contacts.store import ContactDataError, load_contacts

    warnings: list[str] = []
    ac = abuse_contact_settings({"abuse_contacts": settings.section("abuse_contacts")})
    abuse = None
    if ac.enabled:
        try:
            abuse = AbuseContactRouter(router, load_contacts(settings.paths.data), ac, list_overrides(db),
                                       stored=stored_names(db))
        except ContactDataError as exc:
            warnings.append(f"abuse contacts enabled but not routed: {exc}")
    own = [r.renotify_days for r in router.recipients if r.renotify_days is not None]

    automatic = [ac.renotify_days, *ac.renotify_types.values()] if abuse is not None else []
    max_window = max([0, *automatic, *own])
    return RoutingPolicy(router, day, settings.paths.data, abuse=abuse,
                         inhibitions=list_inhibitions(db, day), window_of=RecipientWindows(ac),
                         key_columns=ac.renotify_keys, max_window=max_window), warnings

"""Abuse-contact routing: in-scope events no subscribed network owner claims go to the abuse
mailbox of their network (RPSL ``abuse-c``, RFC 2622; RIPE Database "Abuse-c Information").

Precedence, per event of a routed batch (:meth:`AbuseContactRouter.extend`):

1. an event assigned to at least one configured recipient of kind ``network_owner`` is *claimed*:
   it goes to those owners only, never to the RIR contact (national CERTs and law-enforcement
   partners receive their shares as before and do not claim);
2. else, when the event is in the CERT's scope (``[abuse_contacts] countries`` holds its country
   column, or ``cidrs`` holds its address), its mailbox is looked up
   (:func:`herald.contacts.lookup.lookup_contacts` once per distinct (address, ASN) pair: the
   ASN serves the ``aut-num`` fallback and ASN overrides) and the operator's overrides applied
   (:func:`herald.contacts.overrides.apply_overrides`; a suppression leaves the event to nobody);
3. each distinct mailbox becomes one automatic recipient (:class:`AbuseContact`, kind
   ``abuse_contact``, file slug from the mailbox, filter part ``abuse_c``), appended to the
   router's recipients the first time it is seen.  Types are routed in name order and batches in
   input order, so indexes, file names and bytes are the same on every re-run.

Each :class:`AbuseContact` keeps, per report type, the (network, source object) pairs that led
to it, for its message (template ``en/abuse_contact/report.txt.j2``).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from herald.config import AbuseContactSettings
from herald.constituency.recipients import Recipient, slugify
from herald.contacts.autorecipients import KIND, StoredNames
from herald.contacts.lookup import lookup_contacts
from herald.contacts.overrides import ContactOverride, apply_overrides
from herald.contacts.store import ContactData
from herald.enrich.iprange import RangeTable
from herald.ipaddr import parse_ips
from herald.route import Assignment, Router, country_codes
from herald.schema.registry import ReportType

__all__ = ["KIND", "MAX_NAME", "AbuseContact", "AbuseContactRouter"]

#: Longest mailbox text used as it is for a name (``recipients.slug`` holds 100 characters):
#: longer ones are cut and given the hash suffix.
MAX_NAME = 90


@dataclass
class AbuseContact(Recipient):
    """An automatic recipient: one RPSL abuse mailbox (or an override's mailbox).

    Attributes:
        reasons: report type -> sorted ``(network, source)`` texts: the most specific network
            object of the events sent (``inetnum 192.0.2.0 - 192.0.2.63``) and the object the
            mailbox came from (``inetnum ...``, ``aut-num AS64500`` or ``override #3 (...)``).
    """

    reasons: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @property
    def filter_label(self) -> str:
        """``abuse_c``: the file name's filter part."""
        return "abuse_c"


class AbuseContactRouter:
    """Adds abuse-contact assignments to a :class:`~herald.route.Router` 's batches.

    Args:
        router: the run's router; automatic recipients are appended to ``router.recipients``.
        data: the imported contact data (:func:`herald.contacts.store.load_contacts`).
        settings: ``[abuse_contacts]`` (scope).
        overrides: the operator's overrides (:func:`herald.contacts.overrides.list_overrides`).
        stored: names and slugs already in the database
            (:func:`herald.contacts.autorecipients.stored_names`); a mailbox whose name or slug
            another stored recipient has gets the hash suffix.
    """

    def __init__(self, router: Router, data: ContactData, settings: AbuseContactSettings,
                 overrides: list[ContactOverride], stored: StoredNames | None = None) -> None:
        self.router, self.data, self.overrides = router, data, overrides
        self.stored = stored or StoredNames()
        self._owner = np.array([r.kind == "network_owner" for r in router.recipients], dtype=bool)
        self._countries = pa.array(
            sorted((ord(c[0]) - 65) * 26 + (ord(c[1]) - 65) for c in settings.countries), pa.int32())
        self._scope = (RangeTable.from_prefixes([str(c) for c in settings.cidrs],
                                                np.zeros(len(settings.cidrs), dtype=np.int64))
                       if settings.cidrs else None)
        self._by_mailbox: dict[str, int] = {}
        self._slugs = {r.slug for r in router.recipients}
        self._seen: set[tuple[int, str, str, str]] = set()  # (rid, type, network, source) recorded

    def _recipient(self, mailbox: str) -> int:
        """The index of the automatic recipient of ``mailbox`` (created on first use)."""
        rid = self._by_mailbox.get(mailbox)
        if rid is None:
            name = mailbox
            slug = slugify(name)
            # A configured recipient, another mailbox or a stored recipient has it; or too long.
            if (slug in self._slugs or not self.stored.free(name, slug) or len(name) > MAX_NAME
                    or len(slug) > MAX_NAME):
                name = f"{mailbox[:MAX_NAME]} {hashlib.sha256(mailbox.encode()).hexdigest()[:8]}"
            rcpt = AbuseContact(name=name, email=mailbox, kind=KIND)
            self._slugs.add(rcpt.slug)
            rid = self._by_mailbox[mailbox] = len(self.router.recipients)
            self.router.recipients.append(rcpt)
        return rid

    def fork(self, router: Router) -> "AbuseContactRouter":
        """A copy for one report type's job (:meth:`herald.reports.policy.RoutingPolicy.for_type`).

        Args:
            router: the job's router; its recipients must start with this one's router's.

        Returns:
            a router that knows this one's mailboxes, appends new ones to ``router.recipients``
            only and records reasons afresh; contact data and overrides are shared (read only).
        """
        c = copy.copy(self)
        c.router, c._by_mailbox, c._slugs, c._seen = router, dict(self._by_mailbox), set(self._slugs), set()
        return c

    def recipient_index(self, mailbox: str) -> int:
        """The index in ``router.recipients`` of ``mailbox`` 's automatic recipient, appended (and
        named: the mailbox, or with the hash suffix when its slug is taken) on first use."""
        return self._recipient(mailbox)

    def mailboxes(self) -> dict[str, int]:
        """Mailbox -> index in ``router.recipients`` of every automatic recipient known (a copy)."""
        return dict(self._by_mailbox)

    def in_scope(self, table: pa.Table, rtype: ReportType, ips) -> np.ndarray:
        """``bool[N]``: rows whose country is in ``countries`` or address is in ``cidrs``."""
        n = table.num_rows
        mask = np.zeros(n, dtype=bool)
        geo = rtype.geo_column
        if len(self._countries) and geo and geo in table.column_names:
            cc = country_codes(table.column(geo))
            mask |= pc.is_in(pa.array(cc), value_set=self._countries).to_numpy(zero_copy_only=False)
        if self._scope is not None and ips is not None:
            mask |= self._scope.lookup(ips) >= 0
        return mask

    def extend(self, table: pa.Table, rtype: ReportType, assignment: Assignment) -> Assignment:
        """The assignment with the abuse-contact pairs of the unclaimed in-scope events added.

        Args:
            table: the routed batch (N rows).
            rtype: its report type.
            assignment: :meth:`Router.route` 's result for it (configured recipients only).

        Returns:
            a new :class:`Assignment`: pairs sorted by recipient, then event; ``routed`` updated.
        """
        n = table.num_rows
        addr = rtype.address_column
        if not n or not addr or addr not in table.column_names:
            return assignment
        col = table.column(addr)
        ips = parse_ips(col)
        claimed = np.zeros(n, dtype=bool)
        owner = self._owner[assignment.recipient] if len(assignment.recipient) else np.zeros(0, bool)
        claimed[assignment.event[owner]] = True
        cand = np.flatnonzero(self.in_scope(table, rtype, ips) & ~claimed & (ips.version > 0))
        if not len(cand):
            return assignment
        # Once per distinct (address, ASN): the ASN matters for the aut-num fallback and for
        # ASN overrides.
        text = pc.take(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col, pa.array(cand))
        enc = pc.dictionary_encode(text.cast(pa.string()))
        addr_idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        asn_col = rtype.asn_column
        row_asn = np.full(n, -1, dtype=np.int64)
        if asn_col and asn_col in table.column_names:
            row_asn = pc.fill_null(pc.cast(table.column(asn_col), pa.int64()), -1).to_numpy(
                zero_copy_only=False).astype(np.int64)
        _, first, idx = np.unique(np.stack([addr_idx, row_asn[cand]]), axis=1, return_index=True,
                                  return_inverse=True)
        idx = idx.reshape(-1)
        rows = cand[first]
        uips = ips.take(rows)
        asn = row_asn[rows]
        found = lookup_contacts(self.data, uips, asn)
        found = apply_overrides(found, uips, self.overrides, asn)
        mailbox = found.column("mailbox").combine_chunks()
        has = pc.is_valid(mailbox).to_numpy(zero_copy_only=False)
        if not has.any():
            return assignment
        # Distinct mailboxes in sorted order -> recipient indexes (deterministic).
        menc = pc.dictionary_encode(mailbox)
        names = menc.dictionary.to_pylist()
        order = sorted(range(len(names)), key=lambda i: names[i])
        lut = np.full(len(names) + 1, -1, dtype=np.int64)
        for i in order:  # a disabled automatic recipient's mailbox: as if suppressed
            lut[i] = -1 if names[i] in self.stored.disabled else self._recipient(names[i])
        midx = pc.fill_null(menc.indices, len(names)).to_numpy(zero_copy_only=False).astype(np.int64)
        addr_rid = lut[midx]  # per distinct (address, ASN)
        self._reasons(rtype.name, addr_rid, found)
        ev = cand
        rid = addr_rid[idx]
        ok = rid >= 0
        ev, rid = ev[ok], rid[ok]
        o = np.lexsort((ev, rid))
        events = np.concatenate([assignment.event, ev[o]])
        rids = np.concatenate([assignment.recipient.astype(np.int64), rid[o]])
        ko = np.lexsort((events, rids))
        routed = assignment.routed.copy()
        routed[ev] = True
        return Assignment(events[ko].astype(np.int64), rids[ko].astype(np.int32), routed)

    def _reasons(self, type_name: str, addr_rid: np.ndarray, found: pa.Table) -> None:
        """Record each recipient's distinct (network, source) pairs for ``type_name``: the
        triples are made unique with numpy; Python works per distinct triple only."""
        ok = np.flatnonzero(addr_rid >= 0)
        if not len(ok):
            return
        codes, texts = [], []
        for name in ("network", "source"):
            col = pc.fill_null(found.column(name), "-")
            enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
            codes.append(enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)[ok])
            texts.append(enc.dictionary.to_pylist())
        triples = np.unique(np.stack([addr_rid[ok], codes[0], codes[1]]), axis=1)
        touched = set()
        for r, ni, si in triples.T.tolist():
            key = (r, type_name, texts[0][ni], texts[1][si])
            if key not in self._seen:
                self._seen.add(key)
                self.router.recipients[r].reasons.setdefault(type_name, []).append(key[2:])
                touched.add(r)
        for r in touched:
            self.router.recipients[r].reasons[type_name].sort()

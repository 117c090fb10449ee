"""Recipients and filters in the metadata database: import, verification, loading, conflicts.

The router consumes :class:`herald.constituency.recipients.Recipient` objects;
:func:`load_recipients` builds them from the database with only *enabled* recipients and only
*verified* filters.  Filters come from two places:

- the configuration file's ``[[recipients]]`` tables, imported in bulk with
  :func:`herald.constituency.bulk_import.import_recipients` (re-exported here) — the operator wrote
  them, so they are stored ``verified`` with ``decided_by`` the importing actor (``config``);
- requests (portal, ``herald recipients add --asn ...``), stored ``pending`` until an admin
  verifies or rejects them (:func:`verify_filter`, :func:`reject_filter`).

Every change is written to the audit log in the same transaction (the import writes one summary
entry per import for its filters, see :mod:`herald.constituency.bulk_import`).  Filter values are
validated and normalized by :mod:`herald.constituency.validation`.  Recipients are never deleted;
:func:`disable_recipient` stops routing to them.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from herald.constituency.bulk_import import ImportResult, import_recipients  # noqa: F401 (re-exported)
from herald.constituency.networks import Networks
from herald.constituency.recipients import (
    KINDS, Recipient, check_renotify_days, slugify,
)
from herald.constituency.validation import check_email as _check_email
from herald.constituency.validation import check_tlp as _check_tlp
from herald.constituency.validation import normalize_filter
from herald.errors import ConfigError
from herald.store import audit
from herald.store.db import (
    ContactRow, Database, FilterRow, NotFound, RecipientRow, plain_rows, utcnow,
)

#: A reference to a recipient: database id, name, slug, or a Recipient (by id, else name).
RecipientRef = int | str | Recipient


@dataclass(frozen=True)
class FilterInfo:
    """A filter as stored (see :class:`herald.store.db.FilterRow`).  Times are aware UTC."""

    id: int
    recipient_id: int
    recipient: str
    kind: str
    value: str
    state: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class RecipientInfo:
    """A recipient with its contacts and every filter, whatever its state (for ``show``/``list``).

    Attributes:
        email / pgp_fingerprint: of the primary contact.
        contacts: ``(email, pgp_fingerprint, is_primary)`` tuples.
        filters: every filter, oldest first.
        renotify_days: its re-notification window in days (``None``: none of its own; 0: off).
    """

    id: int
    name: str
    slug: str
    kind: str
    tlp: str | None
    disabled: bool
    email: str | None
    pgp_fingerprint: str | None
    contacts: tuple[tuple[str, str | None, bool], ...]
    filters: tuple[FilterInfo, ...]
    created_at: datetime
    renotify_days: int | None = None


@dataclass(frozen=True)
class Claim:
    """One side of a conflict: a recipient's filter."""

    recipient: str
    filter_id: int
    kind: str
    value: str
    state: str


@dataclass(frozen=True)
class Conflict:
    """Two recipients claiming the same addresses.

    Attributes:
        kind: ``cidr_overlap`` (two network owners' networks overlap), ``asn_duplicate`` (one ASN
            claimed by two network owners) or ``cidr_in_asn`` (a network owner's network is
            originated by an ASN another network owner claims; needs ``ipdata``).
        detail: one human-readable line.
        claims: the two filters involved.
    """

    kind: str
    detail: str
    claims: tuple[Claim, Claim]


# --- reading ------------------------------------------------------------------------------------

def find_recipient_row(session: Session, ref: RecipientRef) -> RecipientRow:
    """The recipient row of ``ref`` (a :class:`Recipient`, an id, a name, a slug or digits of an
    id) in ``session``.

    Raises:
        NotFound: no such recipient.
    """
    if isinstance(ref, Recipient):
        ref = ref.id if ref.id is not None else ref.name
    if isinstance(ref, int):
        row = session.get(RecipientRow, ref)
    else:
        row = session.scalars(sa.select(RecipientRow).where(
            sa.or_(RecipientRow.name == ref, RecipientRow.slug == ref))).first()
        if row is None and str(ref).isdigit():
            row = session.get(RecipientRow, int(ref))
    if row is None:
        raise NotFound(f"no recipient {ref!r}")
    return row


def _filter_info(f: FilterRow, name: str) -> FilterInfo:
    return FilterInfo(f.id, f.recipient_id, name, f.kind, f.value, f.state, f.requested_by,
                      f.requested_at, f.decided_by, f.decided_at, f.reason)


def _info(row: RecipientRow) -> RecipientInfo:
    primary = next((c for c in row.contacts if c.is_primary), None)
    return RecipientInfo(
        id=row.id, name=row.name, slug=row.slug, kind=row.kind, tlp=row.tlp,
        disabled=row.disabled, email=primary.email if primary else None,
        pgp_fingerprint=primary.pgp_fingerprint if primary else None,
        contacts=tuple((c.email, c.pgp_fingerprint, c.is_primary) for c in row.contacts),
        filters=tuple(_filter_info(f, row.name) for f in row.filters),
        created_at=row.created_at, renotify_days=row.renotify_days)


def _loaded():
    return (selectinload(RecipientRow.contacts), selectinload(RecipientRow.filters))


def get_recipient(db: Database, ref: RecipientRef) -> RecipientInfo:
    """One recipient by id, name or slug, with contacts and all filters.

    Raises:
        NotFound: no such recipient.
    """
    with db.session() as s:
        return _info(find_recipient_row(s, ref))


def list_recipients(db: Database, include_disabled: bool = True) -> list[RecipientInfo]:
    """Every recipient, by name."""
    stmt = sa.select(RecipientRow).options(*_loaded()).order_by(RecipientRow.name)
    if not include_disabled:
        stmt = stmt.where(RecipientRow.disabled == sa.false())
    with db.session() as s:
        return [_info(r) for r in s.scalars(stmt)]


def list_filters(db: Database, state: str | None = None) -> list[FilterInfo]:
    """Every filter (optionally only those in ``state``), oldest first."""
    stmt = sa.select(FilterRow, RecipientRow.name).join(RecipientRow).order_by(FilterRow.id)
    if state:
        stmt = stmt.where(FilterRow.state == state)
    with db.session() as s:
        return [_filter_info(f, name) for f, name in s.execute(stmt)]


def to_recipient(row: RecipientRow, network_filters: bool = True) -> Recipient:
    """The routing :class:`Recipient` of a database row: its verified filters (network filters
    left out when ``network_filters`` is false) and primary contact."""
    verified = [f for f in row.filters if f.state == "verified"]
    by_kind: dict[str, list[str]] = defaultdict(list)
    for f in verified:
        by_kind[f.kind].append(f.value)
    primary = next((c for c in row.contacts if c.is_primary), None)
    sev = by_kind.get("min_severity", ["info"])
    return Recipient(
        name=row.name, email=primary.email if primary else "", kind=row.kind,
        asns=[int(v) for v in by_kind["asn"]] if network_filters else [],
        cidrs=Networks.from_texts(by_kind["cidr"]) if network_filters else [],
        countries=list(by_kind["country"]) if network_filters else [],
        domains=list(by_kind["domain"]) if network_filters else [],
        report_types=list(by_kind["report_type"]),
        min_severity=sev[0], tlp=row.tlp,
        pgp_fingerprint=primary.pgp_fingerprint if primary else None, id=row.id,
        renotify_days=row.renotify_days)


def load_recipients(db: Database) -> list[Recipient]:
    """The routing view: enabled recipients with only their *verified* filters, by id.

    ``domain`` filters are stored but not part of :class:`Recipient` yet.  Pending and rejected
    filters never appear; a recipient whose filters are all pending is returned with empty
    filter lists and so matches nothing.

    Returns:
        :class:`Recipient` objects with ``id`` and ``renotify_days`` set, in database-id order
        (stable across runs).
    """
    # Plain column queries, not ORM objects: a national constituency has up to a million filters.
    with db.session() as s:
        rows = s.execute(sa.select(RecipientRow.id, RecipientRow.name, RecipientRow.kind, RecipientRow.tlp,
                                   RecipientRow.renotify_days)
                         .where(RecipientRow.disabled == sa.false()).order_by(RecipientRow.id)).all()
        contacts: dict[int, tuple[str, str | None]] = {}
        for rid, email, fpr in s.execute(
                sa.select(ContactRow.recipient_id, ContactRow.email, ContactRow.pgp_fingerprint)
                .where(ContactRow.is_primary == sa.true()).order_by(ContactRow.id)):
            contacts.setdefault(rid, (email, fpr))
        by_rcpt: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for rid, kind, value in plain_rows(s, sa.select(
                FilterRow.recipient_id, FilterRow.kind, FilterRow.value)
                .where(FilterRow.state == "verified").order_by(FilterRow.id)):
            by_rcpt[rid][kind].append(value)
    cidr_lists = [by_rcpt[r.id]["cidr"] if r.id in by_rcpt else [] for r in rows]
    bounds = np.cumsum([0] + [len(v) for v in cidr_lists])
    all_nets = Networks.from_texts([v for lst in cidr_lists for v in lst])
    out = []
    for i, (rid, name, kind, tlp, renotify) in enumerate(rows):
        f = by_rcpt.get(rid, {})
        email, fpr = contacts.get(rid, ("", None))
        out.append(Recipient(
            name=name, email=email, kind=kind, asns=[int(v) for v in f.get("asn", [])],
            cidrs=all_nets[int(bounds[i]):int(bounds[i + 1])], countries=list(f.get("country", [])),
            domains=list(f.get("domain", [])), report_types=list(f.get("report_type", [])),
            min_severity=f.get("min_severity", ["info"])[0], tlp=tlp, pgp_fingerprint=fpr, id=rid,
            renotify_days=renotify))
    return out


# --- changing -----------------------------------------------------------------------------------

def add_recipient(db: Database, name: str, email: str, actor: str, kind: str = "network_owner",
                  tlp: str | None = None, pgp_fingerprint: str | None = None,
                  reason: str | None = None, renotify_days: int | None = None) -> RecipientInfo:
    """Create a recipient with its primary contact and no filters (audited as ``recipient.add``).

    Args:
        renotify_days: its re-notification window in days (0: off; ``None``: none).

    Raises:
        ConfigError: invalid name, e-mail, kind, TLP or window; or the name/slug is taken.
    """
    if not name or not name.strip():
        raise ConfigError("recipient name is required")
    if kind not in KINDS:
        raise ConfigError(f"kind {kind!r} must be one of {', '.join(KINDS)}")
    name = name.strip()
    email = _check_email(email)
    tlp = _check_tlp(tlp)
    if renotify_days is not None:
        renotify_days = check_renotify_days(renotify_days, f"recipient {name!r}")
    try:
        with db.session() as s:
            clash = s.scalars(sa.select(RecipientRow).where(sa.or_(
                RecipientRow.name == name, RecipientRow.slug == slugify(name)))).first()
            if clash is not None:
                raise ConfigError(f"recipient {name!r} clashes with existing {clash.name!r} "
                                  f"(same name or file slug {clash.slug!r})")
            row = _create(s, name, email, kind, tlp, pgp_fingerprint or None, actor, reason,
                          renotify_days)
            return _info(row)
    except IntegrityError:
        raise ConfigError(f"recipient {name!r} already exists") from None


def _create(s: Session, name: str, email: str, kind: str, tlp: str | None, pgp: str | None,
            actor: str, reason: str | None, renotify_days: int | None = None) -> RecipientRow:
    row = RecipientRow(name=name, slug=slugify(name), kind=kind, tlp=tlp, renotify_days=renotify_days)
    row.contacts.append(ContactRow(email=email, pgp_fingerprint=pgp, is_primary=True))
    s.add(row)
    s.flush()
    audit.record(s, actor, "recipient.add", "recipient", row.id, reason,
                 {"name": name, "slug": row.slug, "kind": kind, "email": email, "tlp": tlp,
                  "pgp_fingerprint": pgp, "renotify_days": renotify_days})
    return row


def set_renotify_days(db: Database, ref: RecipientRef, days: int | None, actor: str,
                      reason: str | None = None) -> RecipientInfo:
    """Set a recipient's re-notification window (days; 0: off; ``None``: none of its own).

    Audited as ``recipient.update`` with ``{"renotify_days": [old, new]}``; a no-op (no entry)
    when unchanged.  For a recipient listed in the configuration's ``[[recipients]]`` the file
    stays authoritative: its next import sets the table's value again.

    Raises:
        NotFound: no such recipient.
        ConfigError: ``days`` is not an integer >= 0; the recipient is an automatic one (kind
            ``abuse_contact``: those take ``[abuse_contacts] renotify_days`` / ``renotify_types``).
    """
    if days is not None:
        days = check_renotify_days(days, f"recipient {ref!r}")
    with db.session() as s:
        row = find_recipient_row(s, ref)
        if row.kind == "abuse_contact":
            raise ConfigError(f"recipient {row.name!r} is an automatic recipient (an RPSL abuse "
                              f"mailbox): its window is [abuse_contacts] renotify_days / renotify_types")
        if row.renotify_days != days:
            before = row.renotify_days
            row.renotify_days = days
            row.updated_at = utcnow()
            s.flush()
            audit.record(s, actor, "recipient.update", "recipient", row.id, reason,
                         {"renotify_days": [before, days]})
        return _info(row)


def add_filter(db: Database, recipient: RecipientRef, kind: str, value: Any, actor: str,
               verified: bool = False, reason: str | None = None) -> FilterInfo:
    """Request a filter for a recipient (``pending``), or add it verified at once.

    ``verified=True`` is for an admin adding a claim they have checked; it is recorded as decided
    by ``actor``.  Re-adding an existing (kind, value) returns the existing filter unchanged.

    Raises:
        NotFound: no such recipient.
        ConfigError: invalid kind or value.
    """
    value = normalize_filter(kind, value)
    with db.session() as s:
        row = find_recipient_row(s, recipient)
        existing = s.scalars(sa.select(FilterRow).filter_by(
            recipient_id=row.id, kind=kind, value=value)).one_or_none()
        if existing is not None:
            return _filter_info(existing, row.name)
        f = FilterRow(recipient_id=row.id, kind=kind, value=value, state="pending",
                      requested_by=actor, requested_at=utcnow())
        s.add(f)
        s.flush()
        audit.record(s, actor, "filter.request", "filter", f.id, reason,
                     {"recipient": row.name, "kind": kind, "value": value})
        if verified:
            _decide(s, f, "verified", actor, reason)
        return _filter_info(f, row.name)


def _decide(s: Session, f: FilterRow, state: str, actor: str, reason: str | None) -> None:
    """Set a filter's verification state, with audit; a verified min_severity supersedes the
    recipient's previous one (the database allows one)."""
    if state == "verified" and f.kind == "min_severity":
        for other in s.scalars(sa.select(FilterRow).where(
                FilterRow.recipient_id == f.recipient_id, FilterRow.kind == "min_severity",
                FilterRow.state == "verified", FilterRow.id != f.id)):
            _decide(s, other, "rejected", actor, f"superseded by filter {f.id}")
        s.flush()
    before = f.state
    f.state, f.decided_by, f.decided_at, f.reason = state, actor, utcnow(), reason
    s.flush()
    verb = {"verified": "verify", "rejected": "reject"}[state]
    audit.record(s, actor, f"filter.{verb}", "filter", f.id, reason,
                 {"recipient_id": f.recipient_id, "kind": f.kind, "value": f.value,
                  "from": before, "to": state})


def _get_filter(s: Session, filter_id: int) -> FilterRow:
    f = s.get(FilterRow, int(filter_id))
    if f is None:
        raise NotFound(f"no filter {filter_id}")
    return f


def verify_filter(db: Database, filter_id: int, actor: str, reason: str | None = None) -> FilterInfo:
    """Mark a filter verified: from now on it routes.  A no-op if it already is.

    Raises:
        NotFound: no such filter.
    """
    return _set_state(db, filter_id, "verified", actor, reason)


def reject_filter(db: Database, filter_id: int, actor: str, reason: str) -> FilterInfo:
    """Mark a filter rejected (it stops routing if it was verified).  A reason is required.

    Raises:
        NotFound: no such filter.
        ConfigError: empty reason.
    """
    _require_reason(reason, "rejecting a filter")
    return _set_state(db, filter_id, "rejected", actor, reason)


def _set_state(db: Database, filter_id: int, state: str, actor: str,
               reason: str | None) -> FilterInfo:
    with db.session() as s:
        f = _get_filter(s, filter_id)
        if f.state != state:
            _decide(s, f, state, actor, reason)
        return _filter_info(f, f.recipient.name)


def _require_reason(reason: str | None, doing: str) -> None:
    if not reason or not reason.strip():
        raise ConfigError(f"{doing} needs a reason")


def _set_disabled(db: Database, ref: RecipientRef, disabled: bool, actor: str,
                  reason: str | None) -> RecipientInfo:
    with db.session() as s:
        row = find_recipient_row(s, ref)
        if row.disabled != disabled:
            row.disabled = disabled
            row.updated_at = utcnow()
            s.flush()
            audit.record(s, actor, "recipient.disable" if disabled else "recipient.enable",
                         "recipient", row.id, reason, {"name": row.name})
        return _info(row)


def disable_recipient(db: Database, ref: RecipientRef, actor: str, reason: str) -> RecipientInfo:
    """Stop routing to a recipient (its rows stay).  A no-op if already disabled.

    Raises:
        NotFound: no such recipient.
        ConfigError: empty reason.
    """
    _require_reason(reason, "disabling a recipient")
    return _set_disabled(db, ref, True, actor, reason)


def enable_recipient(db: Database, ref: RecipientRef, actor: str,
                     reason: str | None = None) -> RecipientInfo:
    """Route to a disabled recipient again.  A no-op if it is enabled.

    Raises:
        NotFound: no such recipient.
    """
    return _set_disabled(db, ref, False, actor, reason)


# --- conflicts ----------------------------------------------------------------------------------

def conflicts(db: Database, ipdata: Callable[[str], int | None] | Any = None,
              states: tuple[str, ...] = ("verified", "pending")) -> list[Conflict]:
    """Overlapping claims between *enabled network owners* (national CERTs and law enforcement
    receive overlapping copies by design, so they are not checked).

    Finds two network owners' CIDRs that overlap (either inside the other, IPv4 and IPv6), an ASN
    claimed by two network owners, and — when ``ipdata`` is given — a CIDR whose first or last
    address is originated by an ASN another network owner claims.

    Args:
        ipdata: a function from an address (text) to the ASN originating it (``None`` when
            unknown), or a :class:`herald.enrich.ipdata.IPData` (its vectorized ``lookup``).
        states: filter states taken as claims; default verified and pending, so an admin sees a
            conflict before verifying a request.

    Returns:
        :class:`Conflict` objects, sorted by kind and detail.
    """
    stmt = (sa.select(FilterRow, RecipientRow.name).join(RecipientRow)
            .where(RecipientRow.kind == "network_owner", RecipientRow.disabled == sa.false(),
                   FilterRow.state.in_(states), FilterRow.kind.in_(("asn", "cidr"))))
    with db.session() as s:
        claims = [(Claim(name, f.id, f.kind, f.value, f.state), f.recipient_id)
                  for f, name in s.execute(stmt)]
    out: list[Conflict] = []

    asn_owners: dict[int, list[tuple[Claim, int]]] = defaultdict(list)
    for c, rid in claims:
        if c.kind == "asn":
            asn_owners[int(c.value)].append((c, rid))
    for asn, owners in asn_owners.items():
        for i, (a, ra) in enumerate(owners):
            for b, rb in owners[i + 1:]:
                if ra != rb:
                    out.append(Conflict("asn_duplicate",
                                        f"AS{asn} claimed by {a.recipient!r} and {b.recipient!r}",
                                        (a, b)))

    nets = [(ipaddress.ip_network(c.value), c, rid) for c, rid in claims if c.kind == "cidr"]
    for version in (4, 6):
        # Sweep by start address; an interval overlaps every still-open one before it.
        ivs = sorted(((int(n.network_address), int(n.broadcast_address), c, rid)
                      for n, c, rid in nets if n.version == version), key=lambda t: (t[0], -t[1]))
        open_: list[tuple[int, int, Claim, int]] = []
        for start, end, c, rid in ivs:
            open_ = [o for o in open_ if o[1] >= start]
            for _, _, oc, orid in open_:
                if orid != rid:
                    out.append(Conflict("cidr_overlap",
                                        f"{oc.value} ({oc.recipient!r}) overlaps {c.value} "
                                        f"({c.recipient!r})", (oc, c)))
            open_.append((start, end, c, rid))

    if ipdata is not None:
        addrs = [str(a) for net, _, _ in nets for a in (net.network_address, net.broadcast_address)]
        if hasattr(ipdata, "lookup"):
            # herald.enrich.ipdata.IPData: one vectorized look-up for every address.
            found = ipdata.lookup(addrs, columns=("asn",)).column("asn").to_pylist() if addrs else []
        else:
            found = [ipdata(a) for a in addrs]
        for i, (net, c, rid) in enumerate(nets):
            seen: set[int] = set()
            for asn in found[2 * i:2 * i + 2]:
                if asn is None or int(asn) in seen:
                    continue
                seen.add(int(asn))
                for oc, orid in asn_owners.get(int(asn), []):
                    if orid != rid:
                        out.append(Conflict("cidr_in_asn",
                                            f"{c.value} ({c.recipient!r}) is originated by "
                                            f"AS{asn}, claimed by {oc.recipient!r}", (c, oc)))
    out.sort(key=lambda x: (x.kind, x.detail))
    return out

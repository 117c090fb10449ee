"""Recipients and filters in the metadata database: import, verification, loading, conflicts.

The router consumes :class:`herald.constituency.recipients.Recipient` objects;
:func:`load_recipients` builds them from the database with only *enabled* recipients and only
*verified* filters.  Filters come from two places:

- the configuration file's ``[[recipients]]`` tables, imported with :func:`import_recipients` —
  the operator wrote them, so they are stored ``verified`` with ``decided_by`` the importing actor
  (``config``);
- requests (portal, ``herald recipients add --asn ...``), stored ``pending`` until an admin
  verifies or rejects them (:func:`verify_filter`, :func:`reject_filter`).

Every change is written to the audit log in the same transaction.  Recipients are never deleted;
:func:`disable_recipient` stops routing to them.
"""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

import numpy as np
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from herald.config import TLP_LABELS
from herald.constituency.networks import Networks
from herald.constituency.recipients import (
    KINDS, Recipient, recipient_from_dict, recipients_from_specs, slugify,
)
from herald.errors import ConfigError
from herald.schema.registry import SEVERITY_LEVELS
from herald.store import audit
from herald.store.db import (
    FILTER_KINDS, ContactRow, Database, FilterRow, NotFound, RecipientRow, utcnow,
)

_CC_RE = re.compile(r"^[A-Z]{2}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

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


@dataclass
class ImportResult:
    """What :func:`import_recipients` changed (names of recipients; ids of filters)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    filters_verified: list[int] = field(default_factory=list)
    filters_rejected: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when the import changed anything."""
        return bool(self.added or self.updated or self.filters_verified or self.filters_rejected)


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


# --- validation ---------------------------------------------------------------------------------

def normalize_filter(kind: str, value: Any) -> str:
    """The canonical text of a filter value, as stored and compared.

    ASN: decimal (``AS64496`` gives ``64496``); CIDR: network with host bits cleared; country:
    upper-case ISO 3166-1 alpha-2; domain: lower-case IDNA (``xn--``) without trailing dot;
    report type: a name known to the registry; min_severity: a level of
    :data:`herald.schema.registry.SEVERITY_LEVELS`.

    Raises:
        ConfigError: unknown kind or invalid value (the message names both).
    """
    if kind not in FILTER_KINDS:
        raise ConfigError(f"filter kind {kind!r} must be one of {', '.join(FILTER_KINDS)}")
    text = str(value).strip()
    if kind == "asn":
        try:
            asn = int(text.upper().removeprefix("AS"))
        except ValueError:
            raise ConfigError(f"asn filter: {value!r} is not an AS number") from None
        if not 0 < asn < 2**32:
            raise ConfigError(f"asn filter: {asn} is out of range (1..4294967295, RFC 6793)")
        return str(asn)
    if kind == "cidr":
        try:
            return str(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ConfigError(f"cidr filter: {value!r} is not an IPv4 or IPv6 network") from None
    if kind == "country":
        cc = text.upper()
        if not _CC_RE.match(cc):
            raise ConfigError(f"country filter: {value!r} is not an ISO 3166-1 alpha-2 code")
        return cc
    if kind == "domain":
        try:
            name = text.rstrip(".").encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ConfigError(f"domain filter: {value!r} is not a valid domain name") from None
        labels = name.split(".")
        if len(name) > 253 or len(labels) < 2 or not all(_LABEL_RE.match(x) for x in labels):
            raise ConfigError(f"domain filter: {value!r} is not a valid domain name")
        return name
    if kind == "report_type":
        from herald.schema import default_registry

        if text not in default_registry():
            raise ConfigError(f"report_type filter: unknown report type {text!r} "
                              f"(see 'herald types')")
        return text
    sev = text.lower()
    if sev not in SEVERITY_LEVELS:
        raise ConfigError(f"min_severity filter: {value!r} must be one of {', '.join(SEVERITY_LEVELS)}")
    return sev


def _check_email(email: str) -> str:
    if not isinstance(email, str) or not _EMAIL_RE.match(email.strip()):
        raise ConfigError(f"{email!r} is not an email address")
    return email.strip()


def _check_tlp(tlp: str | None) -> str | None:
    if tlp is None or tlp == "":
        return None
    label = str(tlp).upper().removeprefix("TLP:")
    if label not in TLP_LABELS:
        raise ConfigError(f"tlp {tlp!r} is not a TLP 2.0 label ({', '.join(TLP_LABELS)})")
    return label


# --- reading ------------------------------------------------------------------------------------

def _find(session: Session, ref: RecipientRef) -> RecipientRow:
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
        created_at=row.created_at)


def _loaded():
    return (selectinload(RecipientRow.contacts), selectinload(RecipientRow.filters))


def get_recipient(db: Database, ref: RecipientRef) -> RecipientInfo:
    """One recipient by id, name or slug, with contacts and all filters.

    Raises:
        NotFound: no such recipient.
    """
    with db.session() as s:
        return _info(_find(s, ref))


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


def _to_recipient(row: RecipientRow, network_filters: bool = True) -> Recipient:
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
        pgp_fingerprint=primary.pgp_fingerprint if primary else None, id=row.id)


def load_recipients(db: Database) -> list[Recipient]:
    """The routing view: enabled recipients with only their *verified* filters, by id.

    ``domain`` filters are stored but not part of :class:`Recipient` yet.  Pending and rejected
    filters never appear; a recipient whose filters are all pending is returned with empty
    filter lists and so matches nothing.

    Returns:
        :class:`Recipient` objects with ``id`` set, in database-id order (stable across runs).
    """
    # Plain column queries, not ORM objects: a national constituency has up to a million filters.
    with db.session() as s:
        rows = s.execute(sa.select(RecipientRow.id, RecipientRow.name, RecipientRow.kind, RecipientRow.tlp)
                         .where(RecipientRow.disabled == sa.false()).order_by(RecipientRow.id)).all()
        contacts: dict[int, tuple[str, str | None]] = {}
        for rid, email, fpr in s.execute(
                sa.select(ContactRow.recipient_id, ContactRow.email, ContactRow.pgp_fingerprint)
                .where(ContactRow.is_primary == sa.true()).order_by(ContactRow.id)):
            contacts.setdefault(rid, (email, fpr))
        by_rcpt: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for rid, kind, value in s.execute(
                sa.select(FilterRow.recipient_id, FilterRow.kind, FilterRow.value)
                .where(FilterRow.state == "verified").order_by(FilterRow.id)):
            by_rcpt[rid][kind].append(value)
    cidr_lists = [by_rcpt[r.id]["cidr"] if r.id in by_rcpt else [] for r in rows]
    bounds = np.cumsum([0] + [len(v) for v in cidr_lists])
    all_nets = Networks.from_texts([v for lst in cidr_lists for v in lst])
    out = []
    for i, (rid, name, kind, tlp) in enumerate(rows):
        f = by_rcpt.get(rid, {})
        email, fpr = contacts.get(rid, ("", None))
        out.append(Recipient(
            name=name, email=email, kind=kind, asns=[int(v) for v in f.get("asn", [])],
            cidrs=all_nets[int(bounds[i]):int(bounds[i + 1])], countries=list(f.get("country", [])),
            domains=list(f.get("domain", [])), report_types=list(f.get("report_type", [])),
            min_severity=f.get("min_severity", ["info"])[0], tlp=tlp, pgp_fingerprint=fpr, id=rid))
    return out


# --- changing -----------------------------------------------------------------------------------

def add_recipient(db: Database, name: str, email: str, actor: str, kind: str = "network_owner",
                  tlp: str | None = None, pgp_fingerprint: str | None = None,
                  reason: str | None = None) -> RecipientInfo:
    """Create a recipient with its primary contact and no filters.

    Raises:
        ConfigError: invalid name, e-mail, kind or TLP; or the name/slug is taken.
    """
    if not name or not name.strip():
        raise ConfigError("recipient name is required")
    if kind not in KINDS:
        raise ConfigError(f"kind {kind!r} must be one of {', '.join(KINDS)}")
    name = name.strip()
    email = _check_email(email)
    tlp = _check_tlp(tlp)
    try:
        with db.session() as s:
            clash = s.scalars(sa.select(RecipientRow).where(sa.or_(
                RecipientRow.name == name, RecipientRow.slug == slugify(name)))).first()
            if clash is not None:
                raise ConfigError(f"recipient {name!r} clashes with existing {clash.name!r} "
                                  f"(same name or file slug {clash.slug!r})")
            row = _create(s, name, email, kind, tlp, pgp_fingerprint or None, actor, reason)
            return _info(row)
    except IntegrityError:
        raise ConfigError(f"recipient {name!r} already exists") from None


def _create(s: Session, name: str, email: str, kind: str, tlp: str | None, pgp: str | None,
            actor: str, reason: str | None) -> RecipientRow:
    row = RecipientRow(name=name, slug=slugify(name), kind=kind, tlp=tlp)
    row.contacts.append(ContactRow(email=email, pgp_fingerprint=pgp, is_primary=True))
    s.add(row)
    s.flush()
    audit.record(s, actor, "recipient.add", "recipient", row.id, reason,
                 {"name": name, "slug": row.slug, "kind": kind, "email": email, "tlp": tlp,
                  "pgp_fingerprint": pgp})
    return row


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
        row = _find(s, recipient)
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
    with db.session() as s:
        f = _get_filter(s, filter_id)
        if f.state != "verified":
            _decide(s, f, "verified", actor, reason)
        return _filter_info(f, f.recipient.name)


def reject_filter(db: Database, filter_id: int, actor: str, reason: str) -> FilterInfo:
    """Mark a filter rejected (it stops routing if it was verified).  A reason is required.

    Raises:
        NotFound: no such filter.
        ConfigError: empty reason.
    """
    if not reason or not reason.strip():
        raise ConfigError("rejecting a filter needs a reason")
    with db.session() as s:
        f = _get_filter(s, filter_id)
        if f.state != "rejected":
            _decide(s, f, "rejected", actor, reason)
        return _filter_info(f, f.recipient.name)


def _set_disabled(db: Database, ref: RecipientRef, disabled: bool, actor: str,
                  reason: str | None) -> RecipientInfo:
    with db.session() as s:
        row = _find(s, ref)
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
    if not reason or not reason.strip():
        raise ConfigError("disabling a recipient needs a reason")
    return _set_disabled(db, ref, True, actor, reason)


def enable_recipient(db: Database, ref: RecipientRef, actor: str,
                     reason: str | None = None) -> RecipientInfo:
    """Route to a disabled recipient again.  A no-op if it is enabled.

    Raises:
        NotFound: no such recipient.
    """
    return _set_disabled(db, ref, False, actor, reason)


def _spec_filters(r: Recipient, spec: dict[str, Any]) -> set[tuple[str, str]]:
    want = {("asn", str(a)) for a in r.asns}
    want |= {("cidr", str(c)) for c in r.cidrs}
    want |= {("country", c) for c in r.countries}
    want |= {("report_type", normalize_filter("report_type", t)) for t in r.report_types}
    want |= {("domain", normalize_filter("domain", d)) for d in spec.get("domains", [])}
    if r.min_severity != "info":
        want.add(("min_severity", r.min_severity))
    return want


def import_recipients(db: Database, specs: Iterable[dict[str, Any]],
                      actor: str = "config") -> ImportResult:
    """Bring the database in line with ``[[recipients]]`` tables; idempotent.

    For each table (matched to a stored recipient by file slug): the recipient is created, or its
    name, kind, TLP, e-mail and PGP fingerprint are updated; every filter it lists (``asns``,
    ``cidrs``, ``countries``, ``report_types``, ``domains``, ``min_severity`` other than ``info``)
    is stored ``verified`` with ``decided_by=actor`` — the configuration is authoritative for the
    claims it lists — and filters earlier verified by ``actor`` that the table no longer lists are
    ``rejected``.  Filters from other actors (portal requests, admins) are left alone, as are
    recipients absent from ``specs`` and the ``disabled`` flag (unless a table sets
    ``disabled``).  All in one transaction, with an audit entry for each change; importing the
    same specs again changes nothing and writes no audit entry.

    Raises:
        ConfigError: an invalid table or duplicate names/slugs (nothing is imported).
    """
    specs = list(specs)
    parsed = recipients_from_specs(specs, where="recipients")
    result = ImportResult()
    with db.session() as s:
        for r, spec in zip(parsed, specs):
            want = _spec_filters(r, spec)
            tlp = _check_tlp(r.tlp)
            row = s.scalars(sa.select(RecipientRow).options(*_loaded())
                            .where(RecipientRow.slug == r.slug)).one_or_none()
            changed = False
            if row is None:
                row = _create(s, r.name, r.email, r.kind, tlp, r.pgp_fingerprint, actor,
                              "imported from configuration")
                result.added.append(r.name)
            else:
                changes = _update(row, r, tlp, spec)
                if changes:
                    row.updated_at = utcnow()
                    s.flush()
                    audit.record(s, actor, "recipient.update", "recipient", row.id,
                                 "imported from configuration", changes)
                    changed = True
            have = {(f.kind, f.value): f for f in row.filters}
            # Reject first: the new min_severity may only be verified once the old one is not.
            for key, f in sorted(have.items()):
                if key not in want and f.state == "verified" and f.decided_by == actor:
                    _decide(s, f, "rejected", actor, "no longer in the configuration")
                    result.filters_rejected.append(f.id)
                    changed = True
            for kind, value in sorted(want):
                f = have.get((kind, value))
                if f is None:
                    f = FilterRow(recipient_id=row.id, kind=kind, value=value, state="pending",
                                  requested_by=actor, requested_at=utcnow())
                    s.add(f)
                    s.flush()
                if f.state != "verified":
                    _decide(s, f, "verified", actor, "listed in the configuration")
                    result.filters_verified.append(f.id)
                    changed = True
            if changed and r.name not in result.added:
                result.updated.append(r.name)
            elif r.name not in result.added:
                result.unchanged.append(r.name)
    return result


def _update(row: RecipientRow, r: Recipient, tlp: str | None, spec: dict[str, Any]) -> dict:
    """Apply a table's scalar fields to ``row``; return ``{field: [old, new]}`` of changes."""
    changes: dict[str, list] = {}

    def _set(obj, attr, new, label=None):
        old = getattr(obj, attr)
        if old != new:
            changes[label or attr] = [old, new]
            setattr(obj, attr, new)

    _set(row, "name", r.name)
    _set(row, "kind", r.kind)
    _set(row, "tlp", tlp)
    if "disabled" in spec:
        _set(row, "disabled", bool(spec["disabled"]))
    primary = next((c for c in row.contacts if c.is_primary), None)
    if primary is None:
        row.contacts.append(ContactRow(email=r.email, pgp_fingerprint=r.pgp_fingerprint,
                                       is_primary=True))
        changes["email"] = [None, r.email]
    else:
        _set(primary, "email", r.email)
        _set(primary, "pgp_fingerprint", r.pgp_fingerprint, "pgp_fingerprint")
    return changes


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

"""The ORM configuration import as it was before the bulk rewrite (reference for the tests and
for ``bench/import_constituency.py --legacy``): one query, flush and audit entry per change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from herald.constituency.recipients import Recipient, recipients_from_specs, slugify
from herald.constituency.validation import check_tlp as _check_tlp
from herald.constituency.validation import normalize_filter
from herald.store import audit
from herald.store.db import ContactRow, Database, FilterRow, RecipientRow, utcnow


@dataclass
class ImportResult:
    """What the old import changed (names of recipients; ids of filters)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    filters_verified: list[int] = field(default_factory=list)
    filters_rejected: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when the import changed anything."""
        return bool(self.added or self.updated or self.filters_verified or self.filters_rejected)


def _loaded():
    return (selectinload(RecipientRow.contacts), selectinload(RecipientRow.filters))


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


def _spec_filters(r: Recipient, spec: dict[str, Any]) -> set[tuple[str, str]]:
    want = {("asn", str(a)) for a in r.asns}
    want |= {("cidr", str(c)) for c in r.cidrs}
    want |= {("country", c) for c in r.countries}
    want |= {("report_type", normalize_filter("report_type", t)) for t in r.report_types}
    want |= {("domain", normalize_filter("domain", d)) for d in spec.get("domains", [])}
    if r.min_severity != "info":
        want.add(("min_severity", r.min_severity))
    return want


def legacy_import_recipients(db: Database, specs: Iterable[dict[str, Any]],
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

"""The bulk configuration import (issue 14): same rows as the old ORM import, one audit entry per
import with a summary and the digest of the canonical content."""

from __future__ import annotations

import hashlib
import json
import re

import sqlalchemy as sa

from herald.constituency import bulk_import
from herald.constituency import repository as repo
from herald.constituency.recipients import recipients_from_specs, slugify
from herald.store import audit
from herald.store.db import ContactRow, FilterRow, RecipientRow
from tests.db_fixtures import *  # noqa: F401,F403
from tests.legacy_import import legacy_import_recipients


def _specs(n_recipients: int, per: int, shift: int = 0) -> list[dict]:
    """``n_recipients`` network owners with ``per`` CIDRs each (IPv4 and some IPv6), an ASN, and
    a few with a minimum severity; ``shift`` moves a third of the CIDRs (a changed file)."""
    out = []
    for i in range(n_recipients):
        cidrs = [f"10.{i}.{j}.0/24" for j in range(per)]
        cidrs[: per // 3] = [f"172.{16 + i % 16}.{(j + shift) % 256}.{i % 256}/32"
                             for j in range(per // 3)]
        cidrs.append(f"2001:DB8:{i:x}::/48")
        spec = {"name": f"Owner {i}", "email": f"abuse{i}@owner{i}.example",
                "asns": [f"AS{64500 + i}"], "cidrs": cidrs}
        if i % 5 == 0:
            spec["min_severity"] = "medium" if shift == 0 else "high"
        if i % 7 == 0:
            spec["countries"] = ["de"]
        out.append(spec)
    out.append({"name": "CERT-XX (national)", "email": "cert@xx.example", "kind": "national_cert",
                "countries": ["XX"], "domains": ["Example.ORG."], "report_types": ["scan_ssh"]})
    return out


def _admin_changes(db) -> None:
    """What admins and the portal do between imports: the same calls on both databases."""
    portal = repo.add_filter(db, "Owner 1", "asn", 64999, actor="portal:noc@owner1.example")
    repo.verify_filter(db, portal.id, actor="cli:admin", reason="RIPE checked")
    repo.add_filter(db, "Owner 2", "cidr", "198.51.100.0/24", actor="portal:noc@owner2.example")
    repo.add_filter(db, "Owner 3", "min_severity", "low", actor="cli:admin", verified=True)
    listed = next(f for f in repo.get_recipient(db, "Owner 4").filters if f.kind == "asn")
    repo.reject_filter(db, listed.id, actor="cli:admin", reason="not theirs")
    repo.add_filter(db, "Owner 6", "cidr", "10.6.1.0/24", actor="portal:x")  # also listed


def _snapshot(db) -> dict:
    """Every recipient, contact and filter by content (no ids, no times); a ``superseded by
    filter <id>`` reason names the superseding filter's value instead of its id."""
    with db.session() as s:
        names = {i: n for i, n in s.execute(sa.select(RecipientRow.id, RecipientRow.name))}
        recipients = sorted((r.name, r.slug, r.kind, r.tlp, r.disabled)
                            for r in s.scalars(sa.select(RecipientRow)))
        contacts = sorted((names[c.recipient_id], c.email, c.pgp_fingerprint, c.is_primary)
                          for c in s.scalars(sa.select(ContactRow)))
        rows = list(s.scalars(sa.select(FilterRow)))
        by_id = {f.id: f"{f.kind}:{f.value}" for f in rows}
        filters = sorted(
            (names[f.recipient_id], f.kind, f.value, f.state, f.requested_by, f.decided_by,
             re.sub(r"superseded by filter (\d+)", lambda m: "superseded by " + by_id[int(m[1])],
                    f.reason or ""))
            for f in rows)
    return {"recipients": recipients, "contacts": contacts, "filters": filters}


def _clear(db) -> None:
    with db.session() as s:
        s.execute(sa.delete(FilterRow))
        s.execute(sa.delete(ContactRow))
        s.execute(sa.delete(RecipientRow))


def _sequence(db, importer) -> list:
    first = _specs(40, 60)
    second = _specs(40, 60, shift=7)
    second[3] = dict(second[3], email="noc@owner3.example", tlp="amber", disabled=True)
    del second[10]  # absent from the file: left alone
    results = [importer(db, first)]
    _admin_changes(db)
    results.append(importer(db, second))
    results.append(importer(db, second))
    return results


def test_bulk_import_gives_the_rows_of_the_orm_import(db):
    """A few thousand filters, with admin changes in between: the same rows as the old path."""
    old = _sequence(db, legacy_import_recipients)
    want = _snapshot(db)
    _clear(db)
    new = _sequence(db, repo.import_recipients)
    got = _snapshot(db)
    assert len(got["filters"]) > 2000
    assert got == want
    for o, n in zip(old, new):
        assert (o.added, o.updated, o.unchanged) == (n.added, n.updated, n.unchanged)
        assert (len(o.filters_verified), len(o.filters_rejected)) == (
            n.filters_verified, n.filters_rejected)
    assert not new[2].changed and new[2].audit_id is None


def test_one_audit_entry_per_import_with_summary_and_digest(db):
    specs = _specs(30, 100)
    before = len(audit.query(db))
    result = repo.import_recipients(db, specs)
    entries = audit.query(db)[before:]
    summary = [e for e in entries if e.action == bulk_import.IMPORT_ACTION]
    assert len(summary) == 1
    # Besides the summary, only the recipients' own entries: no per-filter entry.
    assert sorted({e.action for e in entries}) == ["recipient.add", "recipients.import"]
    assert len(entries) == 1 + 31
    e = summary[0]
    n_filters = sum(len(s.get(k, [])) for s in specs
                    for k in ("asns", "cidrs", "countries", "domains", "report_types"))
    n_filters += sum(1 for s in specs if s.get("min_severity", "info") != "info")
    assert (e.actor, e.object_type, e.id) == ("config", "constituency", result.audit_id)
    assert e.details["recipients"] == {"listed": 31, "added": 31, "changed": 0, "disabled": 0,
                                       "unchanged": 0}
    assert e.details["filters"] == {"listed": n_filters, "added": n_filters,
                                    "verified": n_filters, "removed": 0, "superseded": 0}

    # The digest is SHA-256 of the canonical lines, independent of order and spelling.
    lines = []
    for s in sorted(specs, key=lambda x: slugify(x["name"])):
        r = next(x for x in recipients_from_specs([s]))
        header = {"name": r.name, "slug": r.slug, "kind": r.kind, "email": r.email,
                  "pgp_fingerprint": None, "tlp": None, "disabled": None}
        lines.append(json.dumps(header, sort_keys=True) + "\n")
        pairs = sorted({("asn", str(a)) for a in r.asns}
                       | {("cidr", str(c)) for c in r.cidrs}
                       | {("country", c) for c in r.countries}
                       | {("domain", repo.normalize_filter("domain", d)) for d in s.get("domains", [])}
                       | {("report_type", t) for t in r.report_types}
                       | ({("min_severity", r.min_severity)} if r.min_severity != "info" else set()))
        lines += [f"\t{k}\t{v}\n" for k, v in pairs]
    expected = "sha256:" + hashlib.sha256("".join(lines).encode()).hexdigest()
    assert e.details["digest"] == e.object_id == result.digest == expected
    respelled = [dict(s, asns=[a.removeprefix("AS") for a in s.get("asns", [])]) for s in specs[::-1]]
    assert bulk_import.import_digest(respelled) == expected

    # Again: nothing changes, no entry.  A change: one more summary, counting it.
    assert repo.import_recipients(db, respelled).audit_id is None
    assert len(audit.query(db)) == before + 32
    changed = [dict(s) for s in specs]
    changed[0]["cidrs"] = changed[0]["cidrs"][:-2] + ["192.0.2.0/24"]
    changed[1] = dict(changed[1], disabled=True)
    again = repo.import_recipients(db, changed)
    last = audit.query(db, action=bulk_import.IMPORT_ACTION)[-1]
    assert last.id == again.audit_id and last.details["digest"] != expected
    assert last.details["recipients"] == {"listed": 31, "added": 0, "changed": 2, "disabled": 1,
                                          "unchanged": 29}
    assert last.details["filters"] == {"listed": n_filters - 1, "added": 1, "verified": 1,
                                       "removed": 2, "superseded": 0}
    update = audit.query(db, action="recipient.update")[-1]
    assert update.details == {"disabled": [False, True]}


def test_new_recipient_disabled_in_the_file_is_created_disabled(db):
    result = repo.import_recipients(db, [
        {"name": "Gone ISP", "email": "a@gone.example", "cidrs": ["192.0.2.0/24"], "disabled": True},
        {"name": "Live ISP", "email": "a@live.example", "cidrs": ["198.51.100.0/24"]}])
    assert result.added == ["Gone ISP", "Live ISP"]
    assert repo.get_recipient(db, "Gone ISP").disabled
    assert [r.name for r in repo.load_recipients(db)] == ["Live ISP"]
    add = next(e for e in audit.query(db, action="recipient.add") if e.details["name"] == "Gone ISP")
    assert add.details["disabled"] is True
    summary = audit.query(db, action=bulk_import.IMPORT_ACTION)[-1]
    assert summary.details["recipients"]["disabled"] == 1

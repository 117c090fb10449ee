"""Contact overrides: the operator's corrections of RPSL abuse contacts (``herald contacts override``).

An override names a network (CIDR) or an ASN and either another mailbox, or none: a
*suppression* (the RIR's answer is dropped; nothing is sent).  The mailbox replaces the RPSL
answer as a whole: an ``abuse-mailbox`` list (``a@x, b@x``) overridden by ``desk@y`` is sent to
``desk@y`` only.  The override's mailbox may itself list several addresses (stored as
``a@x, b@y``, like the import writes them).  Precedence, applied by
:func:`apply_overrides` on the result of :func:`herald.contacts.lookup.lookup_contacts`:

1. the most specific network override holding the address (equal prefixes: the newest wins);
2. else an ASN override for the event's ASN (several: the newest wins);
3. else the RPSL answer.

Network overrides are matched with the enrichment range machinery
(:meth:`herald.enrich.iprange.RangeTable.from_prefixes`: longest prefix wins), ASNs with
``searchsorted``; nothing loops over events in Python.  Adding and removing are audited
(``contact_override.add`` / ``contact_override.remove``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from herald.contacts.values import split_mailbox
from herald.enrich.iprange import RangeTable
from herald.errors import HeraldError
from herald.ipaddr import ParsedIPs
from herald.store.db import ContactOverrideRow, Database, utcnow


#: Longest mailbox text an override stores (``contact_overrides.mailbox``, text since migration
#: c005): room for a list of some hundred addresses (RFC 5321 section 4.5.3.1.8: a server takes at
#: least 100 recipients per message), a bound on what one form field stores.
MAX_MAILBOX = 8000


class OverrideError(HeraldError):
    """An invalid override (no network or ASN, bad CIDR or mailbox, no reason) or an unknown id."""


@dataclass(frozen=True)
class ContactOverride:
    """One override.

    Attributes:
        id: its number (newer overrides have higher ids); network: canonical CIDR or ``None``;
        asn: or ``None``; mailbox: the replacement, ``None`` to suppress; reason, created_by;
        created_at: aware UTC datetime.
    """

    id: int
    network: str | None
    asn: int | None
    mailbox: str | None
    reason: str
    created_by: str
    created_at: datetime

    @property
    def label(self) -> str:
        """``override #3 (network 192.0.2.0/24)`` / ``override #4 (AS64496)``."""
        what = f"network {self.network}" if self.network else f"AS{self.asn}"
        return f"override #{self.id} ({what})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def _of(r: ContactOverrideRow) -> ContactOverride:
    return ContactOverride(r.id, r.network, r.asn, r.mailbox, r.reason, r.created_by, r.created_at)


def add_override(db: Database, *, reason: str, actor: str, network: str | None = None,
                 asn: int | None = None, mailbox: str | None = None) -> ContactOverride:
    """Store an override (audited).  ``mailbox=None`` suppresses the RPSL answer.

    ``mailbox`` is one address or several separated by commas (``a@x.example, b@y.example``);
    domains are lower-cased and the list is stored joined with ``, ``.

    Raises:
        OverrideError: neither or both of network and ASN, a bad CIDR, ASN or mailbox (each
            address of a list is checked), or no reason.
    """
    if (network is None) == (asn is None):
        raise OverrideError("an override needs a network or an ASN (one of them)")
    if not reason or not reason.strip():
        raise OverrideError("an override needs a reason")
    if network is not None:
        try:
            network = str(ipaddress.ip_network(network.strip(), strict=False))
        except ValueError:
            raise OverrideError(f"{network!r} is not a CIDR prefix") from None
    if asn is not None and not 0 <= int(asn) < (1 << 32):
        raise OverrideError(f"{asn} is not an ASN")
    if mailbox is not None:
        addresses = []
        for address in split_mailbox(mailbox) or [mailbox.strip()]:
            local, at, domain = address.rpartition("@")
            if not at or not local or "." not in domain or any(c.isspace() for c in domain):
                raise OverrideError(f"{address!r} is not an e-mail address")
            addresses.append(f"{local}@{domain.lower()}")
        mailbox = ", ".join(dict.fromkeys(addresses))
        if len(mailbox) > MAX_MAILBOX:
            raise OverrideError(f"the mailbox list is longer than {MAX_MAILBOX} characters")
    from herald.store import audit

    with db.session() as s:
        row = ContactOverrideRow(network=network, asn=asn, mailbox=mailbox, reason=reason.strip(),
                                 created_by=actor, created_at=utcnow())
        s.add(row)
        s.flush()
        o = _of(row)
        audit.record(s, actor, "contact_override.add", "contact_override", row.id, o.reason,
                     details={"network": network, "asn": asn, "mailbox": mailbox})
    return o


def list_overrides(db: Database) -> list[ContactOverride]:
    """All overrides, oldest first."""
    with db.session() as s:
        return [_of(r) for r in s.scalars(sa.select(ContactOverrideRow).order_by(ContactOverrideRow.id))]


def remove_override(db: Database, override_id: int, actor: str, reason: str | None = None) -> ContactOverride:
    """Delete an override (audited, with what it was).

    Raises:
        OverrideError: no override with that id.
    """
    from herald.store import audit

    with db.session() as s:
        row = s.get(ContactOverrideRow, override_id)
        if row is None:
            raise OverrideError(f"no contact override {override_id}")
        o = _of(row)
        s.delete(row)
        audit.record(s, actor, "contact_override.remove", "contact_override", override_id, reason,
                     details=o.to_dict())
    return o


def apply_overrides(result: pa.Table, ips: ParsedIPs, overrides: list[ContactOverride],
                    asn: np.ndarray | None = None) -> pa.Table:
    """Apply overrides to a :func:`herald.contacts.lookup.lookup_contacts` result.

    Args:
        result: N rows (``mailbox``, ``source``, ``role``, ``via``, ...).
        ips: the same N parsed addresses.
        overrides: e.g. :func:`list_overrides`.
        asn: optional ``int64[N]`` ASNs (-1 unknown).

    Returns:
        The table with, where an override applies, ``mailbox`` replaced (null for a
        suppression), ``source`` the override's :attr:`ContactOverride.label`, ``role`` null and
        ``via`` ``"override"`` or ``"suppressed"``.
    """
    n = result.num_rows
    if not overrides or n == 0:
        return result
    ordered = sorted(overrides, key=lambda o: o.id)
    which = np.full(n, -1, dtype=np.int64)
    nets = [i for i, o in enumerate(ordered) if o.network]
    if nets:
        table = RangeTable.from_prefixes([ordered[i].network for i in nets], nets)
        which = table.lookup(ips)
    by_asn = {ordered[i].asn: i for i in range(len(ordered)) if ordered[i].asn is not None}
    if by_asn and asn is not None:
        keys = np.array(sorted(by_asn), dtype=np.int64)
        vals = np.array([by_asn[k] for k in keys], dtype=np.int64)
        a = np.asarray(asn, dtype=np.int64)
        pos = np.minimum(np.searchsorted(keys, a), len(keys) - 1)
        hit = (which < 0) & (keys[pos] == a) & (ips.version > 0)
        which = np.where(hit, vals[pos], which)
    applied = which >= 0
    if not applied.any():
        return result
    idx = pa.array(np.where(applied, which, 0))
    mask = pa.array(applied)
    mail = pa.array([o.mailbox for o in ordered], pa.string()).take(idx)
    label = pa.array([o.label for o in ordered], pa.string()).take(idx)
    via = pa.array(["override" if o.mailbox else "suppressed" for o in ordered], pa.string()).take(idx)
    cols = {
        "mailbox": pc.if_else(mask, mail, result.column("mailbox")),
        "source": pc.if_else(mask, label, result.column("source")),
        "role": pc.if_else(mask, pa.nulls(n, pa.string()), result.column("role")),
        "via": pc.if_else(mask, via, result.column("via")),
    }
    for name, col in cols.items():
        result = result.set_column(result.column_names.index(name), name, col)
    return result

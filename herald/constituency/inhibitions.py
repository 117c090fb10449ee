"""Inhibitions: operator rules that stop matching events from being reported (``herald inhibitions``).

An inhibition matches an event when *every* criterion it has matches (at least one is required):

- ``network``: a CIDR prefix (``192.0.2.0/24``, ``2001:db8::/32``) holding the event's address
  (the ``src_ip`` column, else ``ip``);
- ``asn``: the event's ASN (``src_asn``, else ``asn``);
- ``report_type``: the report type of the table (e.g. ``scan_http``);
- ``tag``: one of the event's tags (the ``tag`` column split at ``;`` and ``,``, case-insensitive).

It applies to one recipient or, with no recipient, to everyone; and it is in force on a day unless
its ``expires_at`` (UTC) is at or before 00:00 UTC of that day.  Adding and removing are audited
(``inhibition.add`` / ``inhibition.remove``).

:func:`inhibited_mask` is the vectorized check the run will call (the lead wires it into the
pipeline): numpy comparisons over the whole table, one pass per inhibition in force (operators keep
tens, not millions, of them).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from herald.enrich.iprange import parse_prefixes
from herald.errors import HeraldError
from herald.ipaddr import parse_ips
from herald.store.db import Database, InhibitionRow, RecipientRow, utcnow


class InhibitionError(HeraldError):
    """An invalid inhibition (no criterion, bad CIDR, unknown recipient) or an unknown id."""


@dataclass(frozen=True)
class Inhibition:
    """One inhibition, as stored.

    Attributes:
        id: its number; network: canonical CIDR text or ``None``; asn, report_type, tag: or
        ``None``; recipient: recipient name, ``None`` for everyone; reason, created_by: text;
        created_at, expires_at: aware UTC datetimes (``expires_at`` ``None``: never expires).
    """

    id: int
    network: str | None
    asn: int | None
    report_type: str | None
    tag: str | None
    recipient: str | None
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None

    def in_force(self, day: date | str) -> bool:
        """Whether the inhibition applies to events of ``day`` (a UTC date)."""
        d = date.fromisoformat(day) if isinstance(day, str) else day
        return self.expires_at is None or self.expires_at > datetime.combine(d, time(0), timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (datetimes as ISO 8601 text)."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in self.__dict__.items()}


def _of(row: InhibitionRow, recipient: str | None) -> Inhibition:
    return Inhibition(row.id, row.network, row.asn, row.report_type, row.tag, recipient, row.reason,
                      row.created_by, row.created_at, row.expires_at)


def add_inhibition(db: Database, *, reason: str, actor: str, network: str | None = None,
                   asn: int | None = None, report_type: str | None = None, tag: str | None = None,
                   recipient: str | None = None, expires_at: datetime | None = None) -> Inhibition:
    """Store a new inhibition (audited as ``inhibition.add``).

    Args:
        reason: why (required, shown in listings and the audit log).
        actor: who (audit log).
        network: CIDR prefix; host bits are cleared (``192.0.2.7/24`` is ``192.0.2.0/24``).
        asn, report_type, tag: further criteria.
        recipient: a recipient's name; ``None`` for everyone.
        expires_at: aware datetime (converted to UTC), or ``None`` for no expiry.

    Raises:
        InhibitionError: no criterion, an invalid CIDR or ASN, an empty reason, a naive
            ``expires_at``, or an unknown recipient.
    """
    if network is None and asn is None and not report_type and not tag:
        raise InhibitionError("an inhibition needs a network, an ASN, a report type or a tag")
    if not reason or not reason.strip():
        raise InhibitionError("an inhibition needs a reason")
    if network is not None:
        try:
            network = str(ipaddress.ip_network(network.strip(), strict=False))
        except ValueError:
            raise InhibitionError(f"{network!r} is not a CIDR prefix") from None
    if asn is not None and not 0 <= int(asn) < (1 << 32):
        raise InhibitionError(f"{asn} is not an ASN")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InhibitionError("expires_at must be timezone-aware (UTC)")
        expires_at = expires_at.astimezone(timezone.utc)
    from herald.store import audit

    with db.session() as s:
        rid = None
        if recipient is not None:
            rid = s.scalars(sa.select(RecipientRow.id).where(RecipientRow.name == recipient)).one_or_none()
            if rid is None:
                raise InhibitionError(f"no recipient named {recipient!r}")
        row = InhibitionRow(network=network, asn=asn, report_type=report_type or None, tag=tag or None,
                            recipient_id=rid, reason=reason.strip(), created_by=actor,
                            created_at=utcnow(), expires_at=expires_at)
        s.add(row)
        s.flush()
        inh = _of(row, recipient)
        audit.record(s, actor, "inhibition.add", "inhibition", row.id, reason.strip(),
                     details={k: v for k, v in inh.to_dict().items() if k not in ("reason", "created_by")})
    return inh


def list_inhibitions(db: Database, day: date | str | None = None) -> list[Inhibition]:
    """All inhibitions by id, or only those in force on ``day`` (UTC date)."""
    with db.session() as s:
        rows = s.execute(sa.select(InhibitionRow, RecipientRow.name)
                         .outerjoin(RecipientRow, InhibitionRow.recipient_id == RecipientRow.id)
                         .order_by(InhibitionRow.id)).all()
        out = [_of(r, name) for r, name in rows]
    return out if day is None else [i for i in out if i.in_force(day)]


def remove_inhibition(db: Database, inhibition_id: int, actor: str, reason: str | None = None) -> Inhibition:
    """Delete an inhibition (audited as ``inhibition.remove``, with what it was).

    Raises:
        InhibitionError: no inhibition with that id.
    """
    from herald.store import audit

    with db.session() as s:
        row = s.get(InhibitionRow, inhibition_id)
        if row is None:
            raise InhibitionError(f"no inhibition {inhibition_id}")
        name = s.get(RecipientRow, row.recipient_id).name if row.recipient_id else None
        inh = _of(row, name)
        s.delete(row)
        audit.record(s, actor, "inhibition.remove", "inhibition", inhibition_id, reason,
                     details=inh.to_dict())
    return inh


def _column(table: pa.Table, names: tuple[str, ...]):
    for n in names:
        if n in table.column_names:
            return table.column(n)
    return None


def inhibited_mask(table: pa.Table, inhibitions: list[Inhibition], day: date | str,
                   report_type: str | None = None, recipient: str | None = None) -> np.ndarray:
    """Which events of a table are inhibited.

    Args:
        table: N events of one report type; columns used when present: ``src_ip``/``ip``
            (address text), ``src_asn``/``asn`` (integers), ``tag`` (text).
        inhibitions: e.g. :func:`list_inhibitions`; those not in force on ``day`` are ignored.
        day: the report day (UTC date or ``YYYY-MM-DD``).
        report_type: the table's report type; inhibitions with a report type match only it.
        recipient: the recipient being reported to; inhibitions for another recipient are
            ignored.  ``None``: only inhibitions for everyone apply.

    Returns:
        ``bool[N]``: True where at least one inhibition in force matches every one of its
        criteria.  An inhibition whose criterion needs a column the table lacks matches nothing.
    """
    n = table.num_rows
    out = np.zeros(n, dtype=bool)
    active = [i for i in inhibitions if i.in_force(day)
              and (i.recipient is None or i.recipient == recipient)
              and (i.report_type is None or i.report_type == report_type)]
    if not active or n == 0:
        return out
    parsed = asn = tags = None
    if any(i.network for i in active):
        col = _column(table, ("src_ip", "ip"))
        parsed = None if col is None else parse_ips(col)
    if any(i.asn is not None for i in active):
        col = _column(table, ("src_asn", "asn"))
        if col is not None:
            asn = pc.fill_null(pc.cast(col, pa.int64(), safe=False), -1).to_numpy(zero_copy_only=False)
    if any(i.tag for i in active):
        col = _column(table, ("tag",))
        if col is not None:
            tags = pc.utf8_lower(pc.fill_null(pc.cast(col, pa.string()), ""))
    for inh in active:
        m = np.ones(n, dtype=bool)
        if inh.network:
            if parsed is None:
                continue
            version, sh, sl, eh, el = parse_prefixes([inh.network])
            if version[0] == 4:
                m &= (parsed.version == 4) & (parsed.v4 >= sl[0]) & (parsed.v4 <= el[0])
            else:
                hi, lo = parsed.v6_hi, parsed.v6_lo
                ge = (hi > sh[0]) | ((hi == sh[0]) & (lo >= sl[0]))
                le = (hi < eh[0]) | ((hi == eh[0]) & (lo <= el[0]))
                m &= (parsed.version == 6) & ge & le
        if inh.asn is not None:
            if asn is None:
                continue
            m &= asn == inh.asn
        if inh.tag:
            if tags is None:
                continue
            pattern = r"(^|[;,])\s*" + re.escape(inh.tag.lower()) + r"\s*($|[;,])"
            m &= np.asarray(pc.match_substring_regex(tags, pattern).to_numpy(zero_copy_only=False), dtype=bool)
        out |= m
    return out

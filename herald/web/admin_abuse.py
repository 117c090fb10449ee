"""The admin console's abuse-contact pages (issue 15): automatic recipients, contact overrides,
inhibitions, bouncing contacts and the imported RPSL data.

Pages (all under ``/admin/abuse/``, role ``admin`` only; every POST carries the session's CSRF
token, checked by :func:`herald.web.portal.page`):

- ``/admin/abuse/`` -- abuse-contact mailboxes that received reports (read from the run ledger:
  reports of recipients of kind :data:`AUTOMATIC_KIND`, or whose file carries the filter part
  :data:`AUTOMATIC_FILTER`), with their volumes, the RPSL objects naming the mailbox, and whether
  the address is bouncing, overridden or suppressed; and the import manifest of the RPSL data.
- ``/admin/abuse/overrides`` -- list, add (network or ASN; another mailbox or suppress; reason)
  and remove contact overrides (:mod:`herald.contacts.overrides`).
- ``/admin/abuse/inhibitions`` -- list, add and remove inhibitions
  (:mod:`herald.constituency.inhibitions`).
- ``/admin/abuse/bounces`` -- bouncing contacts and their reset (:mod:`herald.deliver.bounces`).

Form values are checked here before anything is stored: a wrongly typed or oversized value is
answered ``400`` with a page naming the field (:class:`FieldError`).  The library functions write
the audit log in the same transaction as the change, with the admin's e-mail as actor and the
reason given in the form.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone
from functools import wraps
from typing import Any, Callable, NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from fastapi import APIRouter

from herald.constituency import inhibitions as inh
from herald.constituency import repository
from herald.contacts import overrides as ovr
from herald.contacts.lookup import object_text
from herald.contacts.store import MANIFEST, ContactData, ContactDataError, contacts_dir, load_contacts
from herald.contacts.values import split_mailbox
from herald.deliver import bounces
from herald.errors import ConfigError
from herald.store.db import ContactRow, RecipientRow, ReportRow
from herald.web.pages import Redirect, flash, page, render

router = APIRouter(include_in_schema=False)

#: Recipient kind of the automatic (RPSL abuse-contact) recipients made by the run.
AUTOMATIC_KIND = "abuse_contact"
#: Filter part of their report file names (``<day>-<type>-<slug>-abuse_c.csv``).
AUTOMATIC_FILTER = "abuse_c"
#: Longest accepted values, characters.
MAX_REASON = 2000
MAX_MAILBOX = 320
MAX_TEXT = 100
#: At most this many automatic recipients (most rows first) are listed.
ROWS_SHOWN = 500
#: At most this many RPSL objects are named per mailbox on the page.
OBJECTS_SHOWN = 5


class FieldError(ValueError):
    """A form field with a wrong value; answered 400 with the field's name.

    Attributes:
        field: the form field's name; message: what is wrong (never the engine's text).
    """

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


def checked(fn):
    """Decorator (inside :func:`page`): a :class:`FieldError` becomes a 400 page naming the field."""

    @wraps(fn)
    def inner(request, user, *args):
        try:
            return fn(request, user, *args)
        except FieldError as exc:
            return render(request, "admin_invalid.html", status=400, field=exc.field,
                          message=exc.message)

    return inner


# --- form values ----------------------------------------------------------------------------------

def text(form: dict[str, Any], name: str, limit: int = MAX_TEXT, required: bool = False) -> str | None:
    """The stripped text of form field ``name`` (``None`` when empty).

    Raises:
        FieldError: not text, longer than ``limit`` characters, or empty though ``required``.
    """
    value = form.get(name, "")
    if not isinstance(value, str):
        raise FieldError(name, "must be text")
    value = value.strip()
    if len(value) > limit:
        raise FieldError(name, f"longer than {limit} characters")
    if any(ord(c) < 32 and c not in "\t" for c in value):
        raise FieldError(name, "contains control characters")
    if required and not value:
        raise FieldError(name, "is required")
    return value or None


def reason_of(form: dict[str, Any]) -> str:
    """The required ``reason`` field (at most :data:`MAX_REASON` characters)."""
    return text(form, "reason", MAX_REASON, required=True)


def network_of(form: dict[str, Any], name: str = "network") -> str | None:
    """A CIDR prefix (host bits cleared) or ``None``.

    Raises:
        FieldError: not an IPv4/IPv6 prefix.
    """
    value = text(form, name, 64)
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise FieldError(name, "is not a CIDR prefix (192.0.2.0/24, 2001:db8::/32)") from None


def asn_of(form: dict[str, Any], name: str = "asn") -> int | None:
    """An AS number (``64496`` or ``AS64496``), or ``None``.

    Raises:
        FieldError: not a whole number from 0 to 4294967295.
    """
    value = text(form, name, 16)
    if value is None:
        return None
    digits = value[2:] if value[:2].upper() == "AS" else value
    if not digits.isdigit() or not digits.isascii() or int(digits) >= 1 << 32:
        raise FieldError(name, "is not an AS number (0 to 4294967295)")
    return int(digits)


def mailbox_of(form: dict[str, Any], name: str = "mailbox") -> str | None:
    """An e-mail address, or several separated by commas (an override replaces a whole RPSL
    list and may name a list itself), as ``a@x.example, b@y.example``; or ``None``.

    Raises:
        FieldError: an address that is not ``local@domain.tld`` (or holds ``<>"``).
    """
    value = text(form, name, MAX_MAILBOX)
    if value is None:
        return None
    addresses = split_mailbox(value)
    for address in addresses or [value]:
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain or any(c.isspace() or c in "<>\"," for c in address):
            raise FieldError(name, "is not an e-mail address (or a comma-separated list of them)")
    return ", ".join(addresses)


def expiry_of(form: dict[str, Any], today: date, name: str = "expires") -> datetime | None:
    """An expiry day (``YYYY-MM-DD``, UTC) after ``today``, as 00:00 UTC of that day, or ``None``.

    Raises:
        FieldError: not a date, or not in the future.
    """
    value = text(form, name, 10)
    if value is None:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise FieldError(name, "is not a date (YYYY-MM-DD, UTC)") from None
    if day <= today:
        raise FieldError(name, f"must be after today ({today.isoformat()}, UTC)")
    return datetime.combine(day, time(0), timezone.utc)


def path_id(request, name: str = "id") -> int:
    """An integer path parameter.

    Raises:
        FieldError: not a positive whole number.
    """
    value = request.path_params.get(name, "")
    if not value.isdigit() or not value.isascii() or len(value) > 12:
        raise FieldError(name, "is not a number")
    return int(value)


# --- shared by the pages --------------------------------------------------------------------------

def shown_threshold(st) -> int:
    """The bounce threshold the pages show: ``[abuse_contacts] bounce_threshold``, or the default
    when the configured value is invalid (the page still answers)."""
    try:
        return bounces.bounce_threshold(st.settings)
    except ConfigError:
        return bounces.DEFAULT_THRESHOLD


def remove_by_id(request, user, form, remove: Callable, refused: type[Exception], what: str,
                 label: Callable[[Any], str], back: str) -> NoReturn:
    """A remove form's answer: ``remove(db, id, actor, reason)`` of the id in the path with the
    required reason; flashes ``Removed <label(removed)>.`` or ``No <what> <id>.`` (``refused``
    raised) and redirects to ``back``.

    Raises:
        FieldError: a bad id or reason.
        Redirect: always, when the values are good.
    """
    st = request.app.state.herald
    oid, reason = path_id(request), reason_of(form)
    try:
        done = remove(st.db, oid, user.email, reason)
        flash(request, f"Removed {label(done)}.")
    except refused:
        flash(request, f"No {what} {oid}.")
    raise Redirect(back)


# --- the RPSL data --------------------------------------------------------------------------------

def contact_data(st) -> ContactData | None:
    """The current abuse-contact data (cached per generation), or ``None`` when none is imported
    or it cannot be read."""
    try:
        manifest = json.loads((contacts_dir(st.settings.paths.data) / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    cached = st.extra.get("abuse_contact_data")
    if cached is not None and cached.manifest.get("generation") == manifest.get("generation"):
        return cached
    try:
        data = load_contacts(st.settings.paths.data)
    except ContactDataError:
        return None
    st.extra["abuse_contact_data"] = data
    return data


def objects_by_mailbox(data: ContactData | None, mailboxes: list[str]) -> dict[str, dict[str, Any]]:
    """``{mailbox: {objects: [{text, query}], count, networks: [(family, first, last)], asns:
    [int]}}`` of the RPSL objects
    whose resolved abuse mailbox names one of ``mailboxes`` (lower-case compare), one vectorized
    pass over the networks and aut-nums.  An object names a mailbox when its mailbox list holds
    every address of it: ``abuse@x`` is named by ``abuse@x`` and by ``abuse@x, noc@x``, the list
    ``abuse@x, noc@x`` by objects listing both.  ``query`` prefills the override form for the
    object (``{"network": cidr}`` / ``{"asn": n}``; ``None`` for a range that is not one prefix)."""
    out: dict[str, dict[str, Any]] = {m: {"objects": [], "count": 0, "networks": [], "asns": []}
                                      for m in mailboxes}
    if data is None or not mailboxes:
        return out
    addresses = {m: {a.lower() for a in split_mailbox(m)} or {m.lower()} for m in mailboxes}
    holders: dict[str, list[str]] = {}  # address -> the mailboxes listing it
    for m, addrs in addresses.items():
        for a in addrs:
            holders.setdefault(a, []).append(m)
    wanted = pa.array(sorted(holders), pa.string())

    def named(column) -> list[tuple[int, str]]:
        """``(row, mailbox)`` of each object row naming one of the mailboxes, in row order."""
        col = pc.utf8_lower(pc.fill_null(column.combine_chunks() if isinstance(column, pa.ChunkedArray)
                                         else column, ""))
        parts = pc.utf8_trim_whitespace(pc.list_flatten(pc.split_pattern(col, ",")))
        parents = pc.list_parent_indices(pc.split_pattern(col, ","))
        idx = np.flatnonzero(pc.is_in(parts, value_set=wanted).to_numpy(zero_copy_only=False).astype(bool))
        if not len(idx):
            return []
        hits: dict[int, set[str]] = {}
        for row, part in zip(parents.to_numpy()[idx].tolist(), parts.take(pa.array(idx, pa.int64())).to_pylist()):
            hits.setdefault(row, set()).add(part)
        return [(row, m) for row in sorted(hits)
                for m in sorted({m for a in hits[row] for m in holders[a]}) if addresses[m] <= hits[row]]

    nets = data.networks
    pairs = named(nets.column("mailbox"))
    if pairs:
        take = pa.array([row for row, _ in pairs], pa.int64())
        fam = nets.column("family").take(take).to_numpy()
        fh, fl, lh, ll = (nets.column(c).take(take).to_numpy().tolist()
                          for c in ("first_hi", "first_lo", "last_hi", "last_lo"))
        netnames = nets.column("netname").take(take).to_pylist()
        for k, (_, name) in enumerate(pairs):
            entry = out[name]
            entry["count"] += 1
            f = int(fam[k])
            first = fl[k] if f == 4 else (int(fh[k]) << 64) | int(fl[k])
            last = ll[k] if f == 4 else (int(lh[k]) << 64) | int(ll[k])
            entry["networks"].append((f, int(first), int(last)))
            if len(entry["objects"]) < OBJECTS_SHOWN:
                label = netnames[k]
                cls = ipaddress.IPv4Address if f == 4 else ipaddress.IPv6Address
                cidrs = list(ipaddress.summarize_address_range(cls(int(first)), cls(int(last))))
                entry["objects"].append({
                    "text": object_text(f, int(first), int(last)) + (f" ({label})" if label else ""),
                    "query": {"network": str(cidrs[0])} if len(cidrs) == 1 else None})
    for row, name in named(data.autnums.column("mailbox")):
        entry = out[name]
        asn = int(data.autnums.column("asn")[row].as_py())
        entry["count"] += 1
        entry["asns"].append(asn)
        if len(entry["objects"]) < OBJECTS_SHOWN:
            entry["objects"].append({"text": f"aut-num AS{asn}", "query": {"asn": str(asn)}})
    return out


def override_state(mailbox: str, found: dict[str, Any], overrides: list[ovr.ContactOverride]
                   ) -> list[str]:
    """Labels of the overrides touching ``mailbox``: those whose network overlaps one of its RPSL
    networks or whose ASN is one of its aut-nums (``override #3 (...) -> x@y`` / ``suppressed``),
    and those that send to it (``target of override #4 (...)``)."""
    nets = found.get("networks", [])
    out = []
    for o in overrides:
        hits = False
        if o.network:
            onet = ipaddress.ip_network(o.network)
            lo, hi = int(onet.network_address), int(onet.broadcast_address)
            hits = any(f == onet.version and first <= hi and last >= lo for f, first, last in nets)
        elif o.asn is not None:
            hits = o.asn in found.get("asns", [])
        if hits:
            out.append(f"{o.label}: " + (f"sent to {o.mailbox}" if o.mailbox else "suppressed"))
        if o.mailbox and o.mailbox.lower() == mailbox.lower():
            out.append(f"target of {o.label}")
    return out


# --- automatic recipients -------------------------------------------------------------------------

@dataclass
class AutomaticRecipient:
    """One abuse-contact mailbox that received reports (a row of the page).

    ``bounces``: one entry per address of the mailbox that has counted bounces
    (:func:`herald.deliver.bounces.list_bounces` with ``address`` and ``over``: at or past the
    threshold, so left out of the envelope; the message is held only when every address is).
    """

    recipient: str
    mailbox: str
    reports: int
    rows: int
    last_day: date
    types: list[str]
    objects: list[str] = field(default_factory=list)
    objects_count: int = 0
    bounces: list[dict[str, Any]] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)

    @property
    def addresses(self) -> list[str]:
        """The addresses of :attr:`mailbox` (an RPSL ``abuse-mailbox`` may list several)."""
        return split_mailbox(self.mailbox) or [self.mailbox]


def automatic_recipients(db, limit: int = ROWS_SHOWN) -> tuple[list[AutomaticRecipient], int]:
    """Volumes per automatic recipient from the ledger, summed in the database per (recipient,
    report type): report count, rows, last day and types; the mailbox is the recipient's primary
    contact (else its name).

    Returns:
        ``(the `limit` recipients with the most rows, how many more there are)``.
    """
    automatic = sa.or_(RecipientRow.kind == AUTOMATIC_KIND,
                       ReportRow.path.contains(f"-{AUTOMATIC_FILTER}.", autoescape=True))
    stmt = (sa.select(RecipientRow.name, ContactRow.email, ReportRow.report_type,
                      sa.func.count(ReportRow.id), sa.func.sum(ReportRow.rows),
                      sa.func.max(ReportRow.day))
            .join(RecipientRow, ReportRow.recipient_id == RecipientRow.id)
            .outerjoin(ContactRow, sa.and_(ContactRow.recipient_id == RecipientRow.id,
                                           ContactRow.is_primary))
            .where(automatic)
            .group_by(RecipientRow.name, ContactRow.email, ReportRow.report_type))
    acc: dict[str, AutomaticRecipient] = {}
    with db.session() as s:
        for name, email, rtype, count, rows, last in s.execute(stmt):
            a = acc.get(name)
            if a is None:
                a = acc[name] = AutomaticRecipient(name, email or name, 0, 0, last, [])
            a.reports += int(count)
            a.rows += int(rows or 0)
            a.last_day = max(a.last_day, last)
            a.types.append(rtype)
    ranked = sorted(acc.values(), key=lambda a: (-a.rows, a.mailbox))
    for a in ranked:
        a.types.sort()
    return ranked[:limit], max(0, len(ranked) - limit)


def data_panel(st) -> dict[str, Any] | None:
    """The import manifest with age and warning (``ContactData.info`` on the app clock);
    ``{"damaged": True}`` when a manifest exists but the data cannot be loaded; ``None`` when no
    data is imported."""
    data = contact_data(st)
    if data is None:
        exists = (contacts_dir(st.settings.paths.data) / MANIFEST).exists()
        return {"damaged": True} if exists else None
    return data.info(today=st.clock().astimezone(timezone.utc).date())


@router.get("/admin/abuse/")
@page("admin")
def automatic(request, user):
    """Automatic recipients with volumes, RPSL objects, bounce and override state; the RPSL
    data panel."""
    st = request.app.state.herald
    rows, more = automatic_recipients(st.db)
    data = contact_data(st)
    found = objects_by_mailbox(data, [r.mailbox for r in rows])
    threshold = shown_threshold(st)
    bounced = {b["address"]: b for b in bounces.list_bounces(st.db)}
    overrides = ovr.list_overrides(st.db)
    for r in rows:
        f = found.get(r.mailbox, {})
        r.objects, r.objects_count = f.get("objects", []), f.get("count", 0)
        r.bounces = [dict(bounced[a.lower()], over=bounced[a.lower()]["count"] >= threshold)
                     for a in r.addresses if a.lower() in bounced]
        r.overrides = override_state(r.mailbox, f, overrides)
    return render(request, "admin_abuse.html", rows=rows, more=more, panel=data_panel(st),
                  threshold=threshold)


# --- overrides ------------------------------------------------------------------------------------

@router.get("/admin/abuse/overrides")
@page("admin")
def overrides_page(request, user):
    """Every contact override, oldest first, and the form to add one (``?network=`` or ``?asn=``
    prefills it: links from the automatic-recipients page)."""
    st = request.app.state.herald
    prefill = {}
    for name, parse in (("network", network_of), ("asn", asn_of)):
        try:
            value = parse(dict(request.query_params), name)
        except FieldError:
            value = None  # a bad link prefills nothing
        prefill[name] = "" if value is None else str(value)
    return render(request, "admin_overrides.html", overrides=ovr.list_overrides(st.db),
                  prefill=prefill)


@router.post("/admin/abuse/overrides")
@page("admin", post=True)
@checked
def override_add(request, user, form):
    """Add an override: a network or an ASN; another mailbox, or ``suppress``; a reason."""
    st = request.app.state.herald
    network, asn = network_of(form), asn_of(form)
    if (network is None) == (asn is None):
        raise FieldError("network", "give a network (CIDR) or an ASN, not both or neither")
    suppress = form.get("suppress") in ("on", "1", "true")
    mailbox = mailbox_of(form)
    if suppress and mailbox:
        raise FieldError("mailbox", "leave empty to suppress, or untick suppress")
    if not suppress and not mailbox:
        raise FieldError("mailbox", "is required unless the contact is suppressed")
    reason = reason_of(form)
    try:
        o = ovr.add_override(st.db, reason=reason, actor=user.email, network=network, asn=asn,
                             mailbox=None if suppress else mailbox)
    except ovr.OverrideError:
        raise FieldError("network", "the override was refused; check its values") from None
    flash(request, f"Added {o.label}: " + (f"sent to {o.mailbox}." if o.mailbox else "suppressed."))
    raise Redirect("/admin/abuse/overrides")


@router.post("/admin/abuse/overrides/{id}/remove")
@page("admin", post=True)
@checked
def override_remove(request, user, form):
    """Remove an override (reason required)."""
    remove_by_id(request, user, form, ovr.remove_override, ovr.OverrideError, "contact override",
                 lambda o: o.label, "/admin/abuse/overrides")


# --- inhibitions ----------------------------------------------------------------------------------

@router.get("/admin/abuse/inhibitions")
@page("admin")
def inhibitions_page(request, user):
    """Every inhibition (with whether it is in force today, UTC) and the form to add one."""
    st = request.app.state.herald
    today = st.clock().astimezone(timezone.utc).date()
    items = [(i, i.in_force(today)) for i in inh.list_inhibitions(st.db)]
    return render(request, "admin_inhibitions.html", items=items, today=today,
                  recipients=[r.name for r in repository.list_recipients(st.db)],
                  types=st.registry.names())


@router.post("/admin/abuse/inhibitions")
@page("admin", post=True)
@checked
def inhibition_add(request, user, form):
    """Add an inhibition: any of network, ASN, report type, tag; a recipient or everyone; a
    reason; an optional expiry day (UTC)."""
    st = request.app.state.herald
    network, asn = network_of(form), asn_of(form)
    rtype, tag = text(form, "report_type"), text(form, "tag")
    if rtype is not None and rtype not in st.registry:
        raise FieldError("report_type", "is not a known report type")
    if network is None and asn is None and rtype is None and tag is None:
        raise FieldError("network", "give at least one of network, asn, report_type, tag")
    recipient = text(form, "recipient", 200)
    if recipient is not None and recipient not in {r.name for r in repository.list_recipients(st.db)}:
        raise FieldError("recipient", "is not a recipient (leave empty for everyone)")
    expires = expiry_of(form, st.clock().astimezone(timezone.utc).date())
    reason = reason_of(form)
    try:
        i = inh.add_inhibition(st.db, reason=reason, actor=user.email, network=network, asn=asn,
                               report_type=rtype, tag=tag, recipient=recipient, expires_at=expires)
    except inh.InhibitionError:
        raise FieldError("network", "the inhibition was refused; check its values") from None
    flash(request, f"Added inhibition {i.id}.")
    raise Redirect("/admin/abuse/inhibitions")


@router.post("/admin/abuse/inhibitions/{id}/remove")
@page("admin", post=True)
@checked
def inhibition_remove(request, user, form):
    """Remove an inhibition (reason required)."""
    remove_by_id(request, user, form, inh.remove_inhibition, inh.InhibitionError, "inhibition",
                 lambda i: f"inhibition {i.id}", "/admin/abuse/inhibitions")


# --- bounces --------------------------------------------------------------------------------------

@router.get("/admin/abuse/bounces")
@page("admin")
def bounces_page(request, user):
    """Every address with counted bounces, most first, and whether it is held (bouncing)."""
    st = request.app.state.herald
    threshold = shown_threshold(st)
    return render(request, "admin_bounces.html", rows=bounces.list_bounces(st.db),
                  threshold=threshold)


@router.post("/admin/abuse/bounces/reset")
@page("admin", post=True)
@checked
def bounces_reset(request, user, form):
    """Forget an address's bounces and queue its held messages again (reason required)."""
    st = request.app.state.herald
    # Any recorded address can be reset, even one a stricter mailbox check would refuse.
    address = text(form, "address", MAX_MAILBOX, required=True)
    if "@" not in address:
        raise FieldError("address", "is not an e-mail address")
    reason = reason_of(form)
    try:
        ids = bounces.reset_bounces(st.db, address, user.email, reason)
        flash(request, f"Reset {address}; {len(ids)} held message(s) queued again.")
    except bounces.BounceError:
        flash(request, f"{address} has no recorded bounces.")
    raise Redirect("/admin/abuse/bounces")

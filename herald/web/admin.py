"""The admin console: recipients, pending filter requests with evidence, approve/reject with a
reason, the audit log and the run ledger.

Only users with role ``admin`` reach these pages.  Every change goes through
:mod:`herald.constituency.repository` or :mod:`herald.accounts.apikeys`, which write the audit log in the
same transaction, with the admin's e-mail as actor.  The abuse-contact pages (automatic
recipients, contact overrides, inhibitions, bounces, RPSL data) are in
:mod:`herald.web.admin_abuse`.
"""

from __future__ import annotations

import ipaddress
import json
from functools import lru_cache
from typing import Any

import numpy as np
import sqlalchemy as sa
from fastapi import APIRouter

from herald.constituency import repository
from herald.errors import ConfigError
from herald.store import audit
from herald.store.db import NotFound, RunRow
from herald.web import admin_abuse
from herald.web.pages import Redirect, flash, page, render

router = APIRouter(include_in_schema=False)
#: The abuse-contact pages (/admin/abuse/...) are part of the console.
router.include_router(admin_abuse.router)


@lru_cache(maxsize=1)
def _ipdata():
    """The bundled IP data, or ``None`` when it is not available."""
    try:
        from herald.enrich.ipdata import IPData

        return IPData.default()
    except Exception:  # noqa: BLE001 - evidence is best effort; the page must still render
        return None


def as_name(asn: int) -> str | None:
    """The AS name of ``asn`` in the enrichment data, or ``None``."""
    data = _ipdata()
    if data is None or not len(data.asns):
        return None
    i = int(np.searchsorted(data.asns, asn))
    if i < len(data.asns) and int(data.asns[i]) == asn:
        return data.as_names[i].as_py()
    return None


def lookup_addresses(addresses: list[str]) -> list[dict[str, Any]]:
    """``[{ip, asn, as_name, cc}]`` of each address in the enrichment data (empty if none)."""
    data = _ipdata()
    if data is None:
        return []
    table = data.lookup(addresses)
    return [dict(ip=a, **row) for a, row in zip(addresses, table.to_pylist())]


def evidence(f: repository.FilterInfo, recipient: repository.RecipientInfo,
             conflicts: list[repository.Conflict]) -> dict[str, Any]:
    """What an admin needs to judge a filter request: the claim, what the enrichment data says
    about it (AS name; origin AS and country of a network's first and last address), the
    contact's e-mail domain, and conflicting claims of other network owners."""
    ev: dict[str, Any] = {"claim": f"{f.kind} {f.value}",
                          "email_domain": (recipient.email or "").rpartition("@")[2] or None,
                          "as_name": None, "origins": [], "conflicts": []}
    if f.kind == "asn":
        ev["as_name"] = as_name(int(f.value))
    elif f.kind == "cidr":
        net = ipaddress.ip_network(f.value)
        ev["origins"] = lookup_addresses(sorted({str(net.network_address),
                                                 str(net.broadcast_address)}))
        names = {o.get("as_name") for o in ev["origins"] if o.get("as_name")}
        ev["as_name"] = ", ".join(sorted(names)) or None
    ev["conflicts"] = [c.detail for c in conflicts if any(cl.filter_id == f.id for cl in c.claims)]
    return ev


@router.get("/admin/")
@page("admin")
def recipients(request, user):
    """Every recipient with its filters."""
    st = request.app.state.herald
    return render(request, "admin_recipients.html",
                  recipients=repository.list_recipients(st.db))


@router.get("/admin/filters")
@page("admin")
def filters(request, user):
    """Pending filter requests with evidence."""
    st = request.app.state.herald
    pending = repository.list_filters(st.db, "pending")
    infos = {r.id: r for r in repository.list_recipients(st.db)}
    conflicts = repository.conflicts(st.db)
    rows = [(f, infos[f.recipient_id], evidence(f, infos[f.recipient_id], conflicts))
            for f in pending]
    return render(request, "admin_filters.html", rows=rows)


@router.post("/admin/filters/{filter_id}/{action}")
@page("admin", post=True)
def decide(request, user, form):
    """Approve (verify) or reject a filter request, with the admin's reason (audited)."""
    st = request.app.state.herald
    action = request.path_params["action"]
    reason = str(form.get("reason", "")).strip()[:2000]
    try:
        fid = int(request.path_params["filter_id"])
        if action == "approve":
            f = repository.verify_filter(st.db, fid, user.email, reason or "approved in console")
        elif action == "reject":
            f = repository.reject_filter(st.db, fid, user.email, reason)
        else:
            raise NotFound(f"no action {action!r}")
        flash(request, f"Filter {f.id} ({f.kind} {f.value} of {f.recipient}): {f.state}.")
    except (NotFound, ConfigError, ValueError) as exc:
        flash(request, str(exc))
    raise Redirect("/admin/filters")


@router.get("/admin/audit")
@page("admin")
def audit_log(request, user):
    """The newest audit entries."""
    st = request.app.state.herald
    entries = list(reversed(audit.query(st.db, limit=300)))
    return render(request, "admin_audit.html", entries=entries)


@router.get("/admin/runs")
@page("admin")
def runs(request, user):
    """The run ledger (database) and the run summaries of the data directory."""
    st = request.app.state.herald
    with st.db.session() as s:
        ledger = [dict(id=r.id, day=r.day.isoformat(), status=r.status, started=r.started_at,
                       finished=r.finished_at, counts=r.counts, error=r.error)
                  for r in s.scalars(sa.select(RunRow).order_by(RunRow.id.desc()).limit(200))]
    summaries = []
    for day in st.catalog.run_days()[:60]:
        try:
            doc = json.loads((st.settings.paths.data / "runs" / f"{day}.json").read_text())
        except (OSError, ValueError):
            continue
        summaries.append({"day": day, "status": doc.get("status"), "rows_in": doc.get("rows_in"),
                          "rows_reported": doc.get("rows_reported"),
                          "reports": len(doc.get("reports", [])),
                          "errors": len(doc.get("errors", []))})
    return render(request, "admin_runs.html", ledger=ledger, summaries=summaries)

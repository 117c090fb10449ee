"""The recipient portal: login (Argon2id, optional TOTP, lockout), reports by day and type,
downloads, a 30-day chart of event counts, API keys and filter requests.

Server-rendered Jinja2 pages.  Sessions are signed cookies (``SameSite=Strict``) checked against
the server on every request: the user's session version (:mod:`herald.accounts.users`; logout changes
it, so a copied cookie dies with the logout), an idle limit (``[web] session_max_age`` seconds
since the last request) and an absolute limit (``[web] session_absolute`` seconds since login),
both measured on the app clock (UTC).  Every form that changes something carries a per-session
CSRF token, compared in constant time.  A recipient user only ever reaches its own recipient's
reports, keys and filters.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import date, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from herald.accounts import apikeys, users
from herald.constituency import repository
from herald.errors import ConfigError
from herald.store.db import NotFound
from herald.web.catalog import DAY_RE
from herald.web.common import ApiError, check_ip_rate, client_ip, csv_file, recipient_row
from herald.web.pages import (
    Forbidden, Redirect, current_user, flash, form_checked, page, render, stash_get, stash_pop,
    stash_put,
)
from herald.web.state import state_of

router = APIRouter(include_in_schema=False)

#: Days with reports listed on the portal's front page (``?all=1`` lists every day).
DAYS_SHOWN = 14

#: Filter kinds a recipient may request in the portal.
REQUESTABLE = ("asn", "cidr", "country")

#: Most active API keys, and most pending filter requests, a recipient may hold through the
#: portal: without a bound one login could fill the database and the admin console (whose filter
#: review computes evidence and conflicts for every pending request) and spread its API calls
#: over many keys to escape the per-key rate limit.
MAX_PORTAL_KEYS = 20
MAX_PENDING_REQUESTS = 20


# --- login ----------------------------------------------------------------------------------------

@router.get("/")
def root(request: Request):
    """Home: the portal or the admin console, by role."""
    user = current_user(request)
    if user is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/admin/" if user.role == "admin" else "/portal/", status_code=303)


@router.get("/login")
def login_form(request: Request):
    """The login form."""
    return render(request, "login.html", user=None, need_totp=False, email="")


@router.post("/login")
async def login(request: Request):
    """Check e-mail, password and (when enabled) TOTP code; start a fresh session."""
    st = state_of(request)
    try:
        check_ip_rate(request)
        form = await form_checked(request)
    except ApiError as exc:
        return HTMLResponse(f"<h1>{exc.message}</h1>", status_code=429, headers=exc.headers)
    except Forbidden:
        return HTMLResponse("<h1>403 Forbidden: bad or missing CSRF token</h1>", status_code=403)
    email = str(form.get("email", ""))
    try:
        user = await run_in_threadpool(
            users.authenticate, st.db, st.server_key, email, str(form.get("password", "")),
            str(form.get("totp", "")) or None, client_ip(request), st.clock())
    except users.LoginError as exc:
        if exc.reason == "busy":
            return HTMLResponse("<h1>Too many logins at once; try again in a moment.</h1>",
                                status_code=503, headers={"Retry-After": "1"})
        need_totp = exc.reason in ("totp_required", "totp_invalid")
        msg = {"totp_required": "Enter the code from your authenticator app.",
               "totp_invalid": "Wrong authenticator code."}.get(
            exc.reason, "Wrong e-mail or password, or the account is locked for a while.")
        return render(request, "login.html", status=401, user=None, error=msg,
                      need_totp=need_totp, email=email)
    # New session on login: a session fixed before login cannot be reused (fixation).
    request.session.clear()
    request.session["uid"] = user.id
    request.session["sv"] = user.session_version
    request.session["iat"] = request.session["seen"] = int(st.clock().timestamp())
    request.session["csrf"] = secrets.token_urlsafe(32)
    return RedirectResponse("/admin/" if user.role == "admin" else "/portal/", status_code=303)


@router.post("/logout")
@page(post=True)
def logout(request, user, form):
    """End the session on the server too: every earlier cookie of the user is refused."""
    users.end_sessions(state_of(request).db, user.id, user.email)
    request.session.clear()
    raise Redirect("/login")


# --- recipient pages ------------------------------------------------------------------------------

def _recipient_row(request: Request, user: users.User):
    if user.recipient_id is None:
        raise Redirect("/admin/")
    row = recipient_row(state_of(request), user.recipient_id)
    if row is None:
        request.session.clear()
        raise Redirect("/login")
    return row


def chart_svg(counts: dict[str, dict[str, int]], days: list[str]) -> dict[str, Any]:
    """Geometry of a stacked bar chart: ``{bars, legend, max, width, height}`` for the
    template (one bar per day, one colour per report type)."""
    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf"]
    types = sorted({t for d in counts.values() for t in d})
    colour = {t: palette[i % len(palette)] for i, t in enumerate(types)}
    top = max([sum(counts.get(d, {}).values()) for d in days] + [1])
    width, height, bw = 24 * len(days) + 60, 220, 18
    bars = []
    for i, d in enumerate(days):
        y = height - 30
        for t in types:
            n = counts.get(d, {}).get(t, 0)
            if not n:
                continue
            h = max(1, round(n / top * (height - 50)))
            y -= h
            bars.append({"x": 50 + i * 24, "y": y, "w": bw, "h": h, "colour": colour[t],
                         "title": f"{d} {t}: {n}"})
    labels = [{"x": 50 + i * 24, "text": d[5:]} for i, d in enumerate(days) if i % 5 == 0]
    return {"bars": bars, "legend": [(t, colour[t]) for t in types], "max": top,
            "width": width, "height": height, "labels": labels, "types": types}


@router.get("/portal/")
@page("recipient")
def dashboard(request, user):
    """Reports by day and type (the newest :data:`DAYS_SHOWN` days with reports; ``?all=1``
    for every day), and the 30-day chart."""
    st = state_of(request)
    row = _recipient_row(request, user)
    entries = st.catalog.reports(row)
    by_day: dict[str, list] = defaultdict(list)
    for e in entries:
        by_day[e.day].append(e)
    show_all = request.query_params.get("all") == "1"
    hidden = 0 if show_all else max(0, len(by_day) - DAYS_SHOWN)
    if hidden:
        by_day = defaultdict(list, dict(list(by_day.items())[:DAYS_SHOWN]))
    newest = max([st.clock().astimezone(timezone.utc).date()] + [date.fromisoformat(e.day) for e in entries])
    days = [(newest - timedelta(days=29 - i)).isoformat() for i in range(30)]
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for e in entries:
        if e.day in days:
            counts[e.day][e.type] = counts[e.day].get(e.type, 0) + e.rows
    return render(request, "portal.html", recipient=row, by_day=dict(by_day),
                  chart=chart_svg(counts, days), days=days, counts=counts, hidden=hidden)


@router.get("/portal/download/{day}/{file}")
@page("recipient")
def download(request, user):
    """One of the recipient's report files."""
    st = state_of(request)
    day = request.path_params["day"]
    file = request.path_params["file"]
    row = _recipient_row(request, user)
    entry = st.catalog.report_file(row, day, file) if DAY_RE.match(day) else None
    if entry is None:
        return HTMLResponse("<h1>404 Not Found</h1>", status_code=404)
    return csv_file(entry)


def within_limit(request, items, state: str, limit: int, message: str, back: str) -> None:
    """Refuse a request that would pass a recipient's limit: when ``limit`` of ``items`` (its API
    keys, its filters) are already in ``state``, flash ``message`` and redirect to ``back``.

    Raises:
        Redirect: the limit is reached.
    """
    if sum(i.state == state for i in items) >= limit:
        flash(request, message)
        raise Redirect(back)


@router.get("/portal/keys")
@page("recipient")
def keys_page(request, user):
    """The recipient's API keys."""
    st = state_of(request)
    row = _recipient_row(request, user)
    new_secret = stash_pop(request, "new_secret")
    return render(request, "keys.html", recipient=row, keys=apikeys.list_keys(st.db, row.id),
                  new_secret=new_secret)


@router.post("/portal/keys/create")
@page("recipient", post=True)
def keys_create(request, user, form):
    """Create a key; its secret is shown once."""
    st = state_of(request)
    row = _recipient_row(request, user)
    within_limit(request, apikeys.list_keys(st.db, row.id), "active", MAX_PORTAL_KEYS,
                 f"At most {MAX_PORTAL_KEYS} active keys: revoke one first.", "/portal/keys")
    new = apikeys.create_key(st.db, st.server_key, row.id, user.email,
                             label=str(form.get("label", ""))[:200] or None,
                             replay_protection=form.get("replay") == "on")
    stash_put(request, "new_secret", {"key_id": new.key_id, "secret": new.secret})
    raise Redirect("/portal/keys")


@router.post("/portal/keys/{key_id}/{action}")
@page("recipient", post=True)
def keys_action(request, user, form):
    """Revoke or rotate one of the recipient's keys."""
    st = state_of(request)
    row = _recipient_row(request, user)
    key_id, action = request.path_params["key_id"], request.path_params["action"]
    try:
        if action == "revoke":
            apikeys.revoke_key(st.db, key_id, user.email, "revoked in the portal", row.id)
            flash(request, f"Key {key_id} revoked.")
        elif action == "rotate":
            new = apikeys.rotate_key(st.db, st.server_key, key_id, user.email,
                                     timedelta(days=st.config.rotation_grace_days), row.id)
            stash_put(request, "new_secret", {"key_id": new.key_id, "secret": new.secret})
        else:
            return HTMLResponse("<h1>404 Not Found</h1>", status_code=404)
    except (NotFound, ConfigError) as exc:
        flash(request, str(exc))
    raise Redirect("/portal/keys")


@router.get("/portal/filters")
@page("recipient")
def filters_page(request, user):
    """The recipient's filters (verified, pending, rejected) and the request form."""
    st = state_of(request)
    row = _recipient_row(request, user)
    info = repository.get_recipient(st.db, row.id)
    return render(request, "filters.html", recipient=row, filters=info.filters,
                  kinds=REQUESTABLE)


@router.post("/portal/filters")
@page("recipient", post=True)
def filters_request(request, user, form):
    """Request a filter: stored ``pending`` until an admin verifies it."""
    st = state_of(request)
    row = _recipient_row(request, user)
    kind = str(form.get("kind", ""))
    if kind not in REQUESTABLE:
        flash(request, f"Filter kind must be one of {', '.join(REQUESTABLE)}.")
        raise Redirect("/portal/filters")
    within_limit(request, repository.get_recipient(st.db, row.id).filters, "pending",
                 MAX_PENDING_REQUESTS,
                 f"At most {MAX_PENDING_REQUESTS} pending requests: wait for a decision.",
                 "/portal/filters")
    try:
        f = repository.add_filter(st.db, row.id, kind, str(form.get("value", "")), user.email,
                                  reason=str(form.get("reason", ""))[:2000] or None)
        flash(request, f"Requested {f.kind} {f.value}: {f.state}.")
    except ConfigError as exc:
        flash(request, str(exc))
    raise Redirect("/portal/filters")


# --- account --------------------------------------------------------------------------------------

@router.get("/account")
@page()
def account(request, user):
    """Account page: TOTP set-up."""
    secret = stash_get(request, "totp_setup")
    if not user.totp_enabled and not secret:
        secret = users.new_totp_secret()
        stash_put(request, "totp_setup", secret)
    uri = users.totp_uri(secret, user.email) if secret and not user.totp_enabled else None
    return render(request, "account.html", totp_secret=None if user.totp_enabled else secret,
                  totp_uri=uri)


@router.post("/account/totp")
@page(post=True)
def account_totp(request, user, form):
    """Turn TOTP on once a code from the authenticator proves the secret was copied."""
    st = state_of(request)
    secret = stash_get(request, "totp_setup")
    if secret and users.enable_totp(st.db, st.server_key, user.id, secret,
                                    str(form.get("code", "")), st.clock()):
        stash_pop(request, "totp_setup")
        fresh = users.get_user(st.db, user.id)
        request.session["sv"] = fresh.session_version  # this session stays; older ones end
        flash(request, "Two-factor authentication is on.")
    else:
        flash(request, "Wrong code; TOTP not enabled.")
    raise Redirect("/account")

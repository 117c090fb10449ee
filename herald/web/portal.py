"""The recipient portal: login (Argon2id, optional TOTP, lockout), reports by day and type,
downloads, a 30-day chart of event counts, API keys and filter requests.

Server-rendered Jinja2 pages.  Sessions are signed cookies (``SameSite=Strict``) checked against
the server on every request: the user's session version (:mod:`herald.web.users`; logout changes
it, so a copied cookie dies with the logout), an idle limit (``[web] session_max_age`` seconds
since the last request) and an absolute limit (``[web] session_absolute`` seconds since login),
both measured on the app clock (UTC).  Every form that changes something carries a per-session
CSRF token, compared in constant time.  A recipient user only ever reaches its own recipient's
reports, keys and filters.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import defaultdict
from datetime import date, timedelta, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from herald.constituency import repository
from herald.errors import ConfigError
from herald.store.db import NotFound
from herald.web import keys as apikeys
from herald.web import users
from herald.web.app import TEMPLATES_DIR, WebState
from herald.web.catalog import DAY_RE
from herald.web.headers import CSP

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

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


class Redirect(Exception):
    """Stop handling and redirect (to the login page, usually)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


def _state(request: Request) -> WebState:
    return request.app.state.herald


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    tok = request.session.get("csrf")
    if not tok:
        tok = secrets.token_urlsafe(32)
        request.session["csrf"] = tok
    return tok


async def form_checked(request: Request) -> dict[str, Any]:
    """The POSTed form, after checking its ``csrf_token`` in constant time.

    Raises:
        Redirect: missing or wrong token (back to the login page).
    """
    form = await request.form()
    sent = str(form.get("csrf_token", ""))
    want = request.session.get("csrf", "")
    if not want or not hmac.compare_digest(sent.encode(), want.encode()):
        raise _Forbidden()
    return {k: v for k, v in form.items()}


class _Forbidden(Exception):
    pass


#: How long a secret waits server-side to be shown (a new API secret, a TOTP set-up secret).
STASH_TTL = 600


def _stash(request: Request) -> dict:
    return _state(request).extra.setdefault("stash", {})


def stash_put(request: Request, name: str, value: Any) -> None:
    """Keep ``value`` server-side for this session for :data:`STASH_TTL` seconds.

    The session cookie is signed, not encrypted, so secrets to be shown once (a new API secret,
    a TOTP set-up secret) never go into it: it only holds a random handle.
    """
    stash = _stash(request)
    now = time.monotonic()
    for k in [k for k, (exp, _) in stash.items() if exp < now]:
        del stash[k]
    handle = request.session.get("stash") or secrets.token_urlsafe(24)
    request.session["stash"] = handle
    stash[(handle, name)] = (now + STASH_TTL, value)


def stash_get(request: Request, name: str) -> Any:
    """The value :func:`stash_put` kept under ``name`` for this session, or ``None``."""
    item = _stash(request).get((request.session.get("stash"), name))
    return item[1] if item and item[0] >= time.monotonic() else None


def stash_pop(request: Request, name: str) -> Any:
    """Like :func:`stash_get`, and forget it."""
    value = stash_get(request, name)
    _stash(request).pop((request.session.get("stash"), name), None)
    return value


def _session_live(request: Request, now: float) -> bool:
    """``True`` while the session is within its idle and absolute lifetimes (seconds, app clock);
    a session without the times (made before they existed) is not live."""
    cfg = _state(request).config
    started, seen = request.session.get("iat"), request.session.get("seen")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (started, seen)):
        return False
    return now - started <= cfg.session_absolute and now - seen <= cfg.session_max_age


def current_user(request: Request) -> users.User | None:
    """The logged-in, enabled user of a live session (see the module docstring), or ``None``
    (and the session is cleared)."""
    uid = request.session.get("uid")
    if not uid:
        return None
    now = _state(request).clock().timestamp()
    user = users.get_user(_state(request).db, uid) if _session_live(request, now) else None
    if user is None or user.disabled or not hmac.compare_digest(
            str(request.session.get("sv", "")), user.session_version):
        request.session.clear()
        return None
    request.session["seen"] = int(now)
    return user


def render(request: Request, name: str, status: int = 200, **ctx) -> HTMLResponse:
    """Render template ``name`` with the user, CSRF token and flash message."""
    ctx.setdefault("user", current_user(request))
    ctx["csrf_token"] = csrf_token(request)
    ctx["flash"] = request.session.pop("flash", None)
    return templates.TemplateResponse(request, name, ctx, status_code=status,
                                      headers={"Cache-Control": "no-store",
                                               "X-Frame-Options": "DENY",
                                               "Content-Security-Policy": CSP})


def flash(request: Request, message: str) -> None:
    """Show ``message`` on the next page."""
    request.session["flash"] = message


def page(role: str | None = None, post: bool = False):
    """Decorator: require a logged-in user (of ``role``); for POST, check the CSRF token and pass
    the form."""

    def deco(fn):
        async def endpoint(request: Request):
            user = await run_in_threadpool(current_user, request)
            if user is None:
                return RedirectResponse("/login", status_code=303)
            if role and user.role != role:
                return HTMLResponse("<h1>403 Forbidden</h1>", status_code=403)
            try:
                # Database and file work run in the thread pool, not on the event loop.
                if post:
                    form = await form_checked(request)
                    return await run_in_threadpool(fn, request, user, form)
                return await run_in_threadpool(fn, request, user)
            except _Forbidden:
                return HTMLResponse("<h1>403 Forbidden: bad or missing CSRF token</h1>",
                                    status_code=403)
            except Redirect as r:
                return RedirectResponse(r.url, status_code=303)

        endpoint.__name__ = fn.__name__
        endpoint.__doc__ = fn.__doc__
        return endpoint

    return deco


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
    from herald.web.api import ApiError, check_ip_rate, client_ip

    st = _state(request)
    try:
        check_ip_rate(request)
        form = await form_checked(request)
    except ApiError as exc:
        return HTMLResponse(f"<h1>{exc.message}</h1>", status_code=429, headers=exc.headers)
    except _Forbidden:
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
    users.end_sessions(_state(request).db, user.id, user.email)
    request.session.clear()
    raise Redirect("/login")


# --- recipient pages ------------------------------------------------------------------------------

def _recipient_row(request: Request, user: users.User):
    from herald.web.api import _recipient_row as load

    if user.recipient_id is None:
        raise Redirect("/admin/")
    row = load(_state(request), user.recipient_id)
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
    st = _state(request)
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
    st = _state(request)
    day = request.path_params["day"]
    file = request.path_params["file"]
    row = _recipient_row(request, user)
    entry = st.catalog.report_file(row, day, file) if DAY_RE.match(day) else None
    if entry is None:
        return HTMLResponse("<h1>404 Not Found</h1>", status_code=404)
    from herald.web.api import csv_file

    return csv_file(entry)


@router.get("/portal/keys")
@page("recipient")
def keys_page(request, user):
    """The recipient's API keys."""
    st = _state(request)
    row = _recipient_row(request, user)
    new_secret = stash_pop(request, "new_secret")
    return render(request, "keys.html", recipient=row, keys=apikeys.list_keys(st.db, row.id),
                  new_secret=new_secret)


@router.post("/portal/keys/create")
@page("recipient", post=True)
def keys_create(request, user, form):
    """Create a key; its secret is shown once."""
    st = _state(request)
    row = _recipient_row(request, user)
    active = sum(k.state == "active" for k in apikeys.list_keys(st.db, row.id))
    if active >= MAX_PORTAL_KEYS:
        flash(request, f"At most {MAX_PORTAL_KEYS} active keys: revoke one first.")
        raise Redirect("/portal/keys")
    new = apikeys.create_key(st.db, st.server_key, row.id, user.email,
                             label=str(form.get("label", ""))[:200] or None,
                             replay_protection=form.get("replay") == "on")
    stash_put(request, "new_secret", {"key_id": new.key_id, "secret": new.secret})
    raise Redirect("/portal/keys")


@router.post("/portal/keys/{key_id}/{action}")
@page("recipient", post=True)
def keys_action(request, user, form):
    """Revoke or rotate one of the recipient's keys."""
    st = _state(request)
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
    st = _state(request)
    row = _recipient_row(request, user)
    info = repository.get_recipient(st.db, row.id)
    return render(request, "filters.html", recipient=row, filters=info.filters,
                  kinds=REQUESTABLE)


@router.post("/portal/filters")
@page("recipient", post=True)
def filters_request(request, user, form):
    """Request a filter: stored ``pending`` until an admin verifies it."""
    st = _state(request)
    row = _recipient_row(request, user)
    kind = str(form.get("kind", ""))
    if kind not in REQUESTABLE:
        flash(request, f"Filter kind must be one of {', '.join(REQUESTABLE)}.")
        raise Redirect("/portal/filters")
    pending = sum(f.state == "pending" for f in repository.get_recipient(st.db, row.id).filters)
    if pending >= MAX_PENDING_REQUESTS:
        flash(request, f"At most {MAX_PENDING_REQUESTS} pending requests: wait for a decision.")
        raise Redirect("/portal/filters")
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
    st = _state(request)
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

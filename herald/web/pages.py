"""Page machinery shared by the portal and the admin console: sessions checked on every request,
CSRF tokens, a server-side stash for secrets shown once, template rendering and the
:func:`page` decorator.

Sessions are signed cookies checked against the server (see :mod:`herald.web.portal`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from herald.accounts import users
from herald.web.headers import CSP
from herald.web.state import TEMPLATES_DIR, state_of

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))


class Redirect(Exception):
    """Stop handling and redirect (to the login page, usually)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.url = url


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
        raise Forbidden()
    return {k: v for k, v in form.items()}


class Forbidden(Exception):
    """A form came without its session's CSRF token (answered 403)."""


#: How long a secret waits server-side to be shown (a new API secret, a TOTP set-up secret).
STASH_TTL = 600


def _stash(request: Request) -> dict:
    """The server-side store of :func:`stash_put` (per application)."""
    return state_of(request).extra.setdefault("stash", {})


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


def session_live(request: Request, now: float) -> bool:
    """``True`` while the session is within its idle and absolute lifetimes (seconds, app clock);
    a session without the times (made before they existed) is not live."""
    cfg = state_of(request).config
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
    now = state_of(request).clock().timestamp()
    user = users.get_user(state_of(request).db, uid) if session_live(request, now) else None
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
            except Forbidden:
                return HTMLResponse("<h1>403 Forbidden: bad or missing CSRF token</h1>",
                                    status_code=403)
            except Redirect as r:
                return RedirectResponse(r.url, status_code=303)

        endpoint.__name__ = fn.__name__
        endpoint.__doc__ = fn.__doc__
        return endpoint

    return deco

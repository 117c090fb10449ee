"""Security response headers on every page, API answer and download.

:class:`SecurityHeadersMiddleware` (pure ASGI) adds :data:`SECURITY_HEADERS` to each response that
does not set the header itself, and ``Cache-Control: no-store`` (RFC 9111 §5.2.2.5) unless the
handler chose a cache policy (the public dashboard allows short public caching; portal pages,
API answers and report downloads are never stored).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

#: Content Security Policy (W3C CSP Level 3): own resources only, inline styles for the
#: templates' ``<style>`` block, no framing (``frame-ancestors``), no plugins, forms to self.
CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

#: Header name (lowercase bytes) -> value, added when the response does not set it.
SECURITY_HEADERS: dict[bytes, bytes] = {
    b"content-security-policy": CSP.encode(),
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cache-control": b"no-store",
}


class SecurityHeadersMiddleware:
    """Add :data:`SECURITY_HEADERS` to every HTTP response (handler-set values win).

    Args:
        app: the wrapped ASGI application.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive, send) -> None:
        """The ASGI entry point."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in SECURITY_HEADERS.items() if k not in present]
                message = dict(message, headers=headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)

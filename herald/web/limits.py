"""Request body limits enforced while the body streams in, before anything is buffered.

:class:`BodyLimitMiddleware` is a pure ASGI middleware (no Starlette ``BaseHTTPMiddleware``, which
would buffer): it answers ``413 Payload Too Large`` (RFC 9110 §15.5.14) at once when the
``Content-Length`` header announces more than the limit, and for bodies without a length
(``Transfer-Encoding: chunked``) it counts the bytes of each ``http.request`` message as the
application reads them and stops the request when the count passes the limit.  The rest of the
body is then never read from the client.

A malformed ``Content-Length`` (not a decimal number, several differing values) is refused with
``400``.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Default largest body, bytes (API calls and portal forms are small).
DEFAULT_MAX_BODY = 64 * 1024


class BodyTooLarge(Exception):
    """Raised inside the application's ``receive`` when a streamed body passes the limit."""


def _error_messages(status: int, message: str) -> tuple[Message, Message]:
    body = json.dumps({"error": message}).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"connection", b"close")]}
    return start, {"type": "http.response.body", "body": body}


class BodyLimitMiddleware:
    """Refuse HTTP request bodies larger than ``max_body`` bytes (413) without buffering them.

    Args:
        app: the wrapped ASGI application.
        max_body: largest accepted body in bytes (every path and method).
    """

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = int(max_body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point (``http`` scopes are checked, others pass through)."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        lengths = {v.strip() for k, v in scope.get("headers", []) if k.lower() == b"content-length"}
        if lengths:
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                await self._reply(send, 400, "malformed Content-Length")
                return
            if int(next(iter(lengths))) > self.max_body:
                await self._reply(send, 413, "request body too large")
                return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message.get("type") == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._reply(send, 413, "request body too large")

    @staticmethod
    async def _reply(send: Send, status: int, message: str) -> None:
        start, body = _error_messages(status, message)
        await send(start)
        await send(body)

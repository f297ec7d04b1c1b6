"""Pure-ASGI middleware: request body size limit and security headers."""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import ApiError, error_body


class BodyTooLarge(ApiError):
    """Raised while reading a body that grows past the limit (an ``HTTPException``, so FastAPI's
    body parsing passes it through unchanged)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "body_too_large", f"the request body is larger than {limit} bytes. Fix: send a smaller body (server limit max_body_bytes)")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": data})


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a request body, at most ``budget`` bytes.

    A server that closes its socket with unread request bytes makes the kernel send a reset, which
    can destroy the 413 already sent before the client reads it; reading the rest first lets the
    client see the answer. Bodies larger than ``budget`` are cut off (the reset is then the price).
    """
    while budget >= 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: at once when ``Content-Length`` says so, else as soon as
    the bytes read pass the limit (chunked or lying clients).

    Before answering, the rest of an oversized body is read and dropped up to ``drain_bytes``
    (default: four times the limit, at least 1 MiB) so the client reliably receives the 413
    instead of a connection reset.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = drain_bytes if drain_bytes is not None else max(4 * max_bytes, 1 << 20)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(send, 400, error_body("invalid_content_length", "the Content-Length header is not a number. Fix: send a valid Content-Length", status=400))
                    return
                if length > self.max_bytes:
                    if length <= self.drain_bytes:
                        await _drain(receive, self.drain_bytes)
                    await _send_json(send, 413, error_body("body_too_large", f"the request body ({length} bytes) is larger than {self.max_bytes} bytes. Fix: send a smaller body (server limit max_body_bytes)", status=413))
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, self.drain_bytes)
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watch_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, watch_send)
        except BodyTooLarge as exc:  # raised outside FastAPI's handlers (e.g. in another middleware)
            if started:
                raise
            await _send_json(send, 413, error_body(exc.code, exc.message, status=413))


_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
_PAGE_CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """``nosniff``, ``no-referrer`` and ``DENY`` framing on every response; a strict
    Content-Security-Policy on the web page and its static files; ``no-store`` on API answers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        page = path == "/" or path.startswith("/static/")

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [h for h in _COMMON if h[0] not in present]
                if page:
                    headers.append((b"content-security-policy", _PAGE_CSP))
                elif path.startswith("/v1/") and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, add_headers)

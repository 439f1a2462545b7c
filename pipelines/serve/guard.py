"""The ASGI guard in front of every route of the forecast API: the bearer token, then the body,
at most ``MAX_BODY_BYTES`` of it read, before the app sees the request."""

from __future__ import annotations

import secrets
import time

from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 4096  # a forecast request is a few fields: anything larger is refused (413)
OPEN_PATHS = frozenset({"/healthz"})  # the routes that take no token
RECEIVED = "motioncast.received"  # scope key: time.monotonic() when the request came in


def _route_path(scope: Scope) -> str:
    """The path the router matches (``scope["path"]`` less ``root_path``, as Starlette)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root) and (path == root or path[len(root)] == "/"):
        return path[len(root) :]
    return path


class RequestGuard:
    """ASGI middleware in front of every HTTP route, in this order, before the app sees it:

    1. the bearer token (when one is set), on every path but ``open_paths``: 401 with
       ``WWW-Authenticate: Bearer`` before a byte of the body is read;
    2. a Content-Length over ``max_body`` (413) or malformed (400), refused unread;
    3. the body, read through ``receive`` counting the bytes that actually come (a chunked body
       has no length): 413 as soon as they pass ``max_body`` (at most ``max_body`` bytes are
       kept), else the body is handed to the app as one message.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        open_paths: frozenset[str] = OPEN_PATHS,
        max_body: int = MAX_BODY_BYTES,
    ):
        self.app = app
        self.token = None if token is None else token.encode()
        self.open_paths = open_paths
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[RECEIVED] = time.monotonic()
        headers = Headers(scope=scope)
        if not self._authorised(scope, headers.get("authorization")):
            await _refuse(scope, receive, send, 401, "a valid bearer token is required", True)
            return
        length = headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit()):
            await _refuse(scope, receive, send, 400, "malformed Content-Length")
            return
        if length is not None and int(length) > self.max_body:
            await _refuse(scope, receive, send, 413, f"body over {self.max_body} bytes")
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client is gone: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _refuse(scope, receive, send, 413, f"body over {self.max_body} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)

    def _authorised(self, scope: Scope, header: str | None) -> bool:
        if self.token is None or _route_path(scope) in self.open_paths:
            return True
        scheme, _, credentials = (header or "").partition(" ")
        return scheme.lower() == "bearer" and secrets.compare_digest(
            credentials.strip().encode("latin-1"), self.token
        )


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app: the body read already, then the server's messages (e.g. the
    client's disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, bearer: bool = False
) -> None:
    """An error answer from the guard (what is left of the body the server reads and drops)."""
    headers = {"www-authenticate": "Bearer"} if bearer else None
    response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)

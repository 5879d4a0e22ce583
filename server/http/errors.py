"""The one shape of an HTTP error segcast answers with: ``{"error": "<what is wrong and the fix>"}``, its
own routes' errors and aiohttp's routing ones (`json_errors`) alike."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web


def error(kind: type[web.HTTPException], message: str, **headers: str) -> web.HTTPException:
    """An HTTP error of ``kind`` with a JSON body naming what is wrong; raise it from a handler."""
    return detailed_error(kind, message, {}, headers)


def detailed_error(
    kind: type[web.HTTPException], message: str, details: Mapping[str, Any], headers: Mapping[str, str]
) -> web.HTTPException:
    """`error` with ``details`` in the body beside ``error``: what a client needs to carry on (a
    change that was made though the request failed says what the stream now is)."""
    body = {"error": message, **details}
    return kind(text=json.dumps(body), content_type="application/json", headers=headers or None)


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Routing errors (404, 405) under /api come back as JSON like every other API error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json" or not request.path.startswith("/api"):
            raise
        headers = {k: v for k, v in exc.headers.items() if k == "Allow"}
        return web.json_response({"error": _routing_reason(request, exc)}, status=exc.status, headers=headers)


def _routing_reason(request: web.Request, exc: web.HTTPException) -> str:
    """What a routing error says: a 404 names the route it found none for, a 405 the methods the route takes
    (a client reading the body alone, not ``Allow``, learns what to send)."""
    if exc.status == 404:
        return f"no such API route: {request.method} {request.path}"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"{exc.method} is not allowed on {request.path}; allowed: {', '.join(sorted(exc.allowed_methods))}"
    return exc.reason

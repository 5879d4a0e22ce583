"""Headers every answer carries, whichever route made it: a handler's, a refusal before one (auth's 401),
aiohttp's own 404 and 405. Not the 400 aiohttp's HTTP parser sends for a request it cannot read, which
no application sees: a short ``text/plain`` line, never a script.

``X-Content-Type-Options: nosniff`` on every answer: a browser takes each for the type it says, and
never runs a JSON error or a picture as a script or a page. ``Cache-Control: no-store`` on the API's,
where the route sets none of its own: they are a node's private state, and asked with ``?token=``
their URL alone is what a shared cache (a company's proxy) would keep them under and hand to whoever
asks for it next. The viewer's files keep the caching `server.http.pages` gives them (its scripts are
cached for good under their tag), and an API route that chose its own (a stored event's snapshot,
revalidated by its ETag) keeps it.

Set as each answer is prepared (`web.Application.on_response_prepare`), not in a middleware: a
streamed answer (MJPEG, a WebSocket's handshake) is sent from inside its handler, before a middleware
could add a header to it.
"""

from __future__ import annotations

from aiohttp import web

#: The paths whose answers are never stored: the REST API, tokens, events and WebRTC signalling.
API_PATHS = "/api/"


def setup_headers(app: web.Application) -> None:
    app.on_response_prepare.append(_add_headers)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if f"{request.path}/".startswith(API_PATHS):
        response.headers.setdefault("Cache-Control", "no-store")

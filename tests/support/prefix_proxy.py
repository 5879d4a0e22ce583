"""A reverse proxy that serves an upstream under a path prefix, as one entrance to several nodes does.

``http://127.0.0.1:PORT/node-1/x`` is forwarded to ``UPSTREAM/x`` (the prefix stripped, the query
kept), plain HTTP with bodies streamed both ways (MJPEG never ends) and WebSockets message for
message, with the browser's own ``Host`` and ``Origin`` passed on, as nginx does with
``proxy_set_header Host $host``. ``/node-1`` alone redirects to ``/node-1/``. Anything outside the
prefix is answered 404 and kept in `strays`: a page that builds a URL from ``/`` shows up there.
"""

from __future__ import annotations

import asyncio
import weakref
from contextlib import suppress

import aiohttp
from aiohttp import WSMsgType, web
from yarl import URL

#: Headers about one connection, not the request: never forwarded (RFC 9110, 7.6.1), nor the length,
#: which the proxy's own server and client set for the body they really send.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
#: What the WebSocket client sets itself for the handshake to the upstream.
WS_HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"})


class PrefixProxy:
    """Serves ``upstream`` at ``http://127.0.0.1:<port><prefix>/``; `start` it, `close` it."""

    def __init__(self, upstream: URL, prefix: str = "/node-1") -> None:
        self.upstream = upstream
        self.prefix = prefix
        self.strays: list[str] = []
        self.forwarded: list[str] = []  # upstream paths, in order
        self._session: aiohttp.ClientSession | None = None
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._bodies: set[aiohttp.StreamReader] = set()  # upstream bodies being streamed
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_shutdown.append(self._on_shutdown)
        self._runner = web.AppRunner(app, access_log=None)
        self.url = URL()

    async def start(self) -> URL:
        """Listen on a free port of 127.0.0.1; returns the entrance, ``http://127.0.0.1:PORT<prefix>/``."""
        self._session = aiohttp.ClientSession(auto_decompress=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = URL.build(scheme="http", host=host, port=port, path=f"{self.prefix}/")
        return self.url

    async def close(self) -> None:
        await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _on_shutdown(self, _app: web.Application) -> None:
        # Streams that never end by themselves (MJPEG, WebSockets) end here, or the runner's cleanup would
        # wait out its shutdown timeout (60 s) for their handlers. Closing the session is not enough for a
        # body: aiohttp's client drops a connection's reader as it closes it, so a read already waiting on
        # that reader is never woken (seen as a minute-long test teardown when the browser had gone quiet).
        for body in list(self._bodies):
            body.set_exception(aiohttp.ClientConnectionError("the proxy is shutting down"))
        for socket in list(self._sockets):
            await socket.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.path
        if path == self.prefix:
            raise web.HTTPMovedPermanently(f"{self.prefix}/")
        if not path.startswith(f"{self.prefix}/"):
            self.strays.append(str(request.rel_url))
            raise web.HTTPNotFound(text=f"nothing here outside {self.prefix}/")
        target = self.upstream.with_path(path[len(self.prefix) :]).with_query(request.rel_url.query)
        self.forwarded.append(target.path)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["X-Forwarded-Prefix"] = self.prefix
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request, target, headers)
        return await self._http(request, target, headers)

    async def _http(self, request: web.Request, target: URL, headers: dict[str, str]) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read()
        async with self._session.request(
            request.method, target, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for key, value in upstream.headers.items():
                if key.lower() not in HOP_BY_HOP:
                    response.headers.add(key, value)
            await response.prepare(request)
            self._bodies.add(upstream.content)
            try:
                with suppress(ConnectionResetError, aiohttp.ClientConnectionError):
                    async for chunk in upstream.content.iter_any():
                        await response.write(chunk)
            finally:
                self._bodies.discard(upstream.content)
            await response.write_eof()
            return response

    async def _websocket(self, request: web.Request, target: URL, headers: dict[str, str]) -> web.StreamResponse:
        assert self._session is not None
        downstream = web.WebSocketResponse()
        await downstream.prepare(request)
        self._sockets.add(downstream)
        forwarded = {k: v for k, v in headers.items() if k.lower() not in WS_HANDSHAKE}
        try:
            upstream = await self._session.ws_connect(target, headers=forwarded)
        except aiohttp.WSServerHandshakeError as exc:
            await downstream.close(code=aiohttp.WSCloseCode.TRY_AGAIN_LATER, message=str(exc.status).encode())
            return downstream
        async with upstream:
            pumps = [
                asyncio.create_task(_pump(downstream, upstream)),
                asyncio.create_task(_pump(upstream, downstream)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                    with suppress(asyncio.CancelledError):
                        await pump
        await downstream.close()
        return downstream


async def _pump(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    """Copy text and binary messages from ``source`` to ``sink`` until ``source`` closes."""
    async for message in source:
        if message.type is WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
    await sink.close()

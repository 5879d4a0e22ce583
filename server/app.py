"""The aiohttp application: viewer page, WebSocket feed, a small JSON API and a health check.

`create_app` builds everything from `Settings`; the pipeline threads live in a cleanup context, so
they start with the app (the model is loaded before the port opens) and stop with it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path

from aiohttp import WSCloseCode, WSMsgType, web

from server.config import Settings
from server.frames import PROTOCOL_VERSION
from server.hub import Hub, Viewer
from server.streams import StreamManager

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024

settings_key = web.AppKey("settings", Settings)
hub_key = web.AppKey("hub", Hub)
manager_key = web.AppKey("manager", StreamManager)
websockets_key = web.AppKey("websockets", weakref.WeakSet[web.WebSocketResponse[bool]])


def web_root() -> Path:
    """The viewer's files: packaged beside the code when installed, ``web/`` in a source checkout."""
    installed = Path(__file__).parent / "web"
    return installed if installed.is_dir() else Path(__file__).parent.parent / "web"


def create_app(settings: Settings) -> web.Application:
    app = web.Application()
    app[settings_key] = settings
    app[websockets_key] = weakref.WeakSet()
    app.cleanup_ctx.append(_pipeline)
    app.on_shutdown.append(_close_websockets)
    root = web_root()
    app.router.add_get("/", _index)
    app.router.add_get("/ws", _websocket)
    app.router.add_get("/api/streams", _list_streams)
    app.router.add_get("/healthz", _health)
    app.router.add_static("/static/", root, follow_symlinks=False)
    return app


async def _pipeline(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    hub = Hub(loop)
    manager = StreamManager(app[settings_key], hub)
    await loop.run_in_executor(None, manager.start)  # loads the model: seconds, off the loop
    app[hub_key] = hub
    app[manager_key] = manager
    yield
    await loop.run_in_executor(None, manager.stop)


async def _close_websockets(app: web.Application) -> None:
    websockets = app[websockets_key]
    for ws in list(websockets):
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(web_root() / "index.html")


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _list_streams(request: web.Request) -> web.Response:
    manager, hub = request.app[manager_key], request.app[hub_key]
    streams = []
    for info in manager.streams():
        entry = info.to_json()
        entry["viewers"] = hub.viewer_count(info.stream_id)
        streams.append(entry)
    return web.json_response({"v": PROTOCOL_VERSION, "streams": streams})


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    """One viewer. This handler is the only reader of the socket; the viewer's sender task writes."""
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_CLIENT_MESSAGE_BYTES)
    await ws.prepare(request)
    hub, manager = request.app[hub_key], request.app[manager_key]
    request.app[websockets_key].add(ws)
    viewer = Viewer(ws)
    hub.add_viewer(viewer)
    sender = asyncio.create_task(viewer.send_forever(), name="viewer-sender")
    try:
        streams = [info.to_json() for info in manager.streams()]
        await ws.send_json({"type": "hello", "v": PROTOCOL_VERSION, "streams": streams})
        async for message in ws:
            if message.type is not WSMsgType.TEXT:
                continue
            error = _handle_client_message(hub, viewer, message.data)
            if error:
                await ws.send_json({"type": "error", "v": PROTOCOL_VERSION, "message": error})
    finally:
        hub.remove_viewer(viewer)
        sender.cancel()
        with suppress(asyncio.CancelledError, ConnectionResetError):
            await sender
    return ws


def _handle_client_message(hub: Hub, viewer: Viewer, data: str) -> str | None:
    """Apply one client message; return an error text for the client, or None."""
    try:
        message = json.loads(data)
    except json.JSONDecodeError:
        return "messages must be JSON objects"
    if not isinstance(message, dict):
        return "messages must be JSON objects"
    if message.get("type") == "subscribe":
        streams = message.get("streams")
        if not isinstance(streams, list) or not all(isinstance(s, str) for s in streams):
            return "subscribe needs 'streams': a list of stream ids, or [\"*\"] for all"
        hub.subscribe(viewer, streams)
        return None
    return f"unknown message type {message.get('type')!r}; known: 'subscribe'"

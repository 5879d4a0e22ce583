"""The WebSocket feed ``/ws``: subscriptions in, frames, metadata and events out (docs/protocol.md).

The handler task is the only reader of its socket; a sender task per socket is the only writer, and
it drains that viewer's own latest-only slots. A client that stops reading therefore only stalls its
own sender, and the frames meant for it are replaced by newer ones while it is stuck.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from server.delivery.encode import ImageKind, parse_variant
from server.delivery.hub import Event, Hub, Subscription, Viewer
from server.frames import PROTOCOL_VERSION
from server.http.api import join_viewer, stream_json
from server.http.keys import hub_key, manager_key, websockets_key
from server.streams import StreamManager

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
HEARTBEAT_S = 20.0
MAX_FPS = 60.0
SUBSCRIPTION_KEYS = frozenset({"image", "max_width", "max_fps"})
#: A viewer changes what it watches a few times a second at most. A client that sends more is broken
#: or hostile, and each message costs a parse and a resubscription on the loop: it is disconnected.
MAX_CLIENT_MESSAGES_PER_S = 10.0
CLIENT_MESSAGE_BURST = 30
#: Entries of one subscribe message's ``streams``; more than any server runs streams.
MAX_SUBSCRIBED_STREAMS = 256


class RateLimit:
    """A token bucket: `allow` is False once a client has used up its burst faster than the rate refills it."""

    def __init__(self, per_s: float = MAX_CLIENT_MESSAGES_PER_S, burst: int = CLIENT_MESSAGE_BURST) -> None:
        self._per_s = per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()

    def allow(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._per_s)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


def setup_ws(app: web.Application) -> None:
    app.router.add_get("/ws", _websocket)


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    """One viewer. This handler is the only reader of the socket; the viewer's sender task writes."""
    # No permessage-deflate, though browsers offer it: it would deflate every JPEG (which does not
    # shrink) once per viewer, a CPU cost that grows with the audience for nothing.
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_CLIENT_MESSAGE_BYTES, compress=False)
    hub, manager = request.app[hub_key], request.app[manager_key]
    viewer = Viewer("ws", request.remote)
    join_viewer(hub, viewer)
    try:
        await ws.prepare(request)
        if request.transport is not None:
            request.app[websockets_key][ws] = request.transport
        streams = [stream_json(request, info) for info in manager.streams()]
        hello = {"type": "hello", "v": PROTOCOL_VERSION, "streams": streams, "inference": hub.inference.to_json()}
        viewer.greet(Event.of(hello))
        sender = asyncio.create_task(send_forever(viewer, ws), name="viewer-sender")
        try:
            await _read_forever(ws, hub, manager, viewer)
        finally:
            sender.cancel()
            with suppress(asyncio.CancelledError):
                await sender
    finally:
        hub.remove_viewer(viewer)
    return ws


def unknown_streams_message(stream_ids: list[str]) -> str:
    """What a client is told when it subscribes to ids no stream has: a typo, or a stream just removed.

    The subscription still holds, so frames follow if a stream is added under such an id later.
    """
    names = ", ".join(repr(stream_id) for stream_id in stream_ids)
    return f"subscribe: no stream {names} exists now; its frames will follow if it is added"


def _error(message: str) -> Event:
    return Event.of({"type": "error", "v": PROTOCOL_VERSION, "message": message})


async def _read_forever(ws: web.WebSocketResponse, hub: Hub, manager: StreamManager, viewer: Viewer) -> None:
    """Take the client's subscriptions until it leaves; a client over the message rate is disconnected."""
    limit = RateLimit()
    async for message in ws:
        if not limit.allow():
            log.warning("a WebSocket client sent over %g messages/s; disconnecting it", MAX_CLIENT_MESSAGES_PER_S)
            await ws.close(
                code=WSCloseCode.POLICY_VIOLATION,
                message=f"too many messages: at most {MAX_CLIENT_MESSAGES_PER_S:g} per second".encode(),
            )
            return
        if message.type is not WSMsgType.TEXT:
            continue
        subscriptions = parse_client_message(message.data)
        if isinstance(subscriptions, str):
            viewer.offer_event(_error(subscriptions))
            continue
        hub.subscribe(viewer, subscriptions)
        unknown = sorted(set(subscriptions) - {"*"} - {info.stream_id for info in manager.streams()})
        if unknown:
            viewer.offer_event(_error(unknown_streams_message(unknown)))


async def send_forever(viewer: Viewer, ws: web.WebSocketResponse) -> None:
    """The viewer's sender task: events in order, then each stream's newest frame, then wait again.

    Ends quietly when the client goes away mid-send; the handler notices the closed socket itself.
    """
    try:
        while not viewer.closed:
            events, deliveries = await viewer.take()
            for event in events:
                await ws.send_str(event.text)
            for delivery in deliveries:
                await ws.send_str(delivery.packet.message(delivery.variant))
                jpeg = delivery.jpeg
                if jpeg is not None:
                    await ws.send_bytes(jpeg)
        if viewer.too_slow:
            await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=b"too far behind: events piled up")
    except ConnectionResetError:
        log.debug("a viewer left while being sent to")


def parse_client_message(data: str) -> Mapping[str, Subscription] | str:
    """The subscriptions a client message asks for, or an error text for the client.

    ``{"type": "subscribe", "streams": [...], "image": ..., "max_width": ..., "max_fps": ...}``;
    each entry of ``streams`` is a stream id (or ``"*"``) or an object ``{"id": ..., <options>}``
    whose options override the message's own for that stream.
    """
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return "messages must be JSON objects"
    if not isinstance(message, dict):
        return "messages must be JSON objects"
    if message.get("type") != "subscribe":
        return f"unknown message type {message.get('type')!r}; known: 'subscribe'"
    streams = message.get("streams")
    if not isinstance(streams, list):
        return "subscribe needs 'streams': a list of stream ids, or [\"*\"] for all"
    if len(streams) > MAX_SUBSCRIBED_STREAMS:
        return f"subscribe: at most {MAX_SUBSCRIBED_STREAMS} entries in 'streams'; use [\"*\"] for all"
    unknown = sorted(set(message) - SUBSCRIPTION_KEYS - {"type", "streams"})
    if unknown:
        return f"subscribe: unknown field {unknown[0]!r}; known: streams, {', '.join(sorted(SUBSCRIPTION_KEYS))}"
    try:
        default = _subscription(message, Subscription(), "subscribe")
        subscriptions: dict[str, Subscription] = {}
        for index, entry in enumerate(streams):
            if isinstance(entry, str):
                subscriptions[entry] = default
            elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
                extra = sorted(set(entry) - SUBSCRIPTION_KEYS - {"id"})
                if extra:
                    raise ValueError(f"streams[{index}].{extra[0]}: unknown field")
                subscriptions[entry["id"]] = _subscription(entry, default, f"streams[{index}]")
            else:
                raise ValueError(f'streams[{index}]: expected a stream id or {{"id": ..., options}}')
    except ValueError as exc:
        return str(exc)
    return subscriptions


def _subscription(values: Mapping[str, Any], base: Subscription, where: str) -> Subscription:
    image = base.image
    if "image" in values or "max_width" in values:
        kind = values.get("image", image.kind.value if image is not None else ImageKind.ANNOTATED.value)
        width = values.get("max_width", image.max_width if image is not None else None)
        try:
            image = parse_variant(kind, width)
        except ValueError as exc:
            raise ValueError(f"{where}.{exc}") from None
    max_fps = values.get("max_fps", base.max_fps)
    if max_fps is not None and (
        isinstance(max_fps, bool) or not isinstance(max_fps, int | float) or not 0 < max_fps <= MAX_FPS
    ):
        raise ValueError(f"{where}.max_fps: expected a number above 0 and at most {MAX_FPS:g}, or null")
    return Subscription(image, None if max_fps is None else float(max_fps))

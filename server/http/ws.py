"""The WebSocket feed ``/ws``: subscriptions in, frames, metadata and events out (docs/protocol.md).

The handler task is the only reader of its socket. A sender task per socket writes what the viewer is
sent, draining that viewer's own latest-only slots: a client that stops reading therefore only stalls
its own sender, and the frames meant for it are replaced by newer ones while it is stuck. Closes are
written by whichever task decides on one (the handler for a client over its rate, the sender for one
too far behind, the token's expiry, shutdown), each through `server.http.viewers.close_websocket`,
which cuts off a client that does not take its close frame. A sender that fails closes its socket
with 1011, so that a viewer is never left connected to a socket that sends nothing.

Each socket is told an id of its own in its ``hello`` (`PageSockets`): a page names it when it offers
to play over WebRTC, and its players are closed when the socket closes.

A socket opened with a stream-scoped token (a dashboard's link, `server.http.access.tokens.Scope`) is told
of its scope's streams alone (`ScopedViewer`); its ``"*"`` is every stream it may see, the scope's
(`within_scope_subscriptions`), and a subscription to any other stream is refused.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from server.config import check_stream_id
from server.delivery.encode import ImageKind, parse_variant
from server.delivery.hub import Hub
from server.delivery.viewer import MAX_PENDING_EVENTS, Event, Subscription, Viewer
from server.frames import PROTOCOL_VERSION
from server.http.access.auth import credential_key
from server.http.access.tokens import Scope
from server.http.api import stream_json
from server.http.errors import error
from server.http.keys import hub_key, manager_key, websockets_key
from server.http.network.serving import ViewerConnection, keep_send_queue_short
from server.http.viewers import MAX_FPS, MIN_FPS, WebSocketCloser, join_viewer, websocket_closer_key
from server.log_throttle import ThrottledCount
from server.streams import StreamManager

log = logging.getLogger(__name__)

MAX_CLIENT_MESSAGE_BYTES = 64 * 1024
#: The reason of the 1009 close that ends a client which sent a longer message (docs/protocol.md).
TOO_BIG_REASON = f"a message may be at most {MAX_CLIENT_MESSAGE_BYTES} bytes"
#: What a client that sent a binary message is told: the protocol's client messages are JSON text.
BINARY_MESSAGE_ERROR = "only text messages of JSON are read; a binary message was ignored"
#: What a client whose JSON object has no ``type`` is told.
NO_TYPE_ERROR = "a message needs a \"type\"; known: 'subscribe'"
HEARTBEAT_S = 20.0
#: A viewer is sent a ``keepalive`` message after this long without any other, and told the interval
#: in ``hello`` (``keepalive_s``): a network that went silent (Wi-Fi dropped, a NAT forgot the
#: connection) closes nothing, and a browser sees no pings, so silence is all it can go by.
KEEPALIVE_S = 5.0
KEEPALIVE_MESSAGE = json.dumps({"type": "keepalive", "v": PROTOCOL_VERSION})
RUN_ID_BYTES = 9  # a hello's ``run``: 12 URL-safe characters, never the same for two runs in practice
SUBSCRIPTION_KEYS = frozenset({"image", "max_width", "max_fps"})
#: The fields of a ``subscribe`` message besides its options.
SUBSCRIBE_KEYS = frozenset({"type", "v", "streams"})
#: The options of a subscription that names none (docs/protocol.md): annotated, full size, every frame.
DEFAULT_OPTIONS: Mapping[str, Any] = MappingProxyType(
    {"image": ImageKind.ANNOTATED.value, "max_width": None, "max_fps": None}
)
#: Characters of the longest integer a client message is read with; no option takes one near this long.
#: A longer one is read as a float (infinity past 308 digits) and refused by the option it was given
#: for: as an int, one of over 4300 digits is a ValueError that read as a message that is not JSON.
MAX_JSON_INT_CHARS = 20
#: The 400 a request to ``/ws`` that is no WebSocket handshake gets (a browser's address bar, curl).
NOT_A_WEBSOCKET_MESSAGE = (
    "/ws is a WebSocket (docs/protocol.md): connect with a WebSocket client, such as a browser's "
    "new WebSocket(url); this request asked for no WebSocket upgrade"
)
#: A viewer changes what it watches a few times a second at most. A client that sends more is broken
#: or hostile, and each message costs a parse and a resubscription on the loop: it is disconnected.
MAX_CLIENT_MESSAGES_PER_S = 10.0
CLIENT_MESSAGE_BURST = 30
#: Characters of text a client may send: decoding costs the loop by the character (64 KiB of JSON
#: numbers take milliseconds), and a viewer's messages are a few hundred.
MAX_CLIENT_TEXT_PER_S = 16 * 1024
CLIENT_TEXT_BURST = 2 * MAX_CLIENT_MESSAGE_BYTES
#: Entries of one subscribe message's ``streams``; more than any server runs streams.
MAX_SUBSCRIBED_STREAMS = 256
#: Entries of ``streams`` a client may send, over all its messages: each costs its reading and its
#: subscription on the loop, so a client resending long lists is held to a few of them, in a burst
#: of two full lists (the message rate alone let 32 clients take the whole loop).
MAX_SUBSCRIBED_ENTRIES_PER_S = 64.0
SUBSCRIBED_ENTRIES_BURST = 2 * MAX_SUBSCRIBED_STREAMS
#: The reason of the 1013 close that ends a client too far behind to be kept (docs/protocol.md).
TOO_SLOW_REASON = f"too far behind: {MAX_PENDING_EVENTS} events piled up; reconnect"
#: The reason of the 1011 close that ends a client whose sender failed (a bug): it reconnects.
SENDER_FAILED_REASON = "the server failed to send to this viewer; reconnect"
#: Clients disconnected for going over one of their rates are logged in one line per this long and
#: rate, with how many since the last: each such client is broken or hostile, and may be many.
DISCONNECT_LOG_INTERVAL_S = 60.0
#: Random bytes of the id each socket is told in its hello: whoever knows it can bind a WebRTC player
#: to that socket, so it must be unguessable.
SOCKET_ID_BYTES = 16
#: Ids that no stream has, in one subscription: each waits for its stream to be added, and each
#: with an image is one more entry of the mapping the encoder copies whenever wanted images change.
MAX_UNKNOWN_STREAMS = 16


class RateLimit:
    """A token bucket: `allow` is False once a client has used up its burst faster than the rate refills it.

    ``what`` names what is counted, for the reason a client over the rate is given (`reason`).
    """

    def __init__(
        self, per_s: float = MAX_CLIENT_MESSAGES_PER_S, burst: int = CLIENT_MESSAGE_BURST, what: str = "messages"
    ) -> None:
        self._per_s = per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last = time.monotonic()
        self.what = what
        self.reason = f"too many {what}: at most {per_s:g} per second"

    def allow(self, cost: float = 1.0, now: float | None = None) -> bool:
        """Take ``cost`` tokens if there are that many; refused, a request takes none."""
        now = time.monotonic() if now is None else now
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._per_s)
        self._last = now
        if self._tokens < cost:
            return False
        self._tokens -= cost
        return True


class PageSockets:
    """The open WebSockets, by the id each was told in its ``hello`` (``socket``).

    A page closed (or a browser quit) says nothing to the WebRTC players it had: the server would
    keep each one, sending video to no one, until ~30 s of ICE consent checks went unanswered. Its
    WebSocket, though, closes at once. A page names its socket's id in its play offer, and whatever
    listens here (`add_close_listener`: the WebRTC peers) closes that page's players with it. The
    id is a secret of the page's: knowing it lets an offer bind its own player to that socket, and
    nothing else.
    """

    def __init__(self) -> None:
        self._open: set[str] = set()
        self._close_listeners: list[Callable[[str], None]] = []
        self._stopping = False

    @contextmanager
    def opened(self) -> Iterator[str]:
        """A new socket's id, open until the block ends; then the close listeners hear of it."""
        socket_id = secrets.token_urlsafe(SOCKET_ID_BYTES)
        self._open.add(socket_id)
        try:
            yield socket_id
        finally:
            self._open.discard(socket_id)
            if not self._stopping:
                for listener in list(self._close_listeners):
                    listener(socket_id)

    def is_open(self, socket_id: str) -> bool:
        return socket_id in self._open

    def add_close_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(socket_id)`` on the loop as each socket closes."""
        self._close_listeners.append(listener)

    def remove_close_listener(self, listener: Callable[[str], None]) -> None:
        self._close_listeners.remove(listener)

    async def stopping(self, app: web.Application) -> None:
        """The server is shutting down: the sockets it closes now went with it, not with their pages.

        Their pages' players are closed by the shutdown itself; told here, an offer still being
        answered would fail as if its page had gone, with an answer the page then reports.
        """
        self._stopping = True


class ScopedViewer(Viewer):
    """A viewer let in with a stream-scoped token: it hears nothing of other streams (their state, their being
    added or removed), as its ``hello`` lists none of them; a frame's events come only with its subscriptions,
    which its scope holds to its streams. News of no stream (``inference``) it hears as any viewer does."""

    def __init__(self, scope: Scope, address: str | None) -> None:
        super().__init__("ws", address)
        self.scope = scope

    def offer_event(self, event: Event) -> None:
        stream = event.data.get("stream")
        if stream is None or stream in self.scope.streams:
            super().offer_event(event)


class ViewerSocket(web.WebSocketResponse):
    """A viewer's WebSocket. aiohttp closes one whose client sent a message over ``max_msg_size`` itself,
    with 1009 and no reason; here it gets one naming the limit (`TOO_BIG_REASON`), as a client that
    broke another rule is told which (docs/protocol.md)."""

    async def close(self, *, code: int = WSCloseCode.OK, message: bytes = b"", drain: bool = True) -> bool:
        if code == WSCloseCode.MESSAGE_TOO_BIG and not message:
            message = TOO_BIG_REASON.encode()
        return await super().close(code=code, message=message, drain=drain)


page_sockets_key = web.AppKey("page_sockets", PageSockets)
#: This server run's id, in every ``hello``: a client that reconnects to another run knows its tracks ended
#: unsaid (a stopped server sends no ``end`` events) and that ids started over at 1.
_run_key = web.AppKey("ws_run", str)
#: The clients disconnected for their rate, by what they sent too much of (`RateLimit.what`), logged
#: in one line per `DISCONNECT_LOG_INTERVAL_S`.
_disconnects_logged_key = web.AppKey("ws_disconnects_logged", dict[str, ThrottledCount])


def setup_ws(app: web.Application) -> None:
    sockets = app[page_sockets_key] = PageSockets()
    app[_run_key] = secrets.token_urlsafe(RUN_ID_BYTES)
    app[_disconnects_logged_key] = {}
    app.on_shutdown.insert(0, sockets.stopping)  # before the viewers' sockets are closed
    app.router.add_get("/ws", _websocket)


async def _websocket(request: web.Request) -> web.WebSocketResponse:
    """One viewer. This handler is the only reader of the socket; the viewer's sender task writes, and
    a close (`WebSocketCloser`) is waited for before the viewer is let go."""
    # No permessage-deflate, though browsers offer it: it would deflate every JPEG (which does not
    # shrink) once per viewer, a CPU cost that grows with the audience for nothing.
    ws = ViewerSocket(heartbeat=HEARTBEAT_S, max_msg_size=MAX_CLIENT_MESSAGE_BYTES, compress=False)
    if not ws.can_prepare(request).ok:
        raise error(web.HTTPBadRequest, NOT_A_WEBSOCKET_MESSAGE)
    hub, manager = request.app[hub_key], request.app[manager_key]
    credential = request.get(credential_key)
    scope = None if credential is None else credential.scope
    viewer = Viewer("ws", request.remote) if scope is None else ScopedViewer(scope, request.remote)
    join_viewer(hub, viewer)
    try:
        await ws.prepare(request)
        keep_send_queue_short(request)
        connection = request.app[websockets_key][ws] = ViewerConnection(request)
        closer = request[websocket_closer_key] = WebSocketCloser(ws, connection)
        streams = [stream_json(request, info) for info in manager.streams() if _within(scope, info.stream_id)]
        with request.app[page_sockets_key].opened() as socket_id:
            hello = {
                "type": "hello",
                "v": PROTOCOL_VERSION,
                "streams": streams,
                "inference": hub.inference.to_json(),
                "keepalive_s": KEEPALIVE_S,
                "socket": socket_id,
                "run": request.app[_run_key],
            }
            viewer.greet(Event.of(hello))
            sender = asyncio.create_task(send_forever(viewer, ws, closer), name="viewer-sender")
            sender.add_done_callback(functools.partial(_close_if_failed, closer))
            try:
                await _read_forever(ws, hub, manager, viewer, closer, request.app[_disconnects_logged_key], scope)
            finally:
                sender.cancel()
                await asyncio.wait((sender,))  # a failure of its own was logged as it ended
                await closer.finished()
    finally:
        hub.remove_viewer(viewer)
        # Its connection refers back to it (through the request): as a weak key alone it would never go.
        request.app[websockets_key].pop(ws, None)
    return ws


def too_many_unknown_message(stream_ids: list[str]) -> str:
    """What a client is told when more than `MAX_UNKNOWN_STREAMS` of its ids name no stream."""
    return (
        f"subscribe: {len(stream_ids)} ids name no stream now, such as {stream_ids[0]!r}; "
        f"at most {MAX_UNKNOWN_STREAMS} may wait for their stream to be added"
    )


def _error(message: str) -> Event:
    return Event.of({"type": "error", "v": PROTOCOL_VERSION, "message": message})


async def _read_forever(
    ws: web.WebSocketResponse,
    hub: Hub,
    manager: StreamManager,
    viewer: Viewer,
    closer: WebSocketCloser,
    disconnects_logged: dict[str, ThrottledCount],
    scope: Scope | None,
) -> None:
    """Take the client's subscriptions until it leaves. A client over the rate of its messages, of their
    text or of their stream entries is disconnected, each charged before the work it pays for. A subscription
    beyond the ``scope`` of the token the socket was opened with is refused, and the one before it holds."""
    messages = RateLimit()
    text = RateLimit(MAX_CLIENT_TEXT_PER_S, CLIENT_TEXT_BURST, "characters of text")
    entries = RateLimit(MAX_SUBSCRIBED_ENTRIES_PER_S, SUBSCRIBED_ENTRIES_BURST, "stream entries")
    async for message in ws:
        if not messages.allow():
            _disconnect(closer, viewer, messages, disconnects_logged)
            return
        if message.type is WSMsgType.BINARY:
            viewer.offer_event(_error(BINARY_MESSAGE_ERROR))
            continue
        if message.type is not WSMsgType.TEXT:
            continue
        if not text.allow(len(message.data)):
            _disconnect(closer, viewer, text, disconnects_logged)
            return
        request = read_client_message(message.data)
        if isinstance(request, str):
            viewer.offer_event(_error(request))
            continue
        if not entries.allow(len(request["streams"])):
            _disconnect(closer, viewer, entries, disconnects_logged)
            return
        subscriptions = parse_subscriptions(request)
        if isinstance(subscriptions, str):
            viewer.offer_event(_error(subscriptions))
            continue
        if scope is not None and (refusal := beyond_scope(scope, subscriptions)) is not None:
            viewer.offer_event(_error(refusal))
            continue
        if scope is not None:
            subscriptions = within_scope_subscriptions(scope, subscriptions)
        _subscribe(hub, manager, viewer, subscriptions)


def _within(scope: Scope | None, stream_id: str) -> bool:
    """Whether a socket opened with a token of ``scope`` (None: unscoped) may hear of ``stream_id``."""
    return scope is None or stream_id in scope.streams


def beyond_scope(scope: Scope, subscriptions: Mapping[str, Subscription]) -> str | None:
    """Why a socket of ``scope`` may not have ``subscriptions``, naming the first id outside it; None if it may.
    ``"*"`` is within: it is every stream the socket may see (`within_scope_subscriptions`).

    The words are for the person who opened a link (an embed shows them as they are), not a developer's."""
    outside = [stream_id for stream_id in subscriptions if stream_id != "*" and not _within(scope, stream_id)]
    if not outside:
        return None
    cameras = f"camera{'s' if len(scope.streams) > 1 else ''} {', '.join(scope.streams)}"
    return f"this link opens {cameras} only, not {outside[0]}: ask whoever gave it for a link to {outside[0]}"


def within_scope_subscriptions(scope: Scope, subscriptions: Mapping[str, Subscription]) -> dict[str, Subscription]:
    """``subscriptions`` (all within ``scope``) with ``"*"`` made the scope's streams, each with ``"*"``'s options
    unless named on its own: the hub's ``"*"`` is every stream, those added later too, which a link must not see.
    A wall or grid opened with a link subscribes to ``"*"``, and so shows the link's cameras."""
    every = subscriptions.get("*")
    named = {stream_id: subscription for stream_id, subscription in subscriptions.items() if stream_id != "*"}
    if every is None:
        return named
    return {**dict.fromkeys(scope.streams, every), **named}


def _disconnect(
    closer: WebSocketCloser, viewer: Viewer, limit: RateLimit, disconnects_logged: dict[str, ThrottledCount]
) -> None:
    """Close the socket of a client over ``limit`` with 1008: broken or hostile, it would cost everyone
    loop time. Logged in one line per `DISCONNECT_LOG_INTERVAL_S` and limit."""
    throttle = disconnects_logged.setdefault(limit.what, ThrottledCount(DISCONNECT_LOG_INTERVAL_S))
    if disconnected := throttle.add():
        log.warning(
            "disconnecting a WebSocket client from %s (%d disconnected for this since the last such line): it sent %s",
            viewer.address,
            disconnected,
            limit.reason,
        )
    closer.close(WSCloseCode.POLICY_VIOLATION, limit.reason)


def _subscribe(hub: Hub, manager: StreamManager, viewer: Viewer, subscriptions: Mapping[str, Subscription]) -> None:
    """Subscribe ``viewer`` and tell it so (`subscribed_message`), naming the ids no stream has now; past
    `MAX_UNKNOWN_STREAMS` of them the subscription is refused with an error, and the previous one holds.

    The acknowledgement goes before the new subscription's first frames, so a client knows which
    subscription a frame is of. An ``error`` therefore always means a refusal.
    """
    unknown = sorted(set(subscriptions) - {"*"} - {info.stream_id for info in manager.streams()})
    if len(unknown) > MAX_UNKNOWN_STREAMS:
        viewer.offer_event(_error(too_many_unknown_message(unknown)))
        return
    viewer.offer_event(Event.of(subscribed_message(list(subscriptions), unknown)))
    hub.subscribe(viewer, subscriptions)


def subscribed_message(stream_ids: list[str], unknown: list[str]) -> dict[str, Any]:
    """The ``subscribed`` message: the ids (and ``"*"``) the socket watches now, and those of them no stream
    has yet, whose frames follow if a stream is added under one (a typo, or a stream just removed)."""
    return {"type": "subscribed", "v": PROTOCOL_VERSION, "streams": stream_ids, "unknown": unknown}


async def send_forever(viewer: Viewer, ws: web.WebSocketResponse, closer: WebSocketCloser) -> None:
    """The viewer's sender task: events in order, then each stream's newest frame, then wait again;
    after `KEEPALIVE_S` of waiting with nothing to send, a ``keepalive`` message.

    A viewer closed for letting events pile up is sent those it holds (at most `MAX_PENDING_EVENTS`),
    so it misses none before it is told, then closed with 1013 (by ``closer``, which the handler waits
    for). Ends quietly when the client goes away mid-send (a reset, or a connection lost while a send
    waited on it); the handler notices the closed socket itself.
    """
    try:
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_S):  # take() takes nothing until its wait is over
                    events, deliveries = await viewer.take()
            except TimeoutError:
                await ws.send_str(KEEPALIVE_MESSAGE)
                continue
            if not events and not deliveries:
                break  # closed, and all it held is sent
            for event in events:
                await ws.send_str(event.text)
            for delivery in deliveries:
                await ws.send_str(delivery.packet.message(delivery.variant))
                jpeg = delivery.jpeg
                if jpeg is not None:
                    await ws.send_bytes(jpeg)
        if viewer.too_slow:
            closer.close(WSCloseCode.TRY_AGAIN_LATER, TOO_SLOW_REASON)
    except ConnectionError:
        log.debug("a viewer left while being sent to")


def _close_if_failed(closer: WebSocketCloser, sender: asyncio.Task[None]) -> None:
    """Close the socket of a viewer whose sender ended with an error (a bug), with 1011: its handler
    would otherwise go on reading subscriptions for a client sent nothing more."""
    if sender.cancelled() or (failure := sender.exception()) is None:
        return
    log.error("a WebSocket viewer's sender failed; closing its socket", exc_info=failure)
    closer.close(WSCloseCode.INTERNAL_ERROR, SENDER_FAILED_REASON)


def read_client_message(data: str) -> dict[str, Any] | str:
    """A client message decoded and checked down to its list of entries, or an error text for the client.

    ``{"type": "subscribe", "v": 1, "streams": [...], "image": ..., "max_width": ..., "max_fps": ...}``
    (``v`` optional, and refused if it is any version but this server's); each entry of ``streams`` is
    a stream id (or ``"*"``) or an object ``{"id": ..., <options>}`` whose options override the
    message's own for that stream. The entries are read by `parse_subscriptions`, once the client's
    rate of entries allows them.
    """
    try:
        message = json.loads(data, parse_int=_json_int)
    except (ValueError, RecursionError):
        return "messages must be JSON objects"
    if not isinstance(message, dict):
        return "messages must be JSON objects"
    version = message.get("v", PROTOCOL_VERSION)
    if isinstance(version, bool) or version != PROTOCOL_VERSION:
        return f"v: this server speaks protocol version {PROTOCOL_VERSION} only, got {version!r}"
    kind = message.get("type")
    if kind is None:
        return NO_TYPE_ERROR
    if kind != "subscribe":
        return f"unknown message type {kind!r}; known: 'subscribe'"
    streams = message.get("streams")
    if not isinstance(streams, list):
        return "subscribe needs 'streams': a list of stream ids, or [\"*\"] for all"
    if len(streams) > MAX_SUBSCRIBED_STREAMS:
        return f"subscribe: at most {MAX_SUBSCRIBED_STREAMS} entries in 'streams'; use [\"*\"] for all"
    unknown = sorted(set(message) - SUBSCRIPTION_KEYS - SUBSCRIBE_KEYS)
    if unknown:
        known = ", ".join(["streams", *sorted(SUBSCRIPTION_KEYS), "v"])
        return f"subscribe: unknown field {unknown[0]!r}; known: {known}"
    return message


def _json_int(text: str) -> int | float:
    """A JSON integer as an int, or as a float past `MAX_JSON_INT_CHARS`: out of every option's range."""
    return int(text) if len(text) <= MAX_JSON_INT_CHARS else float(text)


def parse_subscriptions(message: Mapping[str, Any]) -> dict[str, Subscription] | str:
    """The subscriptions of a message `read_client_message` passed, or an error text naming the field.

    An id no stream could ever have (``"cám"``, ``""``) is such an error, not an id that waits for its
    stream to be added: it was told its frames would follow, and held a place among the few that wait.
    """
    try:
        options = _options(message, DEFAULT_OPTIONS, "subscribe")
        default = _subscription(options)
        subscriptions: dict[str, Subscription] = {}
        for index, entry in enumerate(message["streams"]):
            if isinstance(entry, str):
                subscriptions[_stream_id(entry, f"streams[{index}]")] = default
            elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
                extra = sorted(set(entry) - SUBSCRIPTION_KEYS - {"id"})
                if extra:
                    raise ValueError(f"streams[{index}].{extra[0]}: unknown field")
                stream_id = _stream_id(entry["id"], f"streams[{index}].id")
                subscriptions[stream_id] = _subscription(_options(entry, options, f"streams[{index}]"))
            else:
                raise ValueError(f'streams[{index}]: expected a stream id or {{"id": ..., options}}')
    except ValueError as exc:
        return str(exc)
    return subscriptions


def _stream_id(value: str, where: str) -> str:
    """``value`` if it is ``"*"`` or could be a stream's id, else a ValueError naming ``where``."""
    return value if value == "*" else check_stream_id(value, where, hint='or "*" for all')


def _options(values: Mapping[str, Any], base: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``base`` with the options ``values`` names laid over it, each checked where it is given.

    Each option overrides only itself: an entry's ``max_width`` (null: no limit) scales the image
    the message chose and never turns images on where it chose "none"; an entry's ``image`` keeps
    the message's ``max_width``. So a ``max_width`` is checked even beside ``"image": "none"``.
    """
    named = {key: values[key] for key in SUBSCRIPTION_KEYS if key in values}
    try:
        if "image" in named:
            parse_variant(named["image"])
        if named.get("max_width") is not None:
            parse_variant(ImageKind.ANNOTATED.value, named["max_width"])
    except ValueError as exc:
        raise ValueError(f"{where}.{exc}") from None
    max_fps = named.get("max_fps")
    if max_fps is not None and (
        isinstance(max_fps, bool) or not isinstance(max_fps, int | float) or not MIN_FPS <= max_fps <= MAX_FPS
    ):
        raise ValueError(f"{where}.max_fps: expected a number from {MIN_FPS:g} to {MAX_FPS:g}, or null")
    return {**base, **named}


def _subscription(options: Mapping[str, Any]) -> Subscription:
    """The subscription of options `_options` checked."""
    image = parse_variant(options["image"], options["max_width"])
    max_fps = options["max_fps"]
    return Subscription(image, None if max_fps is None else float(max_fps))

"""A stream's pictures over plain HTTP: the newest frame as one JPEG, and a never-ending MJPEG feed.

For ``<img src>`` in dashboards and for clients that speak neither WebSocket nor WebRTC. An MJPEG
response is a viewer like a WebSocket (`server.delivery.viewer`): a slow one skips frames and holds up
no one else.

aiohttp does not cancel a handler whose client went away (``handler_cancellation`` is off), and an
MJPEG handler may wait for minutes with nothing to write (its camera reconnecting, a low ``max_fps``),
so it watches its connection itself: a client that left is let go within `CLIENT_CHECK_S`, not
counted as a viewer, holding a slot of ``[server] max_viewers`` and a JPEG encoding, until the next
frame. Turning ``handler_cancellation`` on instead would cancel every route's handler at any await
when its client leaves, a stream half added or a config file half saved included.

While its stream has no current picture (it never had a frame, its camera is reconnecting, its file
ended, inference became unavailable and no frame has been shown unanalysed since), an MJPEG response
sends a notice saying so (`server.delivery.notice`) every `NOTICE_INTERVAL_S`: an ``<img>`` cannot
show a status, and would otherwise stay blank or frozen on the last frame. A snapshot answers 503
instead, by the same rule (`_has_current_picture`), naming the state in its message and its
``X-Segcast-State`` header: its caller is a program that wants the status, not an old frame that
looks like a working camera's.

An MJPEG response that ends while its client is still there (its stream removed, the server stopping, the
signed token it was opened with expired) ends with a last notice saying so (`Farewell`), then the closing
boundary: an ``<img>`` never reconnects, and would otherwise stay on its last frame for ever, looking live.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from contextlib import suppress

from aiohttp import web

from server.delivery.encode import ImageKind, Variant, parse_picture
from server.delivery.hub import Hub
from server.delivery.notice import Notices, notice_lines, notice_size
from server.delivery.viewer import Subscription, Viewer
from server.http.access.auth import token_expiry_ender_key
from server.http.api import stream_info
from server.http.errors import error
from server.http.keys import http_viewers_key, hub_key, manager_key
from server.http.network.serving import keep_send_queue_short
from server.http.viewers import MAX_FPS, MIN_FPS, join_viewer
from server.sources.base import StreamState
from server.stream_info import StreamInfo

log = logging.getLogger(__name__)

MJPEG_BOUNDARY = "segcastframe"
#: How often an MJPEG handler that has nothing to write looks whether its client is still there.
CLIENT_CHECK_S = 1.0
SNAPSHOT_RETRY_S = 1
#: How long one MJPEG part may take to reach its client before the viewer counts as gone and its
#: connection is cut: about as long as a WebSocket client that stops reading is kept (pinged after
#: 20 s quiet, and given 10 s for the pong). A client that stopped reading would otherwise hold its
#: viewer slot (of ``[server] max_viewers``) for as long as it kept the connection open, past its
#: stream's removal too; a part over a slow link takes seconds, not tens of them.
MJPEG_PART_TIMEOUT_S = 30.0
#: How often an MJPEG response whose stream has no current picture sends a notice of why (or at its
#: ``max_fps``, if that is lower): often enough that an ``<img>`` shows it soon after it connects or
#: its picture stops, and that a proxy never finds the connection idle.
NOTICE_INTERVAL_S = 1.0
#: How long an ending MJPEG response's last notice and closing boundary may take to reach its client before
#: its connection is cut: as long as a WebSocket's close frame at shutdown, within the grace aiohttp gives
#: handlers then (`server.http.network.serving.SHUTDOWN_GRACE_S`).
FAREWELL_TIMEOUT_S = 2.0

#: The app's notices, shared by its MJPEG responses (here rather than in `server.http.keys`: only
#: this module uses them).
notices_key = web.AppKey("notices", Notices)


class Farewell(enum.Enum):
    """Why an MJPEG response ends while its client is still there: its last notice's ``X-Segcast-State``,
    and what that notice says."""

    REMOVED = ("removed", "stream removed")
    STOPPED = ("stopped", "segcast stopped: reload this picture")
    TOKEN_EXPIRED = ("token-expired", "access token expired: get a new link")

    def __init__(self, state: str, says: str) -> None:
        self.state = state
        self.says = says


class _TokenExpiry:
    """Ends an MJPEG response when the signed token it was opened with expires (`token_expiry_ender_key`),
    so that it can say so: closing its viewer alone would tell it no more than a server stopping does."""

    def __init__(self, viewer: Viewer) -> None:
        self._viewer = viewer
        self.expired = False

    def end(self) -> None:
        self.expired = True
        self._viewer.close()


def setup_pictures(app: web.Application) -> None:
    app[notices_key] = Notices()
    app.router.add_get("/api/streams/{stream}/snapshot.jpg", _snapshot)
    app.router.add_get("/api/streams/{stream}/mjpeg", _mjpeg)


def _variant(request: web.Request) -> Variant:
    query = request.query
    raw_width = query.get("max_width")
    try:
        width = int(raw_width) if raw_width is not None else None
    except ValueError:
        raise error(web.HTTPBadRequest, f"max_width: expected a whole number of pixels, got {raw_width!r}") from None
    try:
        return parse_picture(query.get("image", ImageKind.ANNOTATED.value), width)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None


def _fps(request: web.Request) -> float | None:
    raw = request.query.get("max_fps")
    if raw is None:
        return None
    try:
        fps = float(raw)
    except ValueError:
        fps = -1.0
    if not MIN_FPS <= fps <= MAX_FPS:
        raise error(
            web.HTTPBadRequest,
            f"max_fps: expected a number of frames per second from {MIN_FPS:g} to {MAX_FPS:g}, got {raw!r}",
        )
    return fps


async def _snapshot(request: web.Request) -> web.Response:
    """The newest frame as one JPEG: ``?image=annotated|clean&max_width=N``, scaled to a size the stream's
    budget of scaled sizes allows (`Hub.snapshot`); while the stream has no current picture
    (`_has_current_picture`), where an MJPEG response sends notices, a 503 (`_no_picture`)."""
    info = stream_info(request)
    asked = _variant(request)
    hub = request.app[hub_key]
    snapshot = await hub.snapshot(info.stream_id, asked) if _has_current_picture(request.app, info) else None
    if snapshot is None:
        raise _no_picture(info, had_frame=info.stream_id in hub.latest)
    packet, image = snapshot
    return web.Response(
        body=packet.jpegs[image],
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Segcast-Seq": str(packet.seq)},
    )


def _has_current_picture(app: web.Application, info: StreamInfo) -> bool:
    """Whether ``info``'s stream has a picture of the scene now: the one rule by which a snapshot answers
    503 and an MJPEG response sends notices instead of frames, so the two never disagree.

    A stream has none before its first frame, and while `StreamManager.is_current` says its newest
    frame is not of the scene now (its camera reconnecting, its file ended, inference unavailable).
    While inference is unavailable a live stream's frames are shown unanalysed (`FrameResult.unanalysed`,
    their annotated picture saying so): once the newest is one of those, it is the scene now again.
    """
    latest = app[hub_key].latest.get(info.stream_id)
    if latest is None:
        return False
    if not latest.result.analysed:
        return info.state is StreamState.LIVE
    return app[manager_key].is_current(info)


def _no_picture(info: StreamInfo, had_frame: bool) -> web.HTTPException:
    """The 503 for a snapshot of a stream with no current picture: why, as its MJPEG notice says it (the
    state, the next attempt, the last error), the state alone in ``X-Segcast-State`` as on a notice's
    part, and ``Retry-After``."""
    lines = notice_lines(info.stream_id, info.state, info.error, info.status.next_attempt_at, info.inference)
    missing = "no current picture" if had_frame else "no frame yet"
    return error(
        web.HTTPServiceUnavailable,
        f"stream {info.stream_id!r} has {missing}: {'; '.join(lines[1:])}",
        **{"Retry-After": str(SNAPSHOT_RETRY_S), "X-Segcast-State": info.state.value},
    )


async def _mjpeg(request: web.Request) -> web.StreamResponse:
    """A never-ending multipart JPEG stream for ``<img src>``: ``?image=...&max_width=N&max_fps=F``.

    The response is a viewer like a WebSocket: a latest-only slot, drained by this handler alone,
    so a slow ``<img>`` skips frames and never holds up anyone else. It ends when the stream is
    removed, the server shuts down or its signed token expires, with a notice saying which and the
    closing boundary (`_say_farewell`); or when the client goes away.
    Between frames, while the stream has no current picture, it sends notices (`_notice`).
    """
    info = stream_info(request)
    stream_id = info.stream_id
    subscription = Subscription(_variant(request), _fps(request))
    hub = request.app[hub_key]
    viewer = Viewer(f"mjpeg-{stream_id}", request.remote, pictures_only=True)
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            "Cache-Control": "no-store",
        }
    )
    join_viewer(hub, viewer)
    token_expiry = _TokenExpiry(viewer)
    request[token_expiry_ender_key] = token_expiry.end
    watcher: asyncio.Task[None] | None = None
    loop = asyncio.get_running_loop()
    notice_interval_s = max(NOTICE_INTERVAL_S, subscription.min_interval_s)
    try:
        # Subscribed before the first await: the stream's removal from then on closes the viewer.
        hub.subscribe(viewer, {stream_id: subscription})
        request.app[http_viewers_key].add(viewer)
        await response.prepare(request)
        keep_send_queue_short(request)
        watcher = asyncio.create_task(_close_when_client_leaves(request, viewer), name=f"mjpeg-{stream_id}-client")
        notice_due = loop.time()  # a client is told at once if the stream has nothing to show it
        first_frame = True
        frame_size: tuple[int, int] | None = None
        while not viewer.closed:
            frame_size = _frame_size(hub, stream_id) or frame_size  # kept past the stream's removal, for its farewell
            try:
                async with asyncio.timeout_at(notice_due):  # take() takes nothing until its wait is over
                    _, deliveries = await viewer.take()
            except TimeoutError:
                notice_due = loop.time() + notice_interval_s
                notice = await _notice(request, viewer, stream_id)
                if notice is not None and not viewer.closed and not await _write_part(response, viewer, *notice):
                    return _cut_off(request, response, stream_id)
                continue
            # The first frame a new viewer is offered is the newest published, maybe from before its camera
            # went away: no part may pass it off as the scene now (`_notice`s say why). Asked until a frame
            # passes, not for every frame: `StreamManager.info` is too much work per viewer per frame.
            if first_frame and not _is_current(request, stream_id):
                continue
            first_frame = False
            notice_due = loop.time() + notice_interval_s
            for delivery in deliveries:
                jpeg = delivery.jpeg
                seq = f"X-Segcast-Seq: {delivery.packet.seq}"
                if jpeg is not None and not await _write_part(response, viewer, jpeg, seq):
                    return _cut_off(request, response, stream_id)
        if _client_gone(request):
            log.debug("[%s] an MJPEG viewer left", stream_id)
            return response
        farewell = Farewell.TOKEN_EXPIRED if token_expiry.expired else _farewell(request, stream_id)
        if not await _say_farewell(request, response, viewer, stream_id, frame_size, farewell):
            return _cut_off(request, response, stream_id)
    except ConnectionError:
        log.debug("[%s] an MJPEG viewer left", stream_id)
    finally:
        hub.remove_viewer(viewer)
        if watcher is not None:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher
    return response


def _is_current(request: web.Request, stream_id: str) -> bool:
    """`_has_current_picture` for ``stream_id`` now; True once removed (its viewer is closed with it)."""
    try:
        info = request.app[manager_key].info(stream_id)
    except KeyError:
        return True
    return _has_current_picture(request.app, info)


async def _notice(request: web.Request, viewer: Viewer, stream_id: str) -> tuple[bytes, str] | None:
    """The notice for ``viewer`` now, with its part's header; None while the stream has a current picture
    (`_has_current_picture`)."""
    try:
        info = request.app[manager_key].info(stream_id)
    except KeyError:
        return None  # removed: the viewer is closed with it
    if _has_current_picture(request.app, info):
        return None
    lines = notice_lines(stream_id, info.state, info.error, info.status.next_attempt_at, info.inference)
    jpeg = await _notice_jpeg(request, viewer, stream_id, lines, _frame_size(request.app[hub_key], stream_id))
    return jpeg, f"X-Segcast-State: {info.state.value}"


def _frame_size(hub: Hub, stream_id: str) -> tuple[int, int] | None:
    """The size (width, height) of the stream's newest frame; None before its first and once it is removed."""
    latest = hub.latest.get(stream_id)
    return None if latest is None else latest.result.frame.image.shape[1::-1]


async def _notice_jpeg(
    request: web.Request, viewer: Viewer, stream_id: str, lines: tuple[str, ...], frame_size: tuple[int, int] | None
) -> bytes:
    """``lines`` as a notice for ``viewer``, sized for frames of ``frame_size`` (`notice_size`) and scaled as
    the viewer's frames are, so the ``<img>`` keeps its shape in a dashboard."""
    width, height = notice_size(frame_size)
    variant = viewer.subscriptions[stream_id].image
    assert variant is not None  # the hub may change an MJPEG viewer's image size, never take it away
    return await request.app[notices_key].jpeg(lines, variant.size(width, height), request.app[hub_key].jpeg_quality)


def _farewell(request: web.Request, stream_id: str) -> Farewell:
    """Why the viewer of ``stream_id``, its client still there and its token good, was closed: its stream was
    removed (gone from the manager before the hub says so), or else the server is stopping (`server.app`
    closes every viewer at shutdown, while the streams still run)."""
    try:
        request.app[manager_key].config(stream_id)
    except KeyError:
        return Farewell.REMOVED
    return Farewell.STOPPED


async def _say_farewell(
    request: web.Request,
    response: web.StreamResponse,
    viewer: Viewer,
    stream_id: str,
    frame_size: tuple[int, int] | None,
    farewell: Farewell,
) -> bool:
    """End ``response`` with a notice of ``farewell``, then the closing boundary; False where they were not
    taken within `FAREWELL_TIMEOUT_S`: the client may have part of them, and must be cut off (`_cut_off`).

    Raises `ConnectionError` when the client went away.
    """
    lines = (f"{stream_id}: no picture", farewell.says)
    try:
        async with asyncio.timeout(FAREWELL_TIMEOUT_S):
            jpeg = await _notice_jpeg(request, viewer, stream_id, lines, frame_size)
            await response.write(_part(jpeg, f"X-Segcast-State: {farewell.state}"))
            await response.write_eof(f"--{MJPEG_BOUNDARY}--\r\n".encode())
    except TimeoutError:
        return False
    return True


def _cut_off(request: web.Request, response: web.StreamResponse, stream_id: str) -> web.StreamResponse:
    """End a response whose part `_write_part` gave up on: the client may have part of it, so no closing
    boundary can follow; the connection is cut."""
    log.debug("[%s] an MJPEG viewer stopped reading, or was closed mid-part: cut off", stream_id)
    if request.transport is not None:
        request.transport.abort()
    return response


def _client_gone(request: web.Request) -> bool:
    """Whether ``request``'s connection is lost or closing: nothing written to it will arrive."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def _close_when_client_leaves(request: web.Request, viewer: Viewer) -> None:
    """Close ``viewer`` once its client has gone, so that a handler waiting for a frame ends.

    Polled: aiohttp tells a handler of a lost connection only by failing its next write, and by
    failing its request's body reader, which for a GET is the shared empty one that ignores it.
    """
    while not _client_gone(request):  # noqa: ASYNC110 - there is no event to wait on, as said above
        await asyncio.sleep(CLIENT_CHECK_S)
    viewer.close()


async def _write_part(response: web.StreamResponse, viewer: Viewer, jpeg: bytes, header: str) -> bool:
    """Write one part, ``header`` (one ``Name: value``) after its content type and length; False where
    it was given up: not taken within `MJPEG_PART_TIMEOUT_S`, or ``viewer`` closed while the client held
    it up (its stream removed, the server shutting down). The connection must then be cut (`_cut_off`).

    Raises `ConnectionError` when the client went away.
    """
    write = asyncio.ensure_future(response.write(_part(jpeg, header)))
    closed = asyncio.ensure_future(viewer.wait_closed())
    try:
        await asyncio.wait((write, closed), timeout=MJPEG_PART_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        write.cancel()  # nothing to do once done; and the handler itself may be cancelled (the client left)
        with suppress(asyncio.CancelledError, ConnectionError):
            await write  # its failure retrieved, whichever way this ends
    if write.cancelled():
        return False
    write.result()
    return True


def _part(jpeg: bytes, header: str) -> bytes:
    """One part of the multipart body: ``jpeg``, with ``header`` (one ``Name: value``) after its content type
    and length."""
    head = f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n{header}\r\n\r\n"
    return head.encode() + jpeg + b"\r\n"

"""The REST API under ``/api``, plus ``/healthz`` and ``/metrics`` (formats in docs/protocol.md).

Every error is JSON, ``{"error": "<what is wrong and how to fix it>"}``, with a 4xx status that says
whose fault it was. Changes to streams run in threads of their own (stopping one joins its reader),
never queueing the snapshots' encoding nor shutdown behind a stalled camera, and can be saved to the
config file: with ``?persist=1``, or always when the config file says ``save_config = true``. A new
source is checked first, within a time limit (`SourceChecks`): a file on a share, or a camera's name,
that nothing answers for is a 503, never a change that waits for ever.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from aiohttp import web

from server.config import STREAM_KEYS, ConfigError, StreamConfig, flatten_options, stream_config, stream_options
from server.delivery.encode import FramePacket, ImageKind, Variant, parse_variant
from server.delivery.hub import Hub
from server.delivery.viewer import Subscription, Viewer, ViewerLimitError
from server.events.api import event_outputs_key
from server.frames import PROTOCOL_VERSION
from server.http.bodies import read_body
from server.http.errors import detailed_error, error
from server.http.keys import (
    config_lock_key,
    etag_secret_key,
    http_viewers_key,
    hub_key,
    manager_key,
    settings_key,
    stream_changes_key,
)
from server.http.metrics import render_metrics
from server.http.policy import SourceRefused, UnusableSource
from server.http.source_checks import CheckUnanswered, SourceChecks
from server.persist import ConfigEditedError, ConfigFileState, write_config
from server.sources import SourceError, check_uri
from server.streams import HandedInError, ShuttingDownError, StreamExistsError, StreamInfo, StreamOptionsError

log = logging.getLogger(__name__)

MJPEG_BOUNDARY = "segcastframe"
MAX_MJPEG_FPS = 60.0
SNAPSHOT_RETRY_S = 1
VIEWER_RETRY_S = 10
#: When to ask again after a source's check was given up (`server.http.source_checks.CHECK_TIMEOUT_S`).
SOURCE_CHECK_RETRY_S = 10
#: How long one MJPEG part may take to reach its client before the viewer counts as gone and its
#: connection is cut: about as long as a WebSocket client that stops reading is kept (pinged after
#: 20 s quiet, and given 10 s for the pong). A client that stopped reading would otherwise hold its
#: viewer slot (of ``[server] max_viewers``) for as long as it kept the connection open, past its
#: stream's removal too; a part over a slow link takes seconds, not tens of them.
MJPEG_PART_TIMEOUT_S = 30.0
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Threads for stream changes (POST, PATCH, DELETE of /api/streams). Each holds one for moments, but
#: a removal or restart for as long as its reader takes to stop: up to 2 s for a stalled camera. Up to
#: this many can be stopping at once before another change waits for a thread.
STREAM_CHANGE_THREADS = 16

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: What the API knows of the config file it saves to: the API's own state, changed only by its
#: saves (under `config_lock_key`) and by the removal of a stream the command line started.
config_file_key = web.AppKey("config_file", ConfigFileState)
#: Where stream changes run: not the loop's default executor, which encodes snapshots and stops the pipeline.
stream_change_executor_key = web.AppKey("stream_change_executor", ThreadPoolExecutor)
#: Where new sources are checked against the policy: not in the stream-change threads (see `SourceChecks`).
source_checks_key = web.AppKey("source_checks", SourceChecks)


def setup_api(app: web.Application) -> None:
    app[config_file_key] = ConfigFileState.of(app[settings_key])
    app.cleanup_ctx.append(_stream_change_executor)
    app.cleanup_ctx.append(_source_checks)
    router = app.router
    router.add_get("/api/streams", _list_streams)
    router.add_post("/api/streams", _add_stream)
    router.add_get("/api/streams/{stream}", _get_stream)
    router.add_patch("/api/streams/{stream}", _change_stream)
    router.add_delete("/api/streams/{stream}", _remove_stream)
    router.add_get("/api/streams/{stream}/snapshot.jpg", _snapshot)
    router.add_get("/api/streams/{stream}/mjpeg", _mjpeg)
    router.add_get("/api/streams/{stream}/tracks", _tracks)
    router.add_get("/api/streams/{stream}/counts", _counts)
    router.add_get("/healthz", _health)
    router.add_get("/metrics", _metrics)


async def _stream_change_executor(app: web.Application) -> AsyncIterator[None]:
    executor = ThreadPoolExecutor(STREAM_CHANGE_THREADS, thread_name_prefix="stream-change")
    app[stream_change_executor_key] = executor
    yield
    executor.shutdown(wait=False, cancel_futures=True)  # requests are over: any change left is its own


async def _source_checks(app: web.Application) -> AsyncIterator[None]:
    checks = SourceChecks(app[manager_key].policy)  # the one policy, made with the manager at start
    app[source_checks_key] = checks
    yield
    checks.shutdown()  # a check still waiting for a hung share is nobody's now: not waited for


async def _in_change_thread(request: web.Request, call: Callable[[], Any]) -> Any:
    """Run ``call`` (a blocking part of a stream change) in `stream_change_executor_key`."""
    return await asyncio.get_running_loop().run_in_executor(request.app[stream_change_executor_key], call)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Routing errors (404, 405) under /api come back as JSON like every other API error."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json" or not request.path.startswith("/api"):
            raise
        reason = exc.reason if exc.status != 404 else f"no such API route: {request.method} {request.path}"
        headers = {k: v for k, v in exc.headers.items() if k == "Allow"}
        return web.json_response({"error": reason}, status=exc.status, headers=headers)


def stream_json(request: web.Request, info: StreamInfo) -> dict[str, Any]:
    """A stream as the API and the WebSocket ``hello`` show it: state, counters, live stats, links."""
    hub = request.app[hub_key]
    base = f"/api/streams/{info.stream_id}"
    return {
        **info.to_json(),
        **hub.stats(info.stream_id),
        "viewers": hub.viewer_count(info.stream_id),
        "etag": stream_etag(request, info.config),
        "persistable": _persistable(request.app, info.stream_id),
        "links": {
            "snapshot": f"{base}/snapshot.jpg",
            "mjpeg": f"{base}/mjpeg",
            "tracks": f"{base}/tracks",
            "counts": f"{base}/counts",
            "embed": f"/embed/{info.stream_id}",
        },
    }


def stream_etag(request: web.Request, config: StreamConfig) -> str:
    """The ETag of a stream's settings (quoted, as headers carry it): any change of them changes it.

    A PATCH with ``If-Match`` is made only while the stream still has the settings its sender read
    (else 412): two editors of one stream (two viewer tabs, a script and a person) cannot replace
    each other's zones unseen. Keyed with the process's secret, as the settings hold the camera's
    password; so an ETag holds until the server restarts, and one from before is refused.
    """
    settings = json.dumps(config.to_json(), sort_keys=True, separators=(",", ":")).encode()
    return '"' + hmac.new(request.app[etag_secret_key], settings, "sha256").hexdigest()[:24] + '"'


def _with_etag(request: web.Request, info: StreamInfo, **kwargs: Any) -> web.Response:
    """A stream's JSON, with its ETag in the header too."""
    body = stream_json(request, info)
    return web.json_response(body, headers={"ETag": body["etag"]}, **kwargs)


def _check_unchanged(request: web.Request, config: StreamConfig) -> None:
    """Refuse a change sent with ``If-Match`` for settings the stream no longer has (see `stream_etag`)."""
    wanted = request.headers.get("If-Match")
    if wanted is None:
        return
    tags = request.if_match or ()
    if not tags:
        raise error(web.HTTPBadRequest, "If-Match: expected the stream's ETag as GET gave it (quoted), or *")
    # Compared strongly (RFC 9110): a weak tag matches nothing, as segcast gives none.
    if any(tag.value in ("*", stream_etag(request, config).strip('"')) and not tag.is_weak for tag in tags):
        return
    if all(tag.is_weak for tag in tags):
        raise error(
            web.HTTPPreconditionFailed,
            "If-Match: a weak ETag (W/...) never matches; send the ETag as GET gave it (a proxy may have weakened it)",
        )
    raise error(
        web.HTTPPreconditionFailed,
        f"stream {config.stream_id!r} was changed since it was read (If-Match): GET it again and make the change "
        "over what it has now",
    )


def _info(request: web.Request) -> StreamInfo:
    stream_id = request.match_info["stream"]
    try:
        return request.app[manager_key].info(stream_id)
    except KeyError:
        raise error(web.HTTPNotFound, f"no stream {stream_id!r}; GET /api/streams lists them") from None


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, within `server.http.bodies.MAX_BODY_BYTES`, finite numbers only."""
    raw = await read_body(request)
    try:
        body = json.loads(raw.decode() or "null", parse_constant=_no_constant, parse_float=_finite)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, NaN, nesting too deep
        raise error(web.HTTPBadRequest, "the body must be a JSON object of finite numbers, nested sensibly") from None
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, "the body must be a JSON object")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        # JSON can escape half of a surrogate pair ("\\ud800"), which is no character: FFmpeg cannot
        # open it and the config file cannot hold it, so it must not get as far as either.
        raise error(
            web.HTTPBadRequest, "the body must be text: it escapes a lone surrogate (\\ud800-\\udfff)"
        ) from None
    return body


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number segcast accepts")


def _finite(text: str) -> float:
    """A JSON number as a float, unless it is too large for one: ``1e400`` would read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large a number")
    return value


async def _check_source(request: web.Request, uri: str) -> None:
    """Refuse a source the API may not open (a local file or device, a scheme or an address not allowed): 403;
    one that can never work as written (a malformed or unknown ``#`` option, a file name with a NUL
    character): 400, naming what is wrong, rather than a stream that fails at once.

    The policy's check may wait for the file system (a file's real path) or the name server (a
    camera's host): `source_checks_key` gives up on one that does not answer in time, a 503 with
    ``Retry-After``. The URI is then read as the manager will read it, on the loop: `check_uri` reads
    its text alone (at most `server.http.policy.MAX_URI_CHARS`, the policy saw to that) and builds
    nothing, not even a scene's background, so it takes a millisecond or less and cannot hang.
    """
    try:
        await request.app[source_checks_key].check(uri)
    except SourceRefused as exc:
        raise error(web.HTTPForbidden, str(exc)) from None
    except UnusableSource as exc:
        raise error(web.HTTPBadRequest, f"body.uri: {exc}") from None
    except CheckUnanswered as exc:
        raise error(
            web.HTTPServiceUnavailable,
            f"body.uri: the source could not be checked, {exc}; nothing was changed, try again later",
            **{"Retry-After": str(SOURCE_CHECK_RETRY_S)},
        ) from None
    try:
        check_uri(uri, request.app[settings_key].max_frame_side)
    except SourceError as exc:
        raise error(web.HTTPBadRequest, f"body.uri: {exc}") from None


def _persist_asked(request: web.Request) -> bool:
    """Whether ``?persist=1`` asks to save the change; 400 for a bad value, or with no file to save to."""
    settings = request.app[settings_key]
    flag = request.query.get("persist", "")
    if flag not in ("", "0", "1", "true", "false"):
        raise error(web.HTTPBadRequest, f"persist: expected 1 or 0, got {flag!r}")
    asked = flag in ("1", "true")
    if (asked or settings.save_config) and settings.config_path is None:
        raise error(web.HTTPBadRequest, "persist: there is no config file to save to; start segcast with --config FILE")
    return asked


def _saves(request: web.Request, stream_id: str, asked: bool) -> bool:
    """Whether a change of ``stream_id`` is saved: asked (``asked``), or always with ``save_config = true``.

    Some streams are never the file's (`_unsaveable`). Asked to save one, the request is refused
    before anything changes (409); under ``save_config`` its change is made and not saved, as its
    ``persistable`` says.
    """
    if (reason := _unsaveable(request.app, stream_id)) is not None:
        if asked:
            raise _unsaveable_conflict(request, stream_id, reason)
        return False
    return asked or request.app[settings_key].save_config


def _persistable(app: web.Application, stream_id: str) -> bool:
    """Whether ``?persist=1`` can save the stream: there is a config file, and the stream can be written to it."""
    return app[settings_key].config_path is not None and _unsaveable(app, stream_id) is None


def _unsaveable(app: web.Application, stream_id: str) -> str | None:
    """Why the stream is never written to the config file, or None.

    An id ``--source`` started is not the file's, whatever runs under it now: the command line starts
    it again as it says, and written to the file it would clash with the flag at the next start. A
    stream a browser's camera publishes exists while its publisher sends; it has no source to reopen.
    """
    if stream_id in app[config_file_key].flag_streams:
        return "comes from the command line (--source)"
    if app[manager_key].handed_in(stream_id):
        return "is published by a browser's camera (WebRTC) and lasts while its publisher sends"
    return None


def _unsaveable_conflict(request: web.Request, stream_id: str, reason: str) -> web.HTTPException:
    """409 for ``?persist=1`` on a stream that is never written to the config file: nothing is changed."""
    path = request.app[settings_key].config_path
    name = path.name if path is not None else "the config file"
    advice = (
        f", or move the stream from --source into {name} as a [[streams]] table"
        if stream_id in request.app[config_file_key].flag_streams
        else ""
    )
    return error(
        web.HTTPConflict,
        f"nothing was changed: stream {stream_id!r} {reason}, so it cannot be saved to {name}. Make the change "
        f"without saving it (it then lasts until segcast restarts){advice}",
    )


async def _save_config(request: web.Request, changed: StreamInfo | None = None) -> None:
    """Write the streams to the config file; if that fails, the file is left as it was and the caller told.

    A file edited since segcast read or saved it is not overwritten (409): the edits (a rotated
    token, a stream added by hand) are the admin's, and the settings in memory would undo them.
    The error names the stream ``changed`` as it now is (``"stream"``, and its ``ETag`` header): the
    change was made, and a client that took the error for a refusal would edit over stale settings.
    """
    app = request.app
    async with app[config_lock_key]:
        configs = app[manager_key].configs()
        save = functools.partial(write_config, app[settings_key], configs, app[config_file_key])
        try:
            await asyncio.get_running_loop().run_in_executor(None, save)
        except ConfigEditedError as exc:
            log.warning("did not save the streams to %s: %s", app[settings_key].config_path, exc)
            message = f"the change is in effect, but not saved: {exc}"
            raise _not_saved(request, web.HTTPConflict, message, changed) from None
        except (ConfigError, OSError) as exc:
            reason = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) else str(exc)
            log.error("could not save the streams to %s: %s", app[settings_key].config_path, reason)
            message = f"the change is in effect, but not saved ({reason})"
            raise _not_saved(request, web.HTTPInternalServerError, message, changed) from None
    log.info("saved %d streams to %s", len(configs), app[settings_key].config_path)


def _not_saved(
    request: web.Request, kind: type[web.HTTPException], message: str, changed: StreamInfo | None
) -> web.HTTPException:
    """The error for a change made but not saved, with the stream it changed as it now is."""
    if changed is None:
        return error(kind, message)
    stream = stream_json(request, changed)
    return detailed_error(kind, message, {"stream": stream}, {"ETag": stream["etag"]})


async def _list_streams(request: web.Request) -> web.Response:
    infos = request.app[manager_key].streams()
    return web.json_response({"v": PROTOCOL_VERSION, "streams": [stream_json(request, info) for info in infos]})


async def _get_stream(request: web.Request) -> web.Response:
    return _with_etag(request, _info(request))


async def _add_stream(request: web.Request) -> web.Response:
    """``POST /api/streams`` with ``{"id": ..., "uri": ..., "loop": false, <stream options>}``."""
    asked = _persist_asked(request)
    body = await _body(request)
    try:
        config = stream_config(body, request.app[settings_key].stream_defaults, "body")
    except ConfigError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    persist = _saves(request, config.stream_id, asked)
    await _check_source(request, config.uri)
    info = await _start_stream(request, functools.partial(request.app[manager_key].add, checked=True), config)
    request.app[config_file_key].added.add(config.stream_id)  # a new stream, whatever the id had before
    if persist:
        await _save_config(request, info)
    response = _with_etag(request, info, status=201)
    response.headers["Location"] = f"/api/streams/{config.stream_id}"
    return response


async def _change_stream(request: web.Request) -> web.Response:
    """``PATCH /api/streams/<id>``: change ``uri``, ``loop`` or stream options (see `StreamManager.replace`).

    The body is merged over the stream's options as they are when the change is made, one change
    of a stream at a time: two PATCHes of different keys at once (one of ``zones``, one of ``lines``)
    both hold. Two of the same key replace each other's list whole, as a PATCH does, unless sent
    with ``If-Match`` (`stream_etag`): then the second is refused with 412.
    """
    asked = _persist_asked(request)
    _info(request)  # a 404 before reading the body
    persist = _saves(request, request.match_info["stream"], asked)
    try:
        body = flatten_options(await _body(request), "body")
    except ConfigError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    lock = request.app[stream_changes_key].setdefault(request.match_info["stream"], asyncio.Lock())
    async with lock:
        info = await _merge_change(request, body)
        if persist:
            await _save_config(request, info)
    return _with_etag(request, info)


async def _merge_change(request: web.Request, body: dict[str, Any]) -> StreamInfo:
    """Apply a PATCH body over the stream's current config; 400 for a bad one."""
    current = _info(request).config
    _check_unchanged(request, current)
    if body.get("id", current.stream_id) != current.stream_id:
        raise error(web.HTTPBadRequest, "body.id: a stream cannot be renamed; remove it and add it again")
    if not body:
        raise error(web.HTTPBadRequest, "the body must name at least one thing to change: uri, loop or a stream option")
    try:
        loop_value = body.get("loop", current.loop)
        if not isinstance(loop_value, bool):
            raise ConfigError(f"body.loop: expected true or false, got {loop_value!r}")
        uri = body.get("uri", current.uri)
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigError("body.uri: expected the source, e.g. rtsp://..., a file path or scene:?seed=1")
        options = stream_options({k: v for k, v in body.items() if k not in STREAM_KEYS}, current.options, "body")
    except ConfigError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    config = StreamConfig(current.stream_id, uri.strip(), loop_value, options)
    if config.uri != current.uri:
        await _check_source(request, config.uri)
    replace = functools.partial(request.app[manager_key].replace, checked=config.uri != current.uri)
    return await _start_stream(request, replace, config)


async def _start_stream(
    request: web.Request, start: Callable[[StreamConfig], StreamInfo], config: StreamConfig
) -> StreamInfo:
    """Run ``start`` (the manager's ``add`` or ``replace``) off the loop; its refusals as HTTP errors."""
    try:
        info: StreamInfo = await _in_change_thread(request, functools.partial(start, config))
        return info
    except StreamExistsError as exc:
        raise error(web.HTTPConflict, f"{exc}; remove it first or choose another id") from None
    except StreamOptionsError as exc:
        raise error(web.HTTPBadRequest, f"body.{exc.reason}") from None
    except KeyError:
        raise error(web.HTTPNotFound, f"no stream {config.stream_id!r}: it was removed meanwhile") from None
    except HandedInError as exc:
        raise error(web.HTTPConflict, f"{exc}; the publisher controls it") from None
    except ShuttingDownError as exc:
        raise error(web.HTTPServiceUnavailable, str(exc)) from None


async def _remove_stream(request: web.Request) -> web.Response:
    asked = _persist_asked(request)
    stream_id = _info(request).stream_id
    persist = _saves(request, stream_id, asked)
    try:
        await _in_change_thread(request, functools.partial(request.app[manager_key].remove, stream_id))
    except KeyError:
        raise error(web.HTTPNotFound, f"no stream {stream_id!r}: it was removed meanwhile") from None
    if persist:
        await _save_config(request)
    return web.Response(status=204)


def _variant(request: web.Request) -> Variant:
    query = request.query
    raw_width = query.get("max_width")
    try:
        width = int(raw_width) if raw_width is not None else None
    except ValueError:
        raise error(web.HTTPBadRequest, f"max_width: expected a whole number of pixels, got {raw_width!r}") from None
    try:
        variant = parse_variant(query.get("image", ImageKind.ANNOTATED.value), width)
    except ValueError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    if variant is None:
        raise error(web.HTTPBadRequest, "image: this URL serves pictures; use annotated or clean")
    return variant


def _fps(request: web.Request) -> float | None:
    raw = request.query.get("max_fps")
    if raw is None:
        return None
    try:
        fps = float(raw)
    except ValueError:
        fps = -1.0
    if not 0 < fps <= MAX_MJPEG_FPS:
        raise error(
            web.HTTPBadRequest, f"max_fps: expected a number above 0 and at most {MAX_MJPEG_FPS:g}, got {raw!r}"
        )
    return fps


async def _snapshot(request: web.Request) -> web.Response:
    """The newest frame as one JPEG: ``?image=annotated|clean&max_width=N``."""
    info = _info(request)
    variant = _variant(request)
    packet = await request.app[hub_key].packet_with(info.stream_id, variant)
    if packet is None:
        raise error(
            web.HTTPServiceUnavailable,
            f"stream {info.stream_id!r} has no frame yet (state {info.state.value})",
            **{"Retry-After": str(SNAPSHOT_RETRY_S)},
        )
    return web.Response(
        body=packet.jpegs[variant],
        content_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Segcast-Seq": str(packet.seq)},
    )


async def _mjpeg(request: web.Request) -> web.StreamResponse:
    """A never-ending multipart JPEG stream for ``<img src>``: ``?image=...&max_width=N&max_fps=F``.

    The response is a viewer like a WebSocket: a latest-only slot, drained by this handler alone,
    so a slow ``<img>`` skips frames and never holds up anyone else. It ends when the stream is
    removed, the client goes away or the server shuts down.
    """
    info = _info(request)
    subscription = Subscription(_variant(request), _fps(request))
    hub = request.app[hub_key]
    viewer = Viewer(f"mjpeg-{info.stream_id}", request.remote, pictures_only=True)
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
            "Cache-Control": "no-store",
        }
    )
    join_viewer(hub, viewer)
    try:
        # Subscribed before the first await: the stream's removal from then on closes the viewer.
        hub.subscribe(viewer, {info.stream_id: subscription})
        request.app[http_viewers_key].add(viewer)
        await response.prepare(request)
        while not viewer.closed:
            _, deliveries = await viewer.take()
            for delivery in deliveries:
                if not await _write_part(response, viewer, delivery.packet, delivery.jpeg):
                    log.debug("[%s] an MJPEG viewer stopped reading, or was closed mid-part: cut off", info.stream_id)
                    if request.transport is not None:
                        request.transport.abort()
                    return response
    except ConnectionError:
        log.debug("[%s] an MJPEG viewer left", info.stream_id)
    finally:
        hub.remove_viewer(viewer)
    return response


def join_viewer(hub: Hub, viewer: Viewer) -> None:
    """Add a WebSocket or MJPEG viewer to ``hub``, or refuse it: 503 at the server's limit, 429 at its address's."""
    try:
        hub.join(viewer)
    except ViewerLimitError as exc:
        kind = web.HTTPServiceUnavailable if exc.setting == "max_viewers" else web.HTTPTooManyRequests
        log.warning("refused a viewer from %s: %s", viewer.address, exc)
        raise error(kind, str(exc), **{"Retry-After": str(VIEWER_RETRY_S)}) from None


async def _write_part(response: web.StreamResponse, viewer: Viewer, packet: FramePacket, jpeg: bytes | None) -> bool:
    """Write one part; False where it was given up: not taken within `MJPEG_PART_TIMEOUT_S`, or ``viewer``
    closed while the client held it up (its stream removed, the server shutting down). The connection
    must then be cut: the client may have part of the part.

    Raises `ConnectionError` when the client went away.
    """
    if jpeg is None:
        return True
    head = (
        f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
        f"X-Segcast-Seq: {packet.seq}\r\n\r\n"
    )
    write = asyncio.ensure_future(response.write(head.encode() + jpeg + b"\r\n"))
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


async def _tracks(request: web.Request) -> web.Response:
    """The tracks of the newest processed frame (empty, with ``seq`` null, before the first one)."""
    info = _info(request)
    packet = request.app[hub_key].latest.get(info.stream_id)
    meta = packet.metadata if packet is not None else {}
    return web.json_response(
        {
            "v": PROTOCOL_VERSION,
            "stream": info.stream_id,
            "state": info.state.value,
            "seq": meta.get("seq"),
            "capture_time": meta.get("capture_time"),
            "width": meta.get("width"),
            "height": meta.get("height"),
            "tracks": meta.get("tracks", []),
        }
    )


async def _counts(request: web.Request) -> web.Response:
    """Objects in each zone now and crossings of each line since the stream started (docs/analytics.md).

    Every configured zone and line is listed, at zero before the first frame; once frames come, one
    that does not fit them is marked ``left_out`` (``analytics_error`` says why) rather than passing
    for an empty zone, and one added or moved since the stream's last frame is marked
    ``pending``: it counts from the next frame (a stream whose file has ended has none).
    """
    info = _info(request)
    worker = request.app[manager_key].worker
    counts, stats = worker.counts(info.stream_id), worker.stats(info.stream_id)
    options = info.config.options
    zones: dict[str, dict[str, object]] = {zone.name: {"objects": 0, "by_class": {}} for zone in options.zones}
    lines: dict[str, dict[str, object]] = {line.name: {"in": 0, "out": 0, "by_class": {}} for line in options.lines}
    # A stream with no analytics yet (its first shapes added since its last frame) has no counts, but
    # its new shapes are pending all the same.
    found = counts.to_json() if counts is not None else {"zones": {}, "lines": {}}
    pending = set(stats.pending_shapes if stats else ())
    for listed, measured in ((zones, found["zones"]), (lines, found["lines"])):
        for name, values in listed.items():
            if name in measured:
                values.update(measured[name])
            elif name in pending:
                values["pending"] = True
            elif counts is not None:
                values["left_out"] = True
    body = {"v": PROTOCOL_VERSION, "stream": info.stream_id, "zones": zones, "lines": lines}
    return web.json_response(body | {"analytics_error": stats.analytics_error if stats else None})


async def _health(request: web.Request) -> web.Response:
    manager = request.app[manager_key]
    inference = manager.worker.inference_status.to_json()
    return web.json_response(
        {"status": "ok", "v": PROTOCOL_VERSION, "streams": len(manager.streams()), "inference": inference}
    )


async def _metrics(request: web.Request) -> web.Response:
    app = request.app
    outputs = app.get(event_outputs_key)
    text = render_metrics(app[manager_key], app[hub_key], outputs.health() if outputs is not None else ())
    return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

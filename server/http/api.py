"""The REST API of streams under ``/api/streams``: list, add, change, remove (formats in docs/protocol.md).

A stream's pictures (`server.http.pictures`) and readings (`server.http.readings`) have their own
modules; this one owns what every route shares: the JSON errors and the stream a URL names.

Every error is JSON, ``{"error": "<what is wrong and how to fix it>"}``, with a 4xx status that says
whose fault it was. Changes to streams run in threads of their own (stopping one joins its reader),
never queueing the snapshots' encoding nor shutdown behind a stalled camera, one change of a stream at
a time (`stream_changes_key`), and can be saved to the config file (`server.http.saving`). A new source
is checked first, within a time limit (`SourceChecks`): a file on a share, or a camera's name, that
nothing answers for is a 503, never a change that waits for ever.
"""

from __future__ import annotations

import asyncio
import codecs
import dataclasses
import functools
import hmac
import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from server.analytics.shapes import echoed
from server.config import STREAM_KEYS, StreamConfig, flatten_options, stream_config
from server.config_values import ConfigError
from server.frames import PROTOCOL_VERSION
from server.http.access.auth import credential_key
from server.http.access.policy import SourceRefused, UnusableSource
from server.http.access.source_checks import CheckUnanswered, SourceChecks
from server.http.errors import detailed_error, error
from server.http.keys import (
    etag_secret_key,
    hub_key,
    manager_key,
    settings_key,
    stream_change_executor_key,
    stream_changes_key,
)
from server.http.network.bodies import read_body
from server.http.network.prefix import forwarded_prefix
from server.http.saving import (
    NotSavedError,
    check_writable,
    note_added,
    persist_asked,
    persistable,
    save_config,
    saves,
    setup_saving,
)
from server.options import StreamOptions
from server.sources import SourceError, check_uri
from server.sources.uri import has_masked_secret, unmask_uri
from server.stream_info import StreamInfo
from server.streams import HandedInError, ShuttingDownError, StreamExistsError, StreamOptionsError

log = logging.getLogger(__name__)

#: When to ask again after a source's check was given up (`server.http.access.source_checks.CHECK_TIMEOUT_S`).
SOURCE_CHECK_RETRY_S = 10
#: Threads for stream changes (POST, PATCH, DELETE of /api/streams). Each holds one for moments, but
#: a removal or restart for as long as its reader takes to stop: up to 2 s for a stalled camera. Up to
#: this many can be stopping at once before another change waits for a thread.
STREAM_CHANGE_THREADS = 16

#: The start of the 400 for a URI copied from what segcast shows, a secret in it masked (`unmask_uri`).
MASKED_SECRET = "body.uri: the password or token in it is *** as segcast shows it masked"

#: Where new sources are checked against the policy: not in the stream-change threads (see `SourceChecks`).
source_checks_key = web.AppKey("source_checks", SourceChecks)


def setup_api(app: web.Application) -> None:
    setup_saving(app)
    app.cleanup_ctx.append(_stream_change_executor)
    app.cleanup_ctx.append(_source_checks)
    router = app.router
    router.add_get("/api/streams", _list_streams)
    router.add_post("/api/streams", _add_stream)
    router.add_get("/api/streams/{stream}", _get_stream)
    router.add_patch("/api/streams/{stream}", _change_stream)
    router.add_delete("/api/streams/{stream}", _remove_stream)


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


def stream_json(request: web.Request, info: StreamInfo) -> dict[str, Any]:
    """A stream as the API and the WebSocket ``hello`` show it: state, counters, live stats, links.

    The links are root paths of the node, under the path a reverse proxy serves it at (`forwarded_prefix`).
    """
    hub = request.app[hub_key]
    root = forwarded_prefix(request)
    base = f"{root}/api/streams/{info.stream_id}"
    return {
        **info.to_json(),
        **hub.stats(info.stream_id),
        "viewers": hub.viewer_count(info.stream_id),
        "etag": stream_etag(request, info.config),
        "persistable": persistable(request, info.stream_id),
        "links": {
            "snapshot": f"{base}/snapshot.jpg",
            "mjpeg": f"{base}/mjpeg",
            "tracks": f"{base}/tracks",
            "counts": f"{base}/counts",
            "embed": f"{root}/embed/{info.stream_id}",
        },
    }


def stream_etag(request: web.Request, config: StreamConfig) -> str:
    """The ETag of a stream's settings (quoted, as headers carry it): any change of them changes it.

    A PATCH or DELETE with ``If-Match`` is made only while the stream still has the settings its sender
    read (else 412): two editors of one stream (two viewer tabs, a script and a person) cannot replace
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
    """Refuse a change or removal sent with ``If-Match`` for settings the stream no longer has (see `stream_etag`)."""
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


def _check_still(request: web.Request, read: StreamConfig) -> None:
    """Refuse a change made from settings ``read`` that the stream no longer has (412), or once it is gone
    (404): it was replaced while the change waited (for its source's check, for the config file's look).

    Changes through the API wait for each other (`stream_changes_key`); this is for those that do not: a
    WebRTC publisher's stream ended and another published under its id. Compared as objects: a stream
    removed and added again with equal settings is another stream (a fresh tracker, new counts).
    """
    stream_id = read.stream_id
    try:
        current = request.app[manager_key].config(stream_id)
    except KeyError:
        raise error(web.HTTPNotFound, f"no stream {stream_id!r}: it was removed meanwhile") from None
    if current is not read:
        raise error(
            web.HTTPPreconditionFailed,
            f"stream {stream_id!r} was changed, or removed and added again, while this change was made: nothing "
            "was changed; GET it again and make the change over what it has now",
        )


def stream_info(request: web.Request) -> StreamInfo:
    """The stream the request's URL names; 404 naming it where there is none."""
    stream_id = request.match_info["stream"]
    try:
        return request.app[manager_key].info(stream_id)
    except KeyError:
        raise error(web.HTTPNotFound, f"no stream {stream_id!r}; GET /api/streams lists them") from None


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, within `server.http.network.bodies.MAX_BODY_BYTES`, finite numbers only."""
    raw = await read_body(request)
    try:
        # A byte order mark is skipped (RFC 8259 allows it): Windows PowerShell 5's files start with one.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start + (len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0)  # counted after the mark
        not_text = f"the body is not UTF-8 text (at byte {at})"
        raise error(web.HTTPBadRequest, f"{not_text}; send JSON in UTF-8") from None
    try:
        body = json.loads(text or "null", parse_constant=_no_constant, parse_float=_finite, parse_int=_whole)
    except json.JSONDecodeError as exc:  # the parser's own words, and where: a typo in a long body is found by them
        what = exc.msg[:1].lower() + exc.msg[1:]
        invalid = f"the body is not valid JSON: {what} at line {exc.lineno}, column {exc.colno}"
        raise error(web.HTTPBadRequest, f"{invalid}; send a JSON object") from None
    except ValueError as exc:  # NaN, Infinity, a number too large for a float or too long for an int
        raise error(web.HTTPBadRequest, f"the body must be a JSON object of finite numbers: {exc}") from None
    except RecursionError:
        raise error(web.HTTPBadRequest, "the body is nested too deeply to read: send a JSON object") from None
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


def _whole(text: str) -> int:
    """A JSON integer as an int, unless it has more digits than Python reads (4300): said so in our words,
    as Python's own told a client of ``sys.set_int_max_str_digits()``."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"a whole number of {len(text.lstrip('-'))} digits is too long to read") from None


def _finite(text: str) -> float:
    """A JSON number as a float, unless it is too large for one: ``1e400`` would read as infinity."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is too large a number")
    return value


async def _check_source(request: web.Request, uri: str) -> None:
    """Refuse a source segcast could open but the API may not (a local file or device, a scheme only the
    config file allows, an address in ``deny_networks``): 403; one that can never work as written (too
    long, control characters, no URI at all, a scheme segcast has no source for, a malformed or unknown
    ``#`` option, a file name with a NUL character): 400 ``body.uri: ...``, rather than a stream that
    fails at once.

    The policy's check may wait for the file system (a file's real path) or the name server (a
    camera's host): `source_checks_key` gives up on one that does not answer in time, a 503 with
    ``Retry-After``. The URI is then read as the manager will read it, on the loop: `check_uri` reads
    its text alone (at most `server.http.access.policy.MAX_URI_CHARS`, the policy saw to that) and builds
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


def _changes_of(request: web.Request, stream_id: str) -> asyncio.Lock:
    """The lock every change of ``stream_id`` through the API holds (`stream_changes_key`)."""
    return request.app[stream_changes_key].setdefault(stream_id, asyncio.Lock())


async def _save(request: web.Request, stream_id: str, changed: StreamInfo | None) -> None:
    """Save ``stream_id`` as it now is (``changed``; None: removed) to the config file (`save_config`).

    Called once the change is made and the stream's lock (`_changes_of`) let go: a save may wait for
    ever on a share that stopped answering, and the stream's next change (a removal without saving)
    must not wait with it. The saves keep the order of the changes (`save_config`).

    A save that fails answers with the stream ``changed`` as it now is (``"stream"``, and its ``ETag``
    header): the change was made, and a client that took the error for a refusal would edit over stale
    settings.
    """
    try:
        await save_config(request, stream_id, None if changed is None else changed.config)
    except NotSavedError as exc:
        if changed is None:
            raise error(exc.kind, str(exc)) from None
        stream = stream_json(request, changed)
        raise detailed_error(exc.kind, str(exc), {"stream": stream}, {"ETag": stream["etag"]}) from None


async def _list_streams(request: web.Request) -> web.Response:
    """Every stream, or a stream-scoped token's alone: to a link, every stream is those it may see, as its
    WebSocket's ``"*"`` is (`server.http.ws`)."""
    credential = request.get(credential_key)
    scope = None if credential is None else credential.scope
    infos = [info for info in request.app[manager_key].streams() if scope is None or info.stream_id in scope.streams]
    return web.json_response({"v": PROTOCOL_VERSION, "streams": [stream_json(request, info) for info in infos]})


async def _get_stream(request: web.Request) -> web.Response:
    return _with_etag(request, stream_info(request))


async def _add_stream(request: web.Request) -> web.Response:
    """``POST /api/streams`` with ``{"id": ..., "uri": ..., "loop": false, <stream options>}``."""
    asked = persist_asked(request)
    body = await _body(request)
    _refuse_source_key(body)
    try:
        config = stream_config(body, request.app[settings_key].stream_defaults, "body")
    except ConfigError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    if has_masked_secret(config.uri):
        raise error(web.HTTPBadRequest, f"{MASKED_SECRET}; send the real one")
    config = dataclasses.replace(config, from_api=True)  # held to the source policy, saved or not
    persist = saves(request, config.stream_id, asked)
    async with _changes_of(request, config.stream_id):
        await check_writable(request, asked, config.stream_id, config)
        await _check_source(request, config.uri)
        info = await _start_stream(request, request.app[manager_key].add, config)
        note_added(request, config.stream_id)
    if persist:
        await _save(request, config.stream_id, info)
    response = _with_etag(request, info, status=201)
    response.headers["Location"] = f"{forwarded_prefix(request)}/api/streams/{config.stream_id}"
    return response


async def _change_stream(request: web.Request) -> web.Response:
    """``PATCH /api/streams/<id>``: change ``uri``, ``loop`` or stream options (see `StreamManager.replace`).

    The body is merged over the stream's options as they are when the change is made, one change
    of a stream at a time: two PATCHes of different keys at once (one of ``zones``, one of ``lines``)
    both hold. Two of the same key replace each other's list whole, as a PATCH does, unless sent
    with ``If-Match`` (`stream_etag`): then the second is refused with 412.
    """
    asked = persist_asked(request)
    stream_info(request)  # a 404 before reading the body
    persist = saves(request, request.match_info["stream"], asked)
    body = await _body(request)
    _refuse_source_key(body)
    try:
        body = flatten_options(body, "body")
    except ConfigError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    async with _changes_of(request, request.match_info["stream"]):
        info = await _merge_change(request, body, asked)
    if persist:
        await _save(request, info.stream_id, info)
    return _with_etag(request, info)


async def _merge_change(request: web.Request, body: dict[str, Any], asked: bool | None) -> StreamInfo:
    """Apply a PATCH body over the stream's current config; 400 for a bad one, 409 for a save ``asked`` for
    that cannot be made (`check_writable`).

    The change is made only over the settings it was merged over (`_check_still`), never over a stream
    it was not meant for. A new ``uri`` makes the stream `StreamConfig.from_api` (held to the source
    policy); one that was stays so, whatever the change: a PATCH of its zones must not let its camera
    reach the addresses the policy keeps it from.
    """
    current = stream_info(request).config
    _check_unchanged(request, current)
    if body.get("id", current.stream_id) != current.stream_id:
        if not isinstance(body["id"], str):
            raise error(
                web.HTTPBadRequest,
                f"body.id: expected the stream's own id, {current.stream_id!r}, or no id; got {echoed(body['id'])}",
            )
        raise error(web.HTTPBadRequest, "body.id: a stream cannot be renamed; remove it and add it again")
    if not body.keys() - {"id"}:  # the stream's own id names it, not a change of it
        raise error(
            web.HTTPBadRequest,
            "the body must name at least one thing to change: uri, loop or a stream option; to open a failed or "
            f'ended stream again, send one as it is, e.g. {{"loop": {json.dumps(current.loop)}}}',
        )
    try:
        loop_value = body.get("loop", current.loop)
        if not isinstance(loop_value, bool):
            raise ConfigError(f"body.loop: expected true or false, got {echoed(loop_value)}")
        uri = body.get("uri", current.uri)
        if not isinstance(uri, str) or not uri.strip():
            raise ConfigError("body.uri: expected the source, e.g. rtsp://..., a file path or scene:?seed=1")
        uri = _with_secrets_of(uri.strip(), current)
        values = {k: v for k, v in body.items() if k not in STREAM_KEYS}
        # Only the keys given change: a new tracker keeps the stream's settings it also takes.
        options = StreamOptions.from_mapping(values, current.options, keep_settings=True)
    except ConfigError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    except ValueError as exc:  # a stream option's, its message starting with the option
        raise error(web.HTTPBadRequest, f"body.{exc}") from None
    new_source = uri != current.uri
    config = StreamConfig(current.stream_id, uri, loop_value, options, current.from_api or new_source)
    await check_writable(request, asked, config.stream_id, config)
    if new_source:
        await _check_source(request, config.uri)
    _check_still(request, current)
    return await _start_stream(request, request.app[manager_key].replace, config)


def _refuse_source_key(body: dict[str, Any]) -> None:
    """Refuse ``source``, the key GET shows a stream's URI under, naming the key that sets it: a client
    sending GET's shape back was told of an unknown key (POST) or stream option (PATCH), not of ``uri``."""
    if "source" in body:
        raise error(web.HTTPBadRequest, "body.source: a stream's source is set as 'uri' (GET shows it as 'source')")


def _with_secrets_of(uri: str, current: StreamConfig) -> str:
    """A PATCH's ``uri`` with the secrets segcast showed masked (``***``) given back from the stream's
    current source (`unmask_uri`): a client may send back GET's ``source`` with a part of it changed.
    A 400 where one cannot be given back: sent on, ``***`` would be tried as the camera's password."""
    unmasked = unmask_uri(uri, current.uri)
    if unmasked is None:
        raise ConfigError(
            f"{MASKED_SECRET}, and the stream's own is kept only for the camera it is for: the scheme, user, "
            "host, port and all before each *** as GET shows them; send the real one, or leave uri out to keep "
            "the source as it is"
        )
    return unmasked


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
        raise error(web.HTTPConflict, str(exc)) from None
    except ShuttingDownError as exc:
        raise error(web.HTTPServiceUnavailable, str(exc)) from None


async def _remove_stream(request: web.Request) -> web.Response:
    """``DELETE /api/streams/<id>``; with ``If-Match``, only while the stream has the settings of that ETag (412)."""
    asked = persist_asked(request)
    stream_id = request.match_info["stream"]
    async with _changes_of(request, stream_id):
        current = stream_info(request).config
        _check_unchanged(request, current)
        persist = saves(request, stream_id, asked)
        await check_writable(request, asked, stream_id, None)
        if "If-Match" in request.headers:
            _check_still(request, current)  # what the ETag was compared with, after the look at the config file
        try:
            await _in_change_thread(request, functools.partial(request.app[manager_key].remove, stream_id))
        except KeyError:
            raise error(web.HTTPNotFound, f"no stream {stream_id!r}: it was removed meanwhile") from None
    if persist:
        await _save(request, stream_id, None)
    return web.Response(status=204)

"""The HTTP side of WebRTC: offer/answer endpoints, and the peers' life span tied to the app's.

    GET  /api/webrtc/config          ICE servers for the browser's RTCPeerConnection
    POST /api/webrtc/publish         {"type": "offer", "sdp": ..., "stream"?: id, "fps"?: n,
                                      "width"?: px, "height"?: px} -> answer
    POST /api/webrtc/play/{stream}   {"type": "offer", "sdp": ..., "image"?: "annotated"|"clean",
                                      "socket"?: id} -> answer

Signalling is one HTTP round trip: aiortc puts all its candidates in the answer, and the browser
waits for its own before sending the offer (see web/webrtc.js). Errors are JSON ``{"error": text}``
with 400 for a malformed offer (a key other than those above too), 404 for an unknown stream (also
one removed while its offer was answered), 409 for a taken stream id (with ``Retry-After`` where a
published camera that sent no video for a while holds it, see `_taken`) or a ``socket`` no open
WebSocket has, 413 for an oversized offer, and 503 when a peer limit is reached (in all, the players'
share, those still connecting, or the client address's share; `PeerRegistry.check_room`) or the peer
was closed before its answer (the server is shutting down, its access token expired, its page's
WebSocket closed).

A player's ``socket`` is the id its page's WebSocket was told in its ``hello`` (server/http/ws.py):
the player is closed as soon as that socket closes, as a closed page's does at once, rather than
~30 s later when ICE gives up on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, Literal

from aiohttp import web
from aiortc import RTCSessionDescription

from server.config import check_stream_id
from server.delivery.encode import ImageKind
from server.delivery.viewer import MAX_VIEWERS_PER_ADDRESS
from server.frames import MIN_FRAME_SIDE_PX
from server.http.access.auth import expires_key
from server.http.errors import error
from server.http.keys import hub_key, manager_key, settings_key
from server.http.network.bodies import read_body
from server.http.ws import page_sockets_key
from server.streams import StreamExistsError
from server.webrtc.config import WebRTCConfig
from server.webrtc.offers import OfferError
from server.webrtc.peer import PeerClosedError, PeerLimitError, StreamGoneError
from server.webrtc.peers import FIRST_FRAME_TIMEOUT_S, PeerRegistry
from server.webrtc.source import DEFAULT_FPS
from server.webrtc.vanished_peers import quiet_vanished_peers

log = logging.getLogger(__name__)

MIN_FPS = 1.0
MAX_FPS = 120.0
GENERATED_ID_PREFIX = "webcam-"
#: Video, data channel, and an audio track a browser may add: nothing segcast answers needs more.
MAX_MEDIA_SECTIONS = 4
#: The keys each offer's body may have; any other is refused, not silently ignored (a misspelt
#: ``"imgae"`` would otherwise play the annotated frames the client did not ask for).
PUBLISH_KEYS = ("type", "sdp", "stream", "fps", "width", "height")
PLAY_KEYS = ("type", "sdp", "image", "socket")
#: A published camera's id is free this long after its video stopped for ``publish_idle_timeout_s``, at
#: most: its reader is stopped and its stream removed first.
ID_FREED_AFTER_IDLE_S = 1.0
#: A published camera that sent no frame for this long may have lost its connection; a live one sends
#: several a second (a browser lowers its frame rate under load, to no fewer than a few).
HOLDER_SILENT_S = 1.0
#: A published camera still connecting this long after its answer may have lost its way (its page
#: closed or reloaded, its network gone); a browser connects in well under this on a LAN, or through TURN.
HOLDER_CONNECTING_S = 2.0

webrtc_config_key = web.AppKey("webrtc_config", WebRTCConfig)
peers_key = web.AppKey("webrtc_peers", PeerRegistry)


def setup_webrtc(app: web.Application, config: WebRTCConfig | None = None) -> None:
    """Add the WebRTC routes to ``app``. Call it after the pipeline's cleanup context is added.

    Without ``config``, ICE servers come from the environment (`ICE_SERVERS_ENV`); a bad value
    raises `IceServerError`, a `ConfigError` naming the variable.

    The peers' cleanup context then runs inside the pipeline's: peers start after the hub and the
    stream manager exist, and are all closed before the pipeline stops.
    """
    app[webrtc_config_key] = config or WebRTCConfig.from_env(os.environ)
    app.cleanup_ctx.append(_peers)
    app.router.add_get("/api/webrtc/config", _config)
    app.router.add_post("/api/webrtc/publish", _publish)
    app.router.add_post("/api/webrtc/play/{stream}", _play)


async def _peers(app: web.Application) -> AsyncIterator[None]:
    config = app[webrtc_config_key]
    if app[settings_key].viewer_limits.max_viewers_per_address > MAX_VIEWERS_PER_ADDRESS:
        # Raised: many clients share an address here (a reverse proxy on another host, as in deploy/),
        # so one address is not one client for peers either.
        config = replace(config, max_peers_per_address=config.max_peers)
    restore_handler = quiet_vanished_peers(asyncio.get_running_loop())
    registry = PeerRegistry(config, app[hub_key], app[manager_key], app[settings_key].stream_defaults)
    app[peers_key] = registry
    sockets = app[page_sockets_key]
    sockets.add_close_listener(registry.socket_closed)
    if config.ice_servers:
        log.info("WebRTC ICE servers: %s", ", ".join(server.describe() for server in config.ice_servers))
    yield
    sockets.remove_close_listener(registry.socket_closed)
    await registry.close()
    restore_handler()


async def _config(request: web.Request) -> web.Response:
    config = request.app[webrtc_config_key]
    return web.json_response({"ice_servers": [server.to_json() for server in config.ice_servers]})


async def _publish(request: web.Request) -> web.Response:
    registry = request.app[peers_key]
    body = await _read_offer(request, registry, "publish")
    stream_id = body.get("stream")
    if stream_id is None:
        stream_id = GENERATED_ID_PREFIX + secrets.token_hex(3)
    else:
        try:
            stream_id = check_stream_id(stream_id, "'stream'")
        except ValueError as exc:
            raise error(web.HTTPBadRequest, str(exc)) from None
    fps = body.get("fps", DEFAULT_FPS)
    if not isinstance(fps, int | float) or isinstance(fps, bool) or not MIN_FPS <= fps <= MAX_FPS:
        raise error(web.HTTPBadRequest, f"'fps' must be a number from {MIN_FPS:.0f} to {MAX_FPS:.0f}")
    capture_size = _capture_size(body, request.app[settings_key].max_frame_side)
    if registry.has_stream(stream_id):
        raise _taken(request, stream_id)
    try:
        answer = await registry.publish(
            _description(body), stream_id, float(fps), _remote(request), request.get(expires_key), capture_size
        )
    except OfferError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    except (PeerLimitError, PeerClosedError) as exc:
        raise error(web.HTTPServiceUnavailable, str(exc)) from None
    except StreamExistsError:  # taken between the check above and the start
        raise _taken(request, stream_id) from None
    return _answer(answer, stream_id)


async def _play(request: web.Request) -> web.Response:
    registry = request.app[peers_key]
    stream_id = request.match_info["stream"]
    if not registry.has_stream(stream_id):
        raise error(web.HTTPNotFound, f"no stream {stream_id!r}; GET /api/streams lists them")
    body = await _read_offer(request, registry, "play")
    try:
        kind = ImageKind(body.get("image", ImageKind.ANNOTATED.value))
    except ValueError:
        kinds = ", ".join(f'"{k.value}"' for k in ImageKind)
        raise error(web.HTTPBadRequest, f"'image' must be one of {kinds}") from None
    socket = _open_socket(request, body)
    try:  # nothing awaits between that check and the player's binding to its socket
        answer = await registry.play(
            _description(body), stream_id, kind, _remote(request), request.get(expires_key), socket
        )
    except OfferError as exc:
        raise error(web.HTTPBadRequest, str(exc)) from None
    except StreamGoneError as exc:
        raise error(web.HTTPNotFound, str(exc)) from None
    except (PeerLimitError, PeerClosedError) as exc:
        raise error(web.HTTPServiceUnavailable, str(exc)) from None
    return _answer(answer, stream_id)


async def _read_offer(request: web.Request, registry: PeerRegistry, role: Literal["publish", "play"]) -> dict[str, Any]:
    """The request's offer: JSON text within the size limit, with a usable ``sdp`` and no key but its role's.

    Anything else raises the HTTP error that says what to change.
    """
    try:  # early, before the body is read; `PeerRegistry` checks again when adding
        registry.check_room(_remote(request), role)
    except PeerLimitError as exc:
        raise error(web.HTTPServiceUnavailable, str(exc)) from None
    raw = await read_body(request, registry.config.max_offer_bytes)
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than Python recurses
        body = None
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, 'send the offer as JSON: {"type": "offer", "sdp": "v=0..."}')
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except UnicodeEncodeError:  # JSON can escape half a surrogate pair ("\\ud800"), which is no character
        raise error(
            web.HTTPBadRequest, "the body must be text: it escapes a lone surrogate (\\ud800-\\udfff)"
        ) from None
    keys = PUBLISH_KEYS if role == "publish" else PLAY_KEYS
    unknown = [key for key in body if key not in keys]
    if unknown:
        named = ", ".join(repr(key) for key in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise error(web.HTTPBadRequest, f"unknown key{plural} {named}; an offer here has only {', '.join(keys)}")
    if body.get("type") != "offer":
        raise error(web.HTTPBadRequest, f"'type' must be \"offer\", not {body.get('type')!r}")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise error(web.HTTPBadRequest, "'sdp' must be the offer's SDP text, starting with v=0")
    # By lines as aiortc's parser splits them (it takes a bare \r as a line break too), so that every
    # section it will open a transport for is counted.
    sections = sum(line.startswith("m=") for line in sdp.splitlines())
    if not sections:
        raise error(web.HTTPBadRequest, "'sdp' has no media section (m=...): create the offer after adding a track")
    if sections > MAX_MEDIA_SECTIONS:
        # Each section can cost a transport with its own sockets: a crafted offer must not open hundreds.
        raise error(web.HTTPBadRequest, f"the offer has {sections} media sections; at most {MAX_MEDIA_SECTIONS}")
    return body


def _open_socket(request: web.Request, body: dict[str, Any]) -> str | None:
    """The offer's ``socket``, if it named one: the id of a WebSocket open now (a 409 otherwise).

    A socket that closed took its page's players with it; one the page is reconnecting has a new id,
    which its next offer names.
    """
    socket = body.get("socket")
    if socket is None:
        return None
    if not isinstance(socket, str):
        raise error(web.HTTPBadRequest, "'socket' must be the id the page's WebSocket was told in its hello")
    if not request.app[page_sockets_key].is_open(socket):
        raise error(
            web.HTTPConflict,
            "no open WebSocket has the offer's 'socket' id (it closed): "
            "offer again with the id the WebSocket's new hello gives, or without one",
        )
    return socket


def _capture_size(body: dict[str, Any], max_side: int) -> tuple[int, int] | None:
    """The size the publisher's camera captures at (``width`` and ``height``, both or neither), if given.

    A browser starts sending small and steps up as its bandwidth estimate grows; knowing where it is
    heading lets the stream scale those first frames up (`steady_size`) rather than restart its tracks
    at each step. A size over ``[server] max_frame_side`` is refused now: its frames would be later.
    """
    given = [key for key in ("width", "height") if key in body]
    if not given:
        return None
    if len(given) == 1:
        raise error(web.HTTPBadRequest, "give the capture size as both 'width' and 'height', or neither")
    sides = body["width"], body["height"]
    if not all(isinstance(side, int) and not isinstance(side, bool) and side >= MIN_FRAME_SIDE_PX for side in sides):
        raise error(web.HTTPBadRequest, f"'width' and 'height' must be whole pixels, at least {MIN_FRAME_SIDE_PX}")
    if max(sides) > max_side:
        raise error(
            web.HTTPBadRequest,
            f"a {sides[0]}x{sides[1]} camera is larger than {max_side} pixels a side ([server] max_frame_side): "
            "ask the camera for less",
        )
    return sides[0], sides[1]


def _description(body: dict[str, Any]) -> RTCSessionDescription:
    return RTCSessionDescription(sdp=body["sdp"], type="offer")


def _taken(request: web.Request, stream_id: str) -> web.HTTPException:
    """The 409 for a taken id. One a published camera holds may be the caller's own of a moment ago: a
    browser that crashed or lost its connection says nothing, and its stream lives on until no video
    came for ``publish_idle_timeout_s``. Where no video came from it for `HOLDER_SILENT_S` (or none
    yet), that is said, with the time left until it is ended as ``Retry-After``, so a page publishing
    its camera again can wait for its id rather than take another. A camera whose video comes is
    another page's, live: waiting would not free its id. So is one with no video yet whose connection is
    still coming up (`HOLDER_CONNECTING_S`): another tab that published the id a moment before."""
    manager = request.app[manager_key]
    taken = f"stream {stream_id!r} already exists: pick another id or leave it out"
    if not manager.handed_in(stream_id):
        return error(web.HTTPConflict, taken)
    idle_s = request.app[peers_key].config.publish_idle_timeout_s
    try:
        last_frame_at = manager.info(stream_id).status.last_frame_at
    except KeyError:  # ended since it was found: its id is free now, or in a moment
        last_frame_at = time.time() - idle_s
    silent_s = None if last_frame_at is None else max(0.0, time.time() - last_frame_at)
    if silent_s is not None and silent_s < HOLDER_SILENT_S:
        return error(web.HTTPConflict, taken)
    if silent_s is None and request.app[peers_key].connecting(stream_id, HOLDER_CONNECTING_S):
        return error(web.HTTPConflict, taken)
    # Ended `idle_s` after its last frame; before its first, at most `FIRST_FRAME_TIMEOUT_S` after its answer
    # (the longest wait is said). Freed a moment after.
    left_s = FIRST_FRAME_TIMEOUT_S if silent_s is None else idle_s - silent_s
    wait_s = max(1, math.ceil(left_s + ID_FREED_AFTER_IDLE_S))
    silence = "no video from it yet" if silent_s is None else f"no video from it for {silent_s:.0f} s"
    return error(
        web.HTTPConflict,
        f"stream {stream_id!r} is a published camera that may have just lost its connection ({silence}): "
        f"its id frees itself within {wait_s} s; publish again then, or pick another id",
        **{"Retry-After": str(wait_s)},
    )


def _answer(answer: RTCSessionDescription, stream_id: str) -> web.Response:
    return web.json_response({"type": answer.type, "sdp": answer.sdp, "stream": stream_id})


def _remote(request: web.Request) -> str:
    return request.remote or "unknown"

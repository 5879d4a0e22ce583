"""The aiohttp application: pages, WebSocket feed, REST API, metrics, and the pipeline's lifetime.

`create_app` builds everything from `Settings`; the pipeline threads live in a cleanup context, so
they start with the app (the model is loaded before the port opens) and stop with it. Routes live
in one module per concern: `server.http.pages` (viewer, embed), `server.http.ws` (the live feed),
`server.http.api` (the streams' REST API), `server.http.pictures` (snapshot, MJPEG) and
`server.http.readings` (tracks, counts, health, metrics). Other features register theirs with one call here.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import suppress

from aiohttp import WSCloseCode, web

from server.config import Settings
from server.config_values import ConfigError
from server.delivery.hub import Hub
from server.events.api import event_outputs_key, setup_events_api
from server.events.outputs import EventOutputs, MqttUnavailableError
from server.http.access.auth import setup_auth
from server.http.access.tokens import AccessPolicy
from server.http.api import setup_api
from server.http.errors import json_errors
from server.http.keys import (
    config_lock_key,
    etag_secret_key,
    http_viewers_key,
    hub_key,
    manager_key,
    settings_key,
    stream_changes_key,
    websockets_key,
)
from server.http.network.headers import setup_headers
from server.http.pages import setup_pages
from server.http.pictures import setup_pictures
from server.http.readings import setup_readings
from server.http.viewers import close_websocket
from server.http.ws import setup_ws
from server.inference.models import InferenceStatus
from server.inference.worker import InferenceWorker
from server.persist import config_file_unwritable
from server.streams import StreamManager
from server.webrtc import setup_webrtc

log = logging.getLogger(__name__)

WS_CLOSE_TIMEOUT_S = 2.0


def create_app(
    settings: Settings,
    policy: AccessPolicy | None = None,
    *,
    on_inference_ended: Callable[[str], None] | None = None,
) -> web.Application:
    """The whole server for ``settings``; ``policy`` defaults to the one the settings describe.

    ``on_inference_ended`` is called once, on the loop, with why, if the inference thread ends on its
    own once the pipeline runs (`InferenceWorker.ended`): no frame is inferred again, so the caller
    stops the server (`server.serve`). Meanwhile ``/healthz`` fails.

    Raises `server.http.access.tokens.AuthConfigError` when the settings leave the server unprotected where it
    must not be (a public address without tokens).
    """
    if policy is None:
        policy = AccessPolicy.configure(
            settings.host,
            settings.viewer_tokens,
            settings.admin_tokens,
            explicitly_off=settings.auth_off,
            required=settings.auth_required,
        )
    _warn_if_unsaveable(settings)
    app = web.Application(middlewares=[json_errors])
    app[settings_key] = settings
    app[websockets_key] = weakref.WeakKeyDictionary()
    app[http_viewers_key] = weakref.WeakSet()
    app[config_lock_key] = asyncio.Lock()
    app[stream_changes_key] = weakref.WeakValueDictionary()
    app[etag_secret_key] = secrets.token_bytes(16)
    app.cleanup_ctx.append(functools.partial(_pipeline, on_inference_ended=on_inference_ended))
    app.on_shutdown.append(_close_viewers)
    setup_headers(app)
    setup_auth(app, policy)
    setup_pages(app)
    setup_ws(app)
    setup_api(app)
    setup_pictures(app)
    setup_readings(app)
    setup_webrtc(app)
    setup_events_api(app)
    return app


def _warn_if_unsaveable(settings: Settings) -> None:
    """Say at start that ``save_config = true`` cannot save to the config file as it is now (another user's,
    as a volume an image run as root made; read-only), with the fix: every change through the API would
    otherwise be the first to say so, after it was made."""
    path = settings.config_path
    if settings.save_config and path is not None and (reason := config_file_unwritable(path)) is not None:
        log.warning("save_config = true, but changes made through the API cannot be saved to %s now: %s", path, reason)


async def _pipeline(
    app: web.Application, on_inference_ended: Callable[[str], None] | None = None
) -> AsyncIterator[None]:
    """The event outputs and the pipeline, started with the app and stopped with it, in this order.

    The outputs are stopped last whatever fails before (the manager's making, its start, its stop):
    the pipeline's last packets reach them on the way out, so the last frames' events are kept.
    """
    loop = asyncio.get_running_loop()
    settings = app[settings_key]
    hub = Hub(loop, settings.viewer_limits)
    try:
        outputs = EventOutputs(settings.events)
    except MqttUnavailableError as exc:
        raise ConfigError(str(exc)) from None
    await outputs.start()
    try:
        hub.add_packet_listener(outputs.on_packet)
        hub.add_state_listener(outputs.on_stream_state)
        hub.add_removal_listener(outputs.on_stream_removed)
        hub.add_inference_listener(outputs.on_inference)
        app[event_outputs_key] = outputs
        manager = StreamManager(settings, hub)
        hub.set_wanted_listener(manager.encoder.set_wanted)
        hub.jpeg_quality = manager.encoder.jpeg_quality  # what the hub encodes looks like what the encoder does
        await _start(manager)
        if on_inference_ended is not None:
            _tell_when_inference_ends(hub, manager.worker, on_inference_ended)
        app[hub_key] = hub
        app[manager_key] = manager
        try:
            yield
        finally:
            await loop.run_in_executor(None, manager.stop)
    finally:
        await outputs.stop()


def _tell_when_inference_ends(hub: Hub, worker: InferenceWorker, told: Callable[[str], None]) -> None:
    """Call ``told`` once, on the loop, with `InferenceWorker.ended` once the thread has ended on its own: at
    once if it did during the start, else with the inference status change it makes (`Hub.announce_inference`).
    """
    said = False

    def check(_status: InferenceStatus | None = None) -> None:
        nonlocal said
        if not said and (reason := worker.ended) is not None:
            said = True
            told(reason)

    hub.add_inference_listener(check)
    check()


async def _start(manager: StreamManager) -> None:
    """``manager.start`` off the loop (it loads the model: seconds); a start cancelled meanwhile (a stop
    signal during ``loading model``), however often, leaves no thread running once this returns.

    The start's thread cannot be cancelled: it would load the model and start the streams after all,
    with no one left to stop them. So a cancelled start is waited for, and what it started stopped,
    before the cancellation goes on.
    """
    loop = asyncio.get_running_loop()
    starting = loop.run_in_executor(None, manager.start)
    try:
        await asyncio.shield(starting)
    except asyncio.CancelledError:
        await _stop_once_started(starting, manager)
        raise


async def _stop_once_started(starting: asyncio.Future[None], manager: StreamManager) -> None:
    """Wait for ``starting`` to end, then stop ``manager`` off the loop, whatever cancels this meanwhile
    (another stop signal; ``web.run_app`` cancelling every task as it ends): a start that failed has
    stopped itself, so only one that succeeded needs it. A stop that fails raises its error."""
    await _outlast(starting)
    if starting.cancelled() or starting.exception() is not None:
        return
    stopping = asyncio.get_running_loop().run_in_executor(None, manager.stop)
    await _outlast(stopping)
    stopping.result()


async def _outlast(work: asyncio.Future[None]) -> None:
    """Wait until ``work`` (a thread's, which no cancellation ends) has ended, however often this is
    cancelled meanwhile; its result is left to the caller to read."""
    while not work.done():
        with suppress(asyncio.CancelledError):
            await asyncio.wait([work])


async def _close_viewers(app: web.Application) -> None:
    """Say goodbye to every client; one that does not take the close frame in time is cut off.

    A client that stopped reading has a full socket buffer, so even the close frame would wait on it
    forever: shutdown must not.
    """
    viewers = app[http_viewers_key]
    for viewer in list(viewers):
        viewer.close()
    await asyncio.gather(
        *(
            close_websocket(ws, connection, WSCloseCode.GOING_AWAY, "server shutdown", WS_CLOSE_TIMEOUT_S)
            for ws, connection in list(app[websockets_key].items())
        )
    )

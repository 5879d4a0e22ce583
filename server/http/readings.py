"""What the server reports on request: a stream's tracks and counts now, its health, and ``/metrics``.

And the watch that keeps one of those readings up to date between requests: whether each stream's
inference keeps up with its input (`StreamManager.check_pace`), which also tells the log when the
node starts falling behind, so it runs whether or not anyone asks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import suppress

from aiohttp import web

from server.events.api import event_outputs_key
from server.frames import PROTOCOL_VERSION
from server.http.access.auth import reads_node_details, refusals_key
from server.http.api import stream_info
from server.http.keys import hub_key, manager_key, settings_key
from server.http.metrics import SEGCAST_VERSION, render_metrics
from server.http.network.connections import running_counter
from server.http.saving import config_file_key
from server.inference import pace
from server.log_throttle import ThrottledCount
from server.webrtc.routes import peers_key

log = logging.getLogger(__name__)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: A pace watch whose rounds keep failing logs it at most this often (it runs every second).
PACE_FAILURE_LOG_INTERVAL_S = 60.0


def setup_readings(app: web.Application) -> None:
    app.cleanup_ctx.append(_pace_watch)
    app.router.add_get("/api/streams/{stream}/tracks", _tracks)
    app.router.add_get("/api/streams/{stream}/counts", _counts)
    app.router.add_get("/healthz", _health)
    app.router.add_get("/metrics", _metrics)


async def _tracks(request: web.Request) -> web.Response:
    """The tracks of the newest processed frame (empty, with ``seq`` null, before the first one), not
    of a newer one shown unanalysed while inference is unavailable; ``current`` as for `_counts`."""
    info = stream_info(request)
    meta = request.app[hub_key].latest_analysed.get(info.stream_id, {})
    return web.json_response(
        {
            "v": PROTOCOL_VERSION,
            "stream": info.stream_id,
            "state": info.state.value,
            "current": request.app[manager_key].is_current(info),
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
    ``current`` says whether they are of the scene now: false while the stream is not live or
    inference is unavailable (a remote model's server down), when they are the last frame's processed.
    A line counted has ``since``: when its totals began (Unix s), for a watcher to tell totals that
    started again (a restart, a moved line) from a fall; not in the frame message's ``counts``, whose
    every number becomes a count of MQTT and Home Assistant (`server.events.counts.counts_of`).
    """
    info = stream_info(request)
    manager = request.app[manager_key]
    worker = manager.worker
    counted, stats = worker.counts_since(info.stream_id), worker.stats(info.stream_id)
    counts, since = counted if counted is not None else (None, {})
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
    for name, values in lines.items():
        if name in found["lines"] and name in since:
            values["since"] = round(since[name], 4)  # as a frame's ``capture_time``
    body = {
        "v": PROTOCOL_VERSION,
        "stream": info.stream_id,
        "current": manager.is_current(info),
        "zones": zones,
        "lines": lines,
    }
    return web.json_response(body | {"analytics_error": stats.analytics_error if stats else None})


async def _pace_watch(app: web.Application) -> AsyncIterator[None]:
    """Judge every stream's pace about once a second while the server runs (after the pipeline started)."""
    task = asyncio.create_task(_judge_pace(app))
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


async def _judge_pace(app: web.Application) -> None:
    """Each round that fails is a fault of ours, and the next may fail alike: the first is logged with its
    traceback, the rest counted into a line at most every `PACE_FAILURE_LOG_INTERVAL_S`."""
    manager = app[manager_key]
    failures = ThrottledCount(PACE_FAILURE_LOG_INTERVAL_S)
    while True:
        try:
            manager.check_pace()
        except Exception:  # the next round may do, and it must not end the watch
            if count := failures.add():
                log.exception(
                    "judging whether inference keeps up failed (%d times since the last such line; logged at "
                    "most every %.0f s)",
                    count,
                    PACE_FAILURE_LOG_INTERVAL_S,
                )
        await asyncio.sleep(pace.PACE_CHECK_INTERVAL_S)


async def _health(request: web.Request) -> web.Response:
    """Liveness: ``ok`` whenever the server answers. An inference thread that ended on its own never infers
    again (`InferenceWorker.ended`): then ``failing`` with 503, for a probe to restart segcast, until the
    server's stop for it (`server.serve`) closes the port. Anyone is told that much, a probe needing no
    token; what the node runs (`_health_details`) only a token's holder where tokens are on
    (`reads_node_details`)."""
    failing = request.app[manager_key].worker.ended is not None
    body: dict[str, object] = {"status": "failing" if failing else "ok", "v": PROTOCOL_VERSION}
    if reads_node_details(request):
        body |= _health_details(request.app)
    return web.json_response(body, status=503 if failing else 200)


def _health_details(app: web.Application) -> dict[str, object]:
    """What a healthy node is short of and runs. A node short of inference is alive, so ``behind`` (how many
    streams' inference cannot keep up with their input) says it without failing a probe, as a remote
    model's outage only says it in ``inference``: both heal by themselves.
    ``config_read_at`` is when it last read its config file (at its start) or saved it (None: it has none):
    a file modified since holds what it does not run, which `segcast split` tells (`server.deploy.running_nodes`).
    ``version`` is segcast's as installed: what a fleet's check reads to tell which nodes run which."""
    manager = app[manager_key]
    infos = manager.streams()
    return {
        "version": SEGCAST_VERSION,
        "streams": len(infos),
        "behind": sum(info.pace.behind for info in infos),
        "inference": manager.worker.inference_status.to_json(),
        "config_read_at": _config_read_at(app),
    }


def _config_read_at(app: web.Application) -> float | None:
    """When segcast last read or wrote its config file (`ConfigFileState.known_at`); None without one."""
    if app[settings_key].config_path is None:
        return None
    return app[config_file_key].known_at


async def _metrics(request: web.Request) -> web.Response:
    app = request.app
    outputs = app.get(event_outputs_key)
    peers = app.get(peers_key)
    refusals = app.get(refusals_key)
    text = render_metrics(
        app[manager_key],
        app[hub_key],
        outputs.health() if outputs is not None else (),
        webrtc=peers.counts() if peers is not None else None,
        connections=running_counter(),
        event_loop_tasks=len(asyncio.all_tasks()),
        auth_refused=refusals.by_reason if refusals is not None else None,
    )
    return web.Response(body=text.encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

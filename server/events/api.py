"""The event history and outputs in the REST API (formats in docs/protocol.md, "Events out").

``GET /api/events`` pages through the history newest first: each page has a ``next`` link that
continues below its last id, so pages stay exact while new events arrive. With ``after=<id>`` it
reads forward, oldest first, from above that id: how a client polls for what is new (see
`EventQuery`), its ``next`` continuing above the page's last id. The queries run on the
history's own reader threads, each on its own read connection; a database that cannot be read is a
503 naming why, and so is one its writer failed to make (`_not_made`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
import sqlite3
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from server.events.history.query import EVENT_TYPES, MAX_PAGE, EventQuery
from server.events.history.writer import HistorySink
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from server.http.errors import error
from server.http.network.prefix import forwarded_prefix

event_outputs_key = web.AppKey("event_outputs", EventOutputs)

DEFAULT_PAGE = 100
MAX_EVENT_ID = 2**63 - 1  # SQLite's largest integer
SNAPSHOT_TAG_CHARS = 24  # of the JPEG's SHA-256, hex: its ETag
TEXT_FILTERS = {
    "stream": "stream",
    "type": "type",
    "class": "class_name",
    "zone": "zone",
    "line": "line",
    "event_id": "event_id",  # the key a webhook's or MQTT's "gave up on" line names an event by
}
#: ``since`` or ``until`` further ahead of now than this is not Unix seconds: milliseconds (Grafana's
#: ``${__from}``, JavaScript's ``Date.now()``) are a thousand times now, and would match nothing.
FUTURE_LIMIT_S = 100 * 365.25 * 86400
#: A signed token given as ``?token=`` (server/http/access/auth.py), which every route takes: checked before
#: the route runs, no filter, and never copied into the ``next`` link of a response body.
TOKEN_PARAM = "token"


def setup_events_api(app: web.Application) -> None:
    app.router.add_get("/api/events", _list_events)
    app.router.add_get("/api/events/outputs", _outputs)
    app.router.add_get("/api/events/{event:[0-9]{1,18}}/snapshot.jpg", _snapshot)


def _history(request: web.Request) -> HistorySink:
    outputs = request.app.get(event_outputs_key)
    history = None if outputs is None else outputs.history
    if history is None:
        raise error(web.HTTPNotFound, "the event history is off: add an [events.history] table to the config file")
    return history


async def _unreadable(history: HistorySink, exc: sqlite3.Error) -> web.HTTPException:
    """The 503 for a read that failed, naming why (`HistorySink.read_failure`, which may look at the
    file: off the loop, as a history on a network mount that hangs would hold it up)."""
    reason = await asyncio.to_thread(history.read_failure, exc)
    return error(web.HTTPServiceUnavailable, f"the event history cannot be read: {reason}")


async def _not_made(history: HistorySink) -> None:
    """Raise the 503 naming the writer's error where it is failing and there is no file: one it could not
    make (its folder another user's, or not a folder). The reads take a missing file for a history with
    nothing stored yet (`HistoryReader`), which is what it is while the writer is fine (it makes the file
    at start), and would answer "no events". Asked after a read found nothing; looks at the file off the loop."""
    health = history.health()
    if health.state is not SinkState.FAILING or health.last_error is None:
        return
    if not await asyncio.to_thread(history.settings.path.exists):
        raise error(web.HTTPServiceUnavailable, f"the event history cannot be read: {health.last_error}")


def _parse_query(request: web.Request) -> EventQuery:
    params = request.query
    known = (*TEXT_FILTERS, "since", "until", "before", "after", "limit")
    unknown = sorted(set(params) - set(known) - {TOKEN_PARAM})
    if unknown:
        raise error(web.HTTPBadRequest, f"{unknown[0]}: unknown parameter; known: {', '.join(known)}")
    # Given twice, a parameter would filter the first page by one value and its next link by another.
    repeated = sorted(key for key in set(params) if len(params.getall(key)) > 1)
    if repeated:
        raise error(web.HTTPBadRequest, f"{repeated[0]}: given more than once; give each parameter once")
    fields: dict[str, Any] = {TEXT_FILTERS[k]: v for k, v in params.items() if k in TEXT_FILTERS}
    if "type" in fields and fields["type"] not in EVENT_TYPES:
        unknown_type = f"no event has type {fields['type']!r:.60}"
        raise error(web.HTTPBadRequest, f"type: {unknown_type}; known: {', '.join(EVENT_TYPES)}")
    for key in ("since", "until"):
        if key in params:
            fields[key] = _parse(params[key], float, key, "Unix seconds, e.g. 1767225600.5")
            if not math.isfinite(fields[key]):
                raise error(web.HTTPBadRequest, f"{key}: expected Unix seconds, got {params[key]!r}")
            if fields[key] > time.time() + FUTURE_LIMIT_S:
                ahead = f"expected Unix seconds, got {params[key]}, centuries from now"
                raise error(web.HTTPBadRequest, f"{key}: {ahead}: milliseconds? divide by 1000")
    if fields.get("since", -math.inf) > fields.get("until", math.inf):
        window = f"since ({params['since']}) is later than until ({params['until']})"
        raise error(web.HTTPBadRequest, f"since: {window}, a window with no time in it; give since <= until")
    for key in ("before", "after"):
        if key in params:
            fields[key] = _parse(params[key], int, key, "an event id")
            if not 0 <= fields[key] <= MAX_EVENT_ID:
                raise error(web.HTTPBadRequest, f"{key}: expected an event id, got {params[key]!r}")
    limit = _parse(params.get("limit", str(DEFAULT_PAGE)), int, "limit", f"a whole number from 1 to {MAX_PAGE}")
    if not 1 <= limit <= MAX_PAGE:
        raise error(web.HTTPBadRequest, f"limit: expected a whole number from 1 to {MAX_PAGE}, got {limit}")
    fields["limit"] = limit
    return EventQuery(**fields)


def _parse(text: str, kind: Callable[[str], Any], key: str, expected: str) -> Any:
    """``text`` as ``kind`` reads it, written as a number is in a URL: ASCII, no ``_`` (which
    Python's `int` and `float` also take, as ``1_000`` or other scripts' digits)."""
    try:
        if not text.isascii() or "_" in text:
            raise ValueError(text)
        return kind(text)
    except ValueError:
        raise error(web.HTTPBadRequest, f"{key}: expected {expected}, got {text!r}") from None


async def _list_events(request: web.Request) -> web.Response:
    """``?stream=&type=&class=&zone=&line=&event_id=&since=&until=&limit=&before=&after=``: newest first, one page;
    oldest first with ``after``."""
    history = _history(request)
    query = _parse_query(request)
    # One more than the page: whether it comes back says if there is a next page.
    ask = dataclasses.replace(query, limit=query.limit + 1)
    try:
        found = await history.read_events(ask)
    except sqlite3.Error as exc:
        raise await _unreadable(history, exc) from None
    if not found:
        await _not_made(history)
    stored = found[: query.limit]
    root = forwarded_prefix(request)  # the links lead back through the proxy the request came by
    events = [
        {
            "id": item.id,
            "event": dict(item.data),
            "snapshot": f"{root}/api/events/{item.id}/snapshot.jpg" if item.has_snapshot else None,
        }
        for item in stored
    ]
    following = None
    if len(found) > query.limit:
        cursor = "before" if query.after is None else "after"
        params = {k: v for k, v in request.query.items() if k not in (cursor, TOKEN_PARAM)}
        following = f"{root}/api/events?{urlencode({**params, cursor: stored[-1].id})}"
    return web.json_response({"events": events, "next": following})


async def _snapshot(request: web.Request) -> web.Response:
    history = _history(request)
    event_id = int(request.match_info["event"])
    try:
        jpeg = await history.read_snapshot(event_id)
    except sqlite3.Error as exc:
        raise await _unreadable(history, exc) from None
    if jpeg is None:
        await _not_made(history)
        raise error(web.HTTPNotFound, f"no snapshot for event {event_id}: no such event, or stored without one")
    # Revalidated by its ETag rather than kept for a time: an event's id names another event, and so
    # another picture, in a history file made anew (ids start again at 1).
    tag = hashlib.sha256(jpeg).hexdigest()[:SNAPSHOT_TAG_CHARS]
    headers = {"Cache-Control": "no-cache"}
    if any(match.value in (tag, "*") for match in request.if_none_match or ()):
        response = web.Response(status=304, headers=headers)
    else:
        response = web.Response(body=jpeg, content_type="image/jpeg", headers=headers)
    response.etag = tag
    return response


async def _outputs(request: web.Request) -> web.Response:
    """Each configured output's state and counters: how to see that a broker or URL cannot be reached."""
    outputs = request.app.get(event_outputs_key)
    sinks = [] if outputs is None else outputs.health()
    return web.json_response(
        {
            "outputs": [
                {
                    "name": h.name,
                    "state": h.state.value,
                    "delivered": h.delivered,
                    "dropped": h.dropped,
                    "failed": h.failed,
                    "queued": h.queued,
                    "upkeep_failures": h.upkeep_failures,
                    "last_error": h.last_error,
                    "last_error_at": h.last_error_at,
                    "last_attempt_error": h.last_attempt_error,
                }
                for h in sinks
            ]
        }
    )

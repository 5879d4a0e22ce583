"""The pages of the event history: what a query asks for, and the SQL that reads a page of it.

Kept apart from the files and threads the pages are read with (`server.events.history.reader`), so
the shape of a page, and how SQLite is steered to read it in order without sorting a month of
events, can be read and tested alone. The indexes it relies on are in
`server.events.history.writer.SCHEMA`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.analytics.events import AnalyticsEventKind

#: Every ``type`` an event has (docs/protocol.md): another, asked of ``GET /api/events`` or an export, is a
#: typo, which would match nothing. A stream, class, zone or line the server does not know now is no typo:
#: the history keeps removed streams' events, and other models' classes.
EVENT_TYPES = ("track", *(kind.value for kind in AnalyticsEventKind))

#: The largest ``limit`` of a page (``GET /api/events`` refuses more).
MAX_PAGE = 1000
#: A page bounded in time reads the events in that window through the time index and sorts them when
#: the window holds fewer than this many (a recent window, or a short one: cheap either way); over a
#: wider window it reads newest first, in id order, and filters by time, so it never sorts a month.
TIME_INDEX_MAX_ROWS = 10_000
#: How a row's ``event_id`` is read from its JSON: `server.events.history.writer.SCHEMA` indexes this very
#: expression, as SQLite uses an index on an expression only for a query that spells it the same.
EVENT_ID = "json_extract(data, '$.event_id')"


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of ``GET /api/events``; None matches anything. Newest first, ids below ``before``;
    with ``after``, oldest first from the id above it: the cursor a poller moves forward by.

    A poller cannot move forward by ``time``: an event's time is its frame's, and a line crossing is
    stored only once confirmed, a second or more after later events, so its time is older than theirs.
    Ids are given in the order events are stored, and a committed batch is seen whole, so no event
    appears later below an id a reader has already seen.
    """

    stream: str | None = None
    type: str | None = None
    class_name: str | None = None
    zone: str | None = None
    line: str | None = None
    #: The UUID every output sends with the event (`OutEvent.event_id`): the name a webhook's or MQTT's
    #: "gave up on" line gives an event, found through its own index (`EVENT_ID`).
    event_id: str | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None
    after: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    data: Mapping[str, Any]
    has_snapshot: bool


def select_events(q: EventQuery, by_time: bool) -> tuple[str, list[object]]:
    """The SQL of a page of ``q`` and its arguments but the limit; newest first, or oldest first
    with ``after``.

    ``by_time``: the time bounds pick the rows through the time index, and the page is sorted
    (for a window of few events: `TIME_INDEX_MAX_ROWS`); SQLite, knowing nothing of how many,
    would rather read in id order, so it is told. Otherwise they only filter rows read in id
    order: ``+time`` keeps SQLite from choosing the time index, whose range it would sort. An
    ``event_id`` names one event, looked up through its own index whatever the window.
    """
    clauses: list[str] = []
    args: list[object] = []
    by_time = by_time and q.event_id is None and (q.since is not None or q.until is not None)
    time_column = "time" if by_time else "+time"
    source = f"events INDEXED BY {_time_index(q)}" if by_time else "events"
    for clause, value in (
        ("stream = ?", q.stream),
        ("type = ?", q.type),
        ("class = ?", q.class_name),
        ("zone = ?", q.zone),
        ("line = ?", q.line),
        (f"{EVENT_ID} = ?", q.event_id),
        (f"{time_column} >= ?", q.since),
        (f"{time_column} <= ?", q.until),
        ("id < ?", q.before),
        ("id > ?", q.after),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "DESC" if q.after is None else "ASC"
    return f"SELECT id, data, snapshot IS NOT NULL FROM {source} {where} ORDER BY id {order} LIMIT ?", args


def few_in_window(db: sqlite3.Connection, q: EventQuery) -> bool:
    """Whether ``q`` has time bounds around fewer than `TIME_INDEX_MAX_ROWS` events of its stream (or
    of all streams, when it names none).

    Counting stops there, through the time index alone, so asking costs at most that many index
    entries. Counted within the stream: a quiet stream's window on a busy day is still a few rows,
    while read in id order it would be every older event of that stream.
    """
    clauses: list[str] = []
    args: list[object] = []
    for clause, value in (("stream = ?", q.stream), ("time >= ?", q.since), ("time <= ?", q.until)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    if q.event_id is not None or (q.since is None and q.until is None):  # one event: its own index finds it
        return False
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM events INDEXED BY {_time_index(q)} WHERE {' AND '.join(clauses)} LIMIT ?)"
    )
    (count,) = db.execute(sql, [*args, TIME_INDEX_MAX_ROWS]).fetchone()
    return bool(count < TIME_INDEX_MAX_ROWS)


def _time_index(q: EventQuery) -> str:
    """The index that finds ``q``'s time window: within its stream when it names one."""
    return "events_time" if q.stream is None else "events_stream_time"

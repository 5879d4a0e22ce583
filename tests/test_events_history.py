"""The event history: SQLite on disk, snapshots, retention, paging, restarts, and a locked database."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings
from server.events.counts import Counts
from server.events.history import retention as retention_module
from server.events.history import writer as history_module
from server.events.history.query import TIME_INDEX_MAX_ROWS, EventQuery, few_in_window, select_events
from server.events.history.writer import HistorySink
from server.events.outputs import EventOutputs
from server.events.sink import OutEvent, SinkHealth, SinkState
from server.events.snapshot import Picture, picture_of, snapshot_jpeg
from server.frames import Frame, FrameResult
from server.http.keys import hub_key
from server.inference.models import BUNDLED_MODEL
from tests.support.event_packets import BOX, frames_alive_after_offering, track_start, with_events
from tests.support.polling import eventually

ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def outputs(tmp_path: Path) -> AsyncIterator[EventOutputs]:
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db")))
    await outputs.start()
    yield outputs
    await outputs.stop()


async def stored(history: HistorySink, count: int) -> None:
    async def enough() -> bool:
        return history.health().delivered >= count

    await eventually(enough, what=f"{count} events stored")


async def failed(history: HistorySink, count: int) -> None:
    async def enough() -> bool:
        return history.health().failed >= count

    await eventually(enough, what=f"{count} events failed")


async def file_opened(history: HistorySink) -> None:
    """Until ``history`` has opened its file (its writer thread does that after start)."""

    async def opened() -> bool:
        return history.health().state is SinkState.OK

    await eventually(opened, what="the history to open its file")


async def open_once(path: Path) -> None:
    """Start a history on ``path`` until it has opened its file, then stop it: the file then has this
    version's tables and indexes (made from nothing, or brought up from an older schema)."""
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        assert outputs.history is not None
        await file_opened(outputs.history)
    finally:
        await outputs.stop()


@asynccontextmanager
async def writer_held_back(history: HistorySink, path: Path) -> AsyncIterator[None]:
    """While inside, ``history``'s writer waits on a lock another connection holds: what is offered
    stays queued (the tests set `LOCK_TIMEOUT_S` past their length), and is stored after."""
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        await file_opened(history)
        locker.execute("BEGIN EXCLUSIVE")
        yield
        locker.execute("ROLLBACK")
    finally:
        locker.close()


async def test_events_are_stored_with_a_snapshot_of_the_object(outputs: EventOutputs) -> None:
    history = outputs.history
    assert history is not None
    outputs.on_packet(track_start(1))
    await stored(history, 1)

    (event,) = history.query(EventQuery())
    assert event.data["type"] == "track" and event.data["event"] == "start" and event.data["class"] == "person"
    jpeg = history.snapshot(event.id)
    assert jpeg is not None
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    x1, y1, x2, y2 = BOX
    # A crop around the object with a margin: about the box's size, not the whole frame, and mostly the object.
    assert x2 - x1 <= image.shape[1] < 1.5 * (x2 - x1)
    assert y2 - y1 <= image.shape[0] < 1.5 * (y2 - y1)
    assert image.mean() > 128


async def test_an_event_without_an_object_has_the_whole_frame_scaled_down(outputs: EventOutputs) -> None:
    history = outputs.history
    assert history is not None
    wide = np.full((1080, 1920, 3), 200, np.uint8)
    exit_ = {"type": "zone_exit", "v": 1, "stream": "cam", "id": 99, "zone": "door", "time": time.time()}  # track gone
    outputs.on_packet(with_events(1, [exit_], image=wide))
    await stored(history, 1)

    (event,) = history.query(EventQuery())
    jpeg = history.snapshot(event.id)
    assert jpeg is not None
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image.shape == (360, 640) and abs(float(image.mean()) - 200) < 3


async def test_queued_events_keep_their_snapshots_not_their_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_S", 60.0)  # the writer waits for the lock below
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        async with writer_held_back(history, path):
            # Only the stream's newest frame, which its last-seen crops are taken from when a track
            # is missing from the next (`LastSeen`): no queued event keeps its frame.
            assert frames_alive_after_offering(outputs.on_packet) == [4]
            assert history.health().delivered == 0  # all five wait for the lock
        await stored(history, 5)
    finally:
        await outputs.stop()
    for event in history.query(EventQuery()):
        jpeg = history.snapshot(event.id)
        assert jpeg is not None
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_GRAYSCALE)
        assert BOX[2] - BOX[0] <= image.shape[1] < 1.5 * (BOX[2] - BOX[0])


async def test_history_survives_a_restart(tmp_path: Path) -> None:
    settings = EventsSettings(history=HistorySettings(tmp_path / "events.db"))
    first = EventOutputs(settings)
    await first.start()
    first.on_packet(track_start(1, track_id=7))
    assert first.history is not None
    await stored(first.history, 1)
    await first.stop()

    second = EventOutputs(settings)
    await second.start()
    try:
        assert second.history is not None
        second.on_packet(track_start(2, track_id=8))
        await stored(second.history, 1)
        assert [e.data["id"] for e in second.history.query(EventQuery())] == [8, 7]
    finally:
        await second.stop()


async def test_stop_writes_what_is_queued(tmp_path: Path) -> None:
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db")))
    await outputs.start()
    for seq in range(50):
        outputs.on_packet(track_start(seq, track_id=seq))
    await outputs.stop()
    assert outputs.history is not None
    assert len(outputs.history.query(EventQuery(limit=1000))) == 50


async def test_analytics_kinds_are_stored_and_filtered_by_zone_and_line(outputs: EventOutputs) -> None:
    history = outputs.history
    assert history is not None
    enter = {"type": "zone_enter", "v": 1, "stream": "cam", "id": 1, "class": "person", "time": time.time()}
    outputs.on_packet(with_events(1, [{**enter, "zone": "door"}, {**enter, "zone": "bay"}]))
    cross = {"type": "line_cross", "v": 1, "stream": "cam", "id": 1, "class": "car", "line": "gate", "direction": "in"}
    outputs.on_packet(with_events(2, [{**cross, "time": time.time()}], stream_id="yard"))
    await stored(history, 3)

    assert [e.data["zone"] for e in history.query(EventQuery(zone="door"))] == ["door"]
    (crossing,) = history.query(EventQuery(line="gate"))
    assert crossing.data == {**cross, "time": crossing.data["time"], "event_id": crossing.data["event_id"]}
    assert [e.data["type"] for e in history.query(EventQuery(stream="yard"))] == ["line_cross"]
    assert len(history.query(EventQuery(class_name="person"))) == 2
    # No box in the event: the snapshot is the object's box in the frame, found by the track id.
    assert crossing.has_snapshot


async def test_events_older_than_max_age_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    keep_all = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=10)))
    await keep_all.start()
    keep_all.on_packet(track_start(1, track_id=1, when=time.time() - 2 * 86400))
    keep_all.on_packet(track_start(2, track_id=2))
    await keep_all.stop()

    one_day = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=1)))
    await one_day.start()
    try:
        one_day.on_packet(track_start(3, track_id=3))
        assert one_day.history is not None
        await stored(one_day.history, 1)
        assert [e.data["id"] for e in one_day.history.query(EventQuery())] == [3, 2]
    finally:
        await one_day.stop()


async def test_age_retention_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    keep_all = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=10)))
    await keep_all.start()
    for seq in range(300):
        keep_all.on_packet(track_start(seq, track_id=seq, when=time.time() - 2 * 86400))
    await keep_all.stop()
    with closing(sqlite3.connect(path)) as db:
        pages_before = db.execute("PRAGMA page_count").fetchone()[0]

    one_day = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=1)))
    await one_day.start()
    history = one_day.history
    assert history is not None
    try:

        async def given_back() -> bool:  # a chunk at a time: deleted first, their pages given back after
            with closing(sqlite3.connect(path)) as db:
                free = db.execute("PRAGMA freelist_count").fetchone()[0]
            return not history.query(EventQuery()) and free == 0

        await eventually(given_back, what="the old events to be deleted and their space given back")
    finally:
        await one_day.stop()
    with closing(sqlite3.connect(path)) as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
    assert pages < pages_before / 10


async def test_events_that_grow_old_while_none_arrive_are_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention_module, "AGE_PRUNE_INTERVAL_S", 0.05)
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=1)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        await file_opened(history)
        # An event stored a while ago, now older than max_age_days; no event arrives after it.
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute(
                "INSERT INTO events (time, stream, type, data) VALUES (?, 'cam', 'track', '{}')",
                (time.time() - 2 * 86400,),
            )
        assert len(history.query(EventQuery())) == 1

        async def deleted() -> bool:
            return not history.query(EventQuery())

        await eventually(deleted, what="the old event to be deleted")
    finally:
        await outputs.stop()


async def test_a_failed_retention_costs_no_stored_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(retention_module, "AGE_PRUNE_INTERVAL_S", 0.0)  # age retention after every write
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=1)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        await file_opened(history)
        with closing(sqlite3.connect(path, isolation_level=None)) as db:  # deleting fails, as on a full disk
            db.execute("CREATE TRIGGER keep BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'refused'); END")
        outputs.on_packet(track_start(1, track_id=1, when=time.time() - 2 * 86400))  # old: retention deletes it

        async def retention_failed() -> bool:
            return any("cannot delete old events" in r.getMessage() for r in caplog.records)

        await eventually(retention_failed, what="retention to fail")
        outputs.on_packet(track_start(2, track_id=2))
        await stored(history, 2)
        health = history.health()
        assert health.delivered == 2 and health.failed == 0 and health.state is SinkState.OK
        assert [e.data["id"] for e in history.query(EventQuery())] == [2, 1]
    finally:
        await outputs.stop()


async def test_the_write_ahead_log_counts_against_max_mb(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    max_mb = 0.25
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=max_mb)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    wal = tmp_path / "events.db-wal"
    try:
        for seq in range(400):  # a snapshot each: several times max_mb
            outputs.on_packet(track_start(seq, track_id=seq))
        await stored(history, 400)

        async def within() -> bool:  # once the last write is done
            return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0) <= max_mb * 1024 * 1024

        await eventually(within, what=f"the file and its -wal to be within {max_mb} MB together")
    finally:
        await outputs.stop()


async def test_the_oldest_events_go_when_the_file_outgrows_max_mb(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=0.25)))
    await outputs.start()
    try:
        for seq in range(400):  # a snapshot each: several times 0.25 MB
            outputs.on_packet(track_start(seq, track_id=seq))
        assert outputs.history is not None
        await stored(outputs.history, 400)

        async def pruned() -> bool:  # a prune goes on a slice at a time: on a busy machine, past the last write
            with closing(sqlite3.connect(path)) as db:
                pages, size = (
                    db.execute("PRAGMA page_count").fetchone()[0],
                    db.execute("PRAGMA page_size").fetchone()[0],
                )
            return bool(pages * size <= 0.3 * 1024 * 1024)

        await eventually(pruned, what="the history pruned to max_mb")
        ids = [e.data["id"] for e in outputs.history.query(EventQuery(limit=1000))]
    finally:
        await outputs.stop()
    assert 0 < len(ids) < 400
    assert ids == list(range(399, 399 - len(ids), -1))  # the newest kept, in order
    with sqlite3.connect(path) as db:
        pages, size = db.execute("PRAGMA page_count").fetchone()[0], db.execute("PRAGMA page_size").fetchone()[0]
    assert pages * size <= 0.3 * 1024 * 1024


#: A file made by segcast before the history had indexes for its pages: opening it must add them.
OLDER_SCHEMA = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, stream TEXT NOT NULL,
    type TEXT NOT NULL, class TEXT, zone TEXT, line TEXT, data TEXT NOT NULL, snapshot BLOB);
CREATE INDEX events_time ON events (time);
CREATE INDEX events_stream_time ON events (stream, time);
"""
API_FILTERS = {
    "stream": "cam",
    "type": "line_cross",
    "class_name": "person",
    "zone": "door",
    "line": "gate",
    "event_id": "5f0c2d4e-0000-4000-8000-000000000000",
    "since": 1.0,
    "until": 2.0,
    "before": 99,
    "after": 5,  # read oldest first, through the same indexes
}


async def test_every_filter_combination_reads_a_page_in_order_without_sorting(tmp_path: Path) -> None:
    """Paging one stream sorted all of its events (0.7 s a page at 2M events): the indexes now give the order.

    Only a time window known to hold few events is read through the time index, and sorted; never one that
    names an event_id, which its own index finds.
    """
    path = tmp_path / "events.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(OLDER_SCHEMA)
    await open_once(path)
    with closing(sqlite3.connect(path)) as db:
        for count in range(len(API_FILTERS) + 1):
            for names in itertools.combinations(API_FILTERS, count):
                query = EventQuery(**{name: API_FILTERS[name] for name in names})
                for by_time in (False, True):
                    sql, args = select_events(query, by_time)
                    plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", [*args, 100]))
                    if by_time and {"since", "until"} & set(names) and "event_id" not in names:
                        index = "events_stream_time" if "stream" in names else "events_time"
                        assert f"USING INDEX {index} " in plan, (names, plan)
                    else:
                        assert "TEMP B-TREE" not in plan, (names, plan)


async def test_a_quiet_streams_window_on_a_busy_day_is_read_through_its_own_time_index(tmp_path: Path) -> None:
    """Counted over every stream, a busy day made a quiet stream's page read in id order: back
    through all of that stream's older events, the page never filling."""
    path = tmp_path / "events.db"
    await open_once(path)
    with closing(sqlite3.connect(path)) as db:
        rows = [(float(t), "yard", "track_start", "{}") for t in range(TIME_INDEX_MAX_ROWS)]
        rows += [(100.0, "door", "track_start", "{}"), (200.0, "door", "track_start", "{}")]
        db.executemany("INSERT INTO events (time, stream, type, data) VALUES (?, ?, ?, ?)", rows)
        db.commit()
    history = HistorySink(HistorySettings(path))
    door = history.query(EventQuery(stream="door", since=50.0, limit=10))
    assert [event.id for event in door] == [TIME_INDEX_MAX_ROWS + 2, TIME_INDEX_MAX_ROWS + 1]
    with closing(sqlite3.connect(path)) as db:
        sql, args = select_events(
            EventQuery(stream="door", since=50.0), by_time=few_in_window(db, EventQuery(stream="door", since=50.0))
        )
        plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", [*args, 10]))
    assert "USING INDEX events_stream_time (stream=? AND time>?)" in plan, plan


async def test_an_existing_file_gains_the_event_id_index_and_a_lookup_reads_through_it(tmp_path: Path) -> None:
    """A webhook or MQTT event given up on is named by its event_id, to be found in the history: a lookup
    by it must not read every event. A file made before the index keeps its events and gains it."""
    path = tmp_path / "events.db"
    with closing(sqlite3.connect(path)) as db:
        db.executescript(OLDER_SCHEMA)
        rows = [(time.time(), "cam", "track", json.dumps({"event_id": f"id-{n}"})) for n in range(50)]
        db.executemany("INSERT INTO events (time, stream, type, data) VALUES (?, ?, ?, ?)", rows)
        db.commit()
    await open_once(path)
    history = HistorySink(HistorySettings(path))
    assert [event.id for event in history.query(EventQuery(event_id="id-7"))] == [8]
    with closing(sqlite3.connect(path)) as db:
        sql, args = select_events(EventQuery(event_id="id-7"), by_time=False)
        plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", [*args, 100]))
    assert "USING INDEX events_event_id" in plan, plan


@pytest.mark.parametrize("made", ["no file", "empty file"])
def test_a_history_not_made_yet_reads_as_empty(tmp_path: Path, made: str) -> None:
    """Asked in the moment after start, before the writer has made the file or its table, the API
    answered 503 "cannot be read" (a fresh-clone CI run failed so) where nothing was stored yet."""
    path = tmp_path / "events.db"
    if made == "empty file":
        sqlite3.connect(path).close()  # what the writer's first open leaves before its schema is made
    history = HistorySink(HistorySettings(path))  # not started: no writer makes the table meanwhile
    assert history.query(EventQuery(limit=10)) == []
    assert history.snapshot(1) is None


async def test_a_locked_database_is_an_error_and_writing_resumes(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        outputs.on_packet(track_start(1, track_id=1))
        await stored(history, 1)
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        outputs.on_packet(track_start(2, track_id=2))

        async def failed() -> bool:
            return history.health().failed >= 1

        await eventually(failed, what="the write to fail")
        health = history.health()
        assert health.state is SinkState.FAILING and "locked" in (health.last_error or "")
        locker.execute("ROLLBACK")
        locker.close()

        outputs.on_packet(track_start(3, track_id=3))
        await stored(history, 2)
        assert history.health().state is SinkState.OK
        assert [e.data["id"] for e in history.query(EventQuery())] == [3, 1]
    finally:
        await outputs.stop()


async def test_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    sqlite3.connect(path).close()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # the writer waits on the lock, so its queue fills
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, queue=2)))
    await outputs.start()
    try:
        for seq in range(20):
            outputs.on_packet(track_start(seq, track_id=seq))
        assert outputs.history is not None
        assert outputs.history.health().dropped >= 17
    finally:
        locker.execute("ROLLBACK")
        locker.close()
        await outputs.stop()


async def test_stop_does_not_wait_for_a_writer_that_is_behind_and_counts_what_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Stop used to wait 5 s and return with the writer still going, its queue counted nowhere."""
    monkeypatch.setattr(history_module, "DRAIN_TIMEOUT_S", 0.0)  # at stop, only the batch in hand is finished
    monkeypatch.setattr(history_module, "BATCH_MAX", 1)
    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_S", 0.5)
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        await file_opened(history)
        locker.execute("BEGIN EXCLUSIVE")  # the writer waits on its first event: the others stay queued
        for seq in range(20):
            outputs.on_packet(track_start(seq, track_id=seq))
        await outputs.stop()
    finally:
        locker.close()
    assert "event-history" not in [thread.name for thread in threading.enumerate()], "the writer has ended"
    health = history.health()
    assert health.delivered == 0 and health.dropped >= 19 and health.dropped + health.failed == 20
    said = [r for r in caplog.records if r.name == history_module.__name__ and "shutdown" in r.getMessage()]
    assert len(said) == 1, "logged once"


async def test_queued_snapshots_have_a_byte_budget_past_which_events_are_stored_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousand queued crops of a big object near a 1080p camera held 2.5 GB."""
    one_picture = picture_of(track_start(0).metadata["events"][0], track_start(0).result).pixels.nbytes
    monkeypatch.setattr(history_module, "QUEUED_PICTURES_MAX_BYTES", 3 * one_picture)
    monkeypatch.setattr(history_module, "LOCK_TIMEOUT_S", 60.0)  # the writer waits for the lock below
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        async with writer_held_back(history, path):  # a writer that is behind: nothing written, nothing freed
            for seq in range(10):
                outputs.on_packet(track_start(seq, track_id=seq))
        await stored(history, 10)
    finally:
        await outputs.stop()
    events = history.query(EventQuery())
    assert [e.has_snapshot for e in reversed(events)] == [True] * 3 + [False] * 7
    assert history.health().dropped == 0


async def test_events_dropped_from_a_full_queue_give_their_pictures_budget_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dropped event kept its picture counted: after enough drops every event was stored without its
    snapshot, for good."""
    pixels = np.zeros((40, 40, 3), np.uint8)
    monkeypatch.setattr(history_module, "QUEUED_PICTURES_MAX_BYTES", 3 * pixels.nbytes)
    history = HistorySink(HistorySettings(tmp_path / "events.db", queue=1))

    def event(track_id: int, picture: Picture | None) -> OutEvent:
        now = time.time()
        return OutEvent({"type": "track", "event": "start", "id": track_id, "time": now}, "cam", now, picture)

    history.offer(event(0, None))  # the writer has not started: the queue is full
    for track_id in range(1, 4):
        history.offer(event(track_id, Picture(pixels.copy())))
    assert history.health().dropped == 3
    await history.start()
    try:
        await stored(history, 1)
        history.offer(event(4, Picture(pixels.copy())))
        await stored(history, 2)
    finally:
        await history.stop()
    assert [(e.data["id"], e.has_snapshot) for e in history.query(EventQuery())] == [(4, True), (0, False)]


class Unstoppable:
    """A sink whose `stop` fails."""

    name = "unstoppable"
    snapshots = False

    def offer(self, event: OutEvent) -> None:
        pass

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        pass

    def forget_stream(self, stream_id: str) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        raise RuntimeError("cannot stop")

    def health(self) -> SinkHealth:
        return SinkHealth(self.name, SinkState.OK, 0, 0, 0, None)


async def test_every_sink_is_stopped_even_when_one_fails_to_stop(tmp_path: Path) -> None:
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db")))
    outputs.sinks = (Unstoppable(), *outputs.sinks)
    await outputs.start()
    for seq in range(5):
        outputs.on_packet(track_start(seq, track_id=seq))
    await outputs.stop()
    assert outputs.history is not None
    assert len(outputs.history.query(EventQuery())) == 5  # the history, after it, wrote its queue as it stopped


async def test_an_unwritable_path_is_an_error_not_a_crash(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    outputs = EventOutputs(EventsSettings(history=HistorySettings(blocker / "events.db")))
    await outputs.start()
    try:
        outputs.on_packet(track_start(1))
        assert outputs.history is not None
        history = outputs.history

        async def failed() -> bool:
            return history.health().failed >= 1

        await eventually(failed, what="the write to fail")
        assert "cannot open" in (history.health().last_error or "")
    finally:
        await outputs.stop()


#: Every write fails, as on a file the process may read but not write (root, as CI runs, writes any
#: file whatever its mode); until the trigger is dropped. Only events of stream "cam" are refused.
REFUSE_WRITES = (
    "CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.stream = 'cam' BEGIN SELECT RAISE(ABORT, 'read-only'); END"
)


async def test_a_write_that_keeps_failing_is_logged_once_a_while_and_the_state_stays_failing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each failed batch logged "storing events in", "working" and its error: the file was reopened for
    the next batch, and the reopening said so and made the state ok. "Working" is said only when
    writing works again after failing, not at the first open."""
    caplog.set_level(logging.INFO, history_module.__name__)
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        await file_opened(history)
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute(REFUSE_WRITES)
        for seq in range(5):  # a batch each
            outputs.on_packet(track_start(seq, track_id=seq))
            await failed(history, seq + 1)
            assert history.health().state is SinkState.FAILING
        said = [r.getMessage() for r in caplog.records if r.name == history_module.__name__]
        assert said == [
            f"history: storing events in {path}",
            f"history: cannot write to {path}: read-only",
        ]

        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute("DROP TRIGGER refuse")
        outputs.on_packet(track_start(5, track_id=5))
        await stored(history, 1)
    finally:
        await outputs.stop()
    said = [r.getMessage() for r in caplog.records if r.name == history_module.__name__]
    assert said[2:] == [
        f"history: cannot write to {path}: read-only (again: 4 more event(s) lost since it was logged)",
        "history: working",
    ]


async def test_age_retention_goes_on_while_writes_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Age retention needed the connection a failed write had closed: it stopped until a batch came."""
    monkeypatch.setattr(retention_module, "AGE_PRUNE_INTERVAL_S", 0.05)
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=1)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        await file_opened(history)
        with closing(sqlite3.connect(path, isolation_level=None)) as db:
            db.execute(REFUSE_WRITES)
        outputs.on_packet(track_start(1))
        await failed(history, 1)
        with closing(sqlite3.connect(path, isolation_level=None)) as db:  # older than max_age_days, stored after
            db.execute(
                "INSERT INTO events (time, stream, type, data) VALUES (?, 'yard', 'track', '{}')",
                (time.time() - 2 * 86400,),
            )

        async def deleted() -> bool:
            return not history.query(EventQuery())

        await eventually(deleted, what="the old event to be deleted while writes fail")
        assert history.health().state is SinkState.FAILING
    finally:
        await outputs.stop()


async def test_a_max_mb_bigger_than_the_disk_is_told_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A history whose max_mb its disk could not hold filled the disk and stopped writing, and nothing
    had said that max_mb was too big. The disk has 50 MB free here (a pretend reading: a small file
    system needs privileges CI does not have)."""
    monkeypatch.setattr(retention_module, "_free_bytes", lambda _: 50 * retention_module.MB)
    for max_mb in (100.0, 40.0):
        outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db", max_mb=max_mb)))
        await outputs.start()
        await outputs.stop()  # the writer has ended: whatever it had to say at start is said
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1, warned  # for max_mb = 100 only, once
    assert warned[0].startswith("history: [events.history] max_mb = 100 is more than the disk holding ")
    assert "(50 MB free, 0 MB used by the history)" in warned[0]
    assert "the history stops writing (writes resume once space is freed); lower max_mb" in warned[0]


def test_free_space_is_read_on_the_history_file_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A history file bind-mounted into a container is on another file system than its folder."""
    asked: list[str] = []
    statvfs = os.statvfs

    def recorded(path: Any) -> os.statvfs_result:
        asked.append(str(path))
        return statvfs(path)

    monkeypatch.setattr(retention_module.os, "statvfs", recorded)
    path = tmp_path / "events.db"
    retention_module._free_bytes(path)
    path.touch()
    retention_module._free_bytes(path)
    assert asked == [str(tmp_path), str(path)]


class CheckpointRefused(sqlite3.Connection):
    """A connection that cannot copy its write-ahead log into the file, as on a disk too full to grow
    the file while the log, already as big as a batch, still takes one."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql.startswith("PRAGMA wal_checkpoint"):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, *args)


async def test_a_retention_step_that_keeps_failing_leaves_the_state_and_is_logged_once_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """On a nearly full disk each batch was written and its checkpoint failed: every batch logged
    "working" and the error, and the state flipped between ok and failing."""
    caplog.set_level(logging.INFO, history_module.__name__)
    connect = sqlite3.connect

    def refusing(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if threading.current_thread().name == "event-history":
            kwargs["factory"] = CheckpointRefused
        return connect(*args, **kwargs)

    monkeypatch.setattr(history_module.sqlite3, "connect", refusing)
    monkeypatch.setattr(retention_module, "WAL_MAX_BYTES", 0)  # every write's log outgrows its share
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    history = outputs.history
    assert history is not None
    try:
        for seq in range(5):  # a batch each
            outputs.on_packet(track_start(seq, track_id=seq))
            await stored(history, seq + 1)
    finally:
        await outputs.stop()
    assert history.health().state is SinkState.OK and history.health().failed == 0
    said = [r.getMessage() for r in caplog.records if r.name == history_module.__name__]
    refused = f"history: cannot copy the write-ahead log events.db-wal into {path}: database or disk is full"
    assert said[:2] == [f"history: storing events in {path}", refused]
    # The rest, when the writer ended: the batches' and age retention's checkpoints, a few a batch at most.
    (rest,) = said[2:]
    again = re.fullmatch(re.escape(refused) + r" \(again: (\d+) failure\(s\) since the last report\)", rest)
    assert again is not None and int(again[1]) >= 4, rest


#: In a process whose files may not outgrow 300 kB (what a full disk does to SQLite's file, for the
#: file only), a history writes events until its write-ahead log can no longer be copied into it.
CHECKPOINT_PAST_THE_FILE_SIZE_LIMIT = """
import asyncio, json, logging, resource, signal, sys, time
from pathlib import Path
import numpy as np
from server.events.config import HistorySettings
from server.events.history.writer import HistorySink
from server.events.sink import OutEvent
from server.events.snapshot import Picture

errors = []
class Keep(logging.Handler):
    def emit(self, record):
        if record.levelno >= logging.ERROR:
            errors.append(record.getMessage())
logging.getLogger("server.events").addHandler(Keep())
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))

async def main():
    history = HistorySink(HistorySettings(Path(sys.argv[1]), max_mb=1))
    await history.start()
    noise = np.random.default_rng(0)
    for n in range(200):
        picture = Picture(noise.integers(0, 255, (50, 50, 3), dtype=np.uint8))
        history.offer(OutEvent({"type": "track", "id": n, "time": time.time()}, "cam", time.time(), picture))
        for _ in range(1000):
            health = history.health()
            if health.delivered + health.failed > n:
                break
            await asyncio.sleep(0.01)
        if errors:
            break
    await history.stop()
    print(json.dumps(errors))

asyncio.run(main())
"""


def test_a_checkpoint_that_fails_says_so(tmp_path: Path) -> None:
    """Every retention failure read "cannot delete old events", a checkpoint's too."""
    result = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_PAST_THE_FILE_SIZE_LIMIT, str(tmp_path / "events.db")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    first, *_ = json.loads(result.stdout)
    assert first.startswith("history: cannot copy the write-ahead log events.db-wal into "), first


# -- the API, in the real app ------------------------------------------------------------------------------


async def history_app(aiohttp_client: ClientFactory, path: Path) -> TestClient:
    events = EventsSettings(history=HistorySettings(path))
    return await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL), events=events)))


async def test_api_lists_pages_and_serves_snapshots(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    hub = client.app[hub_key]
    for seq in range(5):  # a second apart: published in a loop, they could share a millisecond
        hub.publish_threadsafe(track_start(seq, track_id=seq, when=time.time() - 10 + seq))  # as the encoder does

    async def listed() -> list[dict[str, object]] | None:
        body = await (await client.get("/api/events?limit=100")).json()
        return body["events"] if len(body["events"]) == 5 else None

    events = await eventually(listed, what="5 events in the API")
    assert [e["event"]["id"] for e in events] == [4, 3, 2, 1, 0]

    page = await (await client.get("/api/events?stream=cam&class=person&limit=2")).json()
    assert [e["event"]["id"] for e in page["events"]] == [4, 3]
    page = await (await client.get(page["next"])).json()
    assert [e["event"]["id"] for e in page["events"]] == [2, 1]
    page = await (await client.get(page["next"])).json()
    assert [e["event"]["id"] for e in page["events"]] == [0] and page["next"] is None
    full = await (await client.get("/api/events?limit=5")).json()
    assert len(full["events"]) == 5 and full["next"] is None  # the last page, though full

    since = events[2]["event"]["time"]
    newer = await (await client.get(f"/api/events?since={since}")).json()
    assert [e["event"]["id"] for e in newer["events"]] == [4, 3, 2]
    none = await (await client.get("/api/events?stream=other")).json()
    assert none == {"events": [], "next": None}

    response = await client.get(events[0]["snapshot"])
    assert response.status == 200 and response.content_type == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(await response.read(), np.uint8), cv2.IMREAD_COLOR) is not None
    # Revalidated, not kept for a day: a new history file numbers its events from 1 again.
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["ETag"]
    again = await client.get(events[0]["snapshot"], headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304 and not await again.read()
    stale = await client.get(events[0]["snapshot"], headers={"If-None-Match": '"a-picture-from-another-file"'})
    assert stale.status == 200 and await stale.read() == await response.read()
    assert (await client.get("/api/events/999999/snapshot.jpg")).status == 404

    async def counted() -> str | None:  # the history commits its rows a moment before it counts them
        metrics = await (await client.get("/metrics")).text()
        return metrics if 'segcast_event_output_delivered_total{output="history"} 5' in metrics else None

    metrics = await eventually(counted, what="five events counted as delivered")
    assert 'segcast_event_output_up{output="history"} 1.0' in metrics


async def test_api_finds_an_event_by_its_event_id(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    """The log names an event a webhook or MQTT gave up on by its event_id, "to be found in the history":
    the API refused event_id as an unknown parameter."""
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    hub = client.app[hub_key]
    for seq in range(3):
        hub.publish_threadsafe(track_start(seq, track_id=seq, when=time.time() - 10 + seq))

    async def listed() -> list[dict[str, Any]] | None:
        body = await (await client.get("/api/events")).json()
        return body["events"] if len(body["events"]) == 3 else None

    events = await eventually(listed, what="3 events in the API")
    wanted = events[1]["event"]["event_id"]
    found = await client.get(f"/api/events?event_id={wanted}")
    assert found.status == 200, await found.text()
    assert await found.json() == {"events": [events[1]], "next": None}
    other_stream = await (await client.get(f"/api/events?event_id={wanted}&stream=other")).json()
    assert other_stream == {"events": [], "next": None}
    unknown = await (await client.get("/api/events?event_id=5f0c2d4e-0000-4000-8000-000000000000")).json()
    assert unknown == {"events": [], "next": None}


async def test_a_snapshot_asked_for_if_none_match_any_is_not_sent(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """``If-None-Match: *`` matches whatever picture the event has (RFC 9110 13.1.2), so it is answered
    like a tag that matches: 304 and no body."""
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    client.app[hub_key].publish_threadsafe(track_start(0))

    async def listed() -> list[dict[str, object]] | None:
        body = await (await client.get("/api/events")).json()
        return body["events"] or None

    [event] = await eventually(listed, what="the event in the API")
    response = await client.get(event["snapshot"], headers={"If-None-Match": "*"})
    assert response.status == 304 and not await response.read()
    assert response.headers["ETag"] and response.headers["Cache-Control"] == "no-cache"


async def test_api_answers_503_with_the_writers_error_while_it_cannot_make_its_file(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A history whose file could not be made (its folder root's, segcast another user; here its folder is a
    file, which stops root too) answered 200 "no events": the reads took the missing file for a history with
    nothing stored yet, while the log and /metrics said the history failed."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    client = await history_app(aiohttp_client, blocker / "events.db")
    history = client.app[event_outputs_key].history
    assert history is not None

    async def writer_error() -> str | None:
        health = history.health()
        return health.last_error if health.state is SinkState.FAILING else None

    reason = await eventually(writer_error, what="the history to fail to make its file")
    assert reason.startswith(f"cannot open {blocker / 'events.db'}: "), reason
    for url in ("/api/events", "/api/events?stream=cam&after=3", "/api/events/1/snapshot.jpg"):
        response = await client.get(url)
        assert response.status == 503, (url, await response.text())
        assert (await response.json())["error"] == f"the event history cannot be read: {reason}"


async def test_api_answers_a_history_with_no_events_yet_with_an_empty_page(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """The writer fine and nothing stored: no events, not an error; before the writer has tried its file too."""
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    history = client.app[event_outputs_key].history
    assert history is not None
    await file_opened(history)
    response = await client.get("/api/events")
    assert response.status == 200, await response.text()
    assert await response.json() == {"events": [], "next": None}
    assert (await client.get("/api/events/1/snapshot.jpg")).status == 404


async def test_a_signed_token_in_the_url_reads_the_history_and_stays_out_of_the_next_link(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """Every route takes a signed token as ``?token=``, but the history's refused it as an unknown
    parameter (400): a dashboard could not read the events by URL."""
    events = EventsSettings(history=HistorySettings(tmp_path / "events.db"))
    admin = "an-admin-token-of-some-length"
    app = create_app(Settings(model=str(BUNDLED_MODEL), events=events, admin_tokens=(admin,)))
    client = await aiohttp_client(app)
    for seq in range(3):
        client.app[hub_key].publish_threadsafe(track_start(seq, track_id=seq, when=time.time() - 10 + seq))
    minted = await client.post("/api/tokens", json={"role": "viewer"}, headers={"Authorization": f"Bearer {admin}"})
    token = (await minted.json())["token"]

    async def first_page() -> dict[str, Any] | None:
        response = await client.get("/api/events", params={"token": token, "limit": "2"})
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body if body["next"] else None

    page = await eventually(first_page, what="a first page of two of the three events")
    assert "token" not in page["next"], "a token is never copied into a response body"
    rest = await client.get(page["next"], params={"token": token})
    assert [e["event"]["id"] for e in (await rest.json())["events"]] == [0]
    assert (await client.get("/api/events", params={"token": token[:-2] + "xx"})).status == 401


async def test_retention_that_keeps_failing_is_counted_in_metrics_and_the_api(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A history that cannot delete old events fills its disk while its state says ok (every event is
    stored): the failures were only in the log, nothing to alert on."""
    monkeypatch.setattr(retention_module, "AGE_PRUNE_INTERVAL_S", 0.0)  # age retention after every write
    path = tmp_path / "events.db"
    events = EventsSettings(history=HistorySettings(path, max_age_days=1))
    client = await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL), events=events)))
    history = client.app[event_outputs_key].history
    assert history is not None
    await file_opened(history)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # deleting fails, as on a full disk
        db.execute("CREATE TRIGGER keep BEFORE DELETE ON events BEGIN SELECT RAISE(ABORT, 'refused'); END")
    client.app[hub_key].publish_threadsafe(track_start(1, track_id=1, when=time.time() - 2 * 86400))

    async def counted() -> str | None:
        metrics = await (await client.get("/metrics")).text()
        found = re.search(r'^segcast_event_output_upkeep_failures_total\{output="history"\} (\d+)$', metrics, re.M)
        return metrics if found and int(found[1]) >= 1 else None

    metrics = await eventually(counted, what="the failed retention counted in /metrics")
    assert 'segcast_event_output_up{output="history"} 1.0' in metrics  # the events are stored: still up
    (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
    assert output["state"] == "ok" and output["upkeep_failures"] >= 1 and output["failed"] == 0


async def test_history_pages_do_not_wait_behind_the_default_executor(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """Slow pages and snapshot encodings, stream changes, MQTT connects used to share one executor."""
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    client.app[hub_key].publish_threadsafe(track_start(1))

    async def listed() -> dict[str, Any] | None:
        body = await (await client.get("/api/events")).json()
        return body if body["events"] else None

    (event,) = (await eventually(listed, what="an event in the API"))["events"]
    loop = asyncio.get_running_loop()
    busy, release = ThreadPoolExecutor(1), threading.Event()
    loop.set_default_executor(busy)
    blocker = loop.run_in_executor(None, release.wait)  # the default executor's one thread is taken
    try:
        page = await asyncio.wait_for(client.get("/api/events?stream=cam&type=track"), 10)
        assert page.status == 200 and len((await page.json())["events"]) == 1
        snapshot = await asyncio.wait_for(client.get(event["snapshot"]), 10)
        assert snapshot.status == 200
    finally:
        release.set()
        await blocker


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        # Numbers Python reads but a URL's reader would not: 1_000, and other scripts' digits (Arabic-Indic one).
        ("limit=1_000", "limit"),
        ("limit=%D9%A1", "limit"),
        ("before=1_0", "before"),
        ("since=soon", "since"),
        ("until=nan", "until"),
        ("colour=red", "colour"),
        # Page one would read the first, its next link the last: page two another query.
        ("limit=2&limit=1000", "limit"),
        ("stream=a&stream=b", "stream"),
        # Matched nothing, as no event has it: an empty page read as "none happened".
        ("type=bogus", "type"),
        ("since=20&until=10", "since"),
    ],
)
async def test_api_names_a_bad_parameter(aiohttp_client: ClientFactory, tmp_path: Path, query: str, named: str) -> None:
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    response = await client.get(f"/api/events?{query}")
    assert response.status == 400
    assert (await response.json())["error"].startswith(f"{named}:")


async def test_api_refusing_an_unknown_type_lists_the_known_ones_and_an_empty_window_says_so(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    typo = await (await client.get("/api/events?type=zone_entry")).json()
    known = "track, zone_enter, zone_exit, loiter, line_cross"
    assert typo["error"] == f"type: no event has type 'zone_entry'; known: {known}"
    backwards = await (await client.get("/api/events?since=1767225600&until=1767139200")).json()
    assert "since (1767225600) is later than until (1767139200)" in backwards["error"]


@pytest.mark.parametrize("query", ["stream=removed-long-ago", "class=forklift", "type=loiter", "since=10&until=10"])
async def test_api_answers_a_filter_nothing_matches_now_with_an_empty_page(
    aiohttp_client: ClientFactory, tmp_path: Path, query: str
) -> None:
    """The history keeps the events of streams since removed and of other models' classes: no typo."""
    client = await history_app(aiohttp_client, tmp_path / "events.db")
    response = await client.get(f"/api/events?{query}")
    assert response.status == 200, await response.text()
    assert await response.json() == {"events": [], "next": None}


async def test_api_says_when_the_history_is_off(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL))))
    response = await client.get("/api/events")
    assert response.status == 404
    assert "[events.history]" in (await response.json())["error"]


@pytest.mark.parametrize("box", [[100.0, 100.0, 3100.0, 2000.0], [1000.0, 10.0, 1700.0, 2150.0]], ids=["wide", "tall"])
def test_an_object_waits_for_its_snapshot_within_the_pixels_of_a_720p_image(box: list[float]) -> None:
    """Crops were thinned only when 1280 px wide: a tall one near a 4K camera, at full size, was 5 MB."""
    image = np.zeros((2160, 3840, 3), np.uint8)
    picture = picture_of({"id": 1, "box": box}, FrameResult(Frame("cam", 1, 0.0, 0.0, image), (), 1.0))
    height, width = picture.pixels.shape[:2]
    assert height * width <= 1280 * 720
    assert height * width > 1280 * 720 / 4  # thinned no more than it must
    assert snapshot_jpeg(picture)[:2] == b"\xff\xd8"


@pytest.mark.parametrize(
    ("frame", "queued"),
    [((720, 1280), (360, 640)), ((2160, 3840), (360, 640)), ((1920, 1080), (960, 540))],
    ids=["720p", "4K", "portrait"],
)
def test_a_whole_frame_waits_for_its_snapshot_little_wider_than_it_is_stored(
    frame: tuple[int, int], queued: tuple[int, int]
) -> None:
    """A snapshot of the whole frame is stored 640 px wide: queued as a 720p image, it held four
    times the pixels, and the queue's picture budget ran out four times sooner."""
    image = np.zeros((*frame, 3), np.uint8)
    picture = picture_of({"id": 1}, FrameResult(Frame("cam", 1, 0.0, 0.0, image), (), 1.0))
    assert picture.whole_frame and picture.pixels.shape[:2] == queued

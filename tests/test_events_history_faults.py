"""The history's writer against faults: a disk that answers retention's reads with I/O errors, a bug
in its loop, a thread that ends anyway. Events stored stay counted stored, and the writer goes on."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from server.events.config import EventsSettings, HistorySettings
from server.events.history import retention as retention_module
from server.events.history.query import EventQuery
from server.events.history.writer import HistorySink
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from tests.support.event_packets import track_start, with_events
from tests.support.polling import eventually
from tests.test_events_history import file_opened, stored

WRITER_THREAD = "event-history"
DAY_S = 86400


class FailingDisk:
    """Connections the history's writer opens (`connect`, in place of ``sqlite3.connect``) whose
    ``failing`` statement fails with SQLite's "disk I/O error" once `fail` is called and an ``after``
    statement has run since (by default a checkpoint: a disk that starts failing as the write-ahead
    log is copied into the file). Other threads' connections are left alone."""

    def __init__(self, failing: str, after: str = "PRAGMA wal_checkpoint") -> None:
        self._failing = failing
        self._after = after
        self._armed = threading.Event()
        self._due = threading.Event()  # the ``after`` statement has run since `fail`
        self._connect = sqlite3.connect

    def fail(self) -> None:
        self._due.clear()
        self._armed.set()

    def connect(self, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if threading.current_thread().name == WRITER_THREAD:
            kwargs["factory"] = self._connection_class()
        return self._connect(*args, **kwargs)

    def _connection_class(self) -> type[sqlite3.Connection]:
        disk = self

        class Failing(sqlite3.Connection):
            def execute(self, sql: str, *parameters: Any) -> sqlite3.Cursor:
                disk._run(sql)
                return super().execute(sql, *parameters)

            def executescript(self, script: str) -> sqlite3.Cursor:
                disk._run(script)
                return super().executescript(script)

            def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
                disk._run(sql)
                return super().executemany(sql, rows)

        return Failing

    def _run(self, sql: str) -> None:
        if not self._armed.is_set():
            return
        if self._due.is_set() and sql.startswith(self._failing):
            raise sqlite3.OperationalError("disk I/O error")
        if sql.startswith(self._after):
            self._due.set()


@asynccontextmanager
async def history_on(settings: HistorySettings) -> AsyncIterator[tuple[EventOutputs, HistorySink]]:
    """Event outputs with ``settings``' history alone, started, its file open."""
    outputs = EventOutputs(EventsSettings(history=settings))
    history = outputs.history
    assert history is not None
    await outputs.start()
    try:
        await file_opened(history)
        yield outputs, history
    finally:
        await outputs.stop()


async def upkeep_failed(history: HistorySink) -> None:
    async def failed() -> bool:
        return history.health().upkeep_failures > 0

    await eventually(failed, what="an upkeep failure")


@pytest.mark.parametrize("failing", ["PRAGMA page_size", "PRAGMA freelist_count", "SELECT 1 FROM events"])
async def test_a_disk_error_reading_what_age_retention_left_costs_no_event_and_not_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """Retention's reads around its deletes were unguarded: the error ended the writer thread, while the
    history said ok and every later event waited in its queue for ever."""
    monkeypatch.setattr(retention_module, "AGE_PRUNE_INTERVAL_S", 0.0)  # age retention on every turn
    disk = FailingDisk(failing)
    monkeypatch.setattr(sqlite3, "connect", disk.connect)
    async with history_on(HistorySettings(tmp_path / "events.db", max_age_days=1)) as (outputs, history):
        disk.fail()
        outputs.on_packet(track_start(1, track_id=1, when=time.time() - 2 * DAY_S))  # old: retention deletes it
        await upkeep_failed(history)
        outputs.on_packet(track_start(2, track_id=2))
        await stored(history, 2)
        health = history.health()
        assert (health.state, health.failed, health.queued) == (SinkState.OK, 0, 0)
        assert 2 in [event.data["id"] for event in history.query(EventQuery())]


async def test_a_disk_error_pruning_after_a_write_counts_no_stored_event_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error went out of `Retention.written`, after the group was counted stored, and its whole batch
    was counted failed as well: ``queued`` went below 0 for good."""
    disk = FailingDisk("PRAGMA freelist_count", after="PRAGMA incremental_vacuum")  # what is left, after a delete
    monkeypatch.setattr(sqlite3, "connect", disk.connect)
    note = "x" * 100_000  # a dozen of these are more than max_mb = 1 leaves the events
    events = 12
    async with history_on(HistorySettings(tmp_path / "events.db", max_mb=1)) as (outputs, history):
        disk.fail()
        for seq in range(events):
            crossing = {"type": "line_cross", "v": 1, "stream": "cam", "id": seq, "line": "gate", "note": note}
            outputs.on_packet(with_events(seq, [crossing]))

        async def settled() -> bool:
            health = history.health()
            return health.delivered + health.failed >= events

        await eventually(settled, what="every event stored or failed")
        health = history.health()
    assert (health.delivered, health.failed, health.queued) == (events, 0, 0)
    assert health.upkeep_failures > 0 and health.state is SinkState.OK


async def test_a_write_group_that_fails_after_others_of_its_batch_counts_only_its_own_events_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is written a group at a time: when a later group fails, the events of the groups stored before
    it are delivered, the rest failed, none both (``queued`` would go below 0 for good)."""
    disk = FailingDisk("INSERT", after="INSERT")  # the disk fails from the second group on
    monkeypatch.setattr(sqlite3, "connect", disk.connect)
    # More than a group of a batch holds (`Retention.group_bytes`): a group an event.
    note = "x" * int(retention_module.WAL_MAX_BYTES * retention_module.WRITE_GROUP_SHARE)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db")))
    history = outputs.history
    assert history is not None
    for seq in range(3):  # queued before the writer starts: one batch
        outputs.on_packet(with_events(seq, [{"type": "line_cross", "v": 1, "stream": "cam", "id": seq, "note": note}]))
    disk.fail()
    await outputs.start()
    try:

        async def settled() -> bool:
            health = history.health()
            return health.delivered + health.failed >= 3

        await eventually(settled, what="every event stored or failed")
    finally:
        await outputs.stop()
    health = history.health()
    assert (health.delivered, health.failed, health.queued) == (1, 2, 0)
    assert [event.data["id"] for event in history.query(EventQuery())] == [0]


async def test_a_bug_in_the_writers_loop_is_logged_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async with history_on(HistorySettings(tmp_path / "events.db")) as (outputs, history):
        due = history._retention.due
        bugs = iter([RuntimeError("a bug")])

        def due_once_buggy() -> bool:
            if (bug := next(bugs, None)) is not None:
                raise bug
            return due()

        monkeypatch.setattr(history._retention, "due", due_once_buggy)
        outputs.on_packet(track_start(1, track_id=1))
        await stored(history, 1)
        assert history.health().state is SinkState.OK
    assert any("internal error in the writer" in r.getMessage() and r.exc_info for r in caplog.records)


async def test_a_writer_thread_that_ends_anyway_makes_the_history_failing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, a history whose writer had ended said ok for ever, storing nothing."""
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the thread's end is the point here
    async with history_on(HistorySettings(tmp_path / "events.db")) as (_, history):

        def ending() -> bool:
            raise SystemExit("ended")

        monkeypatch.setattr(history._retention, "due", ending)

        async def failing() -> bool:
            return history.health().state is SinkState.FAILING

        await eventually(failing, what="the history to say it is failing")
        assert "the writer has ended" in (history.health().last_error or "")

"""Age retention across a step of the wall clock: what this process stored is kept ``max_age_days`` by its
own monotonic clock, whatever the wall clock says; what earlier runs stored is pruned by its time."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path

import pytest

from server.events.config import HistorySettings
from server.events.history import retention as retention_module
from server.events.history.writer import HistorySink
from server.events.sink import OutEvent, SinkState
from tests.support.polling import eventually

DAY_S = 86400.0
YEARS_3_S = 3 * 365 * DAY_S
REAL_TIME = time.time


class Prunes:
    """Counts the prunes that left nothing due by age: each one deleted all the age it found to delete."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.finished = 0
        prune = retention_module.Retention.prune

        def counted(retention: retention_module.Retention, db: sqlite3.Connection | None) -> None:
            prune(retention, db)
            if db is not None and not retention._age_due:
                self.finished += 1

        monkeypatch.setattr(retention_module.Retention, "prune", counted)

    async def two_more(self) -> None:
        """Until two prunes have finished after this call: the second began after it."""
        target = self.finished + 2

        async def done() -> bool:
            return self.finished >= target

        await eventually(done, what="two more finished prunes")


@asynccontextmanager
async def history(path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[HistorySink, Prunes]]:
    """A history keeping one day's events, pruning by age on every turn of its writer."""
    monkeypatch.setattr(retention_module, "AGE_PRUNE_INTERVAL_S", 0.0)
    prunes = Prunes(monkeypatch)
    sink = HistorySink(HistorySettings(path, max_age_days=1))
    await sink.start()
    try:
        yield sink, prunes
    finally:
        await sink.stop()


async def store(sink: HistorySink, count: int) -> None:
    """Offer ``count`` events dated as the wall clock says now, and wait until they are stored."""
    target = sink.health().delivered + count
    for n in range(count):
        sink.offer(OutEvent({"type": "track", "id": n, "time": time.time()}, "cam", time.time()))

    async def stored() -> bool:
        return sink.health().delivered >= target

    await eventually(stored, what=f"{count} more events stored")


async def stored_earlier(path: Path, *times: float) -> None:
    """Rows an earlier run of segcast stored, with these times: it made the file, they are added to it."""
    earlier = HistorySink(HistorySettings(path))
    await earlier.start()

    async def opened() -> bool:
        return earlier.health().state is SinkState.OK

    await eventually(opened, what="the earlier run to make its file")
    await earlier.stop()
    with closing(sqlite3.connect(path)) as db:
        db.executemany(
            "INSERT INTO events (time, stream, type, data) VALUES (?, 'old', 'track', '{}')", [(t,) for t in times]
        )
        db.commit()


def stored_rows(path: Path) -> list[tuple[str, float]]:
    """The stream and time of each stored event, oldest first, read as the API's readers do."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT stream, time FROM events ORDER BY time").fetchall()


def clock_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "wall clock" in r.getMessage()]


def shifted(by_s: float) -> Callable[[], float]:
    return lambda: REAL_TIME() + by_s


async def test_a_clock_stepped_years_ahead_keeps_what_this_process_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given 43 events stored a moment ago, when the wall clock jumps 3 years ahead, then a prune keeps
    them all (it deleted every one), and the jump is logged once; an earlier run's event goes by its time."""
    path = tmp_path / "events.db"
    await stored_earlier(path, time.time())
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 43)

        monkeypatch.setattr(time, "time", shifted(YEARS_3_S))
        await prunes.two_more()

        assert [stream for stream, _ in stored_rows(path)] == ["cam"] * 43
    warned = clock_warnings(caplog)
    assert len(warned) == 1, warned
    assert "moved by +1095.0 days" in warned[0]


async def test_a_clock_stepped_between_the_writers_look_and_its_prune_keeps_what_this_process_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 43 events stored a moment ago, when the wall clock jumps 3 years ahead right after the writer
    found a prune due (it looked at the clock there) and before the prune reads it, then the prune keeps
    them all: it took the new time for the date and deleted every one (a fresh-clone run under load)."""
    path = tmp_path / "events.db"
    step = threading.Event()
    due = retention_module.Retention.due

    def due_then_step(retention: retention_module.Retention) -> bool:
        answer = due(retention)
        if step.is_set():
            monkeypatch.setattr(time, "time", shifted(YEARS_3_S))
        return answer

    monkeypatch.setattr(retention_module.Retention, "due", due_then_step)
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 43)
        step.set()
        await prunes.two_more()

        assert [stream for stream, _ in stored_rows(path)] == ["cam"] * 43


async def test_a_clock_set_right_years_ahead_keeps_what_was_stored_while_it_was_slow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a box that booted 3 years slow and stored 18 events dated then, when NTP sets its clock
    right, then a prune keeps them, and the correction is logged once."""
    path = tmp_path / "events.db"
    monkeypatch.setattr(time, "time", shifted(-YEARS_3_S))
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 18)

        monkeypatch.setattr(time, "time", REAL_TIME)
        await prunes.two_more()

        assert len(stored_rows(path)) == 18
    assert len(clock_warnings(caplog)) == 1


async def test_without_a_clock_step_events_older_than_max_age_are_still_deleted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given an earlier run's events, one two days old, when this run prunes, then that one goes by its
    time and the rest stay; nothing about the clock is said."""
    path = tmp_path / "events.db"
    now = time.time()
    await stored_earlier(path, now - 2 * DAY_S, now - 60)
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 3)
        await prunes.two_more()

        assert stored_rows(path)[0] == ("old", now - 60)
        assert sorted(stream for stream, _ in stored_rows(path)) == ["cam"] * 3 + ["old"]
    assert clock_warnings(caplog) == []


async def test_after_a_step_what_this_process_stored_is_deleted_once_old_by_its_own_clock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept, not kept for ever: events stored before and after a step go once ``max_age_days`` have passed
    on the process's own clock as well as by their dates (a disk of events that never age fills to max_mb)."""
    path = tmp_path / "events.db"
    real_since_boot = retention_module.since_boot
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 5)
        monkeypatch.setattr(time, "time", shifted(YEARS_3_S))
        await prunes.two_more()
        await store(sink, 5)
        assert len(stored_rows(path)) == 10

        monkeypatch.setattr(time, "time", shifted(YEARS_3_S + 2 * DAY_S))
        monkeypatch.setattr(retention_module, "since_boot", lambda: real_since_boot() + 2 * DAY_S)
        await prunes.two_more()

        assert stored_rows(path) == []


async def test_a_machine_that_slept_is_no_clock_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A suspend moves the wall clock and the boot clock alike (the monotonic clock stops): a box that
    slept each night was told of a step at each resume, and kept events past max_age_days."""
    path = tmp_path / "events.db"
    real_since_boot = retention_module.since_boot
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 3)
        monkeypatch.setattr(time, "time", shifted(3 * 3600))
        monkeypatch.setattr(retention_module, "since_boot", lambda: real_since_boot() + 3 * 3600)
        monkeypatch.setattr(time, "monotonic", lambda: real_since_boot())  # stopped while asleep: not ahead
        await prunes.two_more()
    assert clock_warnings(caplog) == []


async def test_an_event_stored_after_a_newer_one_goes_by_its_own_date_the_newer_one_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ids follow the order events are stored in, not their dates (a line crossing is stored once confirmed,
    a clock set back dates the next ones earlier): an old event with a higher id than a recent one must not
    take the recent one with it when it is pruned."""
    path = tmp_path / "events.db"
    now = time.time()
    await stored_earlier(path, now - 60, now - 2 * DAY_S)  # the older event has the higher id
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 3)
        await prunes.two_more()

        rows = stored_rows(path)
        assert [row for row in rows if row[0] == "old"] == [("old", now - 60)]
        assert [stream for stream, _ in rows].count("cam") == 3


async def test_a_clock_set_back_years_is_logged_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Given a box that booted 3 years fast and stored 4 events dated then, when NTP sets its clock back,
    then the step is logged once, as a step ahead is, and the events stay."""
    path = tmp_path / "events.db"
    monkeypatch.setattr(time, "time", shifted(YEARS_3_S))
    async with history(path, monkeypatch) as (sink, prunes):
        await store(sink, 4)

        monkeypatch.setattr(time, "time", REAL_TIME)
        await prunes.two_more()

        assert len(stored_rows(path)) == 4
    warned = clock_warnings(caplog)
    assert len(warned) == 1, warned
    assert "moved by -1095.0 days" in warned[0]

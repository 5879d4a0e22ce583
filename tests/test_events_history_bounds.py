"""The history's time windows: which events ``since`` and ``until`` find, whichever way a page is read, and the
time an event is filed under."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from server.events.config import EventsSettings, HistorySettings
from server.events.history.query import EventQuery, select_events
from server.events.outputs import EventOutputs
from tests.support.event_packets import with_events
from tests.test_events_history import open_once, stored

#: The times of the events stored, ids 1 to 5 in this order: a window from 1000 to 2000, and one either side.
TIMES = (999.0, 1000.0, 1500.0, 2000.0, 2001.0)


@pytest.mark.parametrize("by_time", [True, False], ids=["time-index", "id-order"])
async def test_events_exactly_at_since_and_at_until_are_in_the_window(tmp_path: Path, by_time: bool) -> None:
    """Both ends are inclusive, so ``since`` and ``until`` alike may name the instant of an event, read through
    the time index (a window of few events) or in id order (a wide one: `TIME_INDEX_MAX_ROWS`)."""
    path = tmp_path / "events.db"
    await open_once(path)
    with closing(sqlite3.connect(path)) as db:
        rows = [(when,) for when in TIMES]
        db.executemany("INSERT INTO events (time, stream, type, data) VALUES (?, 'cam', 'track', '{}')", rows)
        db.commit()
        sql, args = select_events(EventQuery(since=1000.0, until=2000.0), by_time)
        found = [TIMES[event_id - 1] for event_id, _, _ in db.execute(sql, [*args, 10])]
    assert found == [2000.0, 1500.0, 1000.0]


async def test_an_event_whose_time_is_true_is_filed_under_its_frames_capture_time(tmp_path: Path) -> None:
    """``True`` is an int to Python: taken for a time, it filed the event at 1 s past 1970, outside any window
    a person asks for, and the first to go by age."""
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db")))
    history = outputs.history
    assert history is not None
    packet = with_events(1, [{"type": "zone_enter", "v": 1, "stream": "cam", "id": 1, "zone": "door", "time": True}])
    captured = packet.result.frame.capture_time
    await outputs.start()
    try:
        outputs.on_packet(packet)
        await stored(history, 1)
        found = history.query(EventQuery(since=captured, until=captured))
    finally:
        await outputs.stop()
    assert [event.data["zone"] for event in found] == ["door"]

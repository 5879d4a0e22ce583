"""The event history's file format: stamped in the file, older files adopted, newer and foreign ones left alone.

Every file here is real, made with sqlite3 as the program that wrote it would have: a newer segcast,
segcast before formats were stamped, another program.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.config import StreamConfig
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings
from server.events.history.format import HISTORY_FORMAT, SEGCAST_APPLICATION_ID, RefusedHistoryFile
from server.events.history.query import EventQuery
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from tests.support.event_packets import track_start
from tests.support.polling import eventually
from tests.test_events_consumers import PREVIOUS_SCHEMA
from tests.test_events_history import failed, open_once, stored
from tests.test_events_history_disk import writer_connects_with

StartServer = Callable[..., Awaitable[TestClient]]

#: The history's table as segcast wrote it before formats were stamped (user_version 0): adopted as format 1.
UNSTAMPED_SCHEMA = "PRAGMA auto_vacuum = INCREMENTAL;\nPRAGMA journal_mode = WAL;\n" + PREVIOUS_SCHEMA
#: A newer segcast's file: a column this one does not know, and the format after this one's.
NEWER_FORMAT = HISTORY_FORMAT + 1
NEWER_FILE = f"""
PRAGMA journal_mode = WAL;
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, stream TEXT NOT NULL,
    type TEXT NOT NULL, class TEXT, zone TEXT, line TEXT, data TEXT NOT NULL, snapshot BLOB, site TEXT NOT NULL);
INSERT INTO events (time, stream, type, data, site) VALUES (1767225600.0, 'cam', 'track', '{{}}', 'north');
PRAGMA application_id = {SEGCAST_APPLICATION_ID};
PRAGMA user_version = {NEWER_FORMAT};
"""
#: Other programs' SQLite files that an ``[events.history] path`` could be pointed at by mistake.
FOREIGN_FILES = {
    "an events table of other columns": """
        CREATE TABLE events (id INTEGER PRIMARY KEY, title TEXT NOT NULL, starts_at TEXT);
        INSERT INTO events (title, starts_at) VALUES ('standup', '2026-01-05T09:00');
    """,
    "segcast's columns and more, in another program's migrations": """
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, stream TEXT NOT NULL,
            type TEXT NOT NULL, class TEXT, zone TEXT, line TEXT, data TEXT NOT NULL, snapshot BLOB, owner TEXT);
        PRAGMA user_version = 3;
    """,
    "segcast's columns in another application's file": """
        CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, stream TEXT NOT NULL,
            type TEXT NOT NULL, class TEXT, zone TEXT, line TEXT, data TEXT NOT NULL, snapshot BLOB);
        PRAGMA application_id = 1196444487;
    """,
    "no events table": """
        CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);
        INSERT INTO notes (body) VALUES ('keep me');
    """,
}


def made_with(path: Path, script: str) -> bytes:
    """The file at ``path`` made by ``script``, closed as its program leaves it; its bytes."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript(script)
    return path.read_bytes()


def stamp(path: Path) -> tuple[int, int]:
    """The file's application_id and user_version."""
    with closing(sqlite3.connect(path)) as db:
        return db.execute("PRAGMA application_id").fetchone()[0], db.execute("PRAGMA user_version").fetchone()[0]


async def test_a_newer_formats_file_is_left_alone_and_named_while_streams_run(
    start_server: StartServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file a newer segcast wrote (a downgrade) was written to by whatever matched its table, and read
    as if it were ours: its data is the newer segcast's, and this one cannot know what it means."""
    path = tmp_path / "events.db"
    before = made_with(path, NEWER_FILE)
    events = EventsSettings(history=HistorySettings(path))
    client = await start_server(StreamConfig("cam", "scene:?seed=1"), events=events)

    async def history_failing() -> dict[str, Any] | None:
        (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
        return output if output["state"] == SinkState.FAILING.value and output["failed"] >= 1 else None

    output = await eventually(history_failing, timeout_s=60, what="the stream's events to fail on the newer file")
    reason = output["last_error"]
    assert reason == (
        f"{path} holds event history format {NEWER_FORMAT}, written by a newer segcast; this segcast writes "
        f"format {HISTORY_FORMAT} and leaves the file alone: upgrade segcast, or set events.history.path to "
        "another file (a new one is made there)"
    )
    assert output["delivered"] == 0
    assert f"history: {reason}" in [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    listed = await client.get("/api/events")
    assert listed.status == 503 and "written by a newer segcast" in await listed.text()
    metrics = await (await client.get("/metrics")).text()
    assert re.search(r'^segcast_event_output_up\{output="history"\} 0\.0$', metrics, re.M)

    frames = (await (await client.get("/api/streams/cam")).json())["frames_processed"]

    async def stream_running() -> bool:
        info = await (await client.get("/api/streams/cam")).json()
        return info["state"] == "live" and info["frames_processed"] > frames

    await eventually(stream_running, what="the stream to go on while the history refuses its file")
    await client.close()
    assert path.read_bytes() == before
    assert stamp(path) == (SEGCAST_APPLICATION_ID, NEWER_FORMAT)


async def test_a_file_from_before_formats_were_stamped_is_adopted_with_its_events(tmp_path: Path) -> None:
    """A history written before the format was stamped keeps its events and takes new ones, and is
    stamped, so a later segcast knows which format it holds."""
    path = tmp_path / "events.db"
    old = [{"type": "zone_enter", "stream": "cam", "id": n, "zone": "door", "time": time.time() - 60} for n in (1, 2)]
    made_with(path, UNSTAMPED_SCHEMA)
    with closing(sqlite3.connect(path)) as db:
        rows = [(e["time"], "cam", e["type"], e["zone"], json.dumps(e)) for e in old]
        db.executemany("INSERT INTO events (time, stream, type, zone, data) VALUES (?, ?, ?, ?, ?)", rows)
        db.commit()
    assert stamp(path) == (0, 0)

    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        history = outputs.history
        assert history is not None
        outputs.on_packet(track_start(1, track_id=7))
        await stored(history, 1)
        found = history.query(EventQuery())
    finally:
        await outputs.stop()
    assert [e.data["id"] for e in found] == [7, 2, 1]
    assert [dict(e.data) for e in found[1:]] == old[::-1]
    assert stamp(path) == (SEGCAST_APPLICATION_ID, HISTORY_FORMAT)


async def test_a_new_history_is_stamped_with_its_format(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        assert outputs.history is not None
        outputs.on_packet(track_start(1))
        await stored(outputs.history, 1)
    finally:
        await outputs.stop()
    assert stamp(path) == (SEGCAST_APPLICATION_ID, HISTORY_FORMAT)


async def test_a_stamped_file_that_lost_an_index_has_it_made_again(tmp_path: Path) -> None:
    """An older segcast (whose schema dropped ``events_stream_time``) run on a stamped file: the next
    open makes the index again, as it did before files were stamped; a query by stream and time
    names that index and would fail for good."""
    path = tmp_path / "events.db"
    for dropped in (False, True):
        outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
        await outputs.start()
        try:
            assert outputs.history is not None
            outputs.on_packet(track_start(1))
            await stored(outputs.history, 1)
            if dropped:
                assert len(outputs.history.query(EventQuery(stream="cam", since=0.0))) == 2
        finally:
            await outputs.stop()
        if not dropped:
            with closing(sqlite3.connect(path)) as db:
                db.execute("DROP INDEX events_stream_time")
    with closing(sqlite3.connect(path)) as db:
        indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "events_stream_time" in indexes


async def test_a_file_that_is_not_sqlite_is_not_called_damaged(tmp_path: Path) -> None:
    """A JSON file at the history's path is no damaged history: the advice to recover it "and put that
    in its place" would overwrite another program's file. It is said to be no SQLite file, and left alone."""
    path = tmp_path / "settings.json"
    path.write_text('{"theme": "dark"}\n')
    before = path.read_bytes()
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        assert outputs.history is not None
        history = outputs.history
        with pytest.raises(sqlite3.DatabaseError):
            history.query(EventQuery())

        async def told() -> str | None:  # by the writer's thread, which opens the file on its own time
            return history.health().last_error

        error = await eventually(told, what="the history's error")
    finally:
        await outputs.stop()
    assert "it is not a SQLite file, so no segcast event history: set events.history.path to another file" in error
    assert "recover" not in error
    assert path.read_bytes() == before


async def test_a_file_that_is_not_sqlite_says_what_to_do_where_it_fails_writes_and_reads(
    start_server: StartServer, tmp_path: Path
) -> None:
    """A text file at the history's path: the writes' error (the outputs' ``last_error``) and the API's 503
    said only SQLite's "file is not a database"; they say what it is and what to do, as the reads' log does."""
    path = tmp_path / "notdb.txt"
    path.write_text("not a database, just notes\n" * 8)
    before = path.read_bytes()
    client = await start_server(events=EventsSettings(history=HistorySettings(path)))
    history = client.app[event_outputs_key].history
    assert history is not None
    client.app[event_outputs_key].on_packet(track_start(1))
    await failed(history, 1)
    (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]

    listed = await client.get("/api/events")

    advice = "it is not a SQLite file, so no segcast event history: set events.history.path to another file"
    assert output["last_error"] == f"cannot open {path}: {advice} (a new one is made there)"
    assert listed.status == 503 and f"{path}: {advice}" in (await listed.json())["error"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("made", FOREIGN_FILES)
async def test_another_programs_file_is_refused_and_left_alone(tmp_path: Path, made: str) -> None:
    """A path pointed at another program's SQLite file had segcast's rows written into a table that merely
    matched, or a raw "no such column" on every batch, after segcast had switched its journal to WAL."""
    path = tmp_path / "other.db"
    before = made_with(path, FOREIGN_FILES[made])
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        history = outputs.history
        assert history is not None
        outputs.on_packet(track_start(1))
        await failed(history, 1)
        health = history.health()
        with pytest.raises(RefusedHistoryFile) as refused:
            history.query(EventQuery())
    finally:
        await outputs.stop()
    assert health.state is SinkState.FAILING and health.delivered == 0
    assert health.last_error == str(refused.value)
    assert health.last_error.startswith(f"{path} is not a segcast event history: it"), health.last_error
    assert health.last_error.endswith(
        "; segcast writes nothing to it: set events.history.path to another file (a new one is made there)"
    )
    assert path.read_bytes() == before


class DiskFullWhileStamping(sqlite3.Connection):
    """The writer's connection on a disk too full for an older file's indexes: stamping fails at each open."""

    def executescript(self, script: str) -> sqlite3.Cursor:
        if "PRAGMA user_version" in script:
            raise sqlite3.OperationalError("database or disk is full")
        return super().executescript(script)


def adoptions(caplog: pytest.LogCaptureFixture, path: Path) -> list[str]:
    """What was said of bringing the file at ``path`` up to format, with the history's other lines around it."""
    said = [record.getMessage() for record in caplog.records if record.name.startswith("server.events.history")]
    return [line for line in said if str(path) in line and ("up to format" in line or "storing events" in line)]


async def test_bringing_an_older_file_up_to_format_is_said_first_and_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taking over a 1.26 GB file from before formats were stamped built its indexes for seconds with nothing
    logged. Said at INFO before it starts; a current or new file is opened without a word of it, and a
    stamping that fails at each open (a full disk) is said once."""
    caplog.set_level(logging.INFO, logger="server.events")
    adopting = (
        f"history: bringing {{}} up to format {HISTORY_FORMAT} (building its indexes: a while on a big file)"
    ).format
    older, new, full = tmp_path / "older.db", tmp_path / "new.db", tmp_path / "full.db"
    made_with(older, UNSTAMPED_SCHEMA)
    await open_once(older)
    assert adoptions(caplog, older) == [adopting(older), f"history: storing events in {older}"]
    caplog.clear()
    await open_once(older)
    await open_once(new)
    assert [line for line in caplog.messages if "up to format" in line] == []

    made_with(full, UNSTAMPED_SCHEMA)
    writer_connects_with(monkeypatch, DiskFullWhileStamping)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(full)))
    await outputs.start()
    try:
        assert outputs.history is not None
        for seq in range(3):  # a batch each, and an open each
            outputs.on_packet(track_start(seq, track_id=seq))
            await failed(outputs.history, seq + 1)
    finally:
        await outputs.stop()
    assert adoptions(caplog, full) == [adopting(full)]

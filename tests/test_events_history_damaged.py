"""The event history on a disk that went wrong: a file system remounted read-only, a file damaged mid-way.

Remounting needs privileges CI does not have, so the read-only file system is told by a seam (the
history asks the mount whether it is read-only) and SQLite's refusal is what it says there: the open
works and every read fails with "unable to open database file" (it cannot make the ``-shm`` index of
a WAL file). The damaged file is real: a page of it overwritten.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from server.app import create_app
from server.config import Settings
from server.events.api import event_outputs_key
from server.events.config import EventsSettings, HistorySettings
from server.events.history import reader as history_module
from server.events.history.writer import INSERT
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from server.inference.models import BUNDLED_MODEL
from tests.support.event_packets import track_start
from tests.support.polling import eventually
from tests.test_events_history import open_once, stored

ClientFactory = Callable[..., Awaitable[TestClient]]


class CannotOpenSharedIndex(sqlite3.Connection):
    """A connection to a WAL file on a read-only file system: SQLite opens it, then fails every read."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        raise sqlite3.OperationalError("unable to open database file")


def on_read_only_file_system(monkeypatch: pytest.MonkeyPatch, read_only: bool) -> None:
    """SQLite refuses as on a read-only file system (read-only opens, and the writer's); the mount
    says it is read-only or not. An immutable read works there, as SQLite reads no ``-shm`` for it."""
    connect = sqlite3.connect

    def connecting(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        reading = "mode=ro" in str(database) and "immutable=1" not in str(database)
        if reading or threading.current_thread().name == "event-history":
            kwargs["factory"] = CannotOpenSharedIndex
        return connect(database, *args, **kwargs)

    monkeypatch.setattr(history_module.sqlite3, "connect", connecting)
    monkeypatch.setattr(history_module, "_on_read_only_file_system", lambda _: read_only, raising=False)


async def history_app(aiohttp_client: ClientFactory, path: Path) -> TestClient:
    events = EventsSettings(history=HistorySettings(path))
    return await aiohttp_client(create_app(Settings(model=str(BUNDLED_MODEL), events=events)))


async def stored_and_closed(path: Path, count: int) -> None:
    """``count`` events with snapshots in a history at ``path``, closed as at shutdown (no ``-shm`` left)."""
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        for seq in range(count):
            outputs.on_packet(track_start(seq, track_id=seq))
        assert outputs.history is not None
        await stored(outputs.history, count)
    finally:
        await outputs.stop()


async def test_a_history_on_a_read_only_file_system_is_still_read(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ext4 remounted the disk read-only, every page and snapshot was a 503 "unable to open
    database file": the read-only open still needs the WAL file's -shm written."""
    path = tmp_path / "events.db"
    await stored_and_closed(path, 3)

    on_read_only_file_system(monkeypatch, read_only=False)  # the same refusal on a writable mount: busy, not safe
    client = await history_app(aiohttp_client, path)
    assert (await client.get("/api/events")).status == 503

    on_read_only_file_system(monkeypatch, read_only=True)
    response = await client.get("/api/events")
    assert response.status == 200, await response.text()
    events = (await response.json())["events"]
    assert [event["event"]["id"] for event in events] == [2, 1, 0]
    snapshot = await client.get(f"/api/events/{events[0]['id']}/snapshot.jpg")
    assert snapshot.status == 200 and snapshot.content_type == "image/jpeg"


async def test_writes_refused_by_a_read_only_file_system_say_so(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outputs said only "cannot open …: unable to open database file", SQLite's words for a
    missing folder or a busy file as well."""
    path = tmp_path / "events.db"
    await stored_and_closed(path, 1)
    on_read_only_file_system(monkeypatch, read_only=True)
    client = await history_app(aiohttp_client, path)

    async def failing() -> dict[str, Any] | None:
        (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
        return output if output["state"] == SinkState.FAILING.value else None

    output = await eventually(failing, what="the history to fail to open its file")
    assert "read-only file system" in output["last_error"], output
    assert output["last_error"] == f"cannot open {path}: unable to open database file: {history_module.READ_ONLY_HINT}"


def damage_an_index(path: Path) -> None:
    """Overwrite the root page of the index that pages of one stream and type are read through: the
    writer's open and retention never read it, so only queries meet it."""
    with closing(sqlite3.connect(path)) as db:
        (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_stream_type_id'").fetchone()
        (page,) = db.execute("PRAGMA page_size").fetchone()
    with path.open("r+b") as file:
        file.seek((root - 1) * page)
        file.write(b"\xff" * page)


async def test_reads_of_a_damaged_file_are_counted_in_the_outputs_and_metrics(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """A file damaged mid-way made every query reaching its damaged pages a 503 "database disk image is
    malformed" while the outputs said ok with no error, and /metrics had nothing to alert on."""
    path = tmp_path / "events.db"
    await open_once(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:  # enough for an index of several pages
        now = time.time()
        db.executemany(INSERT, [(now, "cam", "track", "person", None, None, '{"type": "track"}', None)] * 2000)
    damage_an_index(path)
    client = await history_app(aiohttp_client, path)
    history = client.app[event_outputs_key].history
    assert history is not None

    async def opened() -> bool:
        return history.health().state is SinkState.OK

    await eventually(opened, what="the history to open its file")
    assert (await client.get("/api/events?limit=1")).status == 200  # the newest events read as ever
    for _ in range(3):
        response = await client.get("/api/events", params={"stream": "cam", "type": "track"})
        assert response.status == 503 and "malformed" in await response.text()

    (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
    assert output["upkeep_failures"] == 3, output
    assert output["last_error"].startswith(f"cannot read {path}: database disk image is malformed"), output
    metrics = await (await client.get("/metrics")).text()
    assert re.search(r'^segcast_event_output_upkeep_failures_total\{output="history"\} 3$', metrics, re.M)

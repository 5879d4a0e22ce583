"""The event history on a disk sized for it: what its file and write-ahead log take, pruning included.

A small file system needs privileges CI does not have, so the disk is measured (the two files' sizes
after each statement the writer runs) or pretended (writes refused while the files hold more than it).
"""

from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.events.config import EventsSettings, HistorySettings
from server.events.history import retention as retention_module
from server.events.history import writer as history_module
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from tests.support.event_packets import track_start, with_events
from tests.support.polling import eventually
from tests.test_events_history import file_opened, stored

MB = 1024 * 1024


def footprint(path: Path) -> int:
    """What the history's file and its write-ahead log hold, as a disk would count them."""
    return sum(file.stat().st_size for file in (path, path.with_name(path.name + "-wal")) if file.exists())


def noisy(seq: int) -> Any:
    """A frame whose snapshot does not compress: tens of kB, as a busy scene's."""
    image = np.random.default_rng(seq).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return with_events(seq, [{"type": "zone_enter", "id": 1, "zone": "door"}], image=image)


class Measured(sqlite3.Connection):
    """The writer's connection, noting the largest footprint after each statement it runs: the log is
    at its largest just before a checkpoint empties it, and the file only shrinks while it does."""

    path: Path
    peak = 0

    def _note(self) -> None:
        Measured.peak = max(Measured.peak, footprint(Measured.path))

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self._note()
        try:
            return super().execute(sql, *args)
        finally:
            self._note()

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, rows)
        finally:
            self._note()

    def executescript(self, script: str) -> sqlite3.Cursor:
        try:
            return super().executescript(script)
        finally:
            self._note()


def writer_connects_with(monkeypatch: pytest.MonkeyPatch, factory: type[sqlite3.Connection]) -> None:
    connect = sqlite3.connect

    def connecting(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        if threading.current_thread().name == "event-history":
            kwargs["factory"] = factory
        return connect(*args, **kwargs)

    monkeypatch.setattr(history_module.sqlite3, "connect", connecting)


def whole_frame(seq: int) -> Any:
    """A frame with an event of no track: its snapshot is the whole frame (noise: about 200 kB)."""
    image = np.random.default_rng(seq).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return with_events(seq, [{"type": "zone_enter", "zone": "door"}], image=image)


async def fill(path: Path, count: int, max_mb: float = 1024, frame: Callable[[int], Any] = noisy) -> None:
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=max_mb)))
    await outputs.start()
    try:
        for seq in range(count):
            outputs.on_packet(frame(seq))
        assert outputs.history is not None
        await stored(outputs.history, count)
    finally:
        await outputs.stop()


async def test_the_file_and_its_log_stay_within_max_mb_while_the_oldest_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune deleted a tenth of max_mb in one transaction and gave it back in another: the log grew
    by as much before the file shrank, and a disk that held max_mb filled."""
    path = tmp_path / "events.db"
    Measured.path, Measured.peak = path, 0
    writer_connects_with(monkeypatch, Measured)
    await fill(path, 150, max_mb=1)  # several times 1 MB, offered at once: batches of many
    assert footprint(path) > 0.5 * MB  # it did fill up to max_mb
    assert Measured.peak <= 1 * MB, f"{Measured.peak / MB:.2f} MB"


async def test_lowering_max_mb_prunes_without_a_log_as_big_as_the_excess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lowering max_mb from 151 to 50 made a 107 MB log before the file shrank: one chunk at a time,
    the two files never hold more than before, but for the log's share of the new max_mb.

    At 8 MB, not less: a write and a delete write a dozen pages of the table and its indexes whatever
    the chunk, which at 1 MB is half the log's share (25 pages): there the bound measured noise."""
    path = tmp_path / "events.db"
    await fill(path, 100, frame=whole_frame)
    before = footprint(path)
    assert before > 2 * 8 * MB
    Measured.path, Measured.peak = path, 0
    writer_connects_with(monkeypatch, Measured)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=8)))
    await outputs.start()
    try:
        assert outputs.history is not None
        history = outputs.history
        await file_opened(history)
        outputs.on_packet(track_start(1000))  # a write: all a prune waited for before opens checked the size
        await stored(history, 1)

        async def pruned() -> bool:
            return footprint(path) <= 8 * MB

        await eventually(pruned, what="the history to be pruned down to 8 MB")
    finally:
        await outputs.stop()
    assert Measured.peak <= before + retention_module.WAL_SHARE * 8 * MB, f"{(Measured.peak - before) / MB:.2f} MB more"


async def test_opening_an_existing_history_writes_nothing(tmp_path: Path) -> None:
    """Each open set auto_vacuum again, which writes a page: on a full disk the open failed, and with it
    the retention that could have made room."""
    path = tmp_path / "events.db"
    await fill(path, 3)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        assert outputs.history is not None
        await file_opened(outputs.history)
        wal = path.with_name(path.name + "-wal")
        assert not wal.exists() or wal.stat().st_size == 0
    finally:
        await outputs.stop()


def modes(path: Path) -> dict[str, str]:
    """The permissions of the history's file and of those SQLite keeps beside it, by name, as ``ls`` shows them."""
    files = [path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))]
    return {file.name: stat.filemode(file.stat().st_mode) for file in files if file.exists()}


@asynccontextmanager
async def one_event_stored_under_the_usual_umask(path: Path) -> AsyncIterator[None]:
    """A history on ``path`` with one event stored, made under umask 022 (SQLite's files readable by every
    user unless segcast makes them otherwise); open while the block runs, its ``-wal`` and ``-shm`` there."""
    umask = os.umask(0o022)
    try:
        outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
        await outputs.start()
        try:
            assert outputs.history is not None
            outputs.on_packet(track_start(1))
            await stored(outputs.history, 1)
            yield
        finally:
            await outputs.stop()
    finally:
        os.umask(umask)


def disk_with_room_for(path: Path, max_mb: float, short_by: int) -> Callable[[Path], int]:
    """A pretend `retention_module._free_bytes`: what the history at ``path`` needs free to grow to ``max_mb``,
    less ``short_by`` bytes."""

    def free_bytes(_: Path) -> int:
        return int(max_mb * MB) - footprint(path) - short_by

    return free_bytes


async def test_what_the_history_takes_already_is_room_it_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A history grown to most of max_mb needs only the rest of it free: restarted on a disk with that much,
    it says nothing of the disk; a byte less, and max_mb is more than the disk has for it."""
    path = tmp_path / "events.db"
    await fill(path, 40, max_mb=1)
    assert footprint(path) > 0.5 * MB
    for short_by in (0, 1):
        monkeypatch.setattr(retention_module, "_free_bytes", disk_with_room_for(path, 1, short_by))
        outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=1)))
        await outputs.start()
        await outputs.stop()  # the writer has ended: whatever it had to say at start is said
    warned = [r.getMessage() for r in caplog.records if "is more than the disk" in r.getMessage()]
    assert len(warned) == 1, warned  # on the disk a byte short only


async def test_a_history_file_segcast_makes_is_its_owners_alone(tmp_path: Path) -> None:
    """It holds camera snapshots: made under the usual umask (022), it and its log were every user's to read.
    A file there already keeps the permissions its owner gave it."""
    path = tmp_path / "events.db"
    for expected in ("-rw-------", "-rw-r-----"):
        async with one_event_stored_under_the_usual_umask(path):
            found = modes(path)
        assert {"events.db", "events.db-wal", "events.db-shm"} <= set(found), found
        assert set(found.values()) == {expected}, found
        path.chmod(0o640)  # its owner shares it with a group: a later open leaves that be


async def test_a_history_file_every_user_may_read_is_warned_of_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One an earlier segcast made (0644) kept its permissions with nothing said: an upgrade left it so."""
    path = tmp_path / "events.db"
    async with one_event_stored_under_the_usual_umask(path):
        pass
    for mode, warned in ((0o644, 1), (0o640, 0)):
        path.chmod(mode)
        caplog.clear()
        async with one_event_stored_under_the_usual_umask(path):
            pass
        said = [r for r in caplog.records if "every user of this machine may read it" in r.getMessage()]
        assert len(said) == warned, (oct(mode), [r.getMessage() for r in said])
        assert all(r.levelname == "WARNING" and "chmod 600" in r.getMessage() for r in said)


async def test_a_history_path_linked_to_a_file_not_there_yet_makes_it_its_owners_alone(tmp_path: Path) -> None:
    """``O_EXCL`` does not create through a symbolic link: SQLite made the target under the umask (0644)."""
    target, link = tmp_path / "data" / "events.db", tmp_path / "events.db"
    target.parent.mkdir()
    link.symlink_to(target)
    async with one_event_stored_under_the_usual_umask(link):
        assert modes(target)["events.db"] == "-rw-------"


class SmallDisk(sqlite3.Connection):
    """A disk that holds `capacity` bytes of history: storing events fails while the files hold more."""

    path: Path
    capacity = 0

    def executemany(self, sql: str, rows: Iterable[Any]) -> sqlite3.Cursor:
        if sql.startswith("INSERT") and footprint(SmallDisk.path) > SmallDisk.capacity:
            raise sqlite3.OperationalError("database or disk is full")
        return super().executemany(sql, rows)


async def test_a_history_over_max_mb_on_a_full_disk_prunes_and_writes_again_by_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Size retention ran only after a write that worked: on a full disk no write works, so a history
    over max_mb (lowered, or left so by a prune the disk cut short) stayed full until a person made room."""
    path = tmp_path / "events.db"
    await fill(path, 100)
    SmallDisk.path, SmallDisk.capacity = path, int(1.2 * MB)
    assert footprint(path) > SmallDisk.capacity
    writer_connects_with(monkeypatch, SmallDisk)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=1)))
    await outputs.start()
    try:
        assert outputs.history is not None
        history = outputs.history
        seq = iter(range(1000, 2000))

        async def writing_again() -> bool:
            # A batch each: one of them gets in, and each lets a prune go on that its time slice cut short
            # (PRUNE_SLICE_S: on a loaded machine one slice may not reach max_mb).
            outputs.on_packet(track_start(next(seq), track_id=1))
            return history.health().delivered >= 1 and footprint(path) <= 1 * MB

        await eventually(writing_again, what="writes to resume once the prune made room, within max_mb")
        assert history.health().state is SinkState.OK
    finally:
        await outputs.stop()
    assert footprint(path) <= 1 * MB


async def test_a_prune_writes_no_deleted_snapshot_through_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Debian's SQLite zeroes every page a DELETE frees: a prune wrote each deleted snapshot through the
    log once more, and an event bigger than a chunk took the two files past the log's share of max_mb."""
    path = tmp_path / "events.db"
    await fill(path, 20, frame=whole_frame)  # each more than a prune of a 1 MB history deletes in one chunk
    before = footprint(path)
    assert before > 3 * MB
    Measured.path, Measured.peak = path, 0
    writer_connects_with(monkeypatch, Measured)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=1)))
    await outputs.start()
    try:

        async def pruned() -> bool:
            return footprint(path) <= 1 * MB

        await eventually(pruned, what="the history to be pruned down to 1 MB")
    finally:
        await outputs.stop()
    assert Measured.peak <= before + retention_module.WAL_SHARE * MB, f"{(Measured.peak - before) / MB:.2f} MB more"

"""``segcast history backup``: a whole, private copy of a history that segcast is writing, and its refusals."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from server.cli import EXIT_STARTUP_ERROR
from server.events.config import DEFAULT_HISTORY_FILE, EventsSettings, HistorySettings
from server.events.history import backup as backup_module
from server.events.history.backup import BackupError, backup_history
from server.events.history.query import EventQuery
from server.events.history.writer import HistorySink
from server.events.outputs import EventOutputs
from tests.support.cli_in_process import run_cli
from tests.support.event_packets import track_start
from tests.support.polling import eventually

REPO = Path(__file__).resolve().parent.parent
#: How long the backup's thread waits for the test to let it go on: far more than storing a few events takes.
HOLD_S = 30.0


@pytest.fixture
async def outputs(tmp_path: Path) -> AsyncIterator[EventOutputs]:
    outputs = EventOutputs(EventsSettings(history=HistorySettings(tmp_path / "events.db")))
    await outputs.start()
    yield outputs
    await outputs.stop()


async def store(outputs: EventOutputs, first_seq: int, count: int) -> HistorySink:
    """Offer ``count`` events, each with its snapshot, and wait until the history has stored them."""
    history = outputs.history
    assert history is not None
    target = history.health().delivered + count
    for seq in range(first_seq, first_seq + count):
        outputs.on_packet(track_start(seq, track_id=seq))

    async def stored() -> bool:
        return history.health().delivered >= target

    await eventually(stored, what=f"{target} events stored")
    return history


def rows(path: Path) -> list[tuple[int, bytes | None]]:
    with closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT id, snapshot FROM events ORDER BY id").fetchall()


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def integrity(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as db:
        return [row for (row,) in db.execute("PRAGMA integrity_check")]


async def test_a_backup_while_events_are_stored_is_whole_and_holds_every_event_stored_before_it(
    outputs: EventOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a history segcast is writing, its newest events in the write-ahead log
    history = await store(outputs, 0, 30)
    path = history.settings.path
    assert path.with_name(path.name + "-wal").stat().st_size > 0
    before = {event.id for event in history.query(EventQuery(limit=1000))}
    out = tmp_path / "backup" / "events-copy.db"
    out.parent.mkdir()

    # When more events are stored after the backup has begun reading, before it copies a page
    loop = asyncio.get_running_loop()
    reading, go_on = asyncio.Event(), threading.Event()
    make_file = backup_module._new_private_file

    def held(temporary: Path) -> None:
        loop.call_soon_threadsafe(reading.set)
        assert go_on.wait(HOLD_S), "the test never let the backup go on"
        make_file(temporary)

    monkeypatch.setattr(backup_module, "_new_private_file", held)
    backing_up = asyncio.ensure_future(asyncio.to_thread(backup_history, path, out))
    try:
        await reading.wait()
        await store(outputs, 30, 20)  # not held up by the backup's reading
    finally:
        go_on.set()
    result = await backing_up

    # Then the copy is whole, private, and holds exactly the events stored before it began, snapshots and all
    assert integrity(out) == ["ok"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    copied = rows(out)
    assert {event_id for event_id, _ in copied} == before
    assert all(snapshot for _, snapshot in copied)
    assert copied == [row for row in rows(path) if row[0] in before]
    assert (result.events, result.newest_id) == (len(before), max(before))
    assert len(history.query(EventQuery(limit=1000))) == len(before) + 20
    assert files_in(out.parent) == [out.name]  # no partial copy left beside it


def test_the_command_copies_a_history_in_one_line_without_importing_pytorch_or_aiohttp(tmp_path: Path) -> None:
    source = tmp_path / "events.db"
    with closing(sqlite3.connect(source)) as db:
        db.executescript(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, snapshot BLOB); INSERT INTO events VALUES (7, x'ff');"
        )
        db.commit()
    out = tmp_path / "copy.db"

    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "server", "history", "backup", str(out), "--history", str(source)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"segcast: copied 1 event (newest id 7) from {source} to {out}\n"
    for heavy in ("torch", "aiohttp", "ultralytics", "av", "cv2"):
        assert re.search(rf"\| +{heavy}(\.|$)", result.stderr, re.MULTILINE) is None, f"{heavy} imported"
    assert rows(out) == [(7, b"\xff")]


async def test_an_existing_out_is_refused_without_force_and_replaced_with_it(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    history = await store(outputs, 0, 3)
    out = tmp_path / "copy.db"
    out.write_text("last night's backup")
    out.chmod(0o644)

    refused = run_cli(capfd, "history", "backup", str(out), "--history", str(history.settings.path))

    assert refused.code == EXIT_STARTUP_ERROR
    assert refused.one_error_line == f"segcast: {out} is there already: give --force to replace it, or another OUT"
    assert out.read_text() == "last night's backup"

    forced = run_cli(capfd, "history", "backup", str(out), "--history", str(history.settings.path), "--force")

    assert forced.code == 0, forced.err
    assert len(rows(out)) == 3
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


async def test_the_history_itself_or_an_out_with_a_log_beside_it_is_refused_even_with_force(
    outputs: EventOutputs, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """OUT the history itself would have it replaced by its copy beside its own log; an OUT with a
    ``-wal`` beside it would be read through another database's log."""
    history = await store(outputs, 0, 3)
    source = history.settings.path
    itself = run_cli(capfd, "history", "backup", str(source), "--history", str(source), "--force")
    assert itself.code == EXIT_STARTUP_ERROR
    assert itself.one_error_line == f"segcast: {source} is the history itself: give another OUT"
    assert len(rows(source)) == 3

    out = tmp_path / "copy.db"
    out.with_name("copy.db-wal").write_bytes(b"another database's log")
    beside = run_cli(capfd, "history", "backup", str(out), "--history", str(source), "--force")
    assert beside.code == EXIT_STARTUP_ERROR
    assert beside.one_error_line.startswith(f"segcast: {out}-wal is there: ")
    assert not out.exists()


def _text_file(path: Path) -> None:
    path.write_text("not a database\n")


def _another_programs_database(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.executescript("PRAGMA application_id = 42; CREATE TABLE events (id INTEGER PRIMARY KEY);")


def _database_without_events(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.executescript("CREATE TABLE notes (id INTEGER PRIMARY KEY);")


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (None, "no such file"),
        (_text_file, "is not a segcast event history: it is not a SQLite file"),
        (_another_programs_database, "is not a segcast event history: it is another program's SQLite file"),
        (_database_without_events, "is not a segcast event history: it has no events table"),
    ],
)
def test_a_path_that_is_not_a_history_is_a_one_line_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], make: object, said: str
) -> None:
    source = tmp_path / "events.db"
    if callable(make):
        make(source)
    out = tmp_path / "copy.db"

    exited = run_cli(capfd, "history", "backup", str(out), "--history", str(source))

    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.startswith(f"segcast: {source}")
    assert said in exited.one_error_line
    assert exited.out == ""
    assert files_in(tmp_path) == (["events.db"] if callable(make) else [])


@pytest.mark.parametrize(("history_table", "expected"), [("", DEFAULT_HISTORY_FILE), ('path = "db/h.db"', "db/h.db")])
async def test_the_config_files_history_is_its_path_beside_it(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], history_table: str, expected: str
) -> None:
    folder = tmp_path / "etc"
    (folder / "db").mkdir(parents=True)
    config = folder / "cams.toml"
    config.write_text(f"[events.history]\n{history_table}\n")
    outputs = EventOutputs(EventsSettings(history=HistorySettings(folder / expected)))
    await outputs.start()
    try:
        await store(outputs, 0, 2)
    finally:
        await outputs.stop()
    out = tmp_path / "copy.db"

    exited = run_cli(capfd, "history", "backup", str(out), "--config", str(config))

    assert exited.code == 0, exited.err
    assert exited.out == f"segcast: copied 2 events (newest id 2) from {folder / expected} to {out}\n"


def test_a_config_without_a_history_is_a_one_line_error(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "cams.toml"
    config.write_text("[server]\nport = 8080\n")

    exited = run_cli(capfd, "history", "backup", str(tmp_path / "copy.db"), "--config", str(config))

    assert exited.code == EXIT_STARTUP_ERROR
    assert exited.one_error_line.startswith("segcast: cams.toml has no [events.history] table")


async def test_a_history_locked_past_the_wait_is_an_error_that_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    try:
        await store(outputs, 0, 1)
    finally:
        await outputs.stop()  # segcast stopped; a sqlite3 shell holds the file for itself
    out = tmp_path / "copy.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as locker:
        locker.execute("PRAGMA locking_mode = EXCLUSIVE")
        locker.execute("BEGIN EXCLUSIVE")
        locker.execute("DELETE FROM events")

        with pytest.raises(BackupError, match=r"database is locked: another program held it past 0.2 s .*try again"):
            backup_history(path, out, lock_timeout_s=0.2)

    assert files_in(tmp_path) == ["events.db"]  # no copy, whole or partial


def test_a_copy_found_damaged_is_an_error_and_out_is_not_written(tmp_path: Path) -> None:
    source = tmp_path / "events.db"
    with closing(sqlite3.connect(source)) as db:
        db.executescript(
            "PRAGMA page_size = 1024; CREATE TABLE events (id INTEGER PRIMARY KEY, data TEXT);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) "
            "INSERT INTO events SELECT i, printf('%0200d', i) FROM n;"
        )
    damaged = bytearray(source.read_bytes())
    damaged[5 * 1024 : 5 * 1024 + 64] = b"\xee" * 64  # a page of the table, past the header and the schema
    source.write_bytes(bytes(damaged))
    out = tmp_path / "copy.db"

    with pytest.raises(BackupError, match=r"the copy of .* is damaged .*\.recover"):
        backup_history(source, out)

    assert not out.exists()


def _out_made_while_copying(monkeypatch: pytest.MonkeyPatch, out: Path, content: str) -> None:
    """Someone else writes ``content`` to ``out`` while the backup copies: after the check of the paths,
    once the copy has been made and is being checked (`_check_copy`), before it would be moved to OUT."""
    check_copy = backup_module._check_copy

    def made_meanwhile(copy: sqlite3.Connection, source: Path) -> tuple[int, int | None]:
        out.write_text(content)
        return check_copy(copy, source)

    monkeypatch.setattr(backup_module, "_check_copy", made_meanwhile)


async def test_an_out_made_by_someone_else_while_the_copy_runs_is_neither_replaced_nor_left_half_written(
    outputs: EventOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of OUT with the copy: the backup checks OUT again just before it moves its copy there, so
    an OUT another program made meanwhile is refused as one there at the start is, and kept as that program
    wrote it; the copy beside it is removed, so nothing half made is left in OUT's folder."""
    history = await store(outputs, 0, 3)
    out = tmp_path / "backup" / "copy.db"
    out.parent.mkdir()
    _out_made_while_copying(monkeypatch, out, "another program's file")

    with pytest.raises(BackupError, match=re.escape(f"{out} is there already: give --force to replace it")):
        backup_history(history.settings.path, out)

    assert out.read_text() == "another program's file"
    assert files_in(out.parent) == [out.name]  # no partial copy left beside it


async def test_an_out_made_by_someone_else_while_the_copy_runs_is_replaced_whole_with_force(
    outputs: EventOutputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--force`` an OUT made meanwhile is replaced, as one there at the start is: by the whole,
    private copy, in one rename, with nothing left beside it."""
    history = await store(outputs, 0, 3)
    out = tmp_path / "backup" / "copy.db"
    out.parent.mkdir()
    _out_made_while_copying(monkeypatch, out, "another program's file")

    result = backup_history(history.settings.path, out, force=True)

    assert result.events == 3
    assert integrity(out) == ["ok"] and len(rows(out)) == 3
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert files_in(out.parent) == [out.name]

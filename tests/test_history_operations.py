"""The event history as an operator runs it: restoring a backup, two segcasts started on one state, a
lowered ``max_mb``, a file found damaged.

Each case is one an operator met on a fresh clone run as a service (docs/backups.md, docs/service.md):
a restore by hand that missed deleting the old ``-wal`` and left a history that read "malformed" while
its output said ok; a second instance on the same config that wrote its events into the first's
history, unsaid; a lowered ``max_mb`` that deleted nine events in ten without a line in the log.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from server.cli import EXIT_STARTUP_ERROR
from server.events.config import EventsSettings, HistorySettings
from server.events.history.backup import backup_history
from server.events.history.format import HISTORY_FORMAT
from server.events.history.query import EventQuery
from server.events.history.writer import INSERT
from server.events.outputs import EventOutputs
from server.events.sink import SinkState
from tests.support.cli_in_process import run_cli
from tests.support.event_packets import track_start, with_events
from tests.support.polling import eventually
from tests.test_events_history import failed, file_opened, open_once, stored
from tests.test_events_history_damaged import damage_an_index, history_app
from tests.test_upgrade_from_root_image import SEGCAST_UID, as_segcast_user, failing

ClientFactory = Callable[..., Awaitable[TestClient]]
WRITER_LOG = "server.events.history.writer"
DAY_S = 86400.0


def integrity(path: Path) -> list[str]:
    """``PRAGMA integrity_check``'s rows, or SQLite's error where it cannot even begin."""
    try:
        with closing(sqlite3.connect(path)) as db:
            return [row for (row,) in db.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [str(exc)]


def event_ids(path: Path) -> list[int]:
    with closing(sqlite3.connect(path)) as db:
        return [event_id for (event_id,) in db.execute("SELECT id FROM events ORDER BY id")]


def files_in(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


async def store_events(path: Path, count: int, *, keep_running: bool = False) -> EventOutputs:
    """A history at ``path`` holding ``count`` events with snapshots; stopped unless ``keep_running``."""
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await outputs.start()
    assert outputs.history is not None
    for seq in range(count):
        outputs.on_packet(track_start(seq, track_id=seq))
    await stored(outputs.history, count)
    if not keep_running:
        await outputs.stop()
    return outputs


async def killed_history_and_a_backup(tmp_path: Path) -> tuple[Path, Path]:
    """A history as a segcast killed mid-way leaves it, its newest events in the ``-wal`` and ``-shm`` beside
    it, and a backup of another history (``segcast history backup``): the two files docs/backups.md's restore
    steps meet."""
    history = tmp_path / "etc" / "segcast-events.db"
    history.parent.mkdir()
    outputs = await store_events(history, 40, keep_running=True)
    assert outputs.history is not None
    with closing(sqlite3.connect(history)) as db:  # the older events in the file, as SQLite's checkpoints leave it
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for seq in range(40, 45):
        outputs.on_packet(track_start(seq, track_id=seq))
    await stored(outputs.history, 45)
    left = {suffix: beside(history, suffix).read_bytes() for suffix in ("-wal", "-shm")}
    await outputs.stop()  # its last close empties the log and removes both: put them back, as a kill leaves them
    for suffix, content in left.items():
        beside(history, suffix).write_bytes(content)
    other = tmp_path / "other" / "segcast-events.db"
    other.parent.mkdir()
    await store_events(other, 25)
    backup = tmp_path / "events-backup.db"
    backup_history(other, backup)
    return history, backup


# -- restore -------------------------------------------------------------------------------------------


async def test_a_backup_copied_over_a_history_beside_a_leftover_log_reads_as_damaged(tmp_path: Path) -> None:
    """Why the restore is a command: the steps by hand, with the one that deletes the ``-wal`` missed, left
    a history SQLite reads through another database's log."""
    history, backup = await killed_history_and_a_backup(tmp_path)

    shutil.copyfile(backup, history)

    assert "malformed" in " ".join(integrity(history))


async def test_restore_over_a_leftover_log_gives_a_whole_history_segcast_reads(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    history, backup = await killed_history_and_a_backup(tmp_path)
    backed_up = event_ids(backup)

    restored = run_cli(capfd, "history", "restore", str(backup), "--history", str(history), "--force")

    assert restored.code == 0, restored.err
    assert restored.out.startswith(
        f"segcast: restored 25 events (newest id {backed_up[-1]}) from {backup} to {history}"
    ), restored.out
    assert f"removed {history.name}-wal, {history.name}-shm" in restored.out, restored.out
    assert integrity(history) == ["ok"]
    assert not beside(history, "-wal").exists() and not beside(history, "-shm").exists()
    outputs = EventOutputs(EventsSettings(history=HistorySettings(history)))
    await outputs.start()
    try:
        assert outputs.history is not None
        await file_opened(outputs.history)
        assert sorted(event.id for event in outputs.history.query(EventQuery(limit=100))) == backed_up
    finally:
        await outputs.stop()


async def test_a_restored_history_keeps_the_replaced_files_permissions_and_owner(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The copy is the restorer's (root's, run with sudo), and segcast cannot write another user's 0600
    file: the restored file is given the owner and mode of the one it replaces."""
    history, backup = await killed_history_and_a_backup(tmp_path)
    history.chmod(0o640)
    owner = (history.stat().st_uid, history.stat().st_gid)
    if owner == (0, 0):  # run as root: give it to segcast's user, as a service's history is
        owner = (4321, 4321)
        shutil.chown(history, *owner)

    restored = run_cli(capfd, "history", "restore", str(backup), "--history", str(history), "--force")

    assert restored.code == 0, restored.err
    status = history.stat()
    assert (stat.S_IMODE(status.st_mode), status.st_uid, status.st_gid) == (0o640, *owner)
    assert "mode 0640" in restored.out


async def test_a_history_restored_where_there_was_none_is_private(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    _, backup = await killed_history_and_a_backup(tmp_path)
    history = tmp_path / "new" / "segcast-events.db"
    history.parent.mkdir()

    restored = run_cli(capfd, "history", "restore", str(backup), "--history", str(history))

    assert restored.code == 0, restored.err
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert len(event_ids(history)) == 25
    assert [path.name for path in history.parent.iterdir()] == [history.name]  # no copy, no lock left


async def test_restore_refuses_while_segcast_runs_on_the_history(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    history, backup = await killed_history_and_a_backup(tmp_path)
    for suffix in ("-wal", "-shm"):
        beside(history, suffix).unlink()
    running = await store_events(history, 2, keep_running=True)
    try:
        before = event_ids(history)

        refused = run_cli(capfd, "history", "restore", str(backup), "--history", str(history), "--force")

        assert refused.code == EXIT_STARTUP_ERROR
        line = refused.one_error_line
        assert str(beside(history, ".lock")) in line and "stop it" in line, line
        assert event_ids(history) == before
        assert running.history is not None and running.history.health().state is SinkState.OK
    finally:
        await running.stop()


async def test_restore_refuses_to_replace_a_history_without_force(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    history, backup = await killed_history_and_a_backup(tmp_path)
    content = history.read_bytes()

    refused = run_cli(capfd, "history", "restore", str(backup), "--history", str(history))

    assert refused.code == EXIT_STARTUP_ERROR
    assert refused.one_error_line == f"segcast: {history} is there already: give --force to replace it"
    assert history.read_bytes() == content and beside(history, "-wal").exists()


def _damaged(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.executescript(
            "PRAGMA page_size = 1024; CREATE TABLE events (id INTEGER PRIMARY KEY, data TEXT);"
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400) "
            "INSERT INTO events SELECT i, printf('%0200d', i) FROM n;"
        )
    damaged = bytearray(path.read_bytes())
    damaged[5 * 1024 : 5 * 1024 + 64] = b"\xee" * 64  # a page of the table, past the header and the schema
    path.write_bytes(bytes(damaged))


def _newer_format(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.executescript(
            f"CREATE TABLE events (id INTEGER PRIMARY KEY); PRAGMA application_id = {int.from_bytes(b'SGCT', 'big')};"
            f"PRAGMA user_version = {HISTORY_FORMAT + 1};"
        )


@pytest.mark.parametrize(
    ("make", "said"),
    [
        (_damaged, "is damaged"),
        (_newer_format, f"holds event history format {HISTORY_FORMAT + 1}, written by a newer segcast"),
        (lambda path: path.write_text("not a database\n"), "not a segcast event history: it is not a SQLite file"),
    ],
)
async def test_restore_refuses_a_backup_segcast_could_not_use_and_leaves_the_history_as_it_was(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], make: Callable[[Path], None], said: str
) -> None:
    history, _ = await killed_history_and_a_backup(tmp_path)
    before = files_in(history.parent)
    backup = tmp_path / "bad-backup.db"
    make(backup)

    refused = run_cli(capfd, "history", "restore", str(backup), "--history", str(history), "--force")

    assert refused.code == EXIT_STARTUP_ERROR
    assert said in refused.one_error_line, refused.one_error_line
    assert files_in(history.parent) == before  # the history, its log and index beside it as they were, nothing added


async def test_restore_finds_the_history_through_the_config_file(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    history, backup = await killed_history_and_a_backup(tmp_path)
    config = history.parent / "segcast.toml"
    config.write_text("[events.history]\n")

    restored = run_cli(capfd, "history", "restore", str(backup), "--config", str(config), "--force")

    assert restored.code == 0, restored.err
    assert len(event_ids(history)) == 25


async def test_restore_through_a_symbolic_link_replaces_the_file_it_points_to(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The link was replaced by the restored file: the history it pointed to kept its events, and its leftover
    ``-wal``, looked for beside the link, was left beside it."""
    history, backup = await killed_history_and_a_backup(tmp_path)
    link = tmp_path / "segcast-events.db"
    link.symlink_to(history)

    restored = run_cli(capfd, "history", "restore", str(backup), "--history", str(link), "--force")

    assert restored.code == 0, restored.err
    assert link.is_symlink() and link.resolve() == history
    assert event_ids(history) == event_ids(backup)
    assert not beside(history, "-wal").exists()
    assert f" to {history}, " in restored.out and f"removed {history.name}-wal" in restored.out, restored.out


# -- a damaged file ------------------------------------------------------------------------------------


async def test_a_history_whose_reads_find_it_damaged_is_failing(aiohttp_client: ClientFactory, tmp_path: Path) -> None:
    """Every query reaching the damaged pages answered 503 "malformed" for good while the output said ok
    and segcast_event_output_up said 1: nothing to alert on but a counter."""
    path = tmp_path / "events.db"
    await open_once(path)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executemany(INSERT, [(time.time(), "cam", "track", "person", None, None, '{"type": "track"}', None)] * 2000)
    damage_an_index(path)
    client = await history_app(aiohttp_client, path)

    async def opened() -> bool:
        (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
        return bool(output["state"] == "ok")

    await eventually(opened, what="the history to open its file")
    response = await client.get("/api/events", params={"stream": "cam", "type": "track"})
    assert response.status == 503

    (output,) = (await (await client.get("/api/events/outputs")).json())["outputs"]
    assert output["state"] == "failing", output
    assert output["last_error"].startswith(f"cannot read {path}: database disk image is malformed"), output
    metrics = await (await client.get("/metrics")).text()
    assert re.search(r'^segcast_event_output_up\{output="history"\} 0(\.0)?$', metrics, re.M), metrics


async def test_retention_that_finds_the_file_damaged_makes_the_history_failing(tmp_path: Path) -> None:
    """The operator's history: "cannot delete old events from ...: database disk image is malformed" in the
    log, counted as upkeep, and the output ok."""
    path = tmp_path / "events.db"
    await open_once(path)
    old = time.time() - 2 * DAY_S
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executemany(INSERT, [(old, "cam", "track", "person", None, None, '{"type": "track"}', None)] * 2000)
    damage_an_index(path)  # every delete updates that index too
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_age_days=1)))
    await outputs.start()
    try:
        history = outputs.history
        assert history is not None

        async def failing() -> bool:
            return history.health().state is SinkState.FAILING

        await eventually(failing, what="the history failing on its damaged file")
        error = history.health().last_error or ""
        assert error.startswith(f"cannot delete old events from {path}: database disk image is malformed"), error
    finally:
        await outputs.stop()


# -- two segcasts on one history ---------------------------------------------------------------------------


async def test_a_second_segcast_on_the_same_history_stores_nothing_and_fails_naming_the_lock(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The same config started twice (another --port): both stored their events in one file, two sets of
    track ids under one stream and every zone and line event twice, and nothing said so."""
    caplog.set_level(logging.INFO, logger=WRITER_LOG)
    path = tmp_path / "segcast-events.db"
    first = await store_events(path, 1, keep_running=True)
    second = EventOutputs(EventsSettings(history=HistorySettings(path)))
    await second.start()
    try:
        history = second.history
        assert history is not None

        async def failing() -> bool:
            return history.health().state is SinkState.FAILING

        await eventually(failing, what="the second history failing")
        error = history.health().last_error or ""
        assert str(beside(path, ".lock")) in error and "another segcast" in error, error
        for seq in range(3):
            second.on_packet(track_start(100 + seq, track_id=100 + seq))
            await failed(history, seq + 1)
        assert event_ids(path) == [1]  # the first's event alone
        said = [r for r in caplog.records if r.levelno == logging.ERROR and str(beside(path, ".lock")) in r.message]
        assert len(said) == 1, [r.message for r in said]

        # Once the first has stopped, the second takes the history over
        await first.stop()
        second.on_packet(track_start(200, track_id=200))
        await stored(history, 1)
        assert history.health().state is SinkState.OK and len(event_ids(path)) == 2
    finally:
        await first.stop()
        await second.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may leave a lock file segcast's user cannot open")
async def test_a_lock_file_another_user_left_names_its_owner_and_its_removal() -> None:
    """root ran segcast once on the history and was killed: its lock file, root's and 0600, holds nothing,
    and segcast's own user read "cannot open .../events.db: [Errno 13] Permission denied: '.../events.db.lock'",
    with the history's file made before the lock was tried."""
    folder = Path(tempfile.mkdtemp(prefix="segcast-state-"))  # not under tmp_path: root's, 0700 above it
    try:
        os.chown(folder, SEGCAST_UID, SEGCAST_UID)
        path = folder / "segcast-events.db"
        lock = beside(path, ".lock")
        lock.touch(mode=0o600)
        outputs = EventOutputs(EventsSettings(history=HistorySettings(path)))
        with as_segcast_user():
            await outputs.start()
            try:
                assert outputs.history is not None
                error = await failing(outputs.history)
            finally:
                await outputs.stop()
        assert error.startswith(f"cannot take the history's lock: {lock} belongs to root (uid 0)"), error
        assert error.endswith(f"remove it (rm {lock})"), error
        assert not path.exists(), "nothing is made before the lock is held"
    finally:
        shutil.rmtree(folder)


# -- retention that deletes much at once ---------------------------------------------------------------------


def _filled(path: Path, count: int, dated: float) -> None:
    """``count`` events of about 1 kB each, dated a second apart from ``dated``, in a history made by segcast."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        rows = [
            (dated + i, "cam", "track", "person", None, None, '{"type": "track", "note": "' + "x" * 1000 + '"}', None)
            for i in range(count)
        ]
        db.executemany(INSERT, rows)


def _local(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


@pytest.mark.parametrize(
    ("settings", "age_s", "reason"),
    [
        ({"max_mb": 1}, 3600.0, "to keep within max_mb = 1"),
        ({"max_age_days": 1}, 3 * DAY_S, "to keep within max_age_days = 1"),
    ],
    ids=["max_mb", "max_age_days"],
)
async def test_a_prune_that_deletes_most_of_the_history_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, settings: dict[str, float], age_s: float, reason: str
) -> None:
    """max_mb lowered from 100 to 2 deleted 6809 of 7232 events within 45 s, and the log said nothing."""
    caplog.set_level(logging.INFO, logger=WRITER_LOG)
    path = tmp_path / "events.db"
    await open_once(path)
    dated = time.time() - age_s
    _filled(path, 3000, dated)
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, **settings)))
    await outputs.start()
    try:

        async def said() -> list[str] | None:
            lines = [r.message for r in caplog.records if "history: deleted" in r.message]
            return lines or None

        lines = await eventually(said, what="the prune's line")
    finally:
        await outputs.stop()
    left = event_ids(path)
    deleted = 3000 - len(left)
    assert deleted > 1500
    assert lines == [
        f"history: deleted {deleted} events (dated {_local(dated)} to {_local(dated + deleted - 1)}) {reason}"
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if "history: deleted" in r.message)


async def test_pruning_as_a_full_history_takes_new_events_says_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Size retention deletes a tenth of the history each time it fills: routine, no line for each."""
    caplog.set_level(logging.INFO, logger=WRITER_LOG)
    path = tmp_path / "events.db"
    outputs = EventOutputs(EventsSettings(history=HistorySettings(path, max_mb=1)))
    await outputs.start()
    try:
        history = outputs.history
        assert history is not None
        note = "x" * 10_000
        for seq in range(300):  # 3 MB through a history of 1
            crossing = {"type": "line_cross", "v": 1, "stream": "cam", "id": seq, "line": "gate", "note": note}
            outputs.on_packet(with_events(seq, [crossing]))
            if seq % 20 == 19:
                await stored(history, seq + 1)
    finally:
        await outputs.stop()  # the writer has ended: every prune is over
    assert event_ids(path)[0] > 100, "the history was pruned"
    assert [r.message for r in caplog.records if "deleted" in r.message] == []

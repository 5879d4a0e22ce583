"""The event history: every event in a local SQLite file, with a JPEG of where it happened.

One writer thread owns the write connection (``sqlite3`` is blocking): it takes events from a
bounded queue, encodes each snapshot (a crop around the object, cut from the frame when the event
was handed over: see `server.events.snapshot`; a few kB and a few ms, never on the loop) and stores
them a batch per transaction. The queue is bounded twice: by events (``queue``) and by the bytes
their pictures hold (`QUEUED_PICTURES_MAX_BYTES`). The file is in WAL mode, so the API's readers
(each query on its own short connection, on the history's own reader threads:
`server.events.history.reader`) never wait for the writer, nor it for them. Retention, by size and
by age, runs on the writer thread between batches (`server.events.history.retention`).

A locked database, a read-only file or a full disk costs the batch being written, is counted and
logged (the same error again at most once per `DROP_LOG_INTERVAL_S`, saying how many events it
cost), and the next batch tries again: the pipeline never notices. Size is bounded by ``max_mb``
alone: the history does not guess what else the disk will hold. A disk that fills costs every batch
until space is freed, so where ``max_mb`` is more than the disk has for the history, the first open
says so (`Retention.check_room`). A file on a read-only file system (ext4 remounts so after disk
errors) is still read (`server.events.history.reader`), and the writes' error says why they fail;
where files are another user's (a volume an image run as root made), the writes' and reads' errors
say whose. A read or a prune that finds the file damaged is counted and named, and makes the output
failing (`HistorySink.health`): every query and prune reaching those pages fails until the file is
recovered, which is something to alert on. A file of a newer format,
or not segcast's at all, is neither written nor read (`server.events.history.format`): each batch
fails on it, naming the file and what to do, as on a locked one.

One process writes a history: the writer holds its lock (`server.events.history.lock`) from its first
open until it ends. A second segcast started on the same state finds it held, stores nothing (each
batch fails, naming the lock, as on a locked file) and takes the history over once the first has
stopped; the rest of that segcast runs.

A bug in the writer costs the batch in hand at most: it is logged (at most once per
`DROP_LOG_INTERVAL_S`) and the writer goes on; one that ends the thread anyway makes the state failing
for good (`HistorySink.health`), so it is never lost quietly.

At shutdown the writer stores what is queued for up to `DRAIN_TIMEOUT_S`, like the network outputs,
then finishes the batch in hand and ends; what is left is dropped, counted and logged. `stop`
returns once it has ended, so a process that exits right after never cuts it off inside OpenCV or
SQLite (a daemon thread there can abort the interpreter as it exits); and it is not a daemon, so
even past `JOIN_TIMEOUT_S` the interpreter waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import queue
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2

from server.events.config import HistorySettings
from server.events.counts import Counts
from server.events.history.format import (
    NOT_SQLITE,
    HistoryFile,
    RefusedHistoryFile,
    adoption,
    check_history_file,
    is_sqlite_file,
    stamp_script,
)
from server.events.history.lock import HistoryLocked, LockFileRefused, release_lock, take_lock
from server.events.history.query import EVENT_ID, EventQuery, StoredEvent
from server.events.history.reader import HistoryReader, failure_reason
from server.events.history.retention import Retention, transaction
from server.events.sink import (
    DRAIN_TIMEOUT_S,
    DROP_LOG_INTERVAL_S,
    OutEvent,
    SinkHealth,
    SinkState,
    Tally,
)
from server.events.snapshot import snapshot_jpeg
from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)

NAME = "history"
IDLE_POLL_S = 0.2
BATCH_MAX = 200
LOCK_TIMEOUT_S = 2.0
#: How long `HistorySink.stop` waits for the writer: the drain, then the batch in hand (its snapshots
#: encoded, a transaction that waits `LOCK_TIMEOUT_S` at most) and retention: seconds, unless the
#: disk hangs. Past it, shutdown goes on, logged.
JOIN_TIMEOUT_S = DRAIN_TIMEOUT_S + 30.0
#: What the pictures of the queued events and of the batch being written may hold together: an event
#: offered past it is queued without its picture (stored without a snapshot, logged). A thousand
#: events each with a big object near a 1080p camera would otherwise hold gigabytes.
QUEUED_PICTURES_MAX_BYTES = 256 * 1024 * 1024
#: What ``PRAGMA auto_vacuum`` reads on a file that gives space back: retention's pruning relies on it.
AUTO_VACUUM_INCREMENTAL = 2
#: The permissions of a history file segcast makes: its owner's alone. It holds camera snapshots, which
#: SQLite made readable by every user of the machine (under the usual umask, 022); SQLite gives the
#: ``-wal``, ``-shm`` and ``-journal`` files it makes beside it the file's own permissions.
FILE_MODE = 0o600

#: Each page reads newest first (``ORDER BY id DESC``): the indexes carry the id after the filters
#: the viewer and API combine, so a page reads its rows in order and stops, never sorting all of a
#: stream's events. The time indexes serve a window known to hold few events (`TIME_INDEX_MAX_ROWS`). An event
#: is found by the ``event_id`` in its JSON (`EVENT_ID`, the expression the lookup spells too): an index, not a
#: column, so the table keeps format 1's columns, and a file made before it gains it at its next open.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    stream TEXT NOT NULL,
    type TEXT NOT NULL,
    class TEXT,
    zone TEXT,
    line TEXT,
    data TEXT NOT NULL,
    snapshot BLOB
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_stream_time ON events (stream, time);
CREATE INDEX IF NOT EXISTS events_stream_id ON events (stream, id);
CREATE INDEX IF NOT EXISTS events_stream_type_id ON events (stream, type, id);
CREATE INDEX IF NOT EXISTS events_event_id ON events ({EVENT_ID}, id);
"""
INSERT = "INSERT INTO events (time, stream, type, class, zone, line, data, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


class HistorySink:
    """The history as an event output; also answers the API's queries, on its own reader threads."""

    name = NAME

    def __init__(self, settings: HistorySettings) -> None:
        self.settings = settings
        self.snapshots = settings.snapshots
        self._tally = Tally(NAME, log)
        self._queue: queue.Queue[OutEvent] = queue.Queue(settings.queue)
        self._stop = threading.Event()
        self._drain_until = math.inf  # monotonic; set by `stop`
        self._thread = threading.Thread(target=self._run, name="event-history")
        self._reader = HistoryReader(settings.path, SCHEMA, LOCK_TIMEOUT_S, NAME)
        self._db: sqlite3.Connection | None = None
        self._lock: int | None = None  # the descriptor holding the history's lock, from the first open that took it
        self._announced = False  # "storing events in" logged since the last open that failed
        self._adoption_said = False  # that an older segcast's file is being brought up to format (`adoption`)
        self._exposure_said = False  # that the file is every user's to read (`_readable_by_all`)
        self._retention = Retention(settings, NAME, log)  # the writer thread's alone
        self._pictures_lock = threading.Lock()
        self._picture_bytes = 0  # of the queued events' pictures and the batch being written
        self._unpictured = ThrottledCount(DROP_LOG_INTERVAL_S)  # events queued without their picture
        self._bugs = ThrottledCount(DROP_LOG_INTERVAL_S)  # the writer's internal errors outside a batch
        #: Why and when (Unix seconds) the writer thread ended before `stop`; None while it runs.
        self._ended: tuple[str, float] | None = None

    # -- on the loop ------------------------------------------------------------------------------

    def offer(self, event: OutEvent) -> None:
        event = self._within_budget(event)
        self._tally.offer()
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._release(_picture_bytes(event))
            self._tally.drop(event)

    def _within_budget(self, event: OutEvent) -> OutEvent:
        """``event``, or past `QUEUED_PICTURES_MAX_BYTES` ``event`` without its picture: the event matters more."""
        size = _picture_bytes(event)
        if size == 0:
            return event
        with self._pictures_lock:
            fits = self._picture_bytes + size <= QUEUED_PICTURES_MAX_BYTES
            if fits:
                self._picture_bytes += size
        if fits:
            return event
        if unpictured := self._unpictured.add():
            log.warning(
                "[%s] %s: the writer is behind and the queued snapshots hold %d MB: %d event(s) since the last "
                "report are stored without theirs",
                event.stream_id,
                NAME,
                QUEUED_PICTURES_MAX_BYTES // (1024 * 1024),
                unpictured,
            )
        return replace(event, picture=None)

    def _release(self, size: int) -> None:
        with self._pictures_lock:
            self._picture_bytes -= size

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        """Counts are live values, not events: the history does not keep them."""

    def forget_stream(self, stream_id: str) -> None:
        """Events of a removed stream stay in the history until retention removes them."""

    async def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        """Write what is queued for up to `DRAIN_TIMEOUT_S`, drop the rest (counted), and close.

        Waits in a thread, so the loop keeps serving meanwhile; returns once the writer has ended.
        """
        self._drain_until = time.monotonic() + DRAIN_TIMEOUT_S
        self._stop.set()
        self._reader.shutdown()
        if self._thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("%s: the writer is still storing its last batch after %.0f s", NAME, JOIN_TIMEOUT_S)
        # The writer takes no more events now, so what is queued is lost: counted here, on the loop, like every drop.
        self._tally.lose_at_shutdown(self._queue.qsize())
        self._reader.report_untold()

    def health(self) -> SinkHealth:
        """The writes' state and counts. ``upkeep_failures`` counts what failed that cost no event to write:
        retention's steps, and reads that found the file damaged (`DAMAGED_FILE_CODES`).

        A file a read or a prune found damaged makes the state failing, with that reason where it is the
        latest error, for as long as segcast runs: new events may still be stored, but every query and
        prune reaching those pages fails until the file is recovered, which takes stopping segcast
        (docs/backups.md); a state that said ok hid it from /metrics' ``output_up``. A writer thread that
        has ended on an error no handler took makes it failing for good: nothing more is stored."""
        health = replace(self._tally.health(), upkeep_failures=self._retention.failures + self._reader.damaged_reads)
        if (ended := self._ended) is not None:
            reason, at = ended
            return replace(
                health, state=SinkState.FAILING, last_error=reason, last_error_at=at, last_attempt_error=reason
            )
        damage = self._damage()
        if damage is None:
            return health
        if health.last_error_at is None or damage[1] >= health.last_error_at:
            health = replace(health, last_error=damage[0], last_error_at=damage[1])
        return replace(health, state=SinkState.FAILING)

    def _damage(self) -> tuple[str, float] | None:
        """The latest finding, by a read or by retention, that the file is damaged, and when; None if none was."""
        found = [damage for damage in (self._reader.damage, self._retention.damage) if damage is not None]
        return max(found, key=lambda damage: damage[1], default=None)

    async def read_events(self, q: EventQuery) -> list[StoredEvent]:
        """`query`, on the history's reader threads. Raises sqlite3.Error, also once the history has stopped."""
        return await self._reader.read_events(q)

    async def read_snapshot(self, event_id: int) -> bytes | None:
        """`snapshot`, on the history's reader threads. Raises sqlite3.Error, also once the history has stopped."""
        return await self._reader.read_snapshot(event_id)

    def read_failure(self, exc: sqlite3.Error) -> str:
        """Why a read failed, as the API answers it: ``exc``'s reason, but for a file that is no SQLite file
        at all (SQLite says only "file is not a database") what it is and what to do, as the writes say."""
        path = self.settings.path
        reason = _not_sqlite(exc, path)
        return str(exc) if reason is None else f"{path}: {reason}"

    def query(self, q: EventQuery) -> list[StoredEvent]:
        """Stored events matching ``q``, newest first (oldest first with ``after``), read in the calling
        thread. Raises sqlite3.Error if the file cannot be read."""
        return self._reader.query(q)

    def snapshot(self, event_id: int) -> bytes | None:
        """The JPEG stored with event ``event_id``, read in the calling thread; None if there is no such
        event or it has none."""
        return self._reader.snapshot(event_id)

    # -- the writer thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._survive(self._start_writing)
            while self._writing():
                self._survive(self._step)
        except BaseException as exc:
            self._ended = (f"the writer has ended, events are no longer stored: {exc!r}", time.time())
            raise
        finally:
            if self._db is not None:
                self._db.close()
            if self._lock is not None:
                release_lock(self._lock, self.settings.path)  # after the connection: the next finds every write done
            self._retention.close()
            if bugs := self._bugs.take():
                log.error("%s: %d more internal error(s) in the writer since the last report", NAME, bugs)

    def _survive(self, step: Callable[[], None]) -> None:
        """Run ``step``: a bug in it (outside a batch's writing, which costs the batch) is logged, at most
        once per `DROP_LOG_INTERVAL_S`, and the writer goes on after `IDLE_POLL_S`."""
        try:
            step()
        except Exception:
            if bugs := self._bugs.add():
                log.exception("%s: internal error in the writer, which goes on (%d since the last report)", NAME, bugs)
            self._stop.wait(IDLE_POLL_S)

    def _start_writing(self) -> None:
        """Open the file at once, so the state and the log say where events go before the first comes."""
        self._open()
        self._retention.check_room()

    def _step(self) -> None:
        """Prune if due, then store the next batch, if any comes within `IDLE_POLL_S`."""
        pruning = self._retention.due()
        if pruning:
            self._retention.prune(self._open())
        try:
            first = self._queue.get(block=not pruning, timeout=IDLE_POLL_S)
        except queue.Empty:
            return
        batch = [first]
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        try:
            self._write(batch)
        except Exception as exc:  # a bug costs its batch, not the history
            log.exception("%s: could not store %d event(s)", NAME, len(batch))
            self._tally.fail(f"internal error: {exc!r}", lost=len(batch))
        finally:
            self._release(sum(_picture_bytes(event) for event in batch))

    def _writing(self) -> bool:
        """Whether to take another batch: until `stop`, then while events are queued and the drain lasts.

        A program that ends without calling `stop` ends the writer too, after its batch in hand: the
        thread is not a daemon, so the interpreter would otherwise wait for it forever.
        """
        if not threading.main_thread().is_alive():
            return False
        if not self._stop.is_set():
            return True
        return not self._queue.empty() and time.monotonic() < self._drain_until

    def _open(self, losing: int = 0) -> sqlite3.Connection | None:
        """The write connection, opened (the schema made, or an unstamped file adopted: see
        `server.events.history.format`) if it is not; None if it cannot be, or the file is refused.

        That failure is logged and costs ``losing`` events (the batch that needed the file). The
        first open says where events go and makes the state ok, as a broker's connection does; a
        reopen after a failed write says nothing and changes no state: only a write that works
        ends the failure. An open that works after one that failed says where events go again. The
        history's lock is taken before the file is made or opened, and kept (`_hold_lock`).

        Opening an existing file writes nothing, so a full disk does not keep the history from
        opening, and each open checks the size: a file over ``max_mb`` (lowered since, or left so
        by a prune a full disk cut short) is pruned by the writer's loop, writes failing or not.
        """
        if self._db is not None:
            return self._db
        path = self.settings.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            unlocked = self._hold_lock(path)  # before the file is made or opened: another segcast may write it
            _create_private(path.resolve())  # a link's target: O_EXCL does not create through a link
            if not self._exposure_said and (mode := _readable_by_all(path)) is not None:
                self._exposure_said = True  # once: each open after a failure finds the same file
                log.warning(
                    "%s: every user of this machine may read it (mode %o), and it holds camera snapshots: chmod 600 "
                    "it, and its -wal and -shm files (640 to let a group's backup job read it: docs/backups.md)",
                    path,
                    mode,
                )
            db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            try:
                found = check_history_file(db, path, SCHEMA)  # before anything is written: maybe not ours
                if unlocked is not None:
                    raise unlocked
                # Setting it writes a page even where it is set already; it takes effect on a new file only.
                if db.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
                    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                # Debian's SQLite zeroes every page a DELETE frees (built with SECURE_DELETE): a prune
                # wrote each deleted snapshot through the log once more, and an event bigger than a
                # prune's chunk took the log past its share of max_mb. FAST still clears the table's
                # pages; the freed ones are overwritten as the prune's vacuum moves pages into them.
                db.execute("PRAGMA secure_delete = FAST")
                if found is HistoryFile.UNSTAMPED and not self._adoption_said:  # once: a full disk fails it each time
                    self._adoption_said = True
                    log.info("%s: %s", NAME, adoption(path))
                # A stamped file too: an index it lost (an older segcast dropped one) is made again.
                db.executescript(SCHEMA if found is HistoryFile.CURRENT else stamp_script(SCHEMA))
                self._retention.opened(db)
            except BaseException:  # sqlite3.Error, `RefusedHistoryFile`, the lock file's OSError
                db.close()
                raise
        except (RefusedHistoryFile, LockFileRefused) as exc:
            self._announced = False
            self._tally.fail(str(exc), lost=losing)
            return None
        except HistoryLocked as exc:
            self._announced = False
            self._tally.fail(_held_elsewhere(path, exc.lock), lost=losing)
            return None
        except (sqlite3.Error, OSError) as exc:
            self._announced = False
            reason = _not_sqlite(exc, path) or failure_reason(exc, path)
            self._tally.fail(f"cannot open {path}: {reason}", lost=losing)
            return None
        if not self._announced:
            self._announced = True
            log.info("%s: storing events in %s", NAME, path)
        if self._tally.state is SinkState.STARTING:
            self._tally.ok(0)
        self._db = db
        return db

    def _hold_lock(self, path: Path) -> OSError | None:
        """Take the history's lock unless this writer holds it: held until the writer ends (`_run`), across
        reopens, so no other process takes the history between them. Raises `HistoryLocked` and
        `LockFileRefused`; returns the OSError where the lock file cannot be made (a folder segcast may not
        write, a read-only file system), for the open to raise only where SQLite opens and reads the file all
        the same: SQLite's own error comes first, which `failure_reason` explains with whose the folder is."""
        if self._lock is not None:
            return None
        try:
            self._lock = take_lock(path)
        except LockFileRefused:
            raise
        except OSError as exc:
            return exc
        return None

    def _write(self, batch: list[OutEvent]) -> None:
        """Store ``batch`` a group at a time (`Retention.group_bytes`), each followed by size retention
        and the log's checkpoint (`Retention.written`), so one batch of big snapshots does not outgrow
        the log's share."""
        rows = [self._row(event) for event in batch]
        db = self._open(losing=len(batch))
        if db is None:
            return
        left = len(rows)
        for group in _groups(rows, self._retention.group_bytes):
            try:
                with transaction(db):
                    db.executemany(INSERT, group)
            except (sqlite3.Error, OSError) as exc:
                self._tally.fail(
                    f"cannot write to {self.settings.path}: {failure_reason(exc, self.settings.path)}", lost=left
                )
                db.close()  # reopened for the next batch: the file may have been replaced or repaired
                self._db = None
                return
            left -= len(group)
            self._tally.ok(len(group))
            self._retention.written(db)

    def _row(self, event: OutEvent) -> tuple[object, ...]:
        data = event.data
        when = data.get("time")
        if isinstance(when, bool) or not isinstance(when, int | float):
            when = event.capture_time
        snapshot = None
        if event.picture is not None:
            try:
                snapshot = snapshot_jpeg(event.picture)
            except (cv2.error, ValueError) as exc:
                log.warning("[%s] %s: no snapshot for a %s event: %s", event.stream_id, NAME, data.get("type"), exc)
        return (
            float(when),
            event.stream_id,
            str(data.get("type", "")),
            _text_or_none(data.get("class")),
            _text_or_none(data.get("zone")),
            _text_or_none(data.get("line")),
            json.dumps(event.message, separators=(",", ":")),
            snapshot,
        )


def _create_private(path: Path) -> None:
    """Make the history's file, empty (SQLite takes an empty file for a new database), with `FILE_MODE`,
    where there is none. A file there already keeps its permissions: whoever made it chose them.
    ``path`` is resolved by the caller: given a symbolic link to a file not there yet, ``O_EXCL`` would
    refuse it, and SQLite would make the target with the umask's permissions.

    A file that cannot be made is left for SQLite's open to fail on, which says why as it always has
    (`failure_reason`).
    """
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))


def _readable_by_all(path: Path) -> int | None:
    """The permissions of the history's file where every user of the machine may read it, else None: one an
    earlier segcast made under the usual umask (0644), which `_create_private` leaves as it found it."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:  # not made: SQLite's open says why
        return None
    return mode if mode & stat.S_IROTH else None


def _held_elsewhere(path: Path, lock: Path) -> str:
    """Why a history whose lock another process holds stores nothing: what that is, and what to do."""
    return (
        f"{path}: another segcast runs on this history ({lock} is held by another process) and stores its events "
        "there; this one stores none while it runs, or the two would mix their track ids and store every event "
        "twice: stop the other, or set this one's events.history.path to another file"
    )


def _not_sqlite(exc: BaseException, path: Path) -> str | None:
    """Where ``exc`` is SQLite's "file is not a database" for a file at ``path`` that does not begin as a
    SQLite file does (a path pointed at some other file), what it is and what to do, in the words the
    reads' log uses (`HistoryReader`); None for any other failure, whose own reason stands."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_NOTADB or is_sqlite_file(path):
        return None
    return NOT_SQLITE


def _groups(rows: list[tuple[Any, ...]], max_bytes: float) -> Iterator[list[tuple[Any, ...]]]:
    """``rows`` in order, in groups whose data and snapshots hold ``max_bytes`` at most (one row at least)."""
    group: list[tuple[Any, ...]] = []
    held = 0
    for row in rows:
        size = len(row[6]) + (0 if row[7] is None else len(row[7]))
        if group and held + size > max_bytes:
            yield group
            group, held = [], 0
        group.append(row)
        held += size
    if group:
        yield group


def _picture_bytes(event: OutEvent) -> int:
    return 0 if event.picture is None else int(event.picture.pixels.nbytes)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None

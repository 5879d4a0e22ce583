"""The event history: every event in a local SQLite file, with a JPEG of where it happened.

One writer thread owns the write connection (``sqlite3`` is blocking): it takes events from a
bounded queue, encodes each snapshot (a crop around the object, cut from the frame when the event
was handed over: see `server.events.snapshot`; a few kB and a few ms, never on the loop) and stores
them a batch per transaction. The queue is bounded twice: by events (``queue``) and by the bytes
their pictures hold (`QUEUED_PICTURES_MAX_BYTES`). The file is in WAL mode, so the API's readers
(each query on its own short connection, on the history's own reader threads) never wait for the
writer, nor it for them, and a slow query delays no other work of the loop's executor. Retention
deletes by size (checked after each write and at each open) and by age every `AGE_PRUNE_INTERVAL_S`,
events arriving or not, written or not: the oldest events a chunk at a time, between batches, the
file shrinking with ``auto_vacuum = INCREMENTAL`` and the log emptied after each chunk, so a prune
never needs more disk than the history already takes (`PRUNE_CHUNK_SHARE`). A locked database, a read-only
file or a full disk costs the batch being written, is counted and logged (the same error again at
most once per `DROP_LOG_INTERVAL_S`, saying how many events it cost), and the next batch tries again:
the pipeline never notices. Size is bounded by ``max_mb`` alone: the history does not guess what
else the disk will hold. A disk that fills costs every batch until space is freed, so where
``max_mb`` is more than the disk has for the history, the first open says so (`HistorySink._check_room`).
Retention that fails costs nothing stored and leaves the state as the writes make it: it is logged,
naming the step that failed, at most once per `DROP_LOG_INTERVAL_S` with how often it failed since,
so a nearly full disk where writes work and the log's checkpoint does not says so once a while.

At shutdown the writer stores what is queued for up to `DRAIN_TIMEOUT_S`, like the network outputs,
then finishes the batch in hand and ends; what is left is dropped, counted and logged. `stop`
returns once it has ended, so a process that exits right after never cuts it off inside OpenCV or
SQLite (a daemon thread there can abort the interpreter as it exits); and it is not a daemon, so
even past `JOIN_TIMEOUT_S` the interpreter waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import cv2

from server.events.config import HistorySettings
from server.events.counts import Counts
from server.events.sink import (
    DRAIN_TIMEOUT_S,
    DROP_LOG_INTERVAL_S,
    OutEvent,
    SinkHealth,
    SinkState,
    Tally,
    ThrottledCount,
)
from server.events.snapshot import snapshot_jpeg

log = logging.getLogger(__name__)
_T = TypeVar("_T")

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
#: Threads the API's reads run on: a few, each query a page at most, so pages never queue behind
#: snapshot encodings or stream changes in the loop's default executor, nor those behind pages.
READ_THREADS = 2
AGE_PRUNE_INTERVAL_S = 60.0
MB = 1024 * 1024
#: Size retention deletes down to this share of ``max_mb``, so it does not run after every insert.
SIZE_PRUNE_TARGET = 0.9
#: Of ``max_mb``, what SQLite's write-ahead log (the ``-wal`` file beside the history) may hold (4 MB
#: at most, SQLite's own default checkpoint). A batch is written a group of events at a time, their
#: data and snapshots a quarter of that at most (`WRITE_GROUP_SHARE`: in pages, with their indexes,
#: up to about twice that), and the log is copied into the file and emptied once past half of it.
#: Copying grows the file by up to what the log holds before the log is
#: emptied, so the events get ``max_mb`` less twice the log's share: the two files together stay
#: within ``max_mb`` after writes and during prunes alike (but SQLite's 32 kB ``-shm`` beside them).
WAL_SHARE = 0.1
WAL_MAX_BYTES = 4 * 1024 * 1024
WRITE_GROUP_SHARE = 0.25
#: A prune deletes the oldest events a chunk at a time, each holding this share of the log's allowance
#: (`WAL_SHARE`), gives their pages back and empties the log before the next chunk. Giving back N
#: pages moves up to N pages from the end of the file into the log, and the file only shrinks when the
#: log is copied back: one transaction for a whole prune grew the log by as much as it deleted (a tenth
#: of ``max_mb``, or all of a lowered ``max_mb``'s excess) and filled disks that held ``max_mb``.
PRUNE_CHUNK_SHARE = 0.25
#: How long the writer prunes before it takes the next batch: a prune of gigabytes (``max_mb`` or
#: ``max_age_days`` lowered) goes on between batches instead of holding them back for seconds.
PRUNE_SLICE_S = 0.05
AUTO_VACUUM_INCREMENTAL = 2  # what ``PRAGMA auto_vacuum`` reads on a file that gives space back
MAX_PAGE = 1000
#: A page bounded in time reads the events in that window through the time index and sorts them when
#: the window holds fewer than this many (a recent window, or a short one: cheap either way); over a
#: wider window it reads newest first, in id order, and filters by time, so it never sorts a month.
TIME_INDEX_MAX_ROWS = 10_000

#: Each page reads newest first (``ORDER BY id DESC``): the indexes carry the id after the filters
#: the viewer and API combine, so a page reads its rows in order and stops, never sorting all of a
#: stream's events. The time indexes serve a window known to hold few events (`TIME_INDEX_MAX_ROWS`).
SCHEMA = """
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
"""
INSERT = "INSERT INTO events (time, stream, type, class, zone, line, data, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of ``GET /api/events``; None matches anything. Newest first, ids below ``before``;
    with ``after``, oldest first from the id above it: the cursor a poller moves forward by.

    A poller cannot move forward by ``time``: an event's time is its frame's, and a line crossing is
    stored only once confirmed, a second or more after later events, so its time is older than theirs.
    Ids are given in the order events are stored, and a committed batch is seen whole, so no event
    appears later below an id a reader has already seen.
    """

    stream: str | None = None
    type: str | None = None
    class_name: str | None = None
    zone: str | None = None
    line: str | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None
    after: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    data: Mapping[str, Any]
    has_snapshot: bool


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
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="event-history-read")
        self._db: sqlite3.Connection | None = None
        self._announced = False  # "storing events in" logged since the last open that failed
        self._retention_failures = ThrottledCount()
        self._retention_error = ""  # the last retention failure, for the line that tells the untold ones
        self._retention_failed_total = 0  # every one, for /metrics (an int's += from one thread, read anywhere)
        self._next_age_prune = 0.0
        self._age_prune_due = False  # events older than max_age_days may be left to delete
        self._size_prune_due = False  # the events use more than max_mb leaves them, or did and are not yet down
        self._prune_pages = 1  # the next chunk's, doubling up to `PRUNE_CHUNK_SHARE`: see `_prune_chunk`
        self._wal_bytes = min(WAL_MAX_BYTES, int(settings.max_mb * MB * WAL_SHARE))
        self._pictures_lock = threading.Lock()
        self._picture_bytes = 0  # of the queued events' pictures and the batch being written
        self._unpictured = 0  # events queued without their picture since the last report
        self._next_unpictured_log = 0.0

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
        self._unpictured += 1
        now = time.monotonic()
        if now >= self._next_unpictured_log:
            self._next_unpictured_log = now + DROP_LOG_INTERVAL_S
            log.warning(
                "[%s] %s: the writer is behind and the queued snapshots hold %d MB: %d event(s) since the last "
                "report are stored without theirs",
                event.stream_id,
                NAME,
                QUEUED_PICTURES_MAX_BYTES // (1024 * 1024),
                self._unpictured,
            )
            self._unpictured = 0
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
        self._reads.shutdown(wait=False, cancel_futures=True)
        if self._thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("%s: the writer is still storing its last batch after %.0f s", NAME, JOIN_TIMEOUT_S)
        # The writer takes no more events now, so what is queued is lost: counted here, on the loop, like every drop.
        self._tally.lose_at_shutdown(self._queue.qsize())

    def health(self) -> SinkHealth:
        return replace(self._tally.health(), upkeep_failures=self._retention_failed_total)

    async def read_events(self, q: EventQuery) -> list[StoredEvent]:
        """`query`, on the history's reader threads. Raises sqlite3.Error, also once the history has stopped."""
        return await self._read(lambda: self.query(q))

    async def read_snapshot(self, event_id: int) -> bytes | None:
        """`snapshot`, on the history's reader threads. Raises sqlite3.Error, also once the history has stopped."""
        return await self._read(lambda: self.snapshot(event_id))

    async def _read(self, read: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reads, read)
        except RuntimeError:  # shut down: the server is stopping
            raise sqlite3.OperationalError("the history is closing") from None

    # -- reads, in any thread -----------------------------------------------------------------------

    def query(self, q: EventQuery) -> list[StoredEvent]:
        """Stored events matching ``q``, newest first (oldest first with ``after``). Raises sqlite3.Error
        if the file cannot be read."""
        with self._reader() as db:
            sql, args = select_events(q, by_time=few_in_window(db, q))
            # One past a page: the API asks for it to know whether another page follows.
            rows = db.execute(sql, [*args, min(q.limit, MAX_PAGE + 1)]).fetchall()
        return [StoredEvent(row[0], json.loads(row[1]), bool(row[2])) for row in rows]

    def snapshot(self, event_id: int) -> bytes | None:
        """The JPEG stored with event ``event_id``; None if there is no such event or it has none."""
        with self._reader() as db:
            row = db.execute("SELECT snapshot FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def _reader(self) -> closing[sqlite3.Connection]:
        if not self.settings.path.exists():
            raise sqlite3.OperationalError(f"no history file at {self.settings.path} yet")
        uri = f"{self.settings.path.as_uri()}?mode=ro"
        return closing(sqlite3.connect(uri, uri=True, timeout=LOCK_TIMEOUT_S))

    # -- the writer thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._open()
            self._check_room()
            while self._writing():
                if time.monotonic() >= self._next_age_prune:
                    self._next_age_prune = time.monotonic() + AGE_PRUNE_INTERVAL_S
                    self._age_prune_due = True
                pruning = self._age_prune_due or self._size_prune_due
                if pruning:
                    self._prune()
                try:
                    first = self._queue.get(block=not pruning, timeout=IDLE_POLL_S)
                except queue.Empty:
                    continue
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
        finally:
            if self._db is not None:
                self._db.close()
            if untold := self._retention_failures.take():
                log.error("%s: %s (again: %d failure(s) since the last report)", NAME, self._retention_error, untold)

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
        """The write connection, opened (and the schema made) if it is not; None if it cannot be.

        That failure is logged and costs ``losing`` events (the batch that needed the file). The
        first open says where events go and makes the state ok, as a broker's connection does; a
        reopen after a failed write says nothing and changes no state: only a write that works
        ends the failure. An open that works after one that failed says where events go again.

        Opening an existing file writes nothing, so a full disk does not keep the history from
        opening, and each open checks the size: a file over ``max_mb`` (lowered since, or left so
        by a prune a full disk cut short) is pruned by the writer's loop, writes failing or not.
        """
        if self._db is not None:
            return self._db
        path = self.settings.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            try:
                # Setting it writes a page even where it is set already; it takes effect on a new file only.
                if db.execute("PRAGMA auto_vacuum").fetchone()[0] != AUTO_VACUUM_INCREMENTAL:
                    db.execute("PRAGMA auto_vacuum = INCREMENTAL")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.executescript(SCHEMA)
                self._size_prune_due = self._over_max_mb(db)
            except sqlite3.Error:
                db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            self._announced = False
            self._tally.fail(f"cannot open {path}: {exc}", lost=losing)
            return None
        if not self._announced:
            self._announced = True
            log.info("%s: storing events in %s", NAME, path)
        if self._tally.state is SinkState.STARTING:
            self._tally.ok(0)
        self._db = db
        return db

    def _write(self, batch: list[OutEvent]) -> None:
        """Store ``batch`` a group at a time (`WRITE_GROUP_SHARE`), each followed by size retention
        and the log's checkpoint, so one batch of big snapshots does not outgrow the log's share."""
        rows = [self._row(event) for event in batch]
        db = self._open(losing=len(batch))
        if db is None:
            return
        left = len(rows)
        for group in _groups(rows, self._wal_bytes * WRITE_GROUP_SHARE):
            try:
                with _transaction(db):
                    db.executemany(INSERT, group)
            except (sqlite3.Error, OSError) as exc:
                self._tally.fail(f"cannot write to {self.settings.path}: {exc}", lost=left)
                db.close()  # reopened for the next batch: the file may have been replaced or repaired
                self._db = None
                return
            left -= len(group)
            self._tally.ok(len(group))
            try:
                self._size_prune_due = self._size_prune_due or self._over_max_mb(db)
            except (sqlite3.Error, OSError) as exc:
                self._retention_failed(f"cannot read the size of {self.settings.path}: {exc}")
            if self._size_prune_due:
                self._prune()  # before the checkpoint: the log's pages then land in space the prune freed
            self._checkpoint_outgrown_log(db)

    def _check_room(self) -> None:
        """Warn, once at start, where ``max_mb`` is more than the disk has for the history: the file and
        its log stay within ``max_mb`` together, pruning included (`WAL_SHARE`), so that is what it needs.

        Such a history is no ring: it grows until the disk is full, and from then on every batch is
        lost until space is freed. Deleting events to make room would guess what else the disk will
        hold, and guessing wrong deletes the history; the user knows, so is told.
        """
        path = self.settings.path
        try:
            stored = _footprint_bytes(path)
            free = _free_bytes(path)
        except OSError:
            return  # no folder yet: the open that failed has said why
        if self.settings.max_mb * MB > stored + free:
            log.warning(
                "%s: [events.history] max_mb = %g is more than the disk holding %s has for it (%d MB free, "
                "%d MB used by the history): when the disk fills, the history stops writing (writes resume once "
                "space is freed); lower max_mb to keep it a ring of the newest events",
                NAME,
                self.settings.max_mb,
                path,
                free // MB,
                stored // MB,
            )

    def _events_limit_bytes(self) -> float:
        """What the events may use: ``max_mb`` less twice the write-ahead log's share (`WAL_SHARE`)."""
        return self.settings.max_mb * MB - 2 * self._wal_bytes

    def _over_max_mb(self, db: sqlite3.Connection) -> bool:
        return _used_bytes(db) > self._events_limit_bytes()

    def _prune(self) -> None:
        """Prune what is due, a chunk at a time (`_prune_chunk`) for `PRUNE_SLICE_S` at most: the rest
        after the next batch. By age first: what it deletes counts towards the size.

        A failure costs no event (they are stored) and says nothing of the writes, so it leaves the
        state alone: it is logged, naming the step (`_retention_failed`), and the prune is tried again
        after the next write or open (size) or `AGE_PRUNE_INTERVAL_S` (age), not at once.
        """
        db = self._open()
        if db is None:  # said so, as the writes' failure
            self._age_prune_due = self._size_prune_due = False
            return
        cutoff = time.time() - self.settings.max_age_days * 86400
        slice_ends = time.monotonic() + PRUNE_SLICE_S
        try:
            while self._age_prune_due or self._size_prune_due:
                if self._age_prune_due:
                    self._age_prune_due = self._prune_chunk(db, cutoff)
                else:
                    self._size_prune_due = self._prune_chunk(db, None)
                if time.monotonic() >= slice_ends:
                    break
        except _RetentionFailed as failure:
            self._age_prune_due = self._size_prune_due = False
            self._retention_failed(str(failure))

    def _prune_chunk(self, db: sqlite3.Connection, cutoff: float | None) -> bool:
        """Delete the oldest events holding about one chunk (`PRUNE_CHUNK_SHARE`): those from before
        ``cutoff`` (Unix seconds), or with None while the events use more than `_events_limit_bytes`
        allows, down to `SIZE_PRUNE_TARGET` of it. Give that many pages back, empty the log; whether
        there is more to do. Writes nothing where there is nothing to delete: a file that cannot be
        written is not told so each minute. Raises `_RetentionFailed`, naming the step.
        """
        path = self.settings.path
        page = _page_bytes(db)
        # From one page, doubling: on a disk full but for a little, a small chunk fits in the log and
        # what it frees makes room for the next.
        chunk_pages = min(self._prune_pages, max(1, int(self._wal_bytes * PRUNE_CHUNK_SHARE) // page))
        self._prune_pages = 1
        target = self._events_limit_bytes() * SIZE_PRUNE_TARGET
        try:
            free_pages = _free_pages(db)
            excess = chunk_pages * page if cutoff is not None else _used_bytes(db) - target
            deleting = min(chunk_pages - free_pages, math.ceil(excess / page)) * page
            last = _last_of_oldest(db, deleting, cutoff) if deleting > 0 else None
            if last is None and free_pages == 0:
                return False
            if last is not None:
                with _transaction(db):
                    if cutoff is None:
                        db.execute("DELETE FROM events WHERE id <= ?", (last,))
                    else:
                        db.execute("DELETE FROM events WHERE id <= ? AND time < ?", (last, cutoff))
        except (sqlite3.Error, OSError) as exc:
            raise _RetentionFailed(f"cannot delete old events from {path}: {exc}") from exc
        try:  # executescript steps it to the end (execute() would free one page) and is outside a transaction here
            db.executescript(f"PRAGMA incremental_vacuum({chunk_pages});")
        except (sqlite3.Error, OSError) as exc:
            raise _RetentionFailed(f"cannot give the space of deleted events in {path} back: {exc}") from exc
        wal = path.with_name(path.name + "-wal")
        try:
            (busy, _, _) = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except (sqlite3.Error, OSError) as exc:
            raise _RetentionFailed(f"cannot copy the write-ahead log {wal.name} into {path}: {exc}") from exc
        self._prune_pages = 2 * chunk_pages
        if busy:  # a reader holds the log: let it finish, and the next slice empties it
            return True
        if _free_pages(db):
            return True
        if cutoff is None:
            return _used_bytes(db) > target
        return db.execute("SELECT 1 FROM events WHERE time < ? LIMIT 1", (cutoff,)).fetchone() is not None

    def _checkpoint_outgrown_log(self, db: sqlite3.Connection) -> None:
        """Empty the write-ahead log once past what leaves room for a group (`WAL_SHARE`); a failure is logged
        (`_retention_failed`) and costs nothing stored."""
        path = self.settings.path
        wal = path.with_name(path.name + "-wal")
        try:
            outgrown = wal.exists() and wal.stat().st_size > self._wal_bytes / 2
        except OSError:
            outgrown = False  # gone meanwhile: emptied by another connection's checkpoint
        if outgrown:
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a reader still at an older state can keep it
            except (sqlite3.Error, OSError) as exc:
                self._retention_failed(f"cannot copy the write-ahead log {wal.name} into {path}: {exc}")

    def _retention_failed(self, reason: str) -> None:
        """Log a retention step that failed: the first at once, then at most once per `DROP_LOG_INTERVAL_S`
        (the latest, with how many failed since), whatever step; the rest when the writer ends.

        On a nearly full disk each batch may be written and its checkpoint fail: a line a batch
        would bury the log.
        """
        self._retention_error = reason
        self._retention_failed_total += 1
        count = self._retention_failures.add(1, time.monotonic())
        if count == 1:
            log.error("%s: %s", NAME, reason)
        elif count:
            log.error("%s: %s (again: %d failure(s) since the last report)", NAME, reason, count)

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


def select_events(q: EventQuery, by_time: bool) -> tuple[str, list[object]]:
    """The SQL of a page of ``q`` and its arguments but the limit; newest first, or oldest first
    with ``after``.

    ``by_time``: the time bounds pick the rows through the time index, and the page is sorted
    (for a window of few events: `TIME_INDEX_MAX_ROWS`); SQLite, knowing nothing of how many,
    would rather read in id order, so it is told. Otherwise they only filter rows read in id
    order: ``+time`` keeps SQLite from choosing the time index, whose range it would sort.
    """
    clauses: list[str] = []
    args: list[object] = []
    by_time = by_time and (q.since is not None or q.until is not None)
    time_column = "time" if by_time else "+time"
    source = f"events INDEXED BY {_time_index(q)}" if by_time else "events"
    for clause, value in (
        ("stream = ?", q.stream),
        ("type = ?", q.type),
        ("class = ?", q.class_name),
        ("zone = ?", q.zone),
        ("line = ?", q.line),
        (f"{time_column} >= ?", q.since),
        (f"{time_column} <= ?", q.until),
        ("id < ?", q.before),
        ("id > ?", q.after),
    ):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "DESC" if q.after is None else "ASC"
    return f"SELECT id, data, snapshot IS NOT NULL FROM {source} {where} ORDER BY id {order} LIMIT ?", args


def few_in_window(db: sqlite3.Connection, q: EventQuery) -> bool:
    """Whether ``q`` has time bounds around fewer than `TIME_INDEX_MAX_ROWS` events of its stream (or
    of all streams, when it names none).

    Counting stops there, through the time index alone, so asking costs at most that many index
    entries. Counted within the stream: a quiet stream's window on a busy day is still a few rows,
    while read in id order it would be every older event of that stream.
    """
    clauses: list[str] = []
    args: list[object] = []
    for clause, value in (("stream = ?", q.stream), ("time >= ?", q.since), ("time <= ?", q.until)):
        if value is not None:
            clauses.append(clause)
            args.append(value)
    if q.since is None and q.until is None:
        return False
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM events INDEXED BY {_time_index(q)} WHERE {' AND '.join(clauses)} LIMIT ?)"
    )
    (count,) = db.execute(sql, [*args, TIME_INDEX_MAX_ROWS]).fetchone()
    return bool(count < TIME_INDEX_MAX_ROWS)


def _time_index(q: EventQuery) -> str:
    """The index that finds ``q``'s time window: within its stream when it names one."""
    return "events_time" if q.stream is None else "events_stream_time"


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction on an autocommit connection, rolled back if the body raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


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


class _RetentionFailed(Exception):
    """A retention step that failed; its message names the step, the file and SQLite's reason."""


def _last_of_oldest(db: sqlite3.Connection, nbytes: int, cutoff: float | None) -> int | None:
    """The id up to which the oldest events (of those from before ``cutoff``, if given) hold about
    ``nbytes`` of data and snapshots, one event at least; None if there is none.

    Read in id order and stopped there (``+time`` keeps SQLite from the time index, whose rows it
    would sort); the lengths come from the rows' headers, not their snapshots.
    """
    size = "length(data) + ifnull(length(snapshot), 0)"
    if cutoff is None:
        rows = db.execute(f"SELECT id, {size} FROM events ORDER BY id")
    else:
        rows = db.execute(f"SELECT id, {size} FROM events WHERE +time < ? ORDER BY id", (cutoff,))
    last = None
    held = 0
    with closing(rows):
        for event_id, event_bytes in rows:
            last = event_id
            held += event_bytes
            if held >= nbytes:
                break
    return last


def _footprint_bytes(path: Path) -> int:
    """What the history's file and its write-ahead log take on disk."""
    files = (path, path.with_name(path.name + "-wal"))
    return sum(file.stat().st_size for file in files if file.exists())


def _free_bytes(path: Path) -> int:
    """What the file system holding the history has free for it (raises OSError if it cannot say).

    Read on the file where it exists: one bind-mounted into a container lives on another file
    system than its folder.
    """
    stats = os.statvfs(path if path.exists() else path.parent)
    return stats.f_bavail * stats.f_frsize


def _used_bytes(db: sqlite3.Connection) -> int:
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    return int((pages - _free_pages(db)) * _page_bytes(db))


def _free_pages(db: sqlite3.Connection) -> int:
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    return int(free)


def _page_bytes(db: sqlite3.Connection) -> int:
    (size,) = db.execute("PRAGMA page_size").fetchone()
    return int(size)


def _picture_bytes(event: OutEvent) -> int:
    return 0 if event.picture is None else int(event.picture.pixels.nbytes)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None

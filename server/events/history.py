"""The event history: every event in a local SQLite file, with a JPEG of where it happened.

One writer thread owns the write connection (``sqlite3`` is blocking): it takes events from a
bounded queue, encodes each snapshot (a crop around the object, cut from the frame when the event
was handed over: see `server.events.snapshot`; a few kB and a few ms, never on the loop) and stores
them a batch per transaction. The queue is bounded twice: by events (``queue``) and by the bytes
their pictures hold (`QUEUED_PICTURES_MAX_BYTES`). The file is in WAL mode, so the API's readers
(each query on its own short connection, on the history's own reader threads) never wait for the
writer, nor it for them, and a slow query delays no other work of the loop's executor. Retention,
by size and by age, runs on the writer thread between batches (`server.events.retention`).

A locked database, a read-only file or a full disk costs the batch being written, is counted and
logged (the same error again at most once per `DROP_LOG_INTERVAL_S`, saying how many events it
cost), and the next batch tries again: the pipeline never notices. Size is bounded by ``max_mb``
alone: the history does not guess what else the disk will hold. A disk that fills costs every batch
until space is freed, so where ``max_mb`` is more than the disk has for the history, the first open
says so (`Retention.check_room`). A file on a read-only file system (ext4 remounts so after disk
errors) is still read (`HistorySink._reader`), and the writes' error says why they fail; where files
are another user's (a volume an image run as root made), the writes' and reads' errors say whose. A read that
finds the file damaged is counted and named (`HistorySink.health`): every query reaching those
pages fails until the file is recovered, which is something to alert on. A file of a newer format,
or not segcast's at all, is neither written nor read (`server.events.history_format`): each batch
fails on it, naming the file and what to do, as on a locked one.

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
import json
import logging
import math
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
from server.events.history_format import (
    ANOTHER_FILE,
    HistoryFile,
    RefusedHistoryFile,
    adoption,
    check_history_file,
    is_sqlite_file,
    stamp_script,
)
from server.events.retention import Retention, transaction
from server.events.sink import (
    DRAIN_TIMEOUT_S,
    DROP_LOG_INTERVAL_S,
    OutEvent,
    SinkHealth,
    SinkState,
    Tally,
)
from server.events.snapshot import snapshot_jpeg
from server.file_saving import on_read_only_mount, write_denied
from server.log_throttle import ThrottledCount

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
#: What ``PRAGMA auto_vacuum`` reads on a file that gives space back: retention's pruning relies on it.
AUTO_VACUUM_INCREMENTAL = 2
#: SQLite's result codes for a file whose pages are not what they should be (damaged mid-way, overwritten,
#: not a database at all): unlike a busy or locked file, every read that reaches them fails again.
DAMAGED_FILE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
#: What a write's or a read's error adds on a read-only file system, where SQLite says only "unable to
#: open database file" or "attempt to write a readonly database".
READ_ONLY_HINT = (
    "it is on a read-only file system: if it is mounted read-only (a Docker bind mount with :ro, a Kubernetes "
    "ConfigMap; a relative path lands beside the config file), set events.history.path to a file on a "
    "writable volume; if ext4 remounted it so after disk errors, check the disk, then remount it read-write"
)
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
        self._adoption_said = False  # that an older segcast's file is being brought up to format (`adoption`)
        self._retention = Retention(settings, NAME, log)  # the writer thread's alone
        self._damage_lock = threading.Lock()  # the reader threads count into these
        self._damaged_reads = 0
        self._damage: tuple[str, float] | None = None  # the latest read that found the file damaged, and when
        self._damage_untold = ThrottledCount(DROP_LOG_INTERVAL_S)
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
        self._reads.shutdown(wait=False, cancel_futures=True)
        if self._thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("%s: the writer is still storing its last batch after %.0f s", NAME, JOIN_TIMEOUT_S)
        # The writer takes no more events now, so what is queued is lost: counted here, on the loop, like every drop.
        self._tally.lose_at_shutdown(self._queue.qsize())
        with self._damage_lock:
            untold = self._damage_untold.take()
        if untold and self._damage is not None:
            log.error("%s: %s (again: %d failed read(s) since the last report)", NAME, self._damage[0], untold)

    def health(self) -> SinkHealth:
        """The writes' state and counts. ``upkeep_failures`` counts what failed that cost no event to write:
        retention's steps, and reads that found the file damaged (`DAMAGED_FILE_CODES`), whose reason is
        ``last_error`` where it is the latest error. The state stays as the writes make it: new events
        may still be stored while older pages cannot be read. A writer thread that has ended on an
        error no handler took makes it failing for good: nothing more is stored."""
        health = replace(self._tally.health(), upkeep_failures=self._retention.failures + self._damaged_reads)
        if (ended := self._ended) is not None:
            return replace(health, state=SinkState.FAILING, last_error=ended[0], last_error_at=ended[1])
        damage = self._damage
        if damage is not None and (health.last_error_at is None or damage[1] >= health.last_error_at):
            health = replace(health, last_error=damage[0], last_error_at=damage[1])
        return health

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
        with self._reading() as db:
            if db is None:
                return []
            sql, args = select_events(q, by_time=few_in_window(db, q))
            # One past a page: the API asks for it to know whether another page follows.
            rows = db.execute(sql, [*args, min(q.limit, MAX_PAGE + 1)]).fetchall()
        return [StoredEvent(row[0], json.loads(row[1]), bool(row[2])) for row in rows]

    def snapshot(self, event_id: int) -> bytes | None:
        """The JPEG stored with event ``event_id``; None if there is no such event or it has none."""
        with self._reading() as db:
            if db is None:
                return None
            row = db.execute("SELECT snapshot FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection | None]:
        """A read connection (`_reader`) for one query, or None while nothing can have been stored: no
        file yet, or one the writer has not made its table in (the moments after start, when a viewer
        or a dashboard may already ask). A read that finds the file damaged is counted; one of a file
        the history refuses (`check_history_file`) raises `RefusedHistoryFile`, naming why."""
        path = self.settings.path
        if not path.exists():
            yield None
            return
        try:
            with self._reader() as db:
                yield None if check_history_file(db, path, SCHEMA) is HistoryFile.EMPTY else db
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in DAMAGED_FILE_CODES:
                self._read_damaged(exc)
            raise

    def _reader(self) -> closing[sqlite3.Connection]:
        """A read-only connection of its own; raises sqlite3.Error.

        A WAL file is read through its shared index (``-shm``), which SQLite makes, or opens for
        writing, on the first read: on a read-only file system that fails unless it was left there.
        There the file is read as immutable: nothing can change it meanwhile, and only the events of
        a log left beside it without its index (a writer cut off) are missed. A read-only open that
        fails on a file system that is not read-only (busy, locked, gone, another user's: `_reason`)
        fails: an immutable read of a file being written could see pages half written.
        """
        path = self.settings.path
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=LOCK_TIMEOUT_S)
        try:
            db.execute("PRAGMA schema_version").fetchall()  # the first read: opens the shared index
        except sqlite3.Error as exc:
            db.close()
            if not isinstance(exc, sqlite3.OperationalError):
                raise
            if not _on_read_only_file_system(path):
                raise sqlite3.OperationalError(_reason(exc, path)) from exc  # another user's files: the 503 says so
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
        return closing(db)

    def _read_damaged(self, exc: sqlite3.Error) -> None:
        """Count and log a read that found the file damaged: the first at once, then at most once per
        `DROP_LOG_INTERVAL_S` with how many since (a viewer polling a damaged history would bury the log)."""
        path = self.settings.path
        if is_sqlite_file(path):
            reason = (
                f"cannot read {path}: {exc}: the file is damaged; stop segcast, recover what it holds "
                f"(sqlite3 {path.name} .recover | sqlite3 recovered.db) and put that in its place"
            )
        else:
            reason = f"cannot read {path}: it is not a SQLite file, so no segcast event history: {ANOTHER_FILE}"
        with self._damage_lock:
            self._damaged_reads += 1
            self._damage = (reason, time.time())
            count = self._damage_untold.add(1, time.monotonic())
        if count == 1:
            log.error("%s: %s", NAME, reason)
        elif count:
            log.error("%s: %s (again: %d failed read(s) since the last report)", NAME, reason, count)

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
        `server.events.history_format`) if it is not; None if it cannot be, or the file is refused.

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
                found = check_history_file(db, path, SCHEMA)  # before anything is written: maybe not ours
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
            except sqlite3.Error:
                db.close()
                raise
        except RefusedHistoryFile as exc:
            self._announced = False
            self._tally.fail(str(exc), lost=losing)
            return None
        except (sqlite3.Error, OSError) as exc:
            self._announced = False
            self._tally.fail(f"cannot open {path}: {_reason(exc, path)}", lost=losing)
            return None
        if not self._announced:
            self._announced = True
            log.info("%s: storing events in %s", NAME, path)
        if self._tally.state is SinkState.STARTING:
            self._tally.ok(0)
        self._db = db
        return db

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
                self._tally.fail(f"cannot write to {self.settings.path}: {_reason(exc, self.settings.path)}", lost=left)
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


def _on_read_only_file_system(path: Path) -> bool:
    """Whether the file system holding ``path`` (before the file exists, its folder) is mounted read-only;
    False where it cannot say. Asked of the mount, not of SQLite's error, which is the same for a file
    that is merely busy or missing its folder."""
    return on_read_only_mount(path if path.exists() else path.parent)


def _reason(exc: BaseException, path: Path) -> str:
    """SQLite's reason for a failed open, write or read, with why where SQLite does not say it: a read-only file
    system (`READ_ONLY_HINT`), or the file, its folder or the ``-wal`` and ``-shm`` SQLite keeps there another
    user's (a volume an image run as root made) or read-only (`write_denied`, naming the fix)."""
    if _on_read_only_file_system(path):
        return f"{exc}: {READ_ONLY_HINT}"
    files = [path.parent, path, *(path.with_name(f"{path.name}{suffix}") for suffix in ("-wal", "-shm"))]
    if (denied := write_denied(files)) is None:
        return str(exc)
    return f"{exc}: {denied}; or set events.history.path to a file in a folder segcast's user may write"


def _picture_bytes(event: OutEvent) -> int:
    return 0 if event.picture is None else int(event.picture.pixels.nbytes)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None

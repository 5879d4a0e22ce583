"""The event history's retention: what keeps its file and write-ahead log within ``max_mb`` and its
events within ``max_age_days``, on a disk that may hold little more than that.

It runs on the history's writer thread and connection (`server.events.history.writer`), between batches:
SQLite has one writer, and a prune in a thread of its own would only wait for the writer's locks.
The sink tells it when the file is opened (`Retention.opened`) and after each group of events it
writes (`Retention.written`), asks whether a prune is due (`Retention.due`) and lets it prune
(`Retention.prune`); that is all the sink knows of it.

Size is checked at each open and after each write, age every `AGE_PRUNE_INTERVAL_S`, events arriving
or not, written or not. An event is old by its date; once the wall clock has stepped by more than
`CLOCK_STEP_S` (set right by NTP on a box that booted years slow, or set wrong), which is logged, one
this process stored is old by its own clock too (`since_boot`, `_AgeCutoff`): a step of years had every
event dated by the clock before it deleted a minute later. A process started after a step cannot
know of it: it ages the events stored before by their dates. A prune deletes the oldest
events a chunk at a time (`PRUNE_CHUNK_SHARE`), gives their pages back (the file has ``auto_vacuum =
INCREMENTAL``) and empties the log after each chunk, so it never needs more disk than the history
already takes. A prune that deletes much of the history at once (`PRUNE_TOLD_SHARE`) says so at INFO,
once it is over: how many events, from when, and which setting. Retention that fails costs
nothing stored and leaves the sink's state as the writes make it: it is logged, naming the step that
failed, at most once per `DROP_LOG_INTERVAL_S` with how often it failed since, and counted
(`Retention.failures`, the sink's ``upkeep_failures``), so a nearly full disk where writes work and
the log's checkpoint does not says so once a while, and a history that cannot delete, which will fill
its disk, is something to alert on. A step that finds the file damaged is kept (`Retention.damage`):
the sink is failing until the file is recovered.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from server.events.config import HistorySettings
from server.events.history.reader import is_damaged_file_error
from server.events.sink import DROP_LOG_INTERVAL_S
from server.log_throttle import ThrottledCount

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
#: A wall clock that moved this much more or less than `since_boot` between two looks (at each prune,
#: at least every `AGE_PRUNE_INTERVAL_S`) has been stepped: said once, in the log.
CLOCK_STEP_S = 3600.0
#: A prune (its chunks from the moment one is due until none is) that deletes more than this share of the
#: events says so at INFO: ``max_mb`` or ``max_age_days`` lowered, or a history left while segcast was off
#: for weeks. Routine prunes delete less: by size a tenth of it each time it fills (`SIZE_PRUNE_TARGET`),
#: by age a minute's events; a line for each would bury the log.
PRUNE_TOLD_SHARE = 0.25


def since_boot() -> float:
    """Seconds on a clock that no one sets and that runs on while the machine sleeps (Linux's
    ``CLOCK_BOOTTIME``; the monotonic clock where there is none): the monotonic clock stops during a
    suspend, so a box that slept each night saw a wall-clock step at each resume, and kept events
    longer than ``max_age_days`` by a clock that left out the nights."""
    return time.clock_gettime(time.CLOCK_BOOTTIME) if hasattr(time, "CLOCK_BOOTTIME") else time.monotonic()


class _AgeCutoff(NamedTuple):
    """Which events age retention deletes: those dated before ``time`` (Unix seconds) with ids up to
    ``last_id``: any, or since the wall clock stepped, the last one stored before this process opened
    the file or at least ``max_age_days`` ago by its own clock (`since_boot`)."""

    time: float
    last_id: int


@dataclass(slots=True)
class _Deleted:
    """What the prune under way has deleted, for the line that tells a big one (`PRUNE_TOLD_SHARE`)."""

    events: int = 0
    oldest: float = math.inf  # Unix seconds, the events' own dates
    newest: float = -math.inf
    by_size: bool = False
    by_age: bool = False

    def add(self, events: int, oldest: float | None, newest: float | None, by_age: bool) -> None:
        if events == 0 or oldest is None or newest is None:
            return
        self.events += events
        self.oldest = min(self.oldest, oldest)
        self.newest = max(self.newest, newest)
        self.by_age = self.by_age or by_age
        self.by_size = self.by_size or not by_age


class Retention:
    """Size and age retention of one history file, run by the history's writer thread alone.

    ``name`` and ``log`` are the sink's: its retention speaks in its lines, as one output.
    `failures` and `damage` may be read from any thread (an int's +=, a tuple replaced, from one thread).
    """

    def __init__(self, settings: HistorySettings, name: str, log: logging.Logger) -> None:
        self.settings = settings
        self.failures = 0  # every failed step, for /metrics
        #: The latest failed step that found the file damaged (`is_damaged_file_error`), and when (Unix
        #: seconds); None if none did.
        self.damage: tuple[str, float] | None = None
        self._name = name
        self._log = log
        self._untold = ThrottledCount(DROP_LOG_INTERVAL_S)
        self._last_error = ""  # the last failure, for the line that tells the untold ones
        self._next_age_prune = 0.0  # monotonic
        self._age_due = False  # events older than max_age_days may be left to delete
        self._size_due = False  # the events use more than max_mb leaves them, or did and are not yet down
        self._chunk_pages = 1  # the next chunk's, doubling up to `PRUNE_CHUNK_SHARE`: see `_prune_chunk`
        self._wal_bytes = min(WAL_MAX_BYTES, int(settings.max_mb * MB * WAL_SHARE))
        self._clock_offset = time.time() - since_boot()  # the wall clock's, at the last look
        self._clock_stepped = False  # by more than CLOCK_STEP_S, since this process started
        self._last_id = 0  # the last id stored, by an earlier run (`opened`) or this one (`written`)
        #: (`since_boot` time, last id stored then), at each age prune, oldest first: what this process
        #: stored at least ``max_age_days`` ago by its own clock. The first is the file's as opened.
        self._stored_by: collections.deque[tuple[float, int]] = collections.deque()
        self._deleted = _Deleted()  # by the prune under way

    @property
    def group_bytes(self) -> float:
        """What the data and snapshots of one group of events written together may hold (`WRITE_GROUP_SHARE`),
        so one batch of big snapshots does not outgrow the log's share."""
        return self._wal_bytes * WRITE_GROUP_SHARE

    def due(self) -> bool:
        """Whether a prune is due: by size (see `opened`, `written`), or by age every `AGE_PRUNE_INTERVAL_S`."""
        if time.monotonic() >= self._next_age_prune:
            self._next_age_prune = time.monotonic() + AGE_PRUNE_INTERVAL_S
            self._age_due = True
        return self._age_due or self._size_due

    def opened(self, db: sqlite3.Connection) -> None:
        """The writer opened the file: a file over ``max_mb`` (lowered since, or left so by a prune a full
        disk cut short) is pruned by the writer's loop, writes failing or not. Raises sqlite3.Error."""
        self._size_due = self._over_max_mb(db)
        if not self._stored_by:  # what is there already is an earlier run's: old by its dates alone
            row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
            self._last_id = 0 if row is None else int(row[0])
            self._stored_by.append((-math.inf, self._last_id))

    def written(self, db: sqlite3.Connection) -> None:
        """A group of events was written: prune if they took the events past ``max_mb``, then empty the
        log if it outgrew its share (`WAL_SHARE`). Failures are logged and counted, never raised: the
        events are stored whatever happens here."""
        try:
            (self._last_id,) = db.execute("SELECT last_insert_rowid()").fetchone()  # reads no file
            try:
                self._size_due = self._size_due or self._over_max_mb(db)
            except (sqlite3.Error, OSError) as exc:
                self._failed(f"cannot read the size of {self.settings.path}: {exc}", cause=exc)
            if self._size_due:
                self.prune(db)  # before the checkpoint: the log's pages then land in space the prune freed
            self._checkpoint_outgrown_log(db)
        except Exception as exc:  # a bug: counted and logged as a step that failed, like any other
            self._failed(f"internal error after writing to {self.settings.path}: {exc!r}", exc)

    def prune(self, db: sqlite3.Connection | None) -> None:
        """Prune what is due, a chunk at a time (`_prune_chunk`) for `PRUNE_SLICE_S` at most: the rest
        after the next batch. By age first: what it deletes counts towards the size.

        ``db`` is None where the file cannot be opened (the sink says so, as the writes' failure).
        A failure costs no event (they are stored) and says nothing of the writes, so it leaves the
        state alone: it is logged, naming the step (`_failed`), and the prune is tried again after
        the next write or open (size) or `AGE_PRUNE_INTERVAL_S` (age), not at once. Once nothing is due,
        a prune that deleted much is told (`_tell_deleted`). Never raises.
        """
        if db is None:
            self._age_due = self._size_due = False
            return
        cutoff = self._age_cutoff()
        slice_ends = time.monotonic() + PRUNE_SLICE_S
        try:
            while self._age_due or self._size_due:
                if self._age_due:
                    self._age_due = self._prune_chunk(db, cutoff)
                else:
                    self._size_due = self._prune_chunk(db, None)
                if time.monotonic() >= slice_ends:
                    break
        except _RetentionFailed as failure:
            self._age_due = self._size_due = False
            self._failed(str(failure), cause=failure.__cause__)
        except Exception as exc:  # a bug: counted and logged as a step that failed, the writer goes on
            self._age_due = self._size_due = False
            self._failed(f"internal error pruning {self.settings.path}: {exc!r}", exc)
        if not (self._age_due or self._size_due):
            self._tell_deleted(db)

    def check_room(self) -> None:
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
            self._log.warning(
                "%s: [events.history] max_mb = %g is more than the disk holding %s has for it (%d MB free, "
                "%d MB used by the history): when the disk fills, the history stops writing (writes resume once "
                "space is freed); lower max_mb to keep it a ring of the newest events",
                self._name,
                self.settings.max_mb,
                path,
                free // MB,
                stored // MB,
            )

    def _age_cutoff(self) -> _AgeCutoff:
        """What age retention deletes now (`_AgeCutoff`); notes the last id stored, at most once per
        `AGE_PRUNE_INTERVAL_S` (a prune by size may come after each write), for later prunes.

        The wall clock is read once, for the step check and the cutoff alike: checked at one moment and
        read for the cutoff at another, a step landing between them was taken for the date, and a
        clock set years ahead deleted every event this process had stored.
        """
        max_age_s = self.settings.max_age_days * 86400
        now, wall = since_boot(), time.time()
        self._check_clock(wall - now)
        if not self._stored_by or now - self._stored_by[-1][0] >= AGE_PRUNE_INTERVAL_S:
            self._stored_by.append((now, self._last_id))
        while len(self._stored_by) > 1 and self._stored_by[1][0] <= now - max_age_s:
            self._stored_by.popleft()  # the newest of those old enough is the limit
        return _AgeCutoff(wall - max_age_s, self._stored_by[0][1] if self._clock_stepped else sys.maxsize)

    def _check_clock(self, offset: float) -> None:
        """Log a step of the wall clock since the last look (`CLOCK_STEP_S`), once; ``offset`` is the
        wall clock's time less `since_boot`'s now."""
        moved, self._clock_offset = offset - self._clock_offset, offset
        if abs(moved) > CLOCK_STEP_S:
            self._clock_stepped = True
            self._log.warning(
                "%s: the wall clock moved by %s; events stored since carry its new times, and those this process "
                "stored before are kept max_age_days by its own clock, whatever their dates",
                self._name,
                f"{moved / 86400:+.1f} days" if abs(moved) >= 2 * 86400 else f"{moved / 3600:+.1f} hours",
            )

    def close(self) -> None:
        """The writer is ending: tell the failures the quiet window still holds."""
        if untold := self._untold.take():
            self._log.error("%s: %s (again: %d failure(s) since the last report)", self._name, self._last_error, untold)

    def _events_limit_bytes(self) -> float:
        """What the events may use: ``max_mb`` less twice the write-ahead log's share (`WAL_SHARE`)."""
        return self.settings.max_mb * MB - 2 * self._wal_bytes

    def _over_max_mb(self, db: sqlite3.Connection) -> bool:
        return _used_bytes(db) > self._events_limit_bytes()

    def _prune_chunk(self, db: sqlite3.Connection, cutoff: _AgeCutoff | None) -> bool:
        """Delete the oldest events holding about one chunk (`PRUNE_CHUNK_SHARE`): those ``cutoff``
        says are old, or with None while the events use more than `_events_limit_bytes`
        allows, down to `SIZE_PRUNE_TARGET` of it. Give that many pages back, empty the log; whether
        there is more to do. Writes nothing where there is nothing to delete: a file that cannot be
        written is not told so each minute. Raises `_RetentionFailed`, naming the step.
        """
        path = self.settings.path
        try:
            page = _page_bytes(db)
        except (sqlite3.Error, OSError) as exc:
            raise _RetentionFailed(f"cannot read the page size of {path}: {exc}") from exc
        # From one page, doubling: on a disk full but for a little, a small chunk fits in the log and
        # what it frees makes room for the next.
        chunk_pages = min(self._chunk_pages, max(1, int(self._wal_bytes * PRUNE_CHUNK_SHARE) // page))
        self._chunk_pages = 1
        target = self._events_limit_bytes() * SIZE_PRUNE_TARGET
        try:
            free_pages = _free_pages(db)
            excess = chunk_pages * page if cutoff is not None else _used_bytes(db) - target
            deleting = min(chunk_pages - free_pages, math.ceil(excess / page)) * page
            last = _last_of_oldest(db, deleting, cutoff) if deleting > 0 else None
            if last is None and free_pages == 0:
                return False
            if last is not None:
                where, args = ("id <= ?", (last,)) if cutoff is None else ("id <= ? AND time < ?", (last, cutoff.time))
                with transaction(db):
                    doomed = db.execute(f"SELECT count(*), min(time), max(time) FROM events WHERE {where}", args)
                    count, oldest, newest = doomed.fetchone()
                    db.execute(f"DELETE FROM events WHERE {where}", args)
                self._deleted.add(count, oldest, newest, by_age=cutoff is not None)
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
        self._chunk_pages = 2 * chunk_pages
        if busy:  # a reader holds the log: let it finish, and the next slice empties it
            return True
        try:
            if _free_pages(db):
                return True
            if cutoff is None:
                return _used_bytes(db) > target
            query = "SELECT 1 FROM events WHERE time < ? AND id <= ? LIMIT 1"
            return db.execute(query, cutoff).fetchone() is not None
        except (sqlite3.Error, OSError) as exc:
            raise _RetentionFailed(f"cannot read what is left to delete in {path}: {exc}") from exc

    def _checkpoint_outgrown_log(self, db: sqlite3.Connection) -> None:
        """Empty the write-ahead log once past what leaves room for a group (`WAL_SHARE`); a failure is logged
        (`_failed`) and costs nothing stored."""
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
                self._failed(f"cannot copy the write-ahead log {wal.name} into {path}: {exc}", cause=exc)

    def _tell_deleted(self, db: sqlite3.Connection) -> None:
        """A prune is over: say, at INFO, what it deleted where that was more than `PRUNE_TOLD_SHARE` of the
        events, and start counting afresh."""
        deleted, self._deleted = self._deleted, _Deleted()
        if deleted.events == 0 or not self._most_deleted(db, deleted.events):
            return
        limits = [f"max_mb = {self.settings.max_mb:g}"] if deleted.by_size else []
        limits += [f"max_age_days = {self.settings.max_age_days:g}"] if deleted.by_age else []
        self._log.info(
            "%s: deleted %d events (dated %s to %s) to keep within %s",
            self._name,
            deleted.events,
            _local_time(deleted.oldest),
            _local_time(deleted.newest),
            " and ".join(limits),
        )

    def _most_deleted(self, db: sqlite3.Connection, deleted: int) -> bool:
        """Whether ``deleted`` events were more than `PRUNE_TOLD_SHARE` of those there before them: whether
        fewer than ``deleted * (1 - share) / share`` are left. Counted up to that many only, so a routine
        prune of a history of millions reads a few times what it deleted, not every event."""
        enough = math.ceil(deleted * (1 - PRUNE_TOLD_SHARE) / PRUNE_TOLD_SHARE)
        try:
            (left,) = db.execute("SELECT count(*) FROM (SELECT 1 FROM events LIMIT ?)", (enough,)).fetchone()
        except (sqlite3.Error, OSError):
            return True  # cannot tell: a line too many rather than events deleted unsaid
        return int(left) < enough

    def _failed(self, reason: str, bug: Exception | None = None, cause: BaseException | None = None) -> None:
        """Log a retention step that failed: the first at once, then at most once per `DROP_LOG_INTERVAL_S`
        (the latest, with how many failed since), whatever step; the rest at `close`. A ``bug``'s
        traceback goes with the lines that are written. A ``cause`` that says the file is damaged is kept
        as `damage`.

        On a nearly full disk each batch may be written and its checkpoint fail: a line a batch
        would bury the log.
        """
        self._last_error = reason
        self.failures += 1
        if is_damaged_file_error(cause):
            self.damage = (reason, time.time())
        count = self._untold.add(1, time.monotonic())
        if count == 1:
            self._log.error("%s: %s", self._name, reason, exc_info=bug)
        elif count:
            self._log.error(
                "%s: %s (again: %d failure(s) since the last report)", self._name, reason, count, exc_info=bug
            )


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction on an autocommit connection, rolled back if the body raises: the
    writer's inserts and retention's deletes alike."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class _RetentionFailed(Exception):
    """A retention step that failed; its message names the step, the file and SQLite's reason."""


def _last_of_oldest(db: sqlite3.Connection, nbytes: int, cutoff: _AgeCutoff | None) -> int | None:
    """The id up to which the oldest events (of those ``cutoff`` says are old, if given) hold about
    ``nbytes`` of data and snapshots, one event at least; None if there is none.

    Read in id order and stopped there (``+time`` keeps SQLite from the time index, whose rows it
    would sort); the lengths come from the rows' headers, not their snapshots.
    """
    size = "length(data) + ifnull(length(snapshot), 0)"
    if cutoff is None:
        rows = db.execute(f"SELECT id, {size} FROM events ORDER BY id")
    else:
        rows = db.execute(f"SELECT id, {size} FROM events WHERE +time < ? AND id <= ? ORDER BY id", cutoff)
    last = None
    held = 0
    with closing(rows):
        for event_id, event_bytes in rows:
            last = event_id
            held += event_bytes
            if held >= nbytes:
                break
    return last


def _local_time(when: float) -> str:
    """An event's date (Unix seconds) as the log says it, in local time to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


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

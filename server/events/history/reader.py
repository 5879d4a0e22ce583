"""Reading the event history for the API: its own reader threads, a short read-only connection per
query, and what a read that fails says.

The history's file is in WAL mode, so these reads never wait for its writer thread
(`server.events.history.writer`), nor it for them; on threads of their own, a slow query delays no other work
of the loop's executor. A file on a read-only file system (ext4 remounts so after disk errors) is still
read (`HistoryReader._reader`). A read that finds the file damaged is counted and named: every query
reaching those pages fails until the file is recovered, which is something to alert on. What a failed
open, write or read says where SQLite does not say why (`failure_reason`) is here too, for the writer's
errors to say the same.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

from server.events.history.format import NOT_SQLITE, HistoryFile, check_history_file, is_sqlite_file
from server.events.history.query import MAX_PAGE, EventQuery, StoredEvent, few_in_window, select_events
from server.events.sink import DROP_LOG_INTERVAL_S
from server.file_saving import on_read_only_mount, write_denied
from server.log_throttle import ThrottledCount

log = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Threads the API's reads run on: a few, each query a page at most, so pages never queue behind
#: snapshot encodings or stream changes in the loop's default executor, nor those behind pages.
READ_THREADS = 2
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


class HistoryReader:
    """The history's queries, from any thread (`query`, `snapshot`) or from the loop on the reader threads.

    ``name`` starts its log lines; ``schema`` is the tables a file must have to be read (the writer
    makes them); ``lock_timeout_s`` is how long an open waits for a lock.
    """

    def __init__(self, path: Path, schema: str, lock_timeout_s: float, name: str) -> None:
        self.path = path
        self.name = name
        self._schema = schema
        self._lock_timeout_s = lock_timeout_s
        self._reads = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="event-history-read")
        self._damage_lock = threading.Lock()  # the reader threads count into these
        self.damaged_reads = 0
        #: The latest read that found the file damaged, and when (Unix seconds); None if none did.
        self.damage: tuple[str, float] | None = None
        self._damage_untold = ThrottledCount(DROP_LOG_INTERVAL_S)

    async def read_events(self, q: EventQuery) -> list[StoredEvent]:
        """`query`, on the reader threads. Raises sqlite3.Error, also once the history has stopped."""
        return await self._read(lambda: self.query(q))

    async def read_snapshot(self, event_id: int) -> bytes | None:
        """`snapshot`, on the reader threads. Raises sqlite3.Error, also once the history has stopped."""
        return await self._read(lambda: self.snapshot(event_id))

    def shutdown(self) -> None:
        """Take no more reads; those queued fail as a stopped history's do."""
        self._reads.shutdown(wait=False, cancel_futures=True)

    def report_untold(self) -> None:
        """At shutdown: log the damaged reads not logged yet (`_read_damaged` logs at most once a while)."""
        with self._damage_lock:
            untold = self._damage_untold.take()
        if untold and self.damage is not None:
            log.error("%s: %s (again: %d failed read(s) since the last report)", self.name, self.damage[0], untold)

    async def _read(self, read: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._reads, read)
        except RuntimeError:  # shut down: the server is stopping
            raise sqlite3.OperationalError("the history is closing") from None

    # -- in any thread --------------------------------------------------------------------------------

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
        or a dashboard may already ask). No file is also what a writer that cannot make one leaves: the
        API asks the writer's state before it answers "no events" (`server.events.api`). A read that finds
        the file damaged is counted; one of a file the history refuses (`check_history_file`) raises
        `RefusedHistoryFile`, naming why."""
        path = self.path
        if not path.exists():
            yield None
            return
        try:
            with self._reader() as db:
                yield None if check_history_file(db, path, self._schema) is HistoryFile.EMPTY else db
        except sqlite3.DatabaseError as exc:
            if is_damaged_file_error(exc):
                self._read_damaged(exc)
            raise

    def _reader(self) -> closing[sqlite3.Connection]:
        """A read-only connection of its own; raises sqlite3.Error.

        A WAL file is read through its shared index (``-shm``), which SQLite makes, or opens for
        writing, on the first read: on a read-only file system that fails unless it was left there.
        There the file is read as immutable: nothing can change it meanwhile, and only the events of
        a log left beside it without its index (a writer cut off) are missed. A read-only open that
        fails on a file system that is not read-only (busy, locked, gone, another user's: `failure_reason`)
        fails: an immutable read of a file being written could see pages half written.
        """
        path = self.path
        db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=self._lock_timeout_s)
        try:
            db.execute("PRAGMA schema_version").fetchall()  # the first read: opens the shared index
        except sqlite3.Error as exc:
            db.close()
            if not isinstance(exc, sqlite3.OperationalError):
                raise
            if not _on_read_only_file_system(path):  # another user's files: the 503 says so
                raise sqlite3.OperationalError(failure_reason(exc, path)) from exc
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
        return closing(db)

    def _read_damaged(self, exc: sqlite3.Error) -> None:
        """Count and log a read that found the file damaged: the first at once, then at most once per
        `DROP_LOG_INTERVAL_S` with how many since (a viewer polling a damaged history would bury the log)."""
        path = self.path
        if is_sqlite_file(path):
            reason = (
                f"cannot read {path}: {exc}: the file is damaged; stop segcast, recover what it holds "
                f"(sqlite3 {path.name} .recover | sqlite3 recovered.db) and put that in its place "
                f"(segcast history restore recovered.db --history {path} --force)"
            )
        else:
            reason = f"cannot read {path}: {NOT_SQLITE}"
        with self._damage_lock:
            self.damaged_reads += 1
            self.damage = (reason, time.time())
            count = self._damage_untold.add(1, time.monotonic())
        if count == 1:
            log.error("%s: %s", self.name, reason)
        elif count:
            log.error("%s: %s (again: %d failed read(s) since the last report)", self.name, reason, count)


def is_damaged_file_error(exc: BaseException | None) -> bool:
    """Whether ``exc`` is SQLite's saying the file's pages are not what they should be (`DAMAGED_FILE_CODES`):
    what stays so until the file is recovered, unlike a busy or locked file."""
    return isinstance(exc, sqlite3.DatabaseError) and getattr(exc, "sqlite_errorcode", 0) & 0xFF in DAMAGED_FILE_CODES


def _on_read_only_file_system(path: Path) -> bool:
    """Whether the file system holding ``path`` (before the file exists, its folder) is mounted read-only;
    False where it cannot say. Asked of the mount, not of SQLite's error, which is the same for a file
    that is merely busy or missing its folder."""
    return on_read_only_mount(path if path.exists() else path.parent)


def failure_reason(exc: BaseException, path: Path) -> str:
    """SQLite's reason for a failed open, write or read, with why where SQLite does not say it: a read-only file
    system (`READ_ONLY_HINT`), or the file, its folder or the ``-wal`` and ``-shm`` SQLite keeps there another
    user's (a volume an image run as root made) or read-only (`write_denied`, naming the fix)."""
    if _on_read_only_file_system(path):
        return f"{exc}: {READ_ONLY_HINT}"
    files = [path.parent, path, *(path.with_name(f"{path.name}{suffix}") for suffix in ("-wal", "-shm"))]
    if (denied := write_denied(files)) is None:
        return str(exc)
    return f"{exc}: {denied}; or set events.history.path to a file in a folder segcast's user may write"

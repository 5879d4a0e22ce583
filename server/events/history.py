"""The event history: every event in a local SQLite file, with a JPEG of where it happened.

One writer thread owns the write connection (``sqlite3`` is blocking): it takes events from a
bounded queue, encodes each snapshot (a crop around the object, so a few kB and a few ms, never on
the loop) and stores them a batch per transaction. The file is in WAL mode, so the API's readers
(each query on its own short connection, in the loop's executor) never wait for the writer, nor it
for them. Retention deletes by age and by size after writes; the file shrinks with
``auto_vacuum = INCREMENTAL``. A locked database or a full disk costs the batch being written, is
logged and counted, and the next batch tries again: the pipeline never notices.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from server.events.config import HistorySettings
from server.events.counts import Counts
from server.events.sink import OutEvent, SinkHealth, Tally

log = logging.getLogger(__name__)

NAME = "history"
IDLE_POLL_S = 0.2
BATCH_MAX = 200
LOCK_TIMEOUT_S = 2.0
JOIN_TIMEOUT_S = 5.0
AGE_PRUNE_INTERVAL_S = 60.0
#: Size retention deletes down to this share of ``max_mb``, so it does not run after every insert.
SIZE_PRUNE_TARGET = 0.9
SNAPSHOT_QUALITY = 80
SNAPSHOT_MARGIN = 0.15  # of the box's size on each side
SNAPSHOT_MAX_WIDTH_PX = 640  # for an event without a box: the whole frame, scaled down
MAX_PAGE = 1000

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
"""
INSERT = "INSERT INTO events (time, stream, type, class, zone, line, data, snapshot) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Filters of ``GET /api/events``; None matches anything. Newest first, ids below ``before``."""

    stream: str | None = None
    type: str | None = None
    class_name: str | None = None
    zone: str | None = None
    line: str | None = None
    since: float | None = None
    until: float | None = None
    before: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: int
    data: Mapping[str, Any]
    has_snapshot: bool


class HistorySink:
    """The history as an event output; also answers the API's queries (from the loop's executor)."""

    name = NAME

    def __init__(self, settings: HistorySettings) -> None:
        self.settings = settings
        self._tally = Tally(NAME, log)
        self._queue: queue.Queue[OutEvent] = queue.Queue(settings.queue)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-history", daemon=True)
        self._db: sqlite3.Connection | None = None
        self._next_age_prune = 0.0

    # -- on the loop ------------------------------------------------------------------------------

    def offer(self, event: OutEvent) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._tally.drop(event)

    def offer_counts(self, stream_id: str, counts: Counts) -> None:
        """Counts are live values, not events: the history does not keep them."""

    def forget_stream(self, stream_id: str) -> None:
        """Events of a removed stream stay in the history until retention removes them."""

    async def start(self) -> None:
        self._thread.start()

    async def stop(self) -> None:
        """Write what is queued, then close; waits in a thread, so the loop keeps serving meanwhile."""
        self._stop.set()
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            log.warning("%s: the writer did not stop within %.1f s", NAME, JOIN_TIMEOUT_S)

    def health(self) -> SinkHealth:
        return self._tally.health()

    # -- reads, in any thread -----------------------------------------------------------------------

    def query(self, q: EventQuery) -> list[StoredEvent]:
        """Stored events matching ``q``, newest first. Raises sqlite3.Error if the file cannot be read."""
        clauses: list[str] = []
        args: list[object] = []
        for column, value in (
            ("stream", q.stream),
            ("type", q.type),
            ("class", q.class_name),
            ("zone", q.zone),
            ("line", q.line),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                args.append(value)
        for clause, bound in (("time >= ?", q.since), ("time <= ?", q.until), ("id < ?", q.before)):
            if bound is not None:
                clauses.append(clause)
                args.append(bound)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT id, data, snapshot IS NOT NULL FROM events {where} ORDER BY id DESC LIMIT ?"
        with self._reader() as db:
            rows = db.execute(sql, [*args, min(q.limit, MAX_PAGE)]).fetchall()
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
            while not self._stop.is_set() or not self._queue.empty():
                try:
                    first = self._queue.get(timeout=IDLE_POLL_S)
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
            if self._db is not None:
                self._db.close()

    def _open(self) -> sqlite3.Connection | None:
        """The write connection, opened (and the schema made) if it is not; None, logged, if it cannot be."""
        if self._db is not None:
            return self._db
        path = self.settings.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=LOCK_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only takes effect on a new file
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("PRAGMA synchronous = NORMAL")
                db.executescript(SCHEMA)
                self._prune(db)
            except sqlite3.Error:
                db.close()
                raise
        except (sqlite3.Error, OSError) as exc:
            self._tally.fail(f"cannot open {path}: {exc}")
            return None
        log.info("%s: storing events in %s", NAME, path)
        self._tally.ok(0)
        self._db = db
        return db

    def _write(self, batch: list[OutEvent]) -> None:
        rows = [self._row(event) for event in batch]
        db = self._open()
        if db is None:
            self._tally.failed += len(batch)
            return
        try:
            with _transaction(db):
                db.executemany(INSERT, rows)
            self._tally.ok(len(batch))
            self._prune(db)
        except (sqlite3.Error, OSError) as exc:
            self._tally.fail(f"cannot write to {self.settings.path}: {exc}", lost=len(batch))
            db.close()  # reopened for the next batch: the file may have been replaced or repaired
            self._db = None

    def _row(self, event: OutEvent) -> tuple[object, ...]:
        data = event.data
        when = data.get("time")
        if isinstance(when, bool) or not isinstance(when, int | float):
            when = event.packet.result.frame.capture_time
        snapshot = None
        if self.settings.snapshots:
            try:
                snapshot = snapshot_jpeg(event)
            except (cv2.error, ValueError) as exc:
                log.warning("[%s] %s: no snapshot for a %s event: %s", event.stream_id, NAME, data.get("type"), exc)
        return (
            float(when),
            event.stream_id,
            str(data.get("type", "")),
            _text_or_none(data.get("class")),
            _text_or_none(data.get("zone")),
            _text_or_none(data.get("line")),
            json.dumps(data, separators=(",", ":")),
            snapshot,
        )

    def _prune(self, db: sqlite3.Connection) -> None:
        """Delete events older than ``max_age_days`` (now and then), then the oldest while over ``max_mb``."""
        now = time.monotonic()
        if now >= self._next_age_prune:
            self._next_age_prune = now + AGE_PRUNE_INTERVAL_S
            cutoff = time.time() - self.settings.max_age_days * 86400
            with _transaction(db):
                db.execute("DELETE FROM events WHERE time < ?", (cutoff,))
        limit = self.settings.max_mb * 1024 * 1024
        if _used_bytes(db) <= limit:
            return
        while _used_bytes(db) > limit * SIZE_PRUNE_TARGET:
            (count,) = db.execute("SELECT count(*) FROM events").fetchone()
            if count == 0:
                break
            with _transaction(db):
                db.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)", (max(1, count // 10),)
                )
        db.executescript("PRAGMA incremental_vacuum;")  # execute() would free only one page: it steps once


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


def _used_bytes(db: sqlite3.Connection) -> int:
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    return int((pages - free) * size)


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def snapshot_jpeg(event: OutEvent) -> bytes:
    """A JPEG of the event's object: its box with a margin, from the frame the event happened on.

    The box is the event's own (track events carry one) or that of the track with the event's id in
    the frame (analytics events); without either, the whole frame, scaled down.
    """
    image = event.packet.result.frame.image
    height, width = image.shape[:2]
    box = _box_of(event)
    crop = None
    if box is not None:
        x1, y1, x2, y2 = box
        mx, my = (x2 - x1) * SNAPSHOT_MARGIN, (y2 - y1) * SNAPSHOT_MARGIN
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1)
        if right - left >= 2 and bottom - top >= 2:
            crop = image[top:bottom, left:right]
    if crop is not None:
        image = crop
    elif width > SNAPSHOT_MAX_WIDTH_PX:
        size = (SNAPSHOT_MAX_WIDTH_PX, max(1, round(height * SNAPSHOT_MAX_WIDTH_PX / width)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, SNAPSHOT_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()


def _box_of(event: OutEvent) -> tuple[float, float, float, float] | None:
    box = event.data.get("box")
    if isinstance(box, list | tuple) and len(box) == 4 and all(isinstance(v, int | float) for v in box):
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    track_id = event.data.get("id")
    for track in event.packet.result.tracks:
        if track.track_id == track_id:
            return track.box
    return None

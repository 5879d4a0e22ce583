"""``segcast history export``: the history's events as a file a spreadsheet opens (CSV) or as JSON lines.

Without it, getting results out meant ``sqlite3 -readonly -csv`` with ``json_extract`` for every field, or
paging through ``GET /api/events`` a thousand at a time. It reads as ``segcast history backup`` does
(`server.events.history.backup`): read-only, in one read transaction, never taking the writer's lock, so
segcast goes on storing meanwhile (in WAL mode a reader and the writer never wait for each other) and the
export holds exactly the events stored when it began. Rows come from the cursor and are written one at a
time, so a history of millions costs the memory of one event; snapshots are not read (each event's is at
``/api/events/<id>/snapshot.jpg``). While it reads, the write-ahead log cannot be emptied past where it
began: a long export lets it grow, as a backup does, and segcast empties it after.

The CSV has a column per field an event type has (docs/protocol.md: ``track``, ``zone_enter``,
``zone_exit``, ``loiter``, ``line_cross``), empty where the event has none, its time both in ISO 8601 (UTC)
and in Unix seconds, its box in four columns; whatever else its JSON holds (a field a later segcast adds)
is kept in the last column, ``data``, as JSON, so nothing is lost. Text that a spreadsheet would run as a
formula (a stream id, zone or class name someone chose that begins with ``=``) gets a ``'`` before it
(`spreadsheet_text`); numbers are written as they are. JSON lines hold each event exactly as
stored, with its id: ``{"id": 42, "event": {...}}``, as ``GET /api/events`` pages them.

OUT is written beside under another name, readable by its owner alone from the moment it exists (it holds
what the cameras saw: who came and went, and when), and moved to OUT once whole, so OUT is never an export
half made; ``-`` writes to stdout. Importing this module costs neither PyTorch nor OpenCV.
"""

from __future__ import annotations

import argparse
import csv
import enum
import json
import math
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from server.events.history.backup import (
    FILE_MODE,
    LOCK_TIMEOUT_S,
    BackupError,
    add_history_options,
    begin_reading,
    check_out,
    check_source,
    open_read_only,
    recovery,
    sync_folder,
    why_unreadable,
)
from server.events.history.format import EVENTS_TABLE, HISTORY_FORMAT, SEGCAST_APPLICATION_ID
from server.events.history.query import EVENT_TYPES

#: OUT that means stdout.
STDOUT = Path("-")
#: A ``--since`` or ``--until`` further ahead of now than this is not Unix seconds but milliseconds
#: (JavaScript's ``Date.now()``, Grafana's ``${__from}``), which would select nothing.
FUTURE_LIMIT_S = 100 * 365.25 * 86400
#: The earliest ``--since`` or ``--until`` taken: the first second of year 1, the first an ISO 8601 time can say.
EARLIEST_S = datetime(1, 1, 1, tzinfo=UTC).timestamp()
#: An ISO 8601 date without dashes (``20260101``), which is also a number of seconds: refused, as either.
COMPACT_DATE = re.compile(r"(19|20|21)[0-9]{2}(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])")
#: SQLite's result codes for a file whose pages are not what they should be: recovered, not retried.
DAMAGED_FILE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

#: The CSV's columns, in order: the names are kept from one segcast to the next (a column may be added before
#: ``data``, never renamed). Times are Unix seconds (``_unix``) or media seconds (``_s``), ``time_utc`` ISO 8601.
COLUMNS = (
    "id",
    "event_id",
    "time_utc",
    "time_unix",
    "stream",
    "type",
    "event",
    "track_id",
    "class_id",
    "class",
    "zone",
    "line",
    "direction",
    "media_time_s",
    "first_media_time_s",
    "dwell_s",
    "age_s",
    "first_seen_unix",
    "box_x1",
    "box_y1",
    "box_x2",
    "box_y2",
    "v",
    "data",
)
#: The event JSON's fields with a column of their own, by the column's name.
FIELD_COLUMNS = {
    "event_id": "event_id",
    "event": "event",
    "id": "track_id",
    "class_id": "class_id",
    "class": "class",
    "zone": "zone",
    "line": "line",
    "direction": "direction",
    "media_time": "media_time_s",
    "first_media_time": "first_media_time_s",
    "dwell": "dwell_s",
    "age": "age_s",
    "first_seen": "first_seen_unix",
    "v": "v",
}
BOX_COLUMNS = ("box_x1", "box_y1", "box_x2", "box_y2")
#: What a text cell may not begin with, as Excel and LibreOffice run a cell that does as a formula
#: (``=HYPERLINK(...)`` as a zone's name, ``@SUM(...)``, ``-2+3``): OWASP's CSV injection list.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

#: A stored event as it is read: its id, time (Unix s), stream, type and JSON.
Row = tuple[int, float, str, str, str]


class ExportFormat(enum.Enum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which events to export: those of any of ``streams``, any of ``types``, any of ``zones`` and any of
    ``lines`` (empty: all), with a time (Unix seconds) from ``since`` to ``until``, both included (None:
    unbounded)."""

    streams: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    since: float | None = None
    until: float | None = None
    zones: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExportResult:
    source: Path
    #: None: stdout.
    out: Path | None
    format: ExportFormat
    events: int
    #: Of the streams asked for (``--stream``), those the history has no event of; with the streams it has.
    unknown_streams: tuple[str, ...] = ()
    known_streams: tuple[str, ...] = ()

    def said(self) -> str:
        """The one line the command prints, on stderr: how many events went where, and which streams asked for
        the history has none of (a typo exports nothing, as a quiet day does)."""
        events = f"{self.events} event{'' if self.events == 1 else 's'}"
        said = f"wrote {events} from {self.source} to {self.out or 'stdout'} ({self.format.value})"
        if self.unknown_streams:
            known = ", ".join(self.known_streams) or "none"
            said += f"; the history has no event of {', '.join(self.unknown_streams)} (it has events of {known})"
        return said


def add_arguments(actions: argparse._SubParsersAction) -> None:
    """Add ``history export`` to the ``segcast history`` command line."""
    export = actions.add_parser(
        "export",
        help="write the history's events to OUT as CSV (a spreadsheet opens it) or JSON lines, while segcast runs",
        description="Write the events of the event history to OUT, oldest first: CSV with a column per field "
        "(time in ISO 8601 UTC and in Unix seconds; fields without a column of their own in the last, 'data', "
        "as JSON), or JSON lines of each event as stored with its id. Read-only and consistent while segcast "
        "writes: the events stored when it began. OUT is made readable by its owner alone (it holds what the "
        "cameras saw); - writes to stdout. How many events were written is said on stderr.",
    )
    export.add_argument("out", type=Path, metavar="OUT", help="the file to write, or - for stdout")
    add_history_options(export)
    export.add_argument(
        "--stream", action="append", default=[], metavar="ID", help="only this stream's events; repeat for more"
    )
    export.add_argument(
        "--type",
        action="append",
        default=[],
        choices=EVENT_TYPES,
        metavar="TYPE",
        help=f"only events of this type ({', '.join(EVENT_TYPES)}); repeat for more",
    )
    export.add_argument(
        "--zone", action="append", default=[], metavar="NAME", help="only events of this zone; repeat for more"
    )
    export.add_argument(
        "--line", action="append", default=[], metavar="NAME", help="only crossings of this line; repeat for more"
    )
    export.add_argument(
        "--since",
        type=event_time,
        default=None,
        metavar="T",
        help="only events from T on, included: Unix seconds (1767225600) or ISO 8601 (2026-01-01, "
        "2026-01-01T08:00:00+01:00; UTC where no offset is given, as the export's times are)",
    )
    export.add_argument(
        "--until",
        type=event_time,
        default=None,
        metavar="T",
        help="only events up to T, included, given as --since is; a date alone is its first moment, so "
        "--until 2026-01-02 takes in all of 1 January",
    )
    export.add_argument(
        "--format",
        choices=[f.value for f in ExportFormat],
        default=ExportFormat.CSV.value,
        help="csv (the default: a column per field) or jsonl (a line per event: its JSON as stored, with its id)",
    )
    export.add_argument("--force", action="store_true", help="replace OUT if it exists")


def run(args: argparse.Namespace, history: Path) -> str:
    """``segcast history export`` on ``history``: the line it says, or `BackupError`."""
    if args.since is not None and args.until is not None and args.since > args.until:
        raise BackupError(
            f"--since ({iso_utc(args.since)}) is later than --until ({iso_utc(args.until)}): no time is in between; "
            "give --since before --until"
        )
    if args.since is not None and args.since == args.until:
        day = datetime.fromtimestamp(args.since, UTC).date()
        raise BackupError(
            f"--since and --until are the same moment ({iso_utc(args.since)}): a date alone is its first moment; "
            f"for all of {day.isoformat()} give --until {(day + timedelta(days=1)).isoformat()}"
        )
    selection = Selection(
        tuple(args.stream), tuple(args.type), args.since, args.until, tuple(args.zone), tuple(args.line)
    )
    out = None if args.out == STDOUT else args.out
    return export_history(history, out, selection, ExportFormat(args.format), force=args.force).said()


def event_time(text: str) -> float:
    """``--since`` and ``--until`` in Unix seconds: given so, or in ISO 8601, taken as UTC without an offset."""
    expected = f"expected Unix seconds or an ISO 8601 time (2026-01-01T08:00:00Z), got {text!r}"
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(expected) from None
        seconds = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(seconds) or seconds < EARLIEST_S:
        raise argparse.ArgumentTypeError(expected)
    if COMPACT_DATE.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text} reads as a date written without dashes and as Unix seconds (in 1970): write {text[:4]}-"
            f"{text[4:6]}-{text[6:]} for the date"
        )
    if seconds > time.time() + FUTURE_LIMIT_S:
        raise argparse.ArgumentTypeError(f"{text} is centuries from now: milliseconds? divide by 1000")
    return seconds


def export_history(
    source: Path,
    out: Path | None,
    selection: Selection,
    kind: ExportFormat,
    *,
    force: bool = False,
    lock_timeout_s: float = LOCK_TIMEOUT_S,
) -> ExportResult:
    """Write the events of the history at ``source`` that ``selection`` picks to ``out`` (None: stdout), oldest
    first, as they were when it began, while segcast may go on writing.

    Refuses an ``out`` that exists unless ``force``, and one that is ``source`` itself. Raises `BackupError`;
    ``out`` is then as it was.
    """
    check_source(source)
    if out is not None:
        check_out(source, out, force)
    write = _write_csv if kind is ExportFormat.CSV else _write_jsonl
    with closing(open_read_only(source, lock_timeout_s)) as db:
        begin_reading(db, source, lock_timeout_s)
        _check_format(db, source)
        with closing(_read(db, selection, source, lock_timeout_s)) as rows:  # closed while its cursor's db is open
            events = _to_stdout(write, rows) if out is None else _to_file(write, rows, out, force, source)
        known = _streams(db, source) if selection.streams else ()
    unknown = tuple(stream for stream in selection.streams if stream not in known)
    return ExportResult(source, out, kind, events, unknown, known)


def _streams(db: sqlite3.Connection, source: Path) -> tuple[str, ...]:
    """The streams the history has events of, in the export's read (an index's worth of reading)."""
    try:
        return tuple(stream for (stream,) in db.execute(f"SELECT DISTINCT stream FROM {EVENTS_TABLE} ORDER BY stream"))
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {source}: {exc}") from None


def _check_format(db: sqlite3.Connection, source: Path) -> None:
    """Refuse a history of a newer format than this segcast's: its events could be misread."""
    try:
        (application_id,) = db.execute("PRAGMA application_id").fetchone()
        (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {source}: {exc}") from None
    if application_id == SEGCAST_APPLICATION_ID and version > HISTORY_FORMAT:
        raise BackupError(
            f"{source} holds event history format {version}, written by a newer segcast; this segcast reads format "
            f"{HISTORY_FORMAT}: export it with that segcast or a newer one"
        )


def _read(
    db: sqlite3.Connection, selection: Selection, source: Path, lock_timeout_s: float
) -> Generator[Row, None, None]:
    """The selected events, oldest first (by time, then as stored), straight from the cursor; a read that fails
    raises `BackupError`, naming why."""
    sql, args = select_events(selection)
    try:
        yield from db.execute(sql, args)
    except sqlite3.Error as exc:
        why = why_unreadable(exc, source, lock_timeout_s)
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF in DAMAGED_FILE_CODES:
            why = f"{why}: the file is damaged; {recovery(source)}"
        raise BackupError(f"cannot read {source}: {why}") from None


def select_events(selection: Selection) -> tuple[str, list[object]]:
    """The SQL that reads ``selection``'s events, oldest first, and its arguments."""
    clauses: list[str] = []
    args: list[object] = []
    for column, values in (
        ("stream", selection.streams),
        ("type", selection.types),
        ("zone", selection.zones),
        ("line", selection.lines),
    ):
        if values:
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            args.extend(values)
    for clause, bound in (("time >= ?", selection.since), ("time <= ?", selection.until)):
        if bound is not None:
            clauses.append(clause)
            args.append(bound)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return f"SELECT id, time, stream, type, data FROM {EVENTS_TABLE} {where} ORDER BY time, id", args


Write = Callable[[TextIO, Iterator[Row]], int]


def _to_file(write: Write, rows: Iterator[Row], out: Path, force: bool, source: Path) -> int:
    """``write`` the rows to a private file beside ``out``, moved there once whole; how many it wrote."""
    # A short name of its own: OUT's name with more to it could pass the file system's limit where OUT's does not.
    temporary = out.with_name(f".segcast-export.{os.getpid()}.partial")
    try:
        with open(_new_private_file(temporary), "w", encoding="utf-8", newline="") as file:
            events = write(file, rows)
            file.flush()
            os.fsync(file.fileno())
        check_out(source, out, force)  # again: made meanwhile
        os.replace(temporary, out)
        sync_folder(out.parent)
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        with suppress(OSError):  # a folder that took no file has none to remove, whatever it answers
            temporary.unlink(missing_ok=True)
    return events


def _new_private_file(path: Path) -> int:
    """A descriptor writing a new file at ``path`` that only its owner may read, whatever the umask."""
    path.unlink(missing_ok=True)  # one an earlier export of this process id left, killed
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(descriptor, FILE_MODE)
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


#: What an export that stdout stopped taking says of the rest.
UNWRITTEN = "the rest of the events are not written"


def _to_stdout(write: Write, rows: Iterator[Row]) -> int:
    """``write`` the rows to stdout; how many it wrote. A reader that stops early (``| head``) ends the export,
    as does stdout failing (a full disk under ``> FILE``): one line says so, never a traceback."""
    if sys.stdout is None:  # started with stdout closed (``>&-``)
        raise BackupError("there is no stdout to write to (it was closed): give OUT, a file, instead of -")
    try:
        events = write(sys.stdout, rows)
        sys.stdout.flush()
    except OSError as exc:
        # Python flushes stdout again as it exits, which would fail the same way, with a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        if isinstance(exc, BrokenPipeError):
            raise BackupError(f"stdout was closed (its reader stopped): {UNWRITTEN}") from None
        raise BackupError(f"cannot write stdout: {exc.strerror or exc}; {UNWRITTEN}") from None
    return events


def _write_csv(file: TextIO, rows: Iterator[Row]) -> int:
    writer = csv.DictWriter(file, COLUMNS, restval="")
    writer.writeheader()
    events = 0
    for row in rows:
        writer.writerow(csv_cells(row))
        events += 1
    return events


def _write_jsonl(file: TextIO, rows: Iterator[Row]) -> int:
    events = 0
    for event_id, _, _, _, data in rows:
        file.write(f'{{"id":{event_id},"event":{data}}}\n')  # the JSON as stored, not parsed and written again
        events += 1
    return events


def csv_cells(row: Row) -> dict[str, object]:
    """The CSV's cells of a stored event, by column (`COLUMNS`): a field with a column of its own is written
    there, the rest of the JSON in ``data``; a JSON that is not an object is kept whole in ``data``."""
    event_id, when, stream, kind, text = row
    cells: dict[str, object] = {
        "id": event_id,
        "time_utc": iso_utc(when),
        "time_unix": when,
        "stream": spreadsheet_text(stream),
        "type": spreadsheet_text(kind),
    }
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        cells["data"] = text if _is_number(fields) else spreadsheet_text(text)
        return cells
    columns_of_row = {"time": when, "stream": stream, "type": kind}
    rest: dict[str, Any] = {}
    for key, value in fields.items():
        if key in FIELD_COLUMNS:
            cells[FIELD_COLUMNS[key]] = _cell(value)
        elif key == "box" and _is_box(value):
            cells.update(zip(BOX_COLUMNS, value, strict=True))
        elif key not in columns_of_row or columns_of_row[key] != value:
            rest[key] = value
    if rest:
        cells["data"] = json.dumps(rest, separators=(",", ":"), ensure_ascii=False)
    return cells


def iso_utc(seconds: float) -> str:
    """Unix ``seconds`` in ISO 8601, UTC, to the millisecond: ``2026-01-01T08:00:00.250Z``."""
    rounded = round(seconds, 3)  # isoformat cuts to the millisecond: 0.2599 s would read as .259, its time_unix .26
    return datetime.fromtimestamp(rounded, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cell(value: object) -> object:
    """``value`` as a CSV cell: a number as it is, a string as `spreadsheet_text` makes it, anything else (a
    list, true, an object) as JSON, which begins with none of `FORMULA_STARTS`."""
    if value is None or _is_number(value):
        return value
    if isinstance(value, str):
        return spreadsheet_text(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def spreadsheet_text(text: str) -> str:
    """``text`` as a cell a spreadsheet shows, never runs: with a ``'`` before it where it begins as a formula
    does (`FORMULA_STARTS`). Only for what the event holds as text: a number (-2.5) is a number in the file.
    The ``'`` is part of the cell: a program reading the CSV sees it (OWASP's rule for CSV injection)."""
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_box(value: object) -> bool:
    """Whether ``value`` is a box as events carry it, ``[x1, y1, x2, y2]``: another shape is kept in ``data``."""
    return isinstance(value, list) and len(value) == len(BOX_COLUMNS) and all(_is_number(v) for v in value)

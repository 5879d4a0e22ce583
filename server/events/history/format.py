"""Which SQLite files are segcast's event history, and of which format: what the history may read and write.

A history file says whose it is and in which format in its header: ``PRAGMA application_id`` is
`SEGCAST_APPLICATION_ID` (the field SQLite keeps for naming the program a file is of) and
``PRAGMA user_version`` is `HISTORY_FORMAT`. A segcast that changes the table is to bump the format
and bring older files up to it; one that finds a newer format leaves the file alone, since whatever it
wrote there could damage the newer segcast's data, and what it read could be misread. A file of
another program (another application id, or an ``events`` table with other columns, or tables and
no ``events``) is refused alike: ``[events.history] path`` pointed at the wrong file must not have
segcast's rows written into it.

Files written before formats were stamped (application id and user version 0) hold format 1's table:
they are adopted, checked to have its columns and then stamped (`HistoryFile.UNSTAMPED`, `adoption`).

Checking reads only the header and the schema, never a page of events: the history's writer checks at
each open, before it changes anything, and its readers before each query.
"""

from __future__ import annotations

import enum
import sqlite3
from contextlib import closing
from functools import cache
from pathlib import Path

#: The format of the history's tables this segcast reads and writes, kept in ``PRAGMA user_version``.
HISTORY_FORMAT = 1
#: ``PRAGMA application_id`` of a segcast history: "SGCT".
SEGCAST_APPLICATION_ID = int.from_bytes(b"SGCT", "big")
#: The table every format so far has kept events in.
EVENTS_TABLE = "events"
#: What to do about a file segcast refuses and did not write.
ANOTHER_FILE = "set events.history.path to another file (a new one is made there)"
#: Why a file that does not begin as SQLite's do is no history, in the words every log line about one uses.
NOT_SQLITE = f"it is not a SQLite file, so no segcast event history: {ANOTHER_FILE}"
#: How every SQLite database file begins (its header's first 16 bytes).
SQLITE_HEADER = b"SQLite format 3\x00"


def is_sqlite_file(path: Path) -> bool:
    """Whether the file at ``path`` begins as a SQLite database does: one that does not is no damaged
    history to recover but some other file, which recovering would overwrite."""
    try:
        with path.open("rb") as file:
            return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return True  # cannot be told: SQLite's own reason stands


class HistoryFile(enum.Enum):
    """A file the history may use, as it found it."""

    EMPTY = "empty"  # no tables: new, or made a moment ago; the writer makes the schema
    UNSTAMPED = "unstamped"  # segcast's table, from before formats were stamped: adopted by stamping it
    CURRENT = "current"  # segcast's, of `HISTORY_FORMAT`


class RefusedHistoryFile(sqlite3.DatabaseError):
    """A file the history neither writes to nor reads: a newer format, or not segcast's.

    A `sqlite3.DatabaseError`, so the API answers a read of it as it answers any file that cannot be
    read (503, naming why); its message names the file, what was found and what to do.
    """


def check_history_file(db: sqlite3.Connection, path: Path, schema: str) -> HistoryFile:
    """What ``db`` (the file at ``path``) is to a history whose tables ``schema`` makes; reads only.

    Raises `RefusedHistoryFile` for a file of a newer format or not segcast's, and sqlite3.Error
    where the file cannot be read.
    """
    (application_id,) = db.execute("PRAGMA application_id").fetchone()
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if application_id == SEGCAST_APPLICATION_ID and version > HISTORY_FORMAT:
        raise RefusedHistoryFile(
            f"{path} holds event history format {version}, written by a newer segcast; this segcast writes format "
            f"{HISTORY_FORMAT} and leaves the file alone: upgrade segcast, or {ANOTHER_FILE}"
        )
    if (application_id, version) == (SEGCAST_APPLICATION_ID, HISTORY_FORMAT):
        found = HistoryFile.CURRENT
    elif (application_id, version) == (0, 0):
        found = HistoryFile.UNSTAMPED
    else:
        raise _not_segcasts(
            path, f"it is another program's SQLite file (application_id {application_id}, user_version {version})"
        )
    tables = [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    if not tables and found is HistoryFile.UNSTAMPED:
        return HistoryFile.EMPTY
    if EVENTS_TABLE not in tables:
        raise _not_segcasts(path, f"it has no {EVENTS_TABLE} table (its tables: {', '.join(tables) or 'none'})")
    columns, expected = _columns(db), _schema_columns(schema)
    if columns != expected:
        raise _not_segcasts(
            path, f"its {EVENTS_TABLE} table has columns ({_listed(columns)}), not segcast's ({_listed(expected)})"
        )
    return found


def adoption(path: Path) -> str:
    """What the history says, at INFO, before it brings an older segcast's file at ``path`` up to format
    (`HistoryFile.UNSTAMPED`): that builds its indexes over every event it holds, seconds on a file of a
    gigabyte, and a start that pauses with nothing said looks hung."""
    return f"bringing {path} up to format {HISTORY_FORMAT} (building its indexes: a while on a big file)"


def stamp_script(schema: str) -> str:
    """The script that makes ``schema``'s tables, those an unstamped file lacks included, and stamps the file
    as `HISTORY_FORMAT`, in one transaction: a reader sees no tables, or the whole of a stamped file."""
    return (
        f"BEGIN IMMEDIATE;\n{schema}\nPRAGMA application_id = {SEGCAST_APPLICATION_ID};\n"
        f"PRAGMA user_version = {HISTORY_FORMAT};\nCOMMIT;"
    )


def _not_segcasts(path: Path, found: str) -> RefusedHistoryFile:
    return RefusedHistoryFile(
        f"{path} is not a segcast event history: {found}; segcast writes nothing to it: {ANOTHER_FILE}"
    )


def _columns(db: sqlite3.Connection) -> tuple[tuple[object, ...], ...]:
    """The events table's columns: name, declared type, NOT NULL, default and place in the primary key."""
    return tuple(tuple(row[1:]) for row in db.execute(f"PRAGMA table_info({EVENTS_TABLE})"))


def _listed(columns: tuple[tuple[object, ...], ...]) -> str:
    """Columns by name and declared type, as a person compares them."""
    return ", ".join(f"{name} {declared}".strip() for name, declared, *_ in columns)


@cache
def _schema_columns(schema: str) -> tuple[tuple[object, ...], ...]:
    """The columns ``schema`` gives the events table, as `_columns` reads them: made in memory, so the
    schema is written down once."""
    with closing(sqlite3.connect(":memory:")) as db:
        db.executescript(schema)
        return _columns(db)

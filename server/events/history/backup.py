"""``segcast history backup``: a consistent copy of a live event history, for a backup to keep; and the
``segcast history`` command line, whose ``restore`` puts one back (`server.events.history.restore`) and whose
``export`` writes its events out as CSV or JSON lines (`server.events.history.export`), reading as a backup does.

The history is in WAL mode: its newest events are in the ``-wal`` file beside it until a checkpoint
moves them into the file, which goes on while segcast writes. A copy of the file alone (``cp``, a
backup tool's) misses them, or finds pages half written: "database disk image is malformed", and a
history restored from it answers 503 for good. SQLite's backup API copies the file as it stands at one
moment, the log's pages included, under one read transaction: segcast's writer goes on meanwhile (in
WAL mode a reader and the writer never wait for each other) and the copy holds exactly the events
stored up to that moment.

The source is opened read-only, so a backup user needs only read permission (docs/backups.md: the
``-wal`` and ``-shm`` files included, which SQLite makes with segcast's group). The copy is made beside
OUT under another name, readable by its owner alone from the moment it exists (it holds camera
snapshots), checked (``PRAGMA quick_check``) and only then moved to OUT, so OUT is never a copy half
made. Everything is read and written in this thread; importing this module costs neither PyTorch nor
OpenCV, so the command answers at once.
"""

from __future__ import annotations

import argparse
import io
import os
import sqlite3
import sys
import tomllib
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from server.events.config import DEFAULT_HISTORY_FILE, events_settings
from server.events.history.format import EVENTS_TABLE, SEGCAST_APPLICATION_ID, is_sqlite_file
from server.events.history.lock import lock_path

EXIT_STARTUP_ERROR = 2
#: How long the backup waits for a lock on the history before it gives up, saying so. A WAL reader
#: waits only while another program holds the file exclusively (a ``sqlite3`` shell in exclusive
#: locking mode) or while SQLite rebuilds the ``-shm`` index after a crash: moments, not minutes.
LOCK_TIMEOUT_S = 10.0
#: The permissions of the copy: its owner's alone, as segcast's own history file (camera snapshots).
FILE_MODE = 0o600
#: Files SQLite keeps beside a database that it would apply to a new file at OUT: a copy moved there
#: would be read through another database's log, and damaged.
SIDECARS = ("-wal", "-journal")


class BackupError(Exception):
    """Why a backup, a restore or an export was not made: one line, naming the file and what to do."""


@dataclass(frozen=True, slots=True)
class BackupResult:
    source: Path
    out: Path
    events: int
    #: The id of the newest event copied; None for a history with none.
    newest_id: int | None


def add_arguments(commands: argparse._SubParsersAction) -> None:
    """Add ``history backup``, ``history restore`` and ``history export`` to the ``segcast`` command line."""
    from server.events.history import export  # here, not above: it builds on this module

    history = commands.add_parser(
        "history",
        help="back up the event history (safe while segcast runs), restore it, or export its events as CSV",
        description="Work with the event history of [events.history]: backup copies it consistently, while "
        "segcast runs; restore puts a backup back, with segcast stopped; export writes its events as CSV or "
        "JSON lines, while segcast runs.",
    )
    actions = history.add_subparsers(dest="history_command", required=True)
    backup = actions.add_parser(
        "backup",
        help="copy the history to OUT, consistently, while segcast runs",
        description="Copy the event history to OUT with SQLite's backup API: a consistent copy even while "
        "segcast writes (a cp of the file is not: its newest events are in the -wal file). OUT is made "
        "readable by its owner alone (it holds camera snapshots) and checked before it is written. "
        "docs/backups.md has what else to back up and how to restore.",
    )
    backup.add_argument("out", type=Path, metavar="OUT", help="the file to write the copy to")
    add_history_options(backup)
    backup.add_argument("--force", action="store_true", help="replace OUT if it exists")
    restore = actions.add_parser(
        "restore",
        help="replace the history with BACKUP, with segcast stopped",
        description="Replace the event history with BACKUP (segcast history backup's OUT): checked first, copied "
        "with SQLite's backup API, given the owner and mode of the file it replaces (0600 where there is none), "
        "and put in place with the -wal, -shm and -journal files beside the history removed (SQLite would read "
        "the backup through another database's log). Refused while segcast runs on that history. "
        "docs/backups.md has the steps around it.",
    )
    restore.add_argument("backup", type=Path, metavar="BACKUP", help="the backup to restore")
    add_history_options(restore)
    restore.add_argument("--force", action="store_true", help="replace the history there (its events are lost)")
    export.add_arguments(actions)
    actions.metavar = "{" + ",".join(actions.choices) + "}"  # named in the "required" error, not history_command


def add_history_options(command: argparse.ArgumentParser) -> None:
    """Which history ``command`` works on: the config file's, or a file named."""
    source = command.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help=f"segcast's config file: the history is its [events.history] path (default {DEFAULT_HISTORY_FILE} "
        "beside the file)",
    )
    source.add_argument("--history", type=Path, default=None, metavar="PATH", help="the history's database file")


def run(args: argparse.Namespace) -> int:
    """Run ``history backup``, ``restore`` or ``export``: one line on stdout (export's on stderr, as its OUT may be
    stdout), or one on stderr and exit status 2."""
    try:
        history = history_path(args.config) if args.config is not None else args.history
        said = _COMMANDS[args.history_command](args, history)
    except BackupError as exc:
        print(f"segcast: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    print(f"segcast: {said}", file=sys.stderr if args.history_command == "export" else sys.stdout)
    return 0


def _backup(args: argparse.Namespace, history: Path) -> str:
    result = backup_history(history, args.out, force=args.force)
    events = f"{result.events} event{'' if result.events == 1 else 's'}"
    newest = "" if result.newest_id is None else f" (newest id {result.newest_id})"
    return f"copied {events}{newest} from {result.source} to {result.out}"


def _restore(args: argparse.Namespace, history: Path) -> str:
    from server.events.history import restore  # here, not above: it builds on this module's backup_history

    return restore.restore_history(args.backup, history, force=args.force).said()


def _export(args: argparse.Namespace, history: Path) -> str:
    from server.events.history import export  # here, not above: it builds on this module

    return export.run(args, history)


#: What each ``segcast history`` command runs, given its arguments and the history's path; it says what it did.
_COMMANDS = {"backup": _backup, "restore": _restore, "export": _export}


def history_path(config: Path) -> Path:
    """The history file of the config file ``config``: its ``[events.history] path``, relative to the
    file's folder, as `server.config.load_config` reads it; read without the rest of the settings, whose
    stream options import PyTorch."""
    name = config.name
    try:
        raw = config.read_bytes()
        # As `load_config` reads it: line ends made "\n", a BOM (Notepad's) taken off.
        data = tomllib.loads(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig").read())
    except OSError as exc:
        raise BackupError(f"--config {config}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BackupError(f"{name}: not valid TOML (not UTF-8 text): save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise BackupError(f"{name}: not valid TOML ({exc})") from None
    try:
        history = events_settings(data.get("events", {}), config.parent).history
    except ValueError as exc:
        raise BackupError(f"{name}: {exc}") from None
    if history is None:
        raise BackupError(f"{name} has no [events.history] table: segcast keeps no history with it")
    return history.path


def backup_history(
    source: Path, out: Path, *, force: bool = False, lock_timeout_s: float = LOCK_TIMEOUT_S
) -> BackupResult:
    """Copy the history at ``source`` to ``out`` (mode `FILE_MODE`), consistently while it is written.

    Refuses an ``out`` that exists unless ``force``, and one that is ``source`` itself or has a
    database's log beside it (`SIDECARS`). Waits at most ``lock_timeout_s`` for a lock on the source.
    Raises `BackupError`; ``out`` is then as it was.
    """
    _check_paths(source, out, force)
    # A short name of its own: OUT's name with more to it could pass the file system's limit where OUT's does not.
    temporary = out.with_name(f".segcast-backup.{os.getpid()}.partial")
    try:
        with closing(open_read_only(source, lock_timeout_s)) as src:
            begin_reading(src, source, lock_timeout_s)
            _new_private_file(temporary)
            with closing(sqlite3.connect(temporary, isolation_level=None)) as copy:
                try:
                    src.backup(copy)
                except sqlite3.Error as exc:
                    why = why_unreadable(exc, source, lock_timeout_s)
                    raise BackupError(f"cannot copy {source} to {out}: {why}") from None
                events, newest_id = _check_copy(copy, source)
        if out.exists() and not force:  # made meanwhile
            raise BackupError(f"{out} is there already: give --force to replace it, or another OUT")
        os.replace(temporary, out)
        sync_folder(out.parent)
    except OSError as exc:
        raise BackupError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        for leftover in (temporary, *(temporary.with_name(temporary.name + s) for s in ("-wal", "-shm", "-journal"))):
            with suppress(OSError):  # a folder that took no file has none to remove, whatever it answers
                leftover.unlink(missing_ok=True)
    return BackupResult(source, out, events, newest_id)


def _check_paths(source: Path, out: Path, force: bool) -> None:
    check_source(source)
    check_out(source, out, force)
    for suffix in SIDECARS:
        if (beside := out.with_name(out.name + suffix)).exists():
            raise BackupError(
                f"{beside} is there: a database in use or cut off left it, and SQLite would read the copy through "
                "it: give another OUT"
            )


def check_source(source: Path) -> None:
    """Refuse (`BackupError`) a ``source`` that is no file, or no SQLite file: a history to read is one."""
    if not source.exists():
        raise BackupError(f"{source}: no such file (segcast makes the history when it starts with [events.history])")
    if source.is_dir():
        raise BackupError(f"{source} is a folder: name the history's file ({DEFAULT_HISTORY_FILE} unless set)")
    if not is_sqlite_file(source):
        raise BackupError(f"{source} is not a segcast event history: it is not a SQLite file")


def check_out(source: Path, out: Path, force: bool) -> None:
    """Refuse (`BackupError`) an ``out`` that cannot be written, is the history ``source`` itself, or is there
    already without ``force``: asked before writing (an export asks again before it moves its finished file there)."""
    if out.is_dir():
        raise BackupError(f"{out} is a folder: name the file to write, e.g. {out / source.name}")
    if not out.parent.is_dir():
        raise BackupError(f"{out}: its folder {out.parent} does not exist")
    if out.exists() and os.path.samefile(source, out):
        raise BackupError(f"{out} is the history itself: give another OUT")
    if out.resolve() in _files_beside(source):
        raise BackupError(f"{out} is a file the history keeps beside it (its log or lock): give another OUT")
    if out.exists() and not force:
        raise BackupError(f"{out} is there already: give --force to replace it, or another OUT")


def _files_beside(source: Path) -> set[Path]:
    """The files SQLite and segcast keep beside the history ``source`` while they use it: replaced by a copy,
    the live history would be damaged (a log) or another segcast let in (the lock)."""
    history = source.resolve()
    return {history.with_name(history.name + suffix) for suffix in (*SIDECARS, "-shm")} | {lock_path(source)}


def open_read_only(source: Path, lock_timeout_s: float) -> sqlite3.Connection:
    """A read-only connection to ``source``, outside any transaction, waiting at most ``lock_timeout_s`` for a lock:
    the writer's lock (`server.events.history.lock`) is never taken, so segcast goes on writing."""
    try:
        uri = f"{source.absolute().as_uri()}?mode=ro"
        return sqlite3.connect(uri, uri=True, timeout=lock_timeout_s, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {source}: {why_unreadable(exc, source, lock_timeout_s)}") from None


def begin_reading(src: sqlite3.Connection, source: Path, lock_timeout_s: float) -> None:
    """Begin the read transaction the copy (or the export) is made in, and check the file is a history: what
    is read in it until the connection closes is the history as it was at this moment.

    Its first read takes the lock, waiting at most the connection's timeout: the backup API itself
    would retry a busy source for ever.
    """
    try:
        src.execute("BEGIN")
        (application_id,) = src.execute("PRAGMA application_id").fetchone()
        tables = [name for (name,) in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read {source}: {why_unreadable(exc, source, lock_timeout_s)}") from None
    if application_id not in (SEGCAST_APPLICATION_ID, 0):
        raise BackupError(
            f"{source} is not a segcast event history: it is another program's SQLite file "
            f"(application_id {application_id})"
        )
    if EVENTS_TABLE not in tables:
        raise BackupError(f"{source} is not a segcast event history: it has no {EVENTS_TABLE} table")


def _check_copy(copy: sqlite3.Connection, source: Path) -> tuple[int, int | None]:
    """The events the copy holds and its newest id, once SQLite's quick check finds it whole."""
    try:
        problems = [row for (row,) in copy.execute("PRAGMA quick_check")]
        if problems == ["ok"]:
            events, newest_id = copy.execute(f"SELECT count(*), max(id) FROM {EVENTS_TABLE}").fetchone()
            return events, newest_id
        found = "; ".join(problems[:3])
    except sqlite3.DatabaseError as exc:
        found = str(exc)
    raise BackupError(f"the copy of {source} is damaged ({found}), so the file is: nothing written; {recovery(source)}")


def recovery(source: Path) -> str:
    """What to do about a damaged history at ``source``: what SQLite can still read of it is recovered by hand."""
    return f"stop segcast and recover it (sqlite3 {source.name} .recover | sqlite3 recovered.db)"


def why_unreadable(exc: sqlite3.Error, source: Path, lock_timeout_s: float) -> str:
    """SQLite's reason, with why where it does not say: a lock held past the timeout, or files beside the
    history this user may not read (SQLite makes ``-wal`` and ``-shm`` with segcast's group, not the file's)."""
    if getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
        return (
            f"{exc}: another program held it past {lock_timeout_s:g} s (a sqlite3 shell in exclusive "
            "locking mode, or segcast rebuilding its index after a crash): try again"
        )
    unreadable = [f for f in (source, *(source.with_name(source.name + s) for s in ("-wal", "-shm"))) if _unreadable(f)]
    if not unreadable:
        return str(exc)
    names = ", ".join(f.name for f in unreadable)
    return (
        f"{exc}: this user may not read {names}; SQLite makes -wal and -shm with segcast's group, not the "
        "file's: make the folder setgid to the backup's group (chgrp GROUP DIR; chmod 2750 DIR) and restart "
        "segcast (docs/backups.md)"
    )


def _unreadable(path: Path) -> bool:
    return path.exists() and not os.access(path, os.R_OK)


def _new_private_file(path: Path) -> None:
    """An empty file at ``path`` (SQLite takes it as an empty database) that only its owner may read,
    whatever the umask; the files SQLite makes beside it take its permissions."""
    path.unlink(missing_ok=True)  # one an earlier backup of this process id left, killed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def sync_folder(folder: Path) -> None:
    """Make a rename into ``folder`` last through a power cut (SQLite synced the file's own pages)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""``segcast history restore``: put a backup back as the event history, with segcast stopped.

By hand, each step missed left a history that looked restored and was not. A ``-wal`` left beside the
history it replaces (a segcast killed, or stopped by a crash) is another database's log, which SQLite
applies to the restored file on its next open: "database disk image is malformed" from every prune and
every query that meets those pages. A copy owned by root with mode 0600 is a file segcast cannot write.

So the restore checks BACKUP is a history this segcast can use (`_check_format`, then `backup_history`'s
checks: a SQLite file of segcast's with an events table, whole by ``PRAGMA quick_check``), holds the
history's lock (`server.events.history.lock`) throughout, which also refuses it while a segcast runs on
that history, copies BACKUP beside the history with SQLite's backup API, gives the copy the owner, group
and mode of the file it replaces (where there is none, the folder's owner and group and mode 0600: it
holds camera snapshots), removes the ``-wal``, ``-shm`` and ``-journal`` files beside the history and
renames the copy over it. Until that rename the history is as it was; after it, it is the whole backup.
"""

from __future__ import annotations

import grp
import os
import pwd
import sqlite3
import stat
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from server.events.history.backup import BackupError, backup_history, sync_folder
from server.events.history.format import HISTORY_FORMAT, SEGCAST_APPLICATION_ID, is_sqlite_file
from server.events.history.lock import HistoryLocked, LockFileRefused, lock_path, release_lock, take_lock

#: Files SQLite keeps beside a database, which it would apply to the restored file or read it through.
SIDECARS = ("-wal", "-shm", "-journal")
#: The permissions of a restored history where none was there: its owner's alone, as segcast makes it.
NEW_FILE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class RestoreResult:
    backup: Path
    history: Path
    events: int
    #: The id of the newest event restored; None for a history with none.
    newest_id: int | None
    #: The restored file's owner and group (uid, gid) and permissions.
    owner: tuple[int, int]
    mode: int
    #: The files that were beside the history (`SIDECARS`) and are removed.
    removed: tuple[Path, ...]

    def said(self) -> str:
        """The one line the command prints: what was restored, whose it is, and what was removed."""
        events = f"{self.events} event{'' if self.events == 1 else 's'}"
        newest = "" if self.newest_id is None else f" (newest id {self.newest_id})"
        line = (
            f"restored {events}{newest} from {self.backup} to {self.history}, owner {_user(self.owner)}, "
            f"mode {self.mode:04o}"
        )
        if self.removed:
            line += f"; removed {', '.join(path.name for path in self.removed)} that were beside it"
        return line


def restore_history(backup: Path, history: Path, *, force: bool = False) -> RestoreResult:
    """Replace the history at ``history`` with the backup at ``backup`` (see the module's docstring).

    Refuses a ``history`` that exists unless ``force``, one a segcast runs on (its lock held), and one
    this user could not give back to its owner. Raises `BackupError`; ``history`` is then as it was.

    A ``history`` that is a symbolic link is restored where it leads, as segcast writes through it: the
    copy, the files SQLite keeps beside it and the rename are the real file's, and the link stays.
    """
    history = history.resolve()
    _check_target(backup, history, force)
    owner, mode = _ownership(history)
    _check_format(backup)
    try:
        lock = take_lock(history)
    except HistoryLocked as exc:
        raise BackupError(
            f"segcast runs on {history} ({exc.lock} is held by another process): stop it, then restore"
        ) from None
    except LockFileRefused as exc:
        raise BackupError(str(exc)) from None
    except OSError as exc:
        raise BackupError(f"cannot take {lock_path(history)}: {exc.strerror or exc}") from None
    copy = history.with_name(f".{history.name}.{os.getpid()}.restoring")
    try:
        if os.fstat(lock).st_uid != owner[0]:  # made by this restore, as root: a restore killed leaves it to segcast
            os.fchown(lock, *owner)
        copied = backup_history(backup, copy, force=True)
        _give(copy, owner, mode)
        removed = tuple(path for path in _sidecars(history) if path.exists())
        for path in removed:
            path.unlink()
        os.replace(copy, history)
        sync_folder(history.parent)
    except OSError as exc:
        raise BackupError(f"cannot restore {history}: {exc.strerror or exc}") from None
    finally:
        copy.unlink(missing_ok=True)
        release_lock(lock, history)
    return RestoreResult(backup, history, copied.events, copied.newest_id, owner, mode, removed)


def _check_target(backup: Path, history: Path, force: bool) -> None:
    if history.is_dir():
        raise BackupError(f"{history} is a folder: name the history's file")
    if not history.parent.is_dir():
        raise BackupError(f"{history}: its folder {history.parent} does not exist")
    if not history.exists():
        return
    if backup.exists() and os.path.samefile(backup, history):
        raise BackupError(f"{backup} is the history itself: name the backup to restore")
    if not force:
        raise BackupError(f"{history} is there already: give --force to replace it")


def _ownership(history: Path) -> tuple[tuple[int, int], int]:
    """Whose the restored file is to be, and its mode: the replaced file's, or, where there is none, its
    folder's owner and group (segcast's, where docs/service.md set it up) and `NEW_FILE_MODE`. Refuses
    (`BackupError`) an owner this user could not give it: root may give any."""
    where = history if history.exists() else history.parent
    status = where.stat()
    owner = (status.st_uid, status.st_gid)
    if os.geteuid() not in (0, owner[0]):
        raise BackupError(
            f"{where} is {_user(owner)}'s: restore as root (sudo) or as that user, so that the restored history is "
            "theirs as well"
        )
    return owner, stat.S_IMODE(status.st_mode) if where == history else NEW_FILE_MODE


def _check_format(backup: Path) -> None:
    """Refuse a backup of a newer format than this segcast's: it would leave the file alone and store nothing.
    What else makes a file no history (not SQLite, another program's, no events table, damaged) the copy
    finds (`backup_history`), naming it."""
    if not is_sqlite_file(backup):
        return
    try:
        with closing(sqlite3.connect(f"{backup.absolute().as_uri()}?mode=ro", uri=True)) as db:
            (application_id,) = db.execute("PRAGMA application_id").fetchone()
            (version,) = db.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error:
        return  # the copy says why
    if application_id == SEGCAST_APPLICATION_ID and version > HISTORY_FORMAT:
        raise BackupError(
            f"{backup} holds event history format {version}, written by a newer segcast; this segcast reads format "
            f"{HISTORY_FORMAT}: restore it with that segcast or a newer one"
        )


def _give(path: Path, owner: tuple[int, int], mode: int) -> None:
    """Give ``path`` ``owner`` and ``mode``, before it is put in place: segcast cannot write another user's
    0600 file."""
    status = path.stat()
    try:
        if (status.st_uid, status.st_gid) != owner:
            os.chown(path, *owner)
    except PermissionError:
        raise BackupError(
            f"cannot give the restored history the owner and group {_user(owner)}, whose the history is: restore as "
            "root (sudo)"
        ) from None
    path.chmod(mode)


def _sidecars(history: Path) -> list[Path]:
    return [history.with_name(history.name + suffix) for suffix in SIDECARS]


def _user(owner: tuple[int, int]) -> str:
    """``owner`` (uid, gid) as ``user:group``, by name where the system knows it."""
    uid, gid = owner
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    try:
        group = grp.getgrgid(gid).gr_name
    except KeyError:
        group = str(gid)
    return f"{user}:{group}"

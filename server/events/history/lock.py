"""Which process may write an event history: an exclusive advisory lock on a file beside it.

Two segcasts started on one state (the same config, another ``--port``) both stored their events in
one history: two sets of track ids mixed under one stream, every zone and line event twice, and
nothing said. The history's writer holds the lock for as long as it runs
(`server.events.history.writer`), and ``segcast history restore`` while it replaces the file; a
second process finds it held and writes nothing. ``segcast history backup`` takes no lock: it only
reads, as the API does, while segcast writes.

The lock is ``flock`` on ``<history>.lock``: the kernel releases it when the descriptor is closed or
the process ends, killed or not, so no stale lock outlives a crash (a killed process leaves the empty
file, which the next one takes; where that is another user's file, which it may not open, as root's is
to segcast's own user, it names the file, its owner and its removal: `LockFileRefused`). A file of its
own, not the history: a restore replaces the history's file (a lock on it would go with the old one),
and NFS emulates ``flock`` with the record locks SQLite takes on the history itself. Its holder
removes it before it lets go (`release_lock`), so a folder keeps no lock file of a segcast that
stopped; a process that took the lock of a file removed meanwhile takes the new one instead
(`take_lock`), so two never both hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
from pathlib import Path

#: What the lock file's name adds to the history's.
LOCK_SUFFIX = ".lock"
#: The lock file's permissions: it holds nothing, and no other user is to take it and stop segcast's writes.
FILE_MODE = 0o600


class HistoryLocked(Exception):
    """Another process holds the history's lock: a segcast writing it, or a restore replacing it."""

    def __init__(self, lock: Path) -> None:
        super().__init__(f"another process holds {lock}")
        self.lock = lock


class LockFileRefused(PermissionError):
    """The lock file is there and this process may not open it: another user's, left by a segcast that user ran
    (root, killed). No lock outlives its process, so it holds nothing once that segcast has ended; whether one
    still runs cannot be told (``flock`` needs the file open), so it is named rather than removed."""

    def __init__(self, lock: Path, owner: int) -> None:
        super().__init__(
            f"cannot take the history's lock: {lock} belongs to {_user(owner)}, and this process, run as "
            f"{_user(os.geteuid())}, may not open it; a segcast run as {_user(owner)} left it, and unless that "
            f"segcast still runs on this history the file holds nothing: remove it (rm {lock})"
        )
        self.lock = lock


def lock_path(history: Path) -> Path:
    """The lock file of the history at ``history``: beside the file a symbolic link points to, so two
    configs naming one file through different links share it."""
    resolved = history.resolve()
    return resolved.with_name(resolved.name + LOCK_SUFFIX)


def take_lock(history: Path) -> int:
    """Take the lock of ``history`` (`lock_path`), making its file (`FILE_MODE`) where there is none:
    a descriptor that holds it until it is closed. Never waits.

    Raises `HistoryLocked` where another process (or another descriptor in this one) holds it,
    `LockFileRefused` where the lock file is there and may not be opened, and OSError where it cannot be
    made or opened otherwise.
    """
    lock = lock_path(history)
    while True:
        try:
            # Read-only is enough for flock, and opens a lock file left on a file system since mounted read-only.
            descriptor = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except PermissionError:
            owner = _owner(lock)
            if owner is None:  # not there: its folder is what may not be written
                raise
            raise LockFileRefused(lock, owner) from None
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if _still_there(descriptor, lock):
                return descriptor
        except BlockingIOError:
            os.close(descriptor)
            raise HistoryLocked(lock) from None
        except BaseException:
            os.close(descriptor)
            raise
        os.close(descriptor)  # its holder removed it as it let go: take the file there now


def release_lock(descriptor: int, history: Path) -> None:
    """Let go of the lock `take_lock` took: its file removed first, while it is held, then the descriptor
    closed. A file that cannot be removed (a read-only file system) is left: the next holder takes it."""
    with contextlib.suppress(OSError):
        lock_path(history).unlink()
    os.close(descriptor)


def _still_there(descriptor: int, lock: Path) -> bool:
    """Whether the file ``descriptor`` has open is the one at ``lock`` still."""
    held = os.fstat(descriptor)
    try:
        there = lock.stat()
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)


def _owner(path: Path) -> int | None:
    """The uid of the file at ``path``; None where it is not there, or cannot be looked at."""
    try:
        return path.stat().st_uid
    except OSError:
        return None


def _user(uid: int) -> str:
    """``uid`` as a person reads it: ``root (uid 0)``, or ``uid 10001`` where the system has no name for it."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"

"""Which process may write an event history: an exclusive advisory lock on a file beside it.

Two segcasts started on one state (the same config, another ``--port``) both stored their events in
one history: two sets of track ids mixed under one stream, every zone and line event twice, and
nothing said. The history's writer holds the lock for as long as it runs
(`server.events.history.writer`), and ``segcast history restore`` while it replaces the file; a
second process finds it held and writes nothing. ``segcast history backup`` takes no lock: it only
reads, as the API does, while segcast writes.

The lock is ``flock`` on ``<history>.lock``: the kernel releases it when the descriptor is closed or
the process ends, killed or not, so no stale lock outlives a crash (a killed process leaves the empty
file, which the next one takes). A file of its own, not the history: a restore replaces the history's
file (a lock on it would go with the old one), and NFS emulates ``flock`` with the record locks SQLite
takes on the history itself. Its holder removes it before it lets go (`release_lock`), so a folder
keeps no lock file of a segcast that stopped; a process that took the lock of a file removed meanwhile
takes the new one instead (`take_lock`), so two never both hold it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
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


def lock_path(history: Path) -> Path:
    """The lock file of the history at ``history``: beside the file a symbolic link points to, so two
    configs naming one file through different links share it."""
    resolved = history.resolve()
    return resolved.with_name(resolved.name + LOCK_SUFFIX)


def take_lock(history: Path) -> int:
    """Take the lock of ``history`` (`lock_path`), making its file (`FILE_MODE`) where there is none:
    a descriptor that holds it until it is closed. Never waits.

    Raises `HistoryLocked` where another process (or another descriptor in this one) holds it, and
    OSError where the lock file cannot be opened or made.
    """
    lock = lock_path(history)
    while True:
        # Read-only is enough for flock, and opens a lock file left on a file system since mounted read-only.
        descriptor = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
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

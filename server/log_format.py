"""How segcast's log lines look: with their time in a terminal or a file, with their priority in systemd's journal.

The journal times every line itself and takes a line's priority from a ``<N>`` at its start (the
syslog levels of sd-daemon(3)); a line without one gets the unit's default, info. Lines with their own
time and no priority made each line show two times, and ``journalctl -p warning`` show none of
segcast's warnings. systemd says a service's stderr is the journal by ``JOURNAL_STREAM=DEVICE:INODE``
(systemd.exec(5)): only where that is stderr's own device and inode, since a program the service
started with its stderr sent elsewhere inherits the variable too.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The journal adds the time (and the unit, and the process id) itself.
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
JOURNAL_STREAM_ENV = "JOURNAL_STREAM"
#: syslog's priority for a record at or above each level, highest first; below INFO: 7 (debug).
SYSLOG_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))
SYSLOG_DEBUG = 7
STDERR_FD = 2


class JournalFormatter(logging.Formatter):
    """`JOURNAL_FORMAT` with the record's syslog priority before each of its lines: the journal makes an
    entry of each line, so a traceback's lines without it would be entries at info."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


def syslog_priority(levelno: int) -> int:
    return next((priority for level, priority in SYSLOG_PRIORITIES if levelno >= level), SYSLOG_DEBUG)


def stderr_is_journal(environ: Mapping[str, str] = os.environ, fd: int = STDERR_FD) -> bool:
    """Whether ``fd`` is the journal stream ``environ``'s `JOURNAL_STREAM_ENV` names."""
    device, colon, inode = environ.get(JOURNAL_STREAM_ENV, "").partition(":")
    if not colon:
        return False
    try:
        named = (int(device), int(inode))
        stat = os.fstat(fd)
    except (ValueError, OSError):  # not numbers; no stderr at all
        return False
    return named == (stat.st_dev, stat.st_ino)


def log_formatter() -> logging.Formatter:
    """The formatter for segcast's stderr: `JournalFormatter` where it is the journal, else `PLAIN_FORMAT`."""
    return JournalFormatter() if stderr_is_journal() else logging.Formatter(PLAIN_FORMAT)

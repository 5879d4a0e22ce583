"""The process figures Prometheus' official client libraries export on Linux, under their names and
types, and the process's thread count (``process_threads``).

Dashboards and alerts written for any exporter (a leak in ``process_resident_memory_bytes``, a server
near ``process_max_fds``, a stuck loop spinning ``process_cpu_seconds_total``) then work on segcast
as they are. Read at scrape time from ``/proc``: one line of ``/proc/self/stat``, the entries of
``/proc/self/fd`` and, once, the boot time in ``/proc/stat`` - small reads that do not hold up the
event loop. Where there is no ``/proc`` (macOS) the figures it gives are left out rather than guessed.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

PROC = Path("/proc")

#: (name, type, help, value), as `server.http.metrics.render_metrics` writes a family of one sample.
ProcessFigure = tuple[str, str, str, float]

# Fields of /proc/<pid>/stat (proc(5), numbered from 1) counted from the first one after the
# command's closing parenthesis, which is field 3: the command itself may hold spaces and parentheses.
_FIRST_FIELD_AFTER_COMMAND = 3
_UTIME, _STIME, _NUM_THREADS, _STARTTIME, _VSIZE, _RSS = (
    n - _FIRST_FIELD_AFTER_COMMAND for n in (14, 15, 20, 22, 23, 24)
)


def process_figures(proc: Path = PROC) -> list[ProcessFigure]:
    """This process's figures, each one only where its source can be read (``proc``: where /proc is)."""
    figures = _stat_figures(proc)
    try:
        open_fds = len(os.listdir(proc / "self" / "fd"))
    except OSError:
        pass
    else:
        figures.append(("process_open_fds", "gauge", "Number of open file descriptors.", open_fds))
    max_fds = _max_fds()
    if max_fds is not None:
        figures.append(("process_max_fds", "gauge", "Maximum number of open file descriptors.", max_fds))
    return figures


def _stat_figures(proc: Path) -> list[ProcessFigure]:
    """Memory, CPU time, threads and start time, from the one line of ``/proc/self/stat``."""
    try:
        fields = (proc / "self" / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []
    ticks_per_s = os.sysconf("SC_CLK_TCK")
    rss_bytes = int(fields[_RSS]) * os.sysconf("SC_PAGE_SIZE")
    cpu_s = (int(fields[_UTIME]) + int(fields[_STIME])) / ticks_per_s
    figures: list[ProcessFigure] = [
        ("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", int(fields[_VSIZE])),
        ("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", rss_bytes),
    ]
    boot_time_s = _boot_time_s(proc)
    if boot_time_s is not None:
        start_s = boot_time_s + int(fields[_STARTTIME]) / ticks_per_s
        help_text = "Start time of the process since unix epoch in seconds."
        figures.append(("process_start_time_seconds", "gauge", help_text, start_s))
    figures.append(("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu_s))
    figures.append(("process_threads", "gauge", "Number of OS threads in the process.", int(fields[_NUM_THREADS])))
    return figures


@functools.cache
def _boot_time_s(proc: Path) -> int | None:
    """The ``btime`` line of ``/proc/stat``: when the machine booted, in seconds since the epoch.

    Read once: it does not change while the process runs, and /proc/stat grows with the CPU count.
    """
    try:
        lines = (proc / "stat").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("btime "):
            return int(line.split()[1])
    return None


def _max_fds() -> int | None:
    """The open-files limit in force (the soft one: what ``open()`` runs into); None where there is none."""
    if sys.platform == "win32":
        return None
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft

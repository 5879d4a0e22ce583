"""``segcast ARGS`` run by calling `server.cli.main` in the test's own process, for start-up refusals.

A refusal run as ``python -m server`` pays seconds importing PyTorch, ultralytics and aiohttp before
its one line; a family of refusals needs that proof once (exactly one line on stderr, the exit status,
nothing else printed, from a real process), and its other cases only need the line and the status,
which the same code gives here in a fraction of the time.

What a run here would otherwise leave behind for the tests after it is put back: loggers' levels,
filters and handlers (a start adds a filter to ultralytics' logger and quietens aioice), the
environment (the start switches ultralytics' telemetry off), signal handlers, and no current event
loop (aiohttp's ``run_app``, where the model loads, leaves its closed one as the current loop).
Logging is set up by the start's own ``logging.basicConfig``, as in a fresh process, so a log line
would be one more line on stderr here too. A thread still running after the refusal fails the run:
a process would not have exited, and here it would run on into other tests.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import pytest

import server.cli
import server.serve
from server.cli import main

#: How long the threads a refused start began (the event loop's executor) may take to end.
THREADS_END_S = 10.0


@dataclass(frozen=True)
class Exited:
    """What ``python -m server ARGS`` would have ended with: its exit status and what it printed."""

    code: int
    out: str
    err: str

    @property
    def one_error_line(self) -> str:
        """The one line on stderr; fails unless there is exactly one."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, f"not one line on stderr: {self.err!r}"
        return lines[0]


def run_cli(capfd: pytest.CaptureFixture[str], *argv: str) -> Exited:
    """``segcast *argv``, expected to stop during start-up; what it would have exited with and printed.

    ``capfd``, not ``capsys``: what a library writes to the file descriptors itself (ONNX Runtime's,
    gRPC's C++ logs) is printed too.
    """
    # Garbage of earlier tests collected first, and whatever asyncio logs of it (a future whose exception
    # nobody retrieved: an MQTT test's client) said before this run's output is taken, not in it.
    gc.collect()
    capfd.readouterr()  # only this run's output
    with _restored_process_state(), _never_serving():
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse's errors, as ``sys.exit(main())`` would pass them on
            code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capfd.readouterr()
    return Exited(code, out, err)


@contextmanager
def _never_serving() -> Iterator[None]:
    """A start that got through would serve until a signal, then end the whole test process with
    ``os._exit``: both become an `AssertionError` at once."""
    say = server.serve.say

    def refused_only(line: str) -> None:
        if line.startswith("segcast: listening"):
            raise AssertionError(f"the start was not refused: {line}")
        say(line)

    def no_exit(code: int) -> NoReturn:
        raise AssertionError(f"segcast would have exited the process with {code}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(server.serve, "say", refused_only)
        patch.setattr(server.cli, "_exit_now", no_exit)
        yield


@contextmanager
def _restored_process_state() -> Iterator[None]:
    root = logging.getLogger()
    loggers = [root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    saved = [(lg, lg.level, list(lg.filters), list(lg.handlers), lg.disabled) for lg in loggers]
    environ = dict(os.environ)
    signal_handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    threads_before = set(threading.enumerate())
    root_handlers = list(root.handlers)
    root.handlers.clear()  # so that the start's basicConfig logs to stderr, as it does in a process
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in root_handlers:  # basicConfig's, to a capture that is about to end
                handler.close()
        for logger, level, filters, old_handlers, disabled in saved:
            logger.setLevel(level)
            logger.filters[:] = filters
            logger.handlers[:] = old_handlers
            logger.disabled = disabled
        # A logger first made during the run (ultralytics', where the start first imported it) keeps what
        # its library's import set, but not the filters the start added: no library here adds one.
        for made in logging.root.manager.loggerDict.values():
            if isinstance(made, logging.Logger) and made not in loggers:
                made.filters.clear()
        os.environ.clear()
        os.environ.update(environ)
        for number, previous in signal_handlers.items():
            if previous is not None:  # None: not set from Python, nothing to put back
                signal.signal(number, previous)
        asyncio.set_event_loop(None)  # aiohttp's run_app leaves its closed loop as the current one
    _expect_no_new_threads(threads_before)


def _expect_no_new_threads(before: set[threading.Thread]) -> None:
    deadline = time.monotonic() + THREADS_END_S
    for thread in set(threading.enumerate()) - before:
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [thread.name for thread in set(threading.enumerate()) - before]
    assert not left, f"the refused start left threads running: {left}"

"""A running segcast stops cleanly on a signal, however many arrive while it stops.

The first Ctrl-C (or SIGTERM, or SIGHUP) begins the clean stop; a second only says that it is under
way, and a third ends the process at once, saying so. aiohttp's own handlers raised again from inside
the stop for a second one: status 1, no word, the pipeline's stop cut off where it was.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from typing import NoReturn

import pytest
from aiohttp import web

from server.cli import EXIT_INTERRUPTED, EXIT_STOP_OVERRAN
from server.serve import StopSignals, say
from tests.support.ports import free_port
from tests.support.raw_websocket import raw_websocket
from tests.support.segcast_process import demo_at_a_terminal, read_until


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "service-stop"])
def test_a_second_signal_while_stopping_says_so_and_the_stop_goes_on(stop: signal.Signals) -> None:
    port = free_port()
    # A viewer that never answers the close frame holds the stop for WS_CLOSE_TIMEOUT_S: without
    # viewers it can be over before a second signal arrives.
    with demo_at_a_terminal(port) as process, raw_websocket("127.0.0.1", port, {"streams": []}) as viewer:
        assert viewer.recv(1), "its hello: the server holds it among its viewers"
        process.send_signal(stop)
        read_until(process, "segcast: stopping")
        process.send_signal(stop)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    said = [line for line in rest.splitlines() if line.startswith("segcast: ")]
    assert said == [
        "segcast: already stopping (within 60 s); Ctrl-C or a signal once more stops it at once, without closing "
        "the streams or writing the last events",
        "segcast: stopped",
    ], rest


class Ended(SystemExit):
    """The process would have ended here, with ``code``: a `SystemExit`, which asyncio passes on from a
    callback, as ``os._exit`` would have ended it there."""


def end_process(code: int) -> NoReturn:
    raise Ended(code)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_the_first_signal_begins_the_stop_and_a_second_only_says_so(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    stops = StopSignals(loop, end_process)
    with pytest.raises(web.GracefulExit):  # what makes run_app stop the server
        stops.received()
    stops.received()
    assert capsys.readouterr().out.splitlines() == [
        "segcast: stopping",
        "segcast: already stopping (within 60 s); Ctrl-C or a signal once more stops it at once, without closing "
        "the streams or writing the last events",
    ]


def three_signals(loop: asyncio.AbstractEventLoop) -> int:
    """The exit status three stop signals end a server with: the first stops it, the second is told
    that it is stopping, the third ends the process."""
    stops = StopSignals(loop, end_process)
    with pytest.raises(web.GracefulExit):
        stops.received()
    stops.received()
    with pytest.raises(Ended) as ended:
        stops.received()
    code = ended.value.code
    assert isinstance(code, int)
    return code


def test_a_third_signal_ends_the_process_at_once_saying_so(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    assert three_signals(loop) == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().out.splitlines()[-1] == (
        "segcast: stopping at once, as asked again: the streams are not closed, the last events not written"
    )


def test_a_stop_that_overruns_its_limit_ends_the_process_saying_so(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    stops = StopSignals(loop, end_process, limit_s=0.0)
    with pytest.raises(web.GracefulExit):
        stops.received()
    with pytest.raises(Ended) as ended:
        loop.run_until_complete(loop.create_future())  # the stop, stuck: only the limit ends it
    assert ended.value.code == EXIT_STOP_OVERRAN
    assert capsys.readouterr().out.splitlines()[-1] == "segcast: the stop did not end within 0 s; stopping at once"


def test_a_segcast_started_with_nohup_outlives_its_terminal(loop: asyncio.AbstractEventLoop) -> None:
    """SIGHUP ignored when segcast started is left ignored; SIGINT and SIGTERM still stop it."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {signum: signal.getsignal(signum) for signum in handled}
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        StopSignals(loop, end_process).install()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert all(loop.remove_signal_handler(signum) for signum in (signal.SIGINT, signal.SIGTERM))
    finally:
        for signum, handler in before.items():
            if handler is not None:
                signal.signal(signum, handler)


class _GoneStdout:
    """A stdout whose reader has gone: a closed terminal (EIO), a ``| tee`` ended by the same Ctrl-C (EPIPE)."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_signals_stop_the_server_when_stdout_is_gone(
    loop: asyncio.AbstractEventLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each signal said so before it acted, and a write that failed left the stop undone: under
    ``segcast ... | tee log``, three Ctrl-C left it serving, and only SIGKILL ended it."""
    monkeypatch.setattr(sys, "stdout", _GoneStdout())
    assert three_signals(loop) == EXIT_INTERRUPTED


def test_a_segcast_started_with_stdout_closed_says_nothing_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """``segcast serve ... >&-`` leaves Python no stdout at all: 'loading model' raised AttributeError."""
    monkeypatch.setattr(sys, "stdout", None)
    say("segcast: loading model bundled")

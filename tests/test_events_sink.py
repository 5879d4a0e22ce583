"""What a sink's tally says in the log: every drop and every lost event in some line, at most a line a window."""

from __future__ import annotations

import logging
import re

import pytest

from server.events.sink import (
    BACKOFF_MAX_S,
    DROP_LOG_INTERVAL_S,
    RETRY_REASONS_MAX,
    OutEvent,
    SinkState,
    Tally,
    backoff_s,
)

log = logging.getLogger("tests.sink")
EVENT = OutEvent({"type": "track"}, "cam", 0.0)


class Clock:
    """Monotonic seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def told(caplog: pytest.LogCaptureFixture, pattern: str) -> list[int]:
    """The counts the lines matching ``pattern`` (with one number group) told, in order."""
    return [int(match[1]) for r in caplog.records if (match := re.search(pattern, r.getMessage()))]


def test_drops_within_a_quiet_window_are_told_by_the_first_delivery_after_it(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tally = Tally("out", log, clock)
    for _ in range(5):
        tally.drop(EVENT)
    tally.ok()  # the queue drains while the window lasts: told later, not now
    assert told(caplog, r"dropped (\d+) event") == [1]

    clock.now += DROP_LOG_INTERVAL_S
    tally.ok()
    tally.ok()
    assert told(caplog, r"dropped (\d+) event") == [1, 4]


def test_events_lost_again_to_the_same_error_are_told_once_a_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, log.name)
    clock = Clock()
    tally = Tally("out", log, clock)
    for _ in range(3):  # every batch lost, a second apart
        tally.fail("cannot write", lost=2)
        clock.now += 1
    assert [r.getMessage() for r in caplog.records] == ["out: cannot write"]

    clock.now += DROP_LOG_INTERVAL_S
    tally.fail("cannot write", lost=2)
    tally.fail("cannot write", lost=2)
    assert told(caplog, r"cannot write \(again: (\d+) more") == [6]

    tally.ok()  # what the window holds is told when it works again, window or not
    assert told(caplog, r"cannot write \(again: (\d+) more") == [6, 2]
    assert caplog.records[-1].getMessage() == "out: working" and tally.state is SinkState.OK
    assert tally.failed == 10


def test_losses_untold_when_it_works_again_are_a_warning_before_working(caplog: pytest.LogCaptureFixture) -> None:
    """Told as a fresh ERROR in the millisecond of "working", the losses of a failure read as a new one
    that had just begun: they are history by then, told once as it ends."""
    caplog.set_level(logging.INFO, log.name)
    tally = Tally("out", log, Clock())
    tally.fail("answered HTTP 500", lost=1)
    tally.fail("answered HTTP 500", lost=2)
    tally.ok()
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "out: answered HTTP 500"),
        (logging.WARNING, "out: answered HTTP 500 (again: 2 more event(s) lost since it was logged)"),
        (logging.INFO, "out: working"),
    ]


def test_the_last_attempts_error_is_what_fails_now_and_is_cleared_by_a_delivery() -> None:
    """``last_error`` keeps the error the failure was logged with (docs/protocol.md): while an output
    retried for another reason, nothing said what was failing now."""
    tally = Tally("out", log, Clock())
    tally.fail("answered HTTP 500; an event given up", lost=1)
    assert tally.health().last_attempt_error == "answered HTTP 500; an event given up"
    tally.retrying("timed out")
    health = tally.health()
    assert (health.last_error, health.last_attempt_error) == ("answered HTTP 500; an event given up", "timed out")
    tally.ok()
    health = tally.health()
    assert (health.last_error, health.last_attempt_error) == ("answered HTTP 500; an event given up", None)


def test_working_is_said_only_when_a_failure_ends(caplog: pytest.LogCaptureFixture) -> None:
    """The history's first open said "working", and so did each batch written after a retention step
    had failed (it made the state failing): only a failure that ends is news."""
    caplog.set_level(logging.INFO, log.name)
    tally = Tally("out", log, Clock())
    tally.ok(0)
    tally.ok()
    assert caplog.records == [] and tally.state is SinkState.OK
    tally.fail("cannot write", lost=1)
    tally.ok()
    tally.ok()
    assert [r.getMessage() for r in caplog.records] == ["out: cannot write", "out: working"]


def test_a_new_error_tells_what_the_last_one_cost_before_it(caplog: pytest.LogCaptureFixture) -> None:
    tally = Tally("out", log, Clock())
    tally.fail("locked", lost=1)
    tally.fail("locked", lost=1)
    tally.fail("read-only", lost=1)
    assert [r.getMessage() for r in caplog.records] == [
        "out: locked",
        "out: locked (again: 1 more event(s) lost since it was logged)",
        "out: read-only",
    ]


def test_shutdown_tells_what_the_windows_hold(caplog: pytest.LogCaptureFixture) -> None:
    tally = Tally("out", log, Clock())
    tally.drop(EVENT)
    tally.drop(EVENT)
    tally.fail("cannot write", lost=1)
    tally.fail("cannot write", lost=4)
    tally.lose_at_shutdown(0)
    assert told(caplog, r"dropped (\d+) event") == [1, 1]
    assert told(caplog, r"again: (\d+) more") == [4]


def test_a_retry_that_gets_through_is_no_news_though_the_output_is_down_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each event delivered after a retry said "working": two lines an event from a receiver failing now and then."""
    caplog.set_level(logging.INFO, log.name)
    tally = Tally("out", log, Clock())
    for _ in range(3):
        tally.retrying("answered HTTP 500")
        assert tally.state is SinkState.FAILING  # segcast_event_output_up 0, and no drain at shutdown
        tally.ok()
    assert caplog.records == [] and tally.state is SinkState.OK


def test_working_ends_a_failure_logged_as_an_error_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, log.name)
    tally = Tally("out", log, Clock())
    tally.fail("answered HTTP 500; an event given up after 3 attempts", lost=1)
    for _ in range(2):  # the next two events retried, then delivered
        tally.retrying("answered HTTP 500")
        tally.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "out: answered HTTP 500; an event given up after 3 attempts",
        "out: working",
    ]


def test_a_failure_first_met_in_a_retry_is_logged_when_it_loses_an_event(caplog: pytest.LogCaptureFixture) -> None:
    """A retry made the output failing with the reason as its error, unlogged: the same reason losing an
    event was then taken for more of a failure already logged, and only counted."""
    tally = Tally("out", log, Clock())
    tally.retrying("internal error")
    tally.fail("internal error", lost=1)
    assert [r.getMessage() for r in caplog.records] == ["out: internal error"]


def test_retries_for_one_reason_are_told_once_a_window_each_reason_its_own(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tally = Tally("out", log, clock)
    assert [tally.retrying("answered HTTP 500") for _ in range(4)] == [1, 0, 0, 0]
    assert tally.retrying("timed out") == 1  # another reason is news at once
    clock.now += DROP_LOG_INTERVAL_S
    assert tally.retrying("answered HTTP 500") == 4  # this one and the three counted in the window
    assert caplog.records == []  # the caller writes the retry's line


def test_retries_a_window_holds_are_told_by_the_first_delivery_after_it_and_at_shutdown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tally = Tally("out", log, clock)
    for reason in ("answered HTTP 500", "answered HTTP 500", "answered HTTP 500", "timed out", "timed out"):
        tally.retrying(reason)
    tally.ok()  # within the window: told later
    assert told(caplog, r"(\d+) more attempt") == []
    clock.now += DROP_LOG_INTERVAL_S
    tally.ok()
    assert told(caplog, r"answered HTTP 500; (\d+) more attempt") == [2]
    assert told(caplog, r"timed out; (\d+) more attempt") == [1]
    tally.retrying("answered HTTP 500")  # in the window the delivery's line opened
    tally.lose_at_shutdown(0)
    assert told(caplog, r"answered HTTP 500; (\d+) more attempt") == [2, 1]


def test_a_reason_forgotten_for_a_new_one_has_its_retries_told(caplog: pytest.LogCaptureFixture) -> None:
    """Reasons are kept a count each, and their text comes from errors: their number is bounded."""
    tally = Tally("out", log, Clock())
    for n in range(RETRY_REASONS_MAX):
        tally.retrying(f"reason {n}")
        tally.retrying(f"reason {n}")
    assert tally.retrying("one more reason") == 1
    assert [r.getMessage() for r in caplog.records] == [
        "out: reason 0; 1 more attempt(s) retried for this reason since it was last logged"
    ]
    tally.lose_at_shutdown(0)
    assert len(told(caplog, r"(\d+) more attempt")) == RETRY_REASONS_MAX  # reason 0 not told twice


def test_the_backoff_doubles_up_to_its_cap_and_stays_there() -> None:
    """Doubling alone would make the MQTT sink wait over a minute before connecting again from its eighth
    failed connection, and years from its thirtieth: a broker back after an outage would not be tried again."""
    waits = [backoff_s(attempt) for attempt in range(41)]
    assert waits[:3] == [0.5, 1.0, 2.0]
    assert max(waits) == BACKOFF_MAX_S
    assert waits[-1] == BACKOFF_MAX_S
    assert waits == sorted(waits), "never shorter than the wait before"

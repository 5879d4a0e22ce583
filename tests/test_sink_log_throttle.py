"""An output that fails for some events and works for the rest: its error logged once a window, not once an event.

A broker's ACL refusing one topic, or a webhook receiver refusing one event type, loses every other event while
the rest get through. Each delivery between two failures ended the failure in the log, so every lost event
logged its error again, and every delivery after it "working".
"""

from __future__ import annotations

import logging

import pytest

import server.events.sink as sink_module
from server.events.sink import DROP_LOG_INTERVAL_S, SinkState, Tally

log = logging.getLogger("tests.sink_log_throttle")
REFUSED = "stream 'door': the broker refused the publish to segcast/door/events (not authorized)"
LOST_SINCE = "event(s) lost since it was logged"


class Clock:
    """Monotonic seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(record.levelno, record.getMessage()) for record in caplog.records]


def alternate(tally: Tally, clock: Clock, times: int, reason: str = REFUSED) -> None:
    """``times`` events lost to ``reason``, each followed by one delivered, a second apart."""
    for _ in range(times):
        tally.fail(reason, lost=1)
        clock.now += 0.5
        tally.ok()
        clock.now += 0.5


def test_an_output_losing_every_other_event_logs_the_error_once_not_once_an_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given an output whose every other event is refused, for one reason
    caplog.set_level(logging.INFO, log.name)
    clock = Clock()
    tally = Tally("mqtt", log, clock)

    # When ten events are lost and ten delivered, alternately, within one quiet window
    alternate(tally, clock, 10)
    within = lines(caplog)
    tally.lose_at_shutdown(0)

    # Then the error is logged once, "working" once after it (not after each delivery), and the nine
    # other losses in one line, at shutdown here
    assert within == [(logging.ERROR, f"mqtt: {REFUSED}"), (logging.INFO, "mqtt: working")]
    assert lines(caplog)[2:] == [(logging.WARNING, f"mqtt: {REFUSED} (again: 9 more {LOST_SINCE})")]
    assert (tally.failed, tally.delivered, tally.state) == (10, 10, SinkState.OK)


def test_after_the_window_the_error_is_logged_again_with_the_losses_it_held(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, log.name)
    clock = Clock()
    tally = Tally("mqtt", log, clock)
    alternate(tally, clock, 10)
    caplog.clear()

    clock.now += DROP_LOG_INTERVAL_S
    alternate(tally, clock, 10)

    # The next window's first failure is an error again, telling the window before's nine and itself
    assert lines(caplog) == [
        (logging.ERROR, f"mqtt: {REFUSED} (again: 10 more {LOST_SINCE})"),
        (logging.INFO, "mqtt: working"),
    ]


def test_losses_a_window_held_are_told_by_the_first_delivery_after_it(caplog: pytest.LogCaptureFixture) -> None:
    """Where the refusals stop, what the last window counted is not kept until shutdown."""
    clock = Clock()
    tally = Tally("webhook", log, clock)
    alternate(tally, clock, 4)
    clock.now += DROP_LOG_INTERVAL_S
    tally.ok()
    tally.ok()
    assert lines(caplog)[1:] == [(logging.WARNING, f"webhook: {REFUSED} (again: 3 more {LOST_SINCE})")]


def test_each_reason_has_its_own_window(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    tally = Tally("webhook", log, clock)
    for _ in range(5):
        tally.fail("answered HTTP 404; not retried", lost=1)
        tally.ok()
        tally.fail("answered HTTP 410; not retried", lost=1)
        tally.ok()
    assert [message for level, message in lines(caplog) if level == logging.ERROR] == [
        "webhook: answered HTTP 404; not retried",
        "webhook: answered HTTP 410; not retried",
    ]


def test_an_outage_that_comes_back_within_the_window_is_logged_once_the_window_is_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The window keeps a flapping connection to a line a window; it must not leave "working" the log's last
    word while the broker stays down."""
    caplog.set_level(logging.INFO, log.name)
    clock = Clock()
    tally = Tally("mqtt", log, clock)
    tally.fail("connection refused by 127.0.0.1:1883")  # a connection lost: no event lost with it
    tally.ok(0)
    for _ in range(2):  # down again at once, and it stays down: a connection tried every 10 s
        clock.now += 10
        tally.fail("connection refused by 127.0.0.1:1883")
    assert lines(caplog) == [
        (logging.ERROR, "mqtt: connection refused by 127.0.0.1:1883"),
        (logging.INFO, "mqtt: working"),
    ]
    assert tally.state is SinkState.FAILING

    for _ in range(3):  # the next attempt is past the window: said again, once, as it goes on
        clock.now += 10
        tally.fail("connection refused by 127.0.0.1:1883")
    tally.ok(0)
    assert lines(caplog)[2:] == [
        (logging.ERROR, "mqtt: connection refused by 127.0.0.1:1883"),
        (logging.INFO, "mqtt: working"),
    ]


def test_a_reason_forgotten_for_a_new_one_has_its_losses_told(caplog: pytest.LogCaptureFixture) -> None:
    """Reasons are kept a count each, and their text comes from errors (one per stream, for a broker): bounded."""
    reasons = sink_module.LOSS_REASONS_MAX
    tally = Tally("mqtt", log, Clock())
    for n in range(reasons):
        for _ in range(2):
            tally.fail(f"stream 'cam{n}': refused", lost=1)
            tally.ok()
    caplog.clear()

    tally.fail("stream 'one-more': refused", lost=1)

    assert lines(caplog) == [
        (logging.WARNING, f"mqtt: stream 'cam0': refused (again: 1 more {LOST_SINCE})"),
        (logging.ERROR, "mqtt: stream 'one-more': refused"),
    ]

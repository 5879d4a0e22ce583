"""The one throttle behind every "at most once a minute" log line: nothing told twice, nothing lost."""

from __future__ import annotations

from server.log_throttle import ThrottledCount


def test_the_first_is_told_at_once_and_the_rest_of_the_window_in_the_next_line() -> None:
    count = ThrottledCount(60.0)
    assert count.add(now=1000.0) == 1
    assert [count.add(now=1000.0 + s) for s in (1, 2, 59)] == [0, 0, 0]
    assert count.add(now=1060.0) == 4  # the three held back and this one


def test_due_tells_what_was_held_back_once_the_window_is_over() -> None:
    count = ThrottledCount(30.0)
    count.add(now=0.0)
    count.add(5, now=10.0)
    assert count.due(now=29.0) == 0
    assert count.due(now=30.0) == 5
    assert count.due(now=100.0) == 0  # nothing left to tell


def test_take_tells_everything_now_and_told_opens_a_window() -> None:
    count = ThrottledCount(30.0)
    count.add(now=0.0)
    count.add(2, now=1.0)
    assert count.take() == 2
    assert count.add(3, now=2.0) == 0  # held back: only the caller's line, told below, tells of them
    count.told(now=50.0)
    assert count.untold == 0
    assert count.add(now=60.0) == 0
    assert count.add(now=80.0) == 2


def test_without_a_clock_it_uses_the_monotonic_one() -> None:
    count = ThrottledCount(3600.0)
    assert count.add() == 1
    assert count.add() == 0
    assert count.untold == 1

"""`LatestFrame.hand_over`: a stream whose options change keeps its reader, which goes on into the new
consumer's slot (`StreamManager._retrack`). What waited in the old slot, what is put there later, the
count of dropped frames and a producer blocked on it (a batch file's, `wait_empty`) all move across."""

from __future__ import annotations

import threading
import time

import numpy as np

from server.frames import Frame
from server.sources.base import LatestFrame

#: A bound on a failure's cost, never what a test waits for.
TIMEOUT_S = 10.0
POLL_S = 0.001
LONG_POLL_S = 6 * TIMEOUT_S  # a producer's poll that a test would fail on, were it what woke the producer
IMAGE = np.zeros((4, 4, 3), dtype=np.uint8)


def frame(seq: int, ended: bool = False) -> Frame:
    return Frame("s", seq, 0.0, seq / 10, IMAGE, 0, ended=ended)


def slot() -> LatestFrame:
    return LatestFrame(threading.Event())


class CountingStop(threading.Event):
    """A stop event never set, that counts how often a waiting producer asked it (`wait_empty` asks it
    once a poll while a frame waits, and once more when it returns)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0
        self.changed = threading.Condition()

    def is_set(self) -> bool:
        with self.changed:
            self.asked += 1
            self.changed.notify_all()
        return super().is_set()

    def wait_asked(self, times: int, done: threading.Event) -> None:
        """Until it was asked ``times`` times, or ``done`` is set."""
        deadline = time.monotonic() + TIMEOUT_S
        with self.changed:
            while self.asked < times and not done.is_set():
                assert time.monotonic() < deadline, "the producer neither waited nor returned"
                self.changed.wait(POLL_S)


def returns_only_once_taken(producer_slot: LatestFrame, hand_over: list[tuple[LatestFrame, LatestFrame]]) -> None:
    """Given a producer blocked in ``producer_slot.wait_empty`` on a frame waiting there, when each
    ``hand_over`` is made, then the producer goes on waiting (it polls the new slot again and again) and
    returns only once the last slot's consumer took the frame."""
    stop, returned, taken = CountingStop(), threading.Event(), threading.Event()
    outcome: list[tuple[bool, bool]] = []

    def produce() -> None:
        result = producer_slot.wait_empty(stop, POLL_S)
        outcome.append((result, taken.is_set()))
        returned.set()

    producer = threading.Thread(target=produce)
    producer.start()
    stop.wait_asked(1, returned)  # asked from within its loop: the frame waits and no one takes it
    assert not returned.is_set()
    for old, new in hand_over:
        old.hand_over(new)
    # At most two asks of a producer still on the old slot: one it was making, one as it returns.
    stop.wait_asked(stop.asked + 3, returned)
    taken.set()
    last = hand_over[-1][1]
    assert last.take() is not None, "the waiting frame did not move to the last slot"
    producer.join(TIMEOUT_S)
    assert outcome == [(True, True)], "the producer returned before the new slot's frame was taken"


def test_a_producer_waiting_on_the_old_slot_waits_for_the_new_one_to_be_taken() -> None:
    old, new = slot(), slot()
    old.put(frame(1))
    returns_only_once_taken(old, [(old, new)])


def test_a_producer_waiting_on_the_old_slot_is_woken_by_the_hand_over_not_by_its_next_poll() -> None:
    """Polling once a minute, it would sit on the old slot that long: a batch file stalled on a change."""
    old, new = slot(), slot()
    old.put(frame(1))
    stop, returned = CountingStop(), threading.Event()
    producer = threading.Thread(target=lambda: (old.wait_empty(stop, LONG_POLL_S), returned.set()), daemon=True)
    producer.start()
    stop.wait_asked(1, returned)  # it asks under the slot's lock, then waits: hand_over comes while it waits
    old.hand_over(new)
    assert new.take() is not None
    assert returned.wait(TIMEOUT_S), "the producer still waits on the old slot"
    producer.join(TIMEOUT_S)


def test_a_frame_put_on_the_old_slot_after_the_hand_over_lands_in_the_new_one() -> None:
    old, new = slot(), slot()
    old.hand_over(new)
    old.put(frame(2))
    taken = new.take()
    assert taken is not None and taken.seq == 2
    assert old.take() is None


def test_the_new_consumer_is_woken_for_a_frame_put_on_the_old_slot() -> None:
    new_ready = threading.Event()
    old, new = slot(), LatestFrame(new_ready)
    old.hand_over(new)
    new_ready.clear()
    old.put(frame(2))
    assert new_ready.is_set()


def test_the_waiting_frame_its_end_marker_and_the_dropped_count_move_across() -> None:
    old, new = slot(), slot()
    old.put(frame(1))
    old.put(frame(2))  # drops 1
    old.put(frame(3, ended=True))  # waits behind 2
    old.hand_over(new)
    assert new.dropped == 1
    first, end = new.take(), new.take()
    assert first is not None and first.seq == 2 and not first.ended
    assert end is not None and end.ended
    assert new.take() is None and old.take() is None


def test_a_chain_of_hand_overs_leads_the_producer_to_the_last_slot() -> None:
    old, second, third = slot(), slot(), slot()
    old.put(frame(1))
    old.put(frame(2))  # drops 1
    old.hand_over(second)
    second.hand_over(third)
    assert third.dropped == 1
    old.put(frame(3))  # drops 2 in the third slot
    assert third.dropped == 2
    taken = third.take()
    assert taken is not None and taken.seq == 3
    assert old.take() is None and second.take() is None


def test_a_producer_waiting_on_the_first_slot_of_a_chain_waits_for_the_last_one() -> None:
    old, second, third = slot(), slot(), slot()
    old.put(frame(1))
    returns_only_once_taken(old, [(old, second), (second, third)])

"""Track ids are exact however many a stream has given: docs/protocol.md promises they are never reused.

Ids went through float32 on their way from the tracker (segtrack's rows, ultralytics' own), which holds
whole numbers exactly only up to 2**24: past that, 16777217 read back as 16777216 and 16777219 as
16777220, and tracks started and ended on every frame. ByteTrack on a busy scene gets there in about a
month at 30 fps.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from server.frames import Frame, TrackEventKind
from server.inference.detections import Detections
from server.options import SEGTRACK, StreamOptions, tracker_kinds
from server.tracking.stream import StreamTracker
from tests.support.detections import NAMES

FIRST_ID = 2**24 + 1  # the first id float32 cannot hold


def _counting_from(tracker: StreamTracker, first: int, kind: str) -> None:
    """Stand in for the 16.8 million tracks the stream's tracker started before: its next id is ``first``."""
    inner = tracker._tracker
    if kind == SEGTRACK:
        inner._next_id = first
    else:
        inner._ids = iter(range(first, sys.maxsize))  # ultralytics' per-tracker id counter


@pytest.mark.parametrize("kind", tracker_kinds())
def test_ids_past_two_to_the_twenty_fourth_are_exact_and_steady(kind: str) -> None:
    """Two parked objects, tracked for a few frames: each keeps the id it started with, started once,
    never ended, and ids a float32 cannot hold come out exact."""
    tracker = StreamTracker("cam", NAMES, StreamOptions(tracker=kind), 10.0)
    _counting_from(tracker, FIRST_ID, kind)
    image = np.zeros((240, 320, 3), np.uint8)
    two = Detections(np.array([[20, 20, 80, 80, 0.9, 0], [200, 20, 260, 80, 0.9, 1]], np.float32))
    reported: list[list[int]] = []
    events = []
    for index in range(5):
        tracks, new = tracker.update(two, Frame("cam", index, 1000.0 + index / 10, index / 10, image))
        reported.append(sorted(t.track_id for t in tracks))
        events += [(e.kind, e.track_id) for e in new]
    assert reported[-1] == [FIRST_ID, FIRST_ID + 1], reported
    assert all(ids == reported[-1] for ids in reported if ids), reported
    assert events == [(TrackEventKind.START, FIRST_ID), (TrackEventKind.START, FIRST_ID + 1)], events
